"""The load benchmark's arithmetic: merged percentiles and means, and the machine's capacity bound."""

from __future__ import annotations

import os

import pytest

from benchmarks.load import ClientReport, capacity, summarise
from benchmarks.load import main as load_main


def run_figures(*, calls: int, seconds: float, mean_ms: float, servers: float, clients: float) -> dict:
    return {
        "calls": calls, "seconds": seconds, "mean_ms": mean_ms,
        "calls_in_progress": calls * mean_ms / 1000 / seconds if seconds else 0.0,
        "cpu_seconds": {"servers": servers, "clients": clients},
    }


def test_summarise_merges_client_samples() -> None:
    first = ClientReport(samples={"get_item": [1.0, 3.0]}, seconds=2.0)
    second = ClientReport(samples={"get_item": [5.0], "find_exceptions": [11.0]}, seconds=4.0)

    summary = summarise([first, second], server_peak_kib=0, wall_seconds=4.5)

    assert summary["calls"] == 4
    assert summary["throughput"] == 1.0
    assert summary["tools"]["get_item"] == {"calls": 3, "mean_ms": 3.0, "p50_ms": 3.0, "p99_ms": 5.0}
    assert summary["mean_ms"] == 5.0
    # 20 ms of calls over the slowest client's 4 s.
    assert summary["calls_in_progress"] == 0.01


def test_capacity_bound_one_busy_core() -> None:
    cores = len(os.sched_getaffinity(0))
    # Alone: one core busy and one call in progress. Shared: six calls in progress at 1.5 times the CPU per call.
    alone = run_figures(calls=1000, seconds=20.0, mean_ms=20.0, servers=15.0, clients=5.0)
    concurrent = run_figures(calls=1000, seconds=16.0, mean_ms=96.0, servers=24.0, clients=6.0)

    bound = capacity(alone, concurrent)

    assert bound["cores_busy_alone"] == 1.0
    assert bound["cpu_per_call_growth"] == 1.5
    assert bound["throughput_ratio_ceiling"] == pytest.approx(cores / 1.5, abs=0.01)
    assert bound["calls_in_progress_ratio"] == 6.0
    assert bound["mean_slowdown_floor"] == pytest.approx(6.0 * 1.5 / cores, abs=0.01)
    assert bound["mean_slowdown"] == 4.8


def test_capacity_without_cpu_figures() -> None:
    empty = run_figures(calls=0, seconds=0.0, mean_ms=0.0, servers=0.0, clients=0.0)

    assert capacity(empty, empty) == {"cores": len(os.sched_getaffinity(0))}


@pytest.mark.parametrize(
    ("option", "expected"),
    [("--json", "is not an existing folder"), ("--keep", "is a file")],
)
def test_load_rejects_unwritable_paths(tmp_path, capsys, option: str, expected: str) -> None:
    paths = {"--json": tmp_path / "missing" / "figures.json", "--keep": tmp_path / "file.txt"}
    paths["--keep"].write_text("not a folder")

    with pytest.raises(SystemExit) as stop:
        load_main([option, str(paths[option])])

    assert stop.value.code == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()

"""`order3 replay record`: a session's activity history turned into a scenario that replays with the same results."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest
import yaml
from typer.testing import CliRunner

from order3_mcp.cli import app
from order3_mcp.replay.format import load_scenario
from order3_mcp.replay.runner import run_scenario
from tests.conftest import REPO_ROOT

SESSION = REPO_ROOT / "tests" / "replay" / "session.yaml"
SMALL_SHOP = REPO_ROOT / "fixtures" / "datasets" / "small-shop.yaml"


def order3(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "ORDER3_TOKEN": None, "ORDER3_DB": None})
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def session_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database kept after replaying the demo-like session in tests/replay/session.yaml; recording only reads it."""
    directory = tmp_path_factory.mktemp("session")
    report = anyio.run(lambda: run_scenario(load_scenario(SESSION), keep_in=directory))
    assert report.status == "passed", [difference.headline() for difference in report.differences]
    return directory / "replay.db"


def record(db: Path, output: Path, *options: str) -> tuple[int, str, str]:
    return order3("--db", str(db), "replay", "record", "--workspace", "shop", "--dataset", str(SMALL_SHOP), "--output", str(output), *options)


def test_recorded_session_replays_with_same_results(session_db: Path, tmp_path: Path) -> None:
    output = tmp_path / "recorded.yaml"

    code, printed, _ = record(session_db, output)
    replayed = order3("replay", str(output))

    assert (code, printed) == (0, f"Wrote 12 steps to {output}.\n")
    assert replayed[0] == 0, replayed[1]
    assert replayed[1].startswith("PASS recorded session of workspace shop")


def test_recording_rewrites_draft_ids_into_references(session_db: Path, tmp_path: Path) -> None:
    output = tmp_path / "recorded.yaml"

    record(session_db, output)
    steps = yaml.safe_load(output.read_text(encoding="utf-8"))["steps"]

    drafted = [step for step in steps if step.get("tool") == "draft_purchase_order"]
    assert drafted[0]["id"] == "draft1"
    assert drafted[1]["result"]["draft_id"] == "$steps.draft1.result.draft_id"
    assert drafted[1]["arguments"]["idempotency_key"] == "widget-1-reorder"
    approvals = [step for step in steps if step.get("cli", [None])[:2] == ["drafts", "approve"]]
    assert approvals[0]["cli"][2] == "$steps.draft1.result.draft_id"
    assert [event["action"] for event in approvals[0]["events"]] == ["approve_draft", "execute_draft"]


def test_recording_keeps_refusals_and_clock(session_db: Path, tmp_path: Path) -> None:
    output = tmp_path / "recorded.yaml"

    record(session_db, output)
    document = yaml.safe_load(output.read_text(encoding="utf-8"))

    refusals = [step["error"]["kind"] for step in document["steps"] if "error" in step]
    assert refusals == ["denied", "denied", "not_found"]
    assert document["now"] == "2026-12-01T08:00:00+00:00"
    assert {"to": "2026-12-02T08:00:00+00:00"} in document["steps"]
    assert document["tokens"]["buyer-bot"] == {"kind": "agent", "role": "agent", "for": "alice"}
    assert document["steps"][0]["sync"]["batch"]["batch_id"] == "quantities-1"


def test_recording_time_range(session_db: Path, tmp_path: Path) -> None:
    output = tmp_path / "recorded.json"

    code, _, _ = record(session_db, output, "--from", "2026-12-01T00:00:00+00:00", "--to", "2026-12-01T23:59:59+00:00")

    document = yaml.safe_load(output.read_text(encoding="utf-8"))
    assert code == 0
    assert not any("to" in step for step in document["steps"])
    assert "draft2" in {step.get("id") for step in document["steps"]}
    assert not any(step.get("cli", [None, None])[1] == "execute" for step in document["steps"])


def test_recording_one_token(session_db: Path, tmp_path: Path) -> None:
    output = tmp_path / "recorded.yaml"
    with sqlite3.connect(session_db) as connection:
        (token_id,) = connection.execute("SELECT id FROM token WHERE principal = 'buyer-bot'").fetchone()

    code, _, _ = record(session_db, output, "--token", str(token_id))

    document = yaml.safe_load(output.read_text(encoding="utf-8"))
    assert code == 0
    assert document["tokens"] == {"buyer-bot": {"kind": "agent", "role": "agent", "for": "alice"}, "alice": {"kind": "user", "role": "buyer"}}
    assert {step["as"] for step in document["steps"] if "as" in step} == {"buyer-bot"}


def test_recording_nothing_is_an_error(session_db: Path, tmp_path: Path) -> None:
    code, _, stderr = record(session_db, tmp_path / "recorded.yaml", "--from", "2030-01-01T00:00:00+00:00")

    assert code == 2
    assert "Workspace 'shop' has no recorded tool call, CLI decision or sync in that selection" in stderr
    assert not (tmp_path / "recorded.yaml").exists()


def test_recording_unknown_workspace_is_not_found(session_db: Path, tmp_path: Path) -> None:
    code, _, stderr = order3(
        "--db", str(session_db), "replay", "record", "--workspace", "nope", "--dataset", "d.yaml", "--output", str(tmp_path / "r.yaml")
    )

    assert code == 4
    assert "Workspace 'nope' does not exist" in stderr

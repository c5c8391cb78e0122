"""The replay runner and `order3 replay`: the scenario library, reports, JUnit XML, determinism and invalid files."""

from __future__ import annotations

import shutil
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml
from typer.testing import CliRunner

from order3_mcp.cli import app
from order3_mcp.replay.format import load_scenario
from order3_mcp.replay.runner import run_scenario
from tests.conftest import ON_POSTGRES, POSTGRES_ADMIN_URL, REPO_ROOT, postgres_reachable, run_sql

SCENARIOS = REPO_ROOT / "fixtures" / "scenarios"
LIBRARY = sorted(SCENARIOS.glob("*.yaml"))
SMALL_SHOP = REPO_ROOT / "fixtures" / "datasets" / "small-shop.yaml"


def replay(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["replay", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


def copy_scenario(name: str, directory: Path) -> Path:
    """Copy a library scenario next to a copy of its dataset so that the relative path still resolves."""
    (directory / "scenarios").mkdir(exist_ok=True)
    (directory / "datasets").mkdir(exist_ok=True)
    shutil.copy(SMALL_SHOP, directory / "datasets" / SMALL_SHOP.name)
    target = directory / "scenarios" / name
    shutil.copy(SCENARIOS / name, target)
    return target


def write_scenario(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def minimal(**changes: object) -> dict:
    document = {
        "format": 1,
        "name": "minimal",
        "dataset": str(SMALL_SHOP),
        "now": "2026-12-01T09:00:00+00:00",
        "tokens": {"bot": {"kind": "agent", "role": "agent"}},
        "steps": [{"tool": "get_item", "as": "bot", "arguments": {"sku": "WIDGET-1"}, "result": {"sku": "WIDGET-1"}}],
    }
    document.update(changes)
    return document


def test_library_has_fifteen_scenarios() -> None:
    assert len(LIBRARY) >= 15


@pytest.mark.parametrize("path", LIBRARY, ids=[path.stem for path in LIBRARY])
async def test_library_scenario_passes(path: Path) -> None:
    # The PostgreSQL pass of the suite replays the library on that backend.
    report = await run_scenario(load_scenario(path), postgres=POSTGRES_ADMIN_URL if ON_POSTGRES else None)

    if report.status == "skipped":
        pytest.skip(report.skip_reason)
    assert [difference.headline() for difference in report.differences] == []
    assert report.status == "passed"


async def test_scenario_passes_over_stdio() -> None:
    # One token, so one `order3 serve` subprocess; its steps include a refusal, which must keep its error kind over stdio.
    report = await run_scenario(load_scenario(SCENARIOS / "conflicting-retry-is-refused.yaml"), transport="stdio")

    assert [difference.headline() for difference in report.differences] == []
    assert report.status == "passed"


def test_wrong_expectation_names_step_and_field(tmp_path: Path) -> None:
    path = copy_scenario("transfer-from-draft-to-received.yaml", tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace('expect: {on_hand: "7"}', 'expect: {on_hand: "8"}'), encoding="utf-8")

    code, output, _ = replay(str(path))

    assert code == 1
    assert "FAIL transfer from draft to received stock at the destination" in output
    assert "  step 3 (execute): order3 drafts execute $steps.transfer.id as alice\n" in output
    assert "    field:    state[1].on_hand\n" in output
    assert '    expected: "8"\n    actual:   "7"\n' in output
    assert output.endswith("0 passed, 1 failed, 0 skipped\n")


def test_unexpected_error_is_a_difference(tmp_path: Path) -> None:
    document = minimal(steps=[{"tool": "get_item", "as": "bot", "arguments": {"sku": "NOPE-9"}}])

    code, output, _ = replay(str(write_scenario(tmp_path / "s.yaml", document)))

    assert code == 1
    assert "field:    error (the step failed)" in output
    assert '"kind": "not_found"' in output


def test_reference_to_failed_step_is_reported(tmp_path: Path) -> None:
    steps = [
        {"id": "missing", "tool": "get_draft", "as": "bot", "arguments": {"draft_id": 404}, "error": {"kind": "not_found"}},
        {"tool": "get_draft", "as": "bot", "arguments": {"draft_id": "$steps.missing.result.draft_id"}},
    ]

    code, output, _ = replay(str(write_scenario(tmp_path / "s.yaml", minimal(steps=steps))))

    assert code == 1
    assert "step 2: get_draft as bot" in output
    assert "step 'missing' has no 'draft_id'" in output


def test_two_runs_give_identical_reports(tmp_path: Path) -> None:
    failing = write_scenario(tmp_path / "failing.yaml", minimal(steps=[{"tool": "get_item", "as": "bot", "arguments": {"sku": "GADGET-2"}, "result": {"on_hand": "1"}}]))
    passing = copy_scenario("expired-approval-is-refused.yaml", tmp_path)

    first = replay(str(failing), str(passing), "--junit", str(tmp_path / "first.xml"))
    second = replay(str(failing), str(passing), "--junit", str(tmp_path / "second.xml"))

    assert first == second
    assert (tmp_path / "first.xml").read_bytes() == (tmp_path / "second.xml").read_bytes()
    assert "order3-replay-" not in first[1]
    assert " s\n" not in first[1]


def test_timings_add_durations(tmp_path: Path) -> None:
    code, output, _ = replay(str(write_scenario(tmp_path / "s.yaml", minimal())), "--timings")

    assert code == 0
    assert output.splitlines()[0].endswith(" s")
    assert output.startswith("PASS minimal [")


def test_junit_xml_is_well_formed(tmp_path: Path) -> None:
    failing = copy_scenario("idempotent-retry-returns-original.yaml", tmp_path)
    failing.write_text(failing.read_text(encoding="utf-8").replace("{drafts: [{draft_id: $steps.first.id}]}", "{drafts: []}"), encoding="utf-8")
    passing = write_scenario(tmp_path / "passing.yaml", minimal())
    junit = tmp_path / "report.xml"

    code, _, _ = replay(str(failing), str(passing), "--junit", str(junit))

    suite = ElementTree.parse(junit).getroot()
    cases = suite.findall("testcase")
    assert code == 1
    assert (suite.tag, suite.get("tests"), suite.get("failures")) == ("testsuite", "2", "1")
    assert [case.get("name") for case in cases] == ["idempotent retry returns the original draft and writes nothing new", "minimal"]
    failure = cases[0].find("failure")
    assert failure is not None
    assert failure.get("message", "").startswith("step 3 list_drafts as buyer-bot: result.drafts (has 1 elements, not 0)")
    assert cases[1].find("failure") is None


def test_missing_inventree_export_skips(tmp_path: Path) -> None:
    (tmp_path / "dataset.yaml").write_text("format: 1\nworkspace: demo\ninventree: nowhere/inventree-demo.json\n", encoding="utf-8")
    junit = tmp_path / "report.xml"

    code, output, _ = replay(str(write_scenario(tmp_path / "s.yaml", minimal(dataset="dataset.yaml"))), "--junit", str(junit))

    assert code == 0
    assert "SKIP minimal" in output
    assert "the InvenTree export nowhere/inventree-demo.json named by dataset dataset.yaml is not present" in output
    assert ElementTree.parse(junit).getroot().find("testcase/skipped") is not None


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (minimal(format=2), "at /format: 2 is not supported. Fix: write 1"),
        ({k: v for k, v in minimal().items() if k != "now"}, "at /: the required field 'now' is missing. Fix: add 'now'"),
        (minimal(now="2026-12-01T09:00:00"), "at /now: now '2026-12-01T09:00:00' has no UTC offset"),
        (minimal(steps=[{"as": "bot"}]), "at /steps/0: the step has no kind. Fix: give the step exactly one of tool, cli, sync, advance, to, tamper"),
        (minimal(steps=[{"tool": "get_item", "as": "nobody"}]), "at /steps/0/as: token 'nobody' is not declared"),
        (minimal(steps=[{"tool": "get_item", "as": "bot", "expect": {}}]), "at /steps/0: unknown field 'expect'"),
        (minimal(steps=[{"advance": "2 days"}]), "at /steps/0/advance: '2 days' has the wrong form. Fix: write a duration such as 2d"),
        (
            minimal(steps=[{"tool": "get_draft", "as": "bot", "arguments": {"draft_id": "$steps.later.id"}}, {"id": "later", "advance": "1d"}]),
            "at /steps/0/arguments/draft_id: step 'later' is not an earlier step",
        ),
        (minimal(steps=[{"tool": "get_item", "as": "bot", "error": {"kind": "missing"}}]), "at /steps/0/error/kind: 'missing' is not allowed. Fix: use one of denied"),
        (minimal(dataset="no-such-dataset.yaml"), "at /dataset: dataset file 'no-such-dataset.yaml' does not exist"),
        (minimal(tokens={"bot": {"kind": "robot", "role": "agent"}}), "at /tokens/bot/kind: 'robot' is not allowed"),
        (
            minimal(steps=[{"advance": "1d", "state": [{"expect": {"count": 1}}]}]),
            "at /steps/0/state/0: a state check needs exactly one target and 'expect'",
        ),
    ],
)
def test_invalid_scenario_exits_2(tmp_path: Path, document: dict, expected: str) -> None:
    code, output, stderr = replay(str(write_scenario(tmp_path / "bad.yaml", document)))

    assert code == 2
    assert output == ""
    assert expected in stderr


def test_invalid_yaml_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("format: 1\nname: [unclosed\n", encoding="utf-8")

    code, _, stderr = replay(str(path))

    assert code == 2
    assert "broken.yaml at /: invalid YAML at line 3" in stderr


def test_dataset_reference_error_names_dataset_file(tmp_path: Path) -> None:
    dataset = {"format": 1, "workspace": "w", "stock": [{"sku": "GHOST", "location": "WH1", "quantity": "1"}]}
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump(dataset), encoding="utf-8")

    code, _, stderr = replay(str(write_scenario(tmp_path / "s.yaml", minimal(dataset="dataset.yaml"))))

    assert code == 2
    assert "dataset.yaml at /stock/0/sku: item 'GHOST' is not in the dataset's items" in stderr


def test_invalid_file_stops_every_run(tmp_path: Path) -> None:
    write_scenario(tmp_path / "a-good.yaml", minimal())
    write_scenario(tmp_path / "b-bad.yaml", minimal(format=3))

    code, output, stderr = replay(str(tmp_path))

    assert code == 2
    assert output == ""
    assert "b-bad.yaml at /format" in stderr


def test_unknown_transport_exits_2(tmp_path: Path) -> None:
    code, _, stderr = replay(str(write_scenario(tmp_path / "s.yaml", minimal())), "--transport", "carrier-pigeon")

    assert code == 2
    assert "Transport 'carrier-pigeon' is unknown; use memory or stdio." in stderr


def test_invalid_batch_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "batch.json").write_text('{"source": "erp"}', encoding="utf-8")
    steps = [{"sync": {"file": "batch.json"}, "as": "bot"}]

    code, _, stderr = replay(str(write_scenario(tmp_path / "s.yaml", minimal(steps=steps))))

    assert code == 2
    assert "batch.json at /: the batch is not an object with source, batch_id and records" in stderr


@pytest.mark.skipif(not postgres_reachable(), reason="PostgreSQL is not reachable on 127.0.0.1:5432")
def test_replay_on_postgres_drops_its_databases() -> None:
    before = run_sql(POSTGRES_ADMIN_URL, "SELECT count(*) FROM pg_database WHERE datname LIKE 'order3_replay_%'")

    code, out, _err = replay(str(SCENARIOS / "conflicting-retry-is-refused.yaml"), "--postgres", POSTGRES_ADMIN_URL)

    assert code == 0, out
    assert "1 passed" in out
    after = run_sql(POSTGRES_ADMIN_URL, "SELECT count(*) FROM pg_database WHERE datname LIKE 'order3_replay_%'")
    assert after == before


def test_replay_refuses_a_postgres_option_that_is_not_a_postgresql_url() -> None:
    code, out, err = replay(str(SCENARIOS / "conflicting-retry-is-refused.yaml"), "--postgres", "mysql://root@127.0.0.1/x")

    assert code == 2
    assert "'mysql://root@127.0.0.1/x' is not a PostgreSQL URL" in " ".join((out + err).split())

"""Filters of list_activity, `order3 activity list` and `order3 activity export`, applied in the database."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import Implementation
from typer.testing import CliRunner, Result

from order3_mcp.app import Order3
from order3_mcp.cli import app as cli_app
from order3_mcp.server import build_server
from order3_mcp.services import approvals, history
from order3_mcp.services.history import ActivityQuery
from store.activity import event_hash
from store.db import open_database
from store.errors import InvalidInputError, NotFoundError
from tests.factory import Tokens, issue_secret, small_workspace

RATIONALE = "WIDGET-1 has 5 available against a reorder point of 20."
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
CLIENT = Implementation(name="filter-tests", version="1")
runner = CliRunner()


class Clock:
    """A fixed clock that a test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def at(self, minutes: int) -> None:
        self.now = START + timedelta(minutes=minutes)


async def seed(database) -> tuple[Order3, Tokens, int]:
    """Record seven events from 09:00 UTC on and return the app, the tokens and the draft id.

    1 (09:00) the agent reads WIDGET-1, 2 (09:01) GADGET-2, 3 (09:02) it drafts a
    purchase order of WIDGET-1 from ACME, 4 (09:03) its approve_draft is denied,
    5 and 6 (09:04) alice approves the draft, which executes it into purchase
    order 1, and 7 (09:05) the agent requests an unknown SKU (invalid).
    """
    tokens = await small_workspace(database)
    clock = Clock()
    app = Order3(database, clock=clock)
    async with Client(build_server(app, tokens.agent), client_info=CLIENT) as client:
        await client.call_tool("get_item", {"sku": "WIDGET-1"})
        clock.at(1)
        await client.call_tool("get_item", {"sku": "GADGET-2"})
        clock.at(2)
        drafted = await client.call_tool(
            "draft_purchase_order", {"lines": [{"sku": "WIDGET-1", "quantity": 40}], "rationale": RATIONALE}
        )
        draft_id = drafted.structured_content["draft_id"]
        clock.at(3)
        await client.call_tool("approve_draft", {"draft_id": draft_id})
        clock.at(4)
        await approvals.approve_draft(app, tokens.buyer, draft_id=draft_id, expected_hash="", reason="")
        clock.at(5)
        await client.call_tool("get_item", {"sku": "NOPE-9"})
    return app, tokens, draft_id


async def seqs(app: Order3, tokens: Tokens, **filters: object) -> list[int]:
    page = await history.list_activity(app, tokens.admin, query=ActivityQuery(**filters), cursor=None, limit=100)
    return [event.seq for event in page.events]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"actor": "buyer-bot"}, [1, 2, 3, 4, 7]),
        ({"actor": "agent:buyer-bot"}, [1, 2, 3, 4, 7]),
        ({"actor": "user:buyer-bot"}, []),
        ({"actor": "alice"}, [5, 6]),
        ({"action": "get_item"}, [1, 2, 7]),
        ({"outcome": "denied"}, [4]),
        ({"outcome": "invalid"}, [7]),
        ({"draft_id": 1}, [3, 4, 5, 6]),
        ({"record_kind": "draft", "record_id": "1"}, [3, 4, 5, 6]),
        ({"record_kind": "item", "record_id": "WIDGET-1"}, [1, 3]),
        ({"record_kind": "item", "record_id": "widget-1"}, [1, 3]),
        ({"record_kind": "item", "record_id": "2"}, [2]),
        ({"record_kind": "supplier", "record_id": "ACME"}, [3]),
        ({"record_kind": "purchase_order", "record_id": "1"}, [6]),
        ({"since": "2026-03-01T09:02:00Z"}, [3, 4, 5, 6, 7]),
        ({"until": "2026-03-01T09:02:00Z"}, [1, 2]),
        ({"since": "2026-03-01T10:01:00+01:00", "until": "2026-03-01T10:04:00+01:00"}, [2, 3, 4]),
        ({"actor": "buyer-bot", "action": "get_item", "since": "2026-03-01T09:01:00+00:00"}, [2, 7]),
        ({"record_kind": "draft", "record_id": "1", "outcome": "ok"}, [3, 5, 6]),
        ({"record_kind": "draft", "record_id": "2"}, []),
    ],
)
async def test_filters_select_matching_events(database, filters, expected):
    app, tokens, draft_id = await seed(database)

    assert draft_id == 1
    assert await seqs(app, tokens, **filters) == expected


async def test_filtered_pages_walk_without_gaps(database):
    app, tokens, _ = await seed(database)
    query = ActivityQuery(actor="buyer-bot", since="2026-03-01T09:01:00Z")

    walked: list[int] = []
    cursor = None
    for _ in range(10):
        page = await history.list_activity(app, tokens.admin, query=query, cursor=cursor, limit=2)
        walked += [event.seq for event in page.events]
        cursor = page.next_cursor
        if cursor is None:
            break

    assert walked == [2, 3, 4, 7]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"since": "2026-03-01T09:00:00"}, "since '2026-03-01T09:00:00' has no UTC offset"),
        ({"until": "2026-03-01"}, "until '2026-03-01' has no UTC offset"),
        ({"since": "yesterday"}, "since 'yesterday' is not an ISO 8601 time"),
        ({"until": "2026-13-01T00:00:00Z"}, "until '2026-13-01T00:00:00Z' is not an ISO 8601 time"),
        ({"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, "is not before until"),
        ({"outcome": "maybe"}, "Outcome 'maybe' is unknown"),
        ({"record_kind": "draft"}, "needs both its kind and its id"),
        ({"record_id": "3"}, "needs both its kind and its id"),
        ({"record_kind": "Draft Order", "record_id": "3"}, "is unknown; use one of count_result"),
        ({"record_kind": "draft", "record_id": "three"}, "Record id 'three' of kind 'draft' is not a number"),
    ],
)
async def test_invalid_filter_is_refused(database, filters, message):
    app, tokens, _ = await seed(database)

    with pytest.raises(InvalidInputError, match=message):
        await seqs(app, tokens, **filters)


async def test_unknown_sku_filter_is_not_found(database):
    app, tokens, _ = await seed(database)

    with pytest.raises(NotFoundError, match="Item 'NOPE-9' does not exist"):
        await seqs(app, tokens, record_kind="item", record_id="NOPE-9")


async def test_refused_filter_is_recorded(database):
    app, tokens, _ = await seed(database)

    with pytest.raises(InvalidInputError):
        await seqs(app, tokens, since="2026-03-01 09:00")
    page = await history.list_activity(app, tokens.admin, query=ActivityQuery(outcome="invalid"), cursor=None, limit=100)

    assert [event.action for event in page.events] == ["get_item", "list_activity"]


async def test_tool_filters_and_refuses_naive_time(database):
    _, tokens, _ = await seed(database)
    app = Order3(database)

    async with Client(build_server(app, tokens.agent)) as client:
        listed = await client.call_tool(
            "list_activity", {"record_kind": "item", "record_id": "WIDGET-1", "until": "2026-03-01T09:03:00+00:00"}
        )
        refused = await client.call_tool("list_activity", {"since": "2026-03-01T09:00:00"})

    assert [event["seq"] for event in listed.structured_content["events"]] == [1, 3]
    assert refused.is_error
    assert "has no UTC offset" in refused.content[0].text


async def test_tool_rejects_garbage_cursor_with_filters(database):
    _, tokens, _ = await seed(database)

    async with Client(build_server(Order3(database), tokens.agent)) as client:
        with pytest.raises(MCPError, match="was not issued by this server"):
            await client.call_tool("list_activity", {"actor": "buyer-bot", "cursor": "garbage"})


async def test_record_filter_on_each_backend(any_database):
    app, tokens, _ = await seed(any_database)

    assert await seqs(app, tokens, record_kind="item", record_id="WIDGET-1") == [1, 3]
    assert await seqs(app, tokens, record_kind="draft", record_id="1", since="2026-03-01T09:03:00Z") == [4, 5, 6]


# The CLI: the same filters on `activity list` and `activity export`.


def order3(db: Path, *args: str, token: str) -> Result:
    return runner.invoke(
        cli_app, ["--db", str(db), "--token", token, *args], env={"ORDER3_TOKEN": None, "ORDER3_DB": None, "COLUMNS": "200"}
    )


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Path, str]:
    """A database file with the seven seeded events, and the secret of an admin token."""
    path = tmp_path / "order3.db"

    async def build() -> str:
        database = await open_database(path)
        try:
            await seed(database)
            return await issue_secret(database, workspace_id=1, principal="auditor", kind="user", role="admin")
        finally:
            await database.dispose()

    return path, anyio.run(build)


def test_cli_list_filters_by_record_and_time(seeded):
    db, token = seeded

    result = order3(db, "activity", "list", "--record", "draft:1", "--since", "2026-03-01T09:03:00Z", token=token)

    assert result.exit_code == 0, result.stderr
    assert "3 activity events" in result.stdout
    assert "execute_draft" in result.stdout
    assert "draft_purchase_order" not in result.stdout


def test_cli_list_newest_with_actor(seeded):
    db, token = seeded

    result = order3(db, "activity", "list", "--actor", "agent:buyer-bot", "--limit", "2", token=token)

    assert result.exit_code == 0, result.stderr
    assert "Newest 2 of 5 activity events" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--record", "draft"], "--record 'draft' is not KIND:ID"),
        (["--until", "2026-03-01T09:00"], "has no UTC offset"),
    ],
)
def test_cli_list_refuses_bad_filter(seeded, args, message):
    db, token = seeded

    result = order3(db, "activity", "list", *args, token=token)

    assert result.exit_code == 2
    assert message in result.stderr


def test_cli_export_filters_and_keeps_every_field(seeded, tmp_path: Path):
    db, token = seeded
    output = tmp_path / "draft-1.jsonl"

    result = order3(db, "activity", "export", "--record", "draft:1", "--output", str(output), token=token)

    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in output.read_text().splitlines()]
    assert [event["seq"] for event in events] == [3, 4, 5, 6]
    assert set(events[0]) >= {
        "workspace_id", "seq", "occurred_at", "actor_kind", "actor", "token_id", "on_behalf_of", "client_name_unverified", "channel",
        "action", "outcome", "draft_id", "request_id", "idempotency_key", "arguments", "affected", "summary",
        "prev_hash", "hash",
    }
    assert f"Wrote 4 events to {output}." in result.stdout


def test_cli_export_recomputes_every_hash(seeded):
    db, token = seeded

    result = order3(db, "activity", "export", token=token)

    assert result.exit_code == 0, result.stderr
    prev_hash = ""
    for line in result.stdout.splitlines():
        event = json.loads(line)
        fields = {**event, "client_name": event["client_name_unverified"]}
        assert event["prev_hash"] == prev_hash
        assert event_hash(prev_hash, fields) == event["hash"], event["seq"]
        prev_hash = event["hash"]
    assert prev_hash


def test_cli_export_to_stdout_with_outcome(seeded):
    db, token = seeded

    result = order3(db, "activity", "export", "--outcome", "denied", token=token)

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["action"] == "approve_draft"


def test_cli_show_marks_client_name_unverified(seeded):
    db, token = seeded

    by_agent = order3(db, "activity", "show", "1", token=token)
    by_cli = order3(db, "activity", "show", "5", token=token)

    assert by_agent.exit_code == 0, by_agent.stderr
    assert "client_name (unverified): filter-tests" in by_agent.stdout.splitlines()
    assert "on_behalf_of: " in by_agent.stdout.splitlines()
    assert "client_name (unverified):" in by_cli.stdout.splitlines()


@pytest.mark.parametrize("columns", ["200", "80"])
def test_cli_timeline_marks_client_name_unverified(seeded, columns):
    db, token = seeded

    result = runner.invoke(
        cli_app,
        ["--db", str(db), "--token", token, "activity", "list", "--from", "1", "--limit", "3"],
        env={"ORDER3_TOKEN": None, "ORDER3_DB": None, "COLUMNS": columns},
    )

    assert result.exit_code == 0, result.stderr
    assert "filter-tests (unverified)" in result.stdout
    assert "filter-tests " not in result.stdout.replace("filter-tests (unverified)", "")


def recorded_actions(db: Path) -> list[tuple[str, str]]:
    """Return (action, outcome) of every stored event, oldest first, read straight from the SQLite file."""
    with closing(sqlite3.connect(db)) as connection:
        return connection.execute("SELECT action, outcome FROM activity_event ORDER BY seq").fetchall()


@pytest.mark.parametrize("args", [[], ["--limit", "150"], ["--from", "1"], ["--from", "1", "--limit", "2"]])
def test_cli_list_records_one_event(seeded, args):
    db, token = seeded
    before = recorded_actions(db)

    result = order3(db, "activity", "list", *args, token=token)

    assert result.exit_code == 0, result.stderr
    assert recorded_actions(db) == [*before, ("activity_list", "ok")]


def test_cli_show_of_missing_event_records_activity_show(seeded):
    db, token = seeded
    before = recorded_actions(db)

    result = order3(db, "activity", "show", "99999", token=token)

    assert result.exit_code == 4
    assert "Activity event 99999 does not exist" in result.stderr
    assert recorded_actions(db) == [*before, ("activity_show", "invalid")]


def test_cli_list_refuses_unknown_record_kind(seeded):
    db, token = seeded

    result = order3(db, "activity", "list", "--record", "bogus:1", token=token)

    assert result.exit_code == 2
    assert "Record kind 'bogus' is unknown; use one of count_result, count_task, draft," in result.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing/x.jsonl", "directory"),
        (".", "is a directory; name a file inside it"),
    ],
)
def test_cli_export_refuses_unusable_output(seeded, tmp_path: Path, target: str, message: str):
    db, token = seeded
    before = recorded_actions(db)
    output = tmp_path / target

    result = order3(db, "activity", "export", "--output", str(output), token=token)

    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert recorded_actions(db) == before

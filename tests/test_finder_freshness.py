"""A finder reruns only after a write, at a new business date, past its maximum age, or on request."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from mcp import Client
from sqlalchemy import func, select

from order3_mcp.app import Order3
from order3_mcp.server import build_server
from order3_mcp.services.finder_refresh import (
    FINDER_MAX_AGE,
    LONG_STEP_SECONDS,
    _StepPause,
    _turns,
    refresh_due,
)
from store.models import ChangeCounter, ExceptionRecord, FinderRun
from tests.conftest import new_database_location
from tests.factory import small_workspace
from tests.test_exception_lifecycle import add_reorder_rule, set_reorder_point


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


async def low_stock(client: Client, **arguments: object) -> dict:
    return (await client.call_tool("find_low_stock", arguments)).structured_content


async def run_of(database, kind: str) -> FinderRun:
    async with database.read() as session:
        return (await session.execute(select(FinderRun).where(FinderRun.kind == kind))).scalar_one()


async def test_no_write_reuses_last_run(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    app = Order3(database, clock=clock)
    async with Client(build_server(app, tokens.agent)) as client:
        first = await low_stock(client)
        clock.now += timedelta(minutes=2)
        # Written outside Order3: not seen until a rerun is due.
        await set_reorder_point(database, "1")
        second = await low_stock(client)
        forced = await low_stock(client, refresh=True)

    assert [e["sku"] for e in first["exceptions"]] == ["WIDGET-1"]
    assert first["refreshed_at"] == {"low_stock": "2026-03-02T09:00:00+00:00"}
    assert second["exceptions"] == first["exceptions"]
    assert second["refreshed_at"] == {"low_stock": "2026-03-02T09:00:00+00:00"}
    assert forced["exceptions"] == []
    assert forced["refreshed_at"] == {"low_stock": "2026-03-02T09:02:00+00:00"}


async def test_write_makes_next_call_rerun(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    app = Order3(database, clock=clock)
    async with Client(build_server(app, tokens.agent)) as client:
        [exception] = (await low_stock(client))["exceptions"]
        async with database.read() as session:
            before = (await session.execute(select(ChangeCounter.version))).scalar_one_or_none() or 0
        # 5 available + a 60-unit draft clears the reorder point of 20.
        drafted = await client.call_tool(
            "draft_purchase_order",
            {"lines": [{"sku": "WIDGET-1", "quantity": 60, "location": "WH1"}], "rationale": "WIDGET-1 is at 5 against a reorder point of 20."},
        )
        assert not drafted.is_error, drafted.content
        clock.now += timedelta(seconds=30)
        after = await low_stock(client)

    async with database.read() as session:
        version = (await session.execute(select(ChangeCounter.version))).scalar_one()
        record = (await session.execute(select(ExceptionRecord).where(ExceptionRecord.id == exception["exception_id"]))).scalar_one()
    assert version == before + 1
    assert after["refreshed_at"] == {"low_stock": "2026-03-02T09:00:30+00:00"}
    assert after["exceptions"] == []
    assert record.status == "resolved"
    assert (await run_of(database, "low_stock")).change_version == version


async def test_reads_keep_change_counter(database):
    tokens = await small_workspace(database)
    app = Order3(database)
    async with Client(build_server(app, tokens.agent)) as client:
        for tool, arguments in (("get_item", {"sku": "WIDGET-1"}), ("find_exceptions", {}), ("list_drafts", {})):
            result = await client.call_tool(tool, arguments)
            assert not result.is_error, result.content
    async with database.read() as session:
        counters = (await session.execute(select(func.count()).select_from(ChangeCounter))).scalar_one()
    assert counters == 0


async def test_new_date_or_max_age_reruns(database):
    # Pacific/Auckland is UTC+13 in March: 10:30 UTC is 23:30 there, 11:30 UTC is the next day.
    tokens = await small_workspace(database, timezone="Pacific/Auckland")
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(datetime(2026, 3, 2, 10, 30, tzinfo=UTC))
    app = Order3(database, clock=clock)
    async with Client(build_server(app, tokens.agent)) as client:
        await low_stock(client)
        first = await run_of(database, "low_stock")
        clock.now += timedelta(hours=1)
        turned = await low_stock(client)
        clock.now += FINDER_MAX_AGE
        at_limit = await low_stock(client)
        clock.now += timedelta(seconds=1)
        aged = await low_stock(client)

    assert first.business_date.isoformat() == "2026-03-02"
    assert turned["refreshed_at"] == {"low_stock": "2026-03-02T11:30:00+00:00"}
    assert (await run_of(database, "low_stock")).business_date.isoformat() == "2026-03-03"
    assert at_limit["refreshed_at"] == {"low_stock": "2026-03-02T11:30:00+00:00"}
    assert aged["refreshed_at"] == {"low_stock": "2026-03-02T11:35:01+00:00"}


async def test_draft_expiry_counts_as_change(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    app = Order3(database, clock=clock)
    async with Client(build_server(app, tokens.agent)) as client:
        drafted = await client.call_tool(
            "draft_purchase_order",
            {"lines": [{"sku": "WIDGET-1", "quantity": 60, "location": "WH1"}], "rationale": "WIDGET-1 is at 5 against a reorder point of 20."},
        )
        assert not drafted.is_error, drafted.content
        covered = await low_stock(client)
        expires_at = datetime.fromisoformat(drafted.structured_content["expires_at"])
        clock.now = expires_at + timedelta(seconds=1)
        # Date the last run now, so that only the expiry can make the finder rerun.
        async with database.write() as session:
            run = (await session.execute(select(FinderRun))).scalar_one()
            run.refreshed_at = clock.now
        uncovered = await low_stock(client)

    assert covered["exceptions"] == []
    assert [e["sku"] for e in uncovered["exceptions"]] == ["WIDGET-1"]
    assert uncovered["refreshed_at"] == {"low_stock": clock.now.isoformat()}


def test_cli_list_reruns_only_on_refresh(tmp_path) -> None:
    import anyio
    from typer.testing import CliRunner

    from order3_mcp.cli import app as cli
    from store.db import open_database

    db = new_database_location(tmp_path, "fresh.db")

    async def prepare() -> str:
        database = await open_database(db)
        try:
            tokens = await small_workspace(database)
            await add_reorder_rule(database, reorder_point="20", max_level="60")
            return tokens.buyer_secret
        finally:
            await database.dispose()

    async def clear_rule() -> None:
        database = await open_database(db)
        try:
            await set_reorder_point(database, "1")
        finally:
            await database.dispose()

    secret = anyio.run(prepare)
    runner = CliRunner()

    def listing(*extra: str) -> str:
        result = runner.invoke(
            cli, ["--db", str(db), "--token", secret, "exceptions", "list", *extra], env={"ORDER3_TOKEN": None, "ORDER3_DB": None, "COLUMNS": "200"}
        )
        assert result.exit_code == 0, result.output
        return result.stdout

    first = listing()
    anyio.run(clear_rule)
    reused = listing()
    rerun = listing("--refresh")

    assert "1 exceptions" in first
    assert "Finders last ran: " in first
    assert "1 exceptions" in reused
    assert "0 exceptions" in rerun


async def test_other_policy_reruns_finders(database):
    from policies import default_policy_path, parse_policy

    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    # The shipped default with one tolerance changed, as when someone edits the policy file.
    text = default_policy_path().read_text().replace('receiving_short_pct = "2"', 'receiving_short_pct = "3"')
    edited = parse_policy(text, source="edited.toml")
    async with Client(build_server(Order3(database, clock=clock), tokens.agent)) as client:
        first = await low_stock(client)
    clock.now += timedelta(seconds=30)
    async with Client(build_server(Order3(database, clock=clock), tokens.agent)) as client:
        same_policy = await low_stock(client)
    async with Client(build_server(Order3(database, clock=clock, policy=edited), tokens.agent)) as client:
        other_policy = await low_stock(client)

    assert first["refreshed_at"] == {"low_stock": "2026-03-02T09:00:00+00:00"}
    assert same_policy["refreshed_at"] == {"low_stock": "2026-03-02T09:00:00+00:00"}
    assert other_policy["refreshed_at"] == {"low_stock": "2026-03-02T09:00:30+00:00"}


async def test_forced_calls_queued_together_share_one_run(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    app = Order3(database, clock=clock)
    turn = _turns(app).lock(tokens.agent.workspace_id)
    # Both forced calls are made while another rerun has the workspace's turn.
    await turn.acquire()
    calls = [asyncio.create_task(refresh_due(app, tokens.agent, ("low_stock",), force=True)) for _ in range(2)]
    await asyncio.sleep(0.05)
    clock.now += timedelta(minutes=1)
    turn.release()
    first, second = await asyncio.gather(*calls)

    # The first call's whole run started after both were made, so it serves the second.
    assert first == {"low_stock": 1}
    assert second == {}
    assert (await run_of(database, "low_stock")).whole_refreshed_at == clock.now


async def test_forced_call_made_after_a_run_started_reruns(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    app = Order3(database, clock=clock)
    await refresh_due(app, tokens.agent, ("low_stock",), force=True)
    clock.now += timedelta(seconds=1)
    await set_reorder_point(database, "1")

    again = await refresh_due(app, tokens.agent, ("low_stock",), force=True)

    assert again == {"low_stock": 0}
    assert (await run_of(database, "low_stock")).whole_refreshed_at == clock.now


async def test_step_pause_yields_after_long_steps_only():
    ran: list[str] = []

    async def other_request() -> None:
        ran.append("served")

    pause = _StepPause()
    waiting = asyncio.create_task(other_request())
    await pause.after_step()
    served_after_short_step = list(ran)
    pause._since -= LONG_STEP_SECONDS
    await pause.after_step()
    served_after_long_step = list(ran)
    await waiting

    assert served_after_short_step == []
    assert served_after_long_step == ["served"]

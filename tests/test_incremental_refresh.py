"""After item-scoped writes a finder reruns over those items only, and the result equals a whole run."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from mcp import Client
from sqlalchemy import func, select, text

from order3_mcp.app import Order3
from order3_mcp.inputs import PurchaseLine
from order3_mcp.server import build_server
from order3_mcp.services import approvals, receiving
from order3_mcp.services import drafts as drafts_service
from order3_mcp.services.admin import check_stock_ledger
from order3_mcp.services.background_runs import BackgroundRuns
from order3_mcp.services.finder_refresh import (
    FINDER_MAX_AGE,
    WHOLE_RUN_CLAIM,
    _turns,
    applier,
    plan_kinds,
    refresh_due,
)
from order3_mcp.services.rates import set_rate
from store import freshness
from store.changes import item_scoped, touch_items
from store.models import (
    ChangeLogEntry,
    ExceptionRecord,
    Item,
    Location,
    ReorderRule,
    Supplier,
)
from store.purchasing import NewLine, issue_purchase_order
from tests.factory import small_workspace
from tests.test_exception_lifecycle import add_reorder_rule, set_reorder_point
from tests.test_finder_freshness import Clock, low_stock, run_of

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def draft_widget(client: Client, sku: str = "WIDGET-1", quantity: int = 60) -> None:
    drafted = await client.call_tool(
        "draft_purchase_order",
        {"lines": [{"sku": sku, "quantity": quantity, "location": "WH1"}], "rationale": f"{sku} is below its reorder point."},
    )
    assert not drafted.is_error, drafted.content


async def test_draft_reruns_its_item_only(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(START)
    app = Order3(database, clock=clock)
    async with Client(build_server(app, tokens.agent)) as client:
        [exception] = (await low_stock(client))["exceptions"]
        clock.now += timedelta(seconds=30)
        await draft_widget(client)
        clock.now += timedelta(seconds=30)
        after = await low_stock(client)

    run = await run_of(database, "low_stock")
    report = await check_stock_ledger(app, tokens.admin)
    async with database.read() as session:
        record = await session.get(ExceptionRecord, exception["exception_id"])
    # 5 available + the 60-unit draft clears the reorder point of 20.
    assert after["exceptions"] == []
    assert record.status == "resolved"
    assert after["refreshed_at"] == {"low_stock": "2026-03-02T09:01:00+00:00"}
    assert run.refreshed_at == START + timedelta(minutes=1)
    assert run.whole_refreshed_at == START
    assert report.findings_differences == []
    assert "low_stock" in report.findings_checked


async def test_outside_change_waits_for_whole_run(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(START)
    app = Order3(database, clock=clock)
    async with Client(build_server(app, tokens.agent)) as client:
        [exception] = (await low_stock(client))["exceptions"]
        # Written straight into the database: no change is logged for WIDGET-1.
        await set_reorder_point(database, "1")
        clock.now += timedelta(seconds=30)
        # A count task draft changes no finder input until it is counted, so the rerun covers no item.
        drafted = await client.call_tool(
            "draft_count_task",
            {"location": "WH1", "lines": [{"sku": "GADGET-2"}], "rationale": "GADGET-2 was last counted a year ago."},
        )
        assert not drafted.is_error, drafted.content
        scoped = await low_stock(client)
        clock.now += FINDER_MAX_AGE
        whole = await low_stock(client)

    assert [found["exception_id"] for found in scoped["exceptions"]] == [exception["exception_id"]]
    assert whole["exceptions"] == []
    assert (await run_of(database, "low_stock")).whole_refreshed_at == START + timedelta(seconds=30) + FINDER_MAX_AGE


async def test_unscoped_write_reruns_every_item(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(START)
    app = Order3(database, clock=clock)
    async with Client(build_server(app, tokens.agent)) as client:
        await low_stock(client)
        await set_reorder_point(database, "1")
        clock.now += timedelta(seconds=30)
        await set_rate(app, tokens.admin, currency="EUR", rate="1.1")
        after = await low_stock(client)

    assert after["exceptions"] == []
    assert (await run_of(database, "low_stock")).whole_refreshed_at == START + timedelta(seconds=30)


async def test_change_log_pruned_once_read(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(START)
    app = Order3(database, clock=clock)
    async with Client(build_server(app, tokens.agent)) as client:
        await client.call_tool("find_exceptions", {})
        for _ in range(3):
            clock.now += timedelta(seconds=10)
            await draft_widget(client, quantity=20)
        async with database.read() as session:
            logged = (await session.execute(select(func.count()).select_from(ChangeLogEntry))).scalar_one()
        # Only low stock catches up; the other kinds still need the log.
        await low_stock(client)
        async with database.read() as session:
            kept = (await session.execute(select(func.count()).select_from(ChangeLogEntry))).scalar_one()
        await client.call_tool("find_exceptions", {})
        async with database.read() as session:
            pruned = (await session.execute(select(func.count()).select_from(ChangeLogEntry))).scalar_one()

    assert logged == 3
    assert kept == 3
    assert pruned == 0


async def test_claimed_whole_run_leaves_scoped_rerun(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(START)
    app = Order3(database, clock=clock)
    async with Client(build_server(app, tokens.agent)) as client:
        await low_stock(client)
        clock.now += FINDER_MAX_AGE + timedelta(seconds=1)
        # Another server process claims the whole run that the maximum age now calls for.
        async with database.write() as session:
            claimed = await freshness.claim_whole_runs(
                session, workspace_id=tokens.agent.workspace_id, kinds=("low_stock",), now=clock.now,
                until=clock.now + WHOLE_RUN_CLAIM,
            )
        await draft_widget(client)
        scoped = await low_stock(client)
        scoped_run = await run_of(database, "low_stock")
        clock.now += WHOLE_RUN_CLAIM
        await low_stock(client)
        whole_run = await run_of(database, "low_stock")

    assert claimed == {"low_stock"}
    assert scoped["exceptions"] == []
    assert scoped_run.whole_refreshed_at == START
    assert scoped_run.refreshed_at == START + FINDER_MAX_AGE + timedelta(seconds=1)
    # The claim ran out without a whole run, so this process claims and runs it.
    assert whole_run.whole_refreshed_at == clock.now
    assert whole_run.whole_claimed_until is None


async def test_rerun_covered_elsewhere_not_replanned(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(START)
    app = Order3(database, clock=clock)
    await refresh_due(app, tokens.agent, ("low_stock",))
    async with Client(build_server(app, tokens.agent)) as client:
        await draft_widget(client)
    clock.now += timedelta(seconds=30)

    # Two callers plan the same rerun on one snapshot; the first to write settles it for both.
    first = await plan_kinds(app, tokens.agent, ("low_stock",), now=clock.now)
    second = await plan_kinds(app, tokens.agent, ("low_stock",), now=clock.now)
    written = await database.run_write(applier(tokens.agent, first, clock.now))
    async with database.read() as session:
        records_after_first = (await session.execute(select(ExceptionRecord.id, ExceptionRecord.version))).all()
    settled = await database.run_write(applier(tokens.agent, second, clock.now + timedelta(seconds=1)))
    async with database.read() as session:
        records_after_second = (await session.execute(select(ExceptionRecord.id, ExceptionRecord.version))).all()
    run = await run_of(database, "low_stock")

    assert written == {"low_stock"}
    assert settled == {"low_stock"}
    assert records_after_second == records_after_first
    assert run.refreshed_at == clock.now


async def test_rerun_behind_other_write_replanned(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(START)
    app = Order3(database, clock=clock)
    await refresh_due(app, tokens.agent, ("low_stock",))
    async with Client(build_server(app, tokens.agent)) as client:
        await draft_widget(client, quantity=20)
        clock.now += timedelta(seconds=30)
        older = await plan_kinds(app, tokens.agent, ("low_stock",), now=clock.now)
        await draft_widget(client, quantity=30)
        newer = await plan_kinds(app, tokens.agent, ("low_stock",), now=clock.now)

    # The newer plan saw a later write, so the older plan's writer does not cover it.
    assert await database.run_write(applier(tokens.agent, older, clock.now)) == {"low_stock"}
    assert await database.run_write(applier(tokens.agent, newer, clock.now)) == set()


async def test_whole_plan_applied_around_newer_reruns(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(START)
    app = Order3(database, clock=clock)
    await refresh_due(app, tokens.agent, ("low_stock",))
    clock.now += FINDER_MAX_AGE + timedelta(seconds=1)
    async with database.write() as session:
        # Written straight into the database, so only a whole run finds GADGET-2's new rule.
        gadget = (await session.execute(select(Item).where(Item.sku == "GADGET-2"))).scalar_one()
        wh1 = (await session.execute(select(Location).where(Location.code == "WH1"))).scalar_one()
        session.add(
            ReorderRule(
                workspace_id=wh1.workspace_id, item_id=gadget.id, location_id=wh1.id, location_key=wh1.id,
                reorder_point=Decimal("50"), max_level=Decimal("80"),
            )
        )
    whole = await plan_kinds(app, tokens.agent, ("low_stock",), now=clock.now, force=True)

    # Meanwhile a logged write to GADGET-2 is rerun and written first, as another server would.
    await logged_touch(database, gadget.id, gadget.workspace_id)
    rerun = await plan_kinds(app, tokens.agent, ("low_stock",), now=clock.now, aged_ok=frozenset({"low_stock"}))
    assert not rerun["low_stock"].whole
    assert await database.run_write(applier(tokens.agent, rerun, clock.now)) == {"low_stock"}
    rerun_run = await run_of(database, "low_stock")
    settled = await database.run_write(applier(tokens.agent, whole, clock.now + timedelta(seconds=1)))

    async with database.read() as session:
        live = (
            await session.execute(
                select(ExceptionRecord.sku).where(ExceptionRecord.status.in_(("open", "drafted"))).order_by(ExceptionRecord.sku)
            )
        ).scalars().all()
    run = await run_of(database, "low_stock")
    report = await check_stock_ledger(app, tokens.admin)
    assert settled == {"low_stock"}
    # One record for GADGET-2: the rerun's. The whole plan's insert of it was left out.
    assert live == ["GADGET-2", "WIDGET-1"]
    assert run.whole_refreshed_at == clock.now + timedelta(seconds=1)
    assert run.change_version == rerun_run.change_version
    assert report.findings_differences == []


async def late_orders(database, tokens) -> dict[str, str]:
    """Issue two late ACME orders: PO A with WIDGET-1 and GADGET-2 lines, PO B with one GADGET-2 line; return their numbers."""
    workspace_id = tokens.agent.workspace_id
    late = START.date() - timedelta(days=10)
    async with database.write() as session:
        items = {sku: item_id for sku, item_id in (await session.execute(select(Item.sku, Item.id))).all()}
        acme = (await session.execute(select(Supplier.id).where(Supplier.code == "ACME"))).scalar_one()
        wh1 = (await session.execute(select(Location.id).where(Location.code == "WH1"))).scalar_one()

        def line(sku: str, quantity: int) -> NewLine:
            return NewLine(
                item_id=items[sku], supplier_item_id=None, quantity=Decimal(quantity), unit_price=Decimal(2),
                destination_location_id=wh1, expected_date=None,
            )

        numbers = {}
        for name, lines in (("A", [line("WIDGET-1", 10), line("GADGET-2", 10)]), ("B", [line("GADGET-2", 5)])):
            order, _ = await issue_purchase_order(
                session, workspace_id=workspace_id, supplier_id=acme, currency="USD", lines=lines,
                expected_date=late, owner="alice", description=f"Late order {name}",
            )
            numbers[name] = order.number
        return numbers


async def delay_records(database) -> dict[tuple[str, str], ExceptionRecord]:
    async with database.read() as session:
        records = (
            await session.execute(
                select(ExceptionRecord).where(ExceptionRecord.kind == "supplier_delay", ExceptionRecord.status == "open")
            )
        ).scalars().all()
    return {(record.purchase_order_number, record.sku): record for record in records}


async def test_completed_line_reruns_its_suppliers_delays(database):
    tokens = await small_workspace(database)
    orders = await late_orders(database, tokens)
    clock = Clock(START)
    app = Order3(database, clock=clock)
    await refresh_due(app, tokens.agent, ("supplier_delay",))
    before = await delay_records(database)
    clock.now += timedelta(seconds=30)

    # Receiving all of PO B's line gives ACME its first fully received line.
    await receiving.receive(app, tokens.admin, purchase_order=orders["B"], line_no=1, quantity="5", delivery="DN-B")
    clock.now += timedelta(seconds=30)
    await refresh_due(app, tokens.agent, ("supplier_delay",))
    after = await delay_records(database)
    report = await check_stock_ledger(app, tokens.admin)

    assert sorted(before) == [(orders["A"], "GADGET-2"), (orders["A"], "WIDGET-1"), (orders["B"], "GADGET-2")]
    assert sorted(after) == [(orders["A"], "GADGET-2"), (orders["A"], "WIDGET-1")]
    # WIDGET-1 was not written, but its delay shows ACME's new on-time record.
    widget = after[(orders["A"], "WIDGET-1")]
    assert before[(orders["A"], "WIDGET-1")].evidence["supplier_received_lines"] == 0
    assert widget.evidence["supplier_received_lines"] == 1
    assert widget.version == 2
    assert report.findings_differences == []


async def test_partial_receipt_reruns_its_item_only(database):
    tokens = await small_workspace(database)
    orders = await late_orders(database, tokens)
    clock = Clock(START)
    app = Order3(database, clock=clock)
    # A first unit makes PO A partially received, a status every line's delay shows.
    await receiving.receive(app, tokens.admin, purchase_order=orders["A"], line_no=2, quantity="1", delivery="DN-A0")
    await refresh_due(app, tokens.agent, ("supplier_delay",))
    clock.now += timedelta(seconds=30)

    # One more unit of PO A's GADGET-2 line: ACME still has no fully received line.
    await receiving.receive(app, tokens.admin, purchase_order=orders["A"], line_no=2, quantity="1", delivery="DN-A1")
    clock.now += timedelta(seconds=30)
    await refresh_due(app, tokens.agent, ("supplier_delay",))
    after = await delay_records(database)
    report = await check_stock_ledger(app, tokens.admin)

    assert after[(orders["A"], "GADGET-2")].evidence["quantity_received"] == "2"
    # The WIDGET-1 delay of the same supplier was outside the rerun: not even its last_seen moved.
    assert after[(orders["A"], "WIDGET-1")].last_seen == START
    assert after[(orders["B"], "GADGET-2")].last_seen == START + timedelta(minutes=1)
    assert report.findings_differences == []


async def test_aged_whole_run_left_to_background(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(START)
    app = Order3(database, clock=clock)
    app.background_runs = BackgroundRuns(database)
    try:
        async with Client(build_server(app, tokens.agent)) as client:
            [exception] = (await low_stock(client))["exceptions"]
            # Written straight into the database: only a whole run finds that WIDGET-1 is no longer low.
            await set_reorder_point(database, "1")
            clock.now += FINDER_MAX_AGE + timedelta(seconds=1)
            answered = await low_stock(client)
            run_at_answer = await run_of(database, "low_stock")
            await app.background_runs.wait()
            after = await low_stock(client)
    finally:
        app.background_runs.close()

    # The call returned after a rerun of the changed items (none), and the background run caught the change.
    assert [found["exception_id"] for found in answered["exceptions"]] == [exception["exception_id"]]
    assert run_at_answer.whole_refreshed_at == START
    assert after["exceptions"] == []
    assert (await run_of(database, "low_stock")).whole_refreshed_at == clock.now


async def test_first_run_not_left_to_background(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    app = Order3(database, clock=Clock(START))
    app.background_runs = BackgroundRuns(database)
    try:
        async with Client(build_server(app, tokens.agent)) as client:
            first = await low_stock(client)
        started = len(app.background_runs._tasks)
    finally:
        app.background_runs.close()

    assert [found["sku"] for found in first["exceptions"]] == ["WIDGET-1"]
    assert started == 0


async def logged_touch(database, item_id: int, workspace_id: int) -> None:
    async with database.write() as session:
        item_scoped(session)
        touch_items(session, [item_id])
        await freshness.note_change(session, workspace_id=workspace_id)


async def written_since_last_run(database):
    """Return tokens, clock, app and workspace id of a workspace whose low-stock run is one logged write behind."""
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(START)
    app = Order3(database, clock=clock)
    workspace_id = tokens.agent.workspace_id
    await refresh_due(app, tokens.agent, ("low_stock",))
    await logged_touch(database, 1, workspace_id)
    clock.now += timedelta(seconds=30)
    return tokens, clock, app, workspace_id


async def test_waiting_call_served_by_covering_rerun(database):
    tokens, clock, app, workspace_id = await written_since_last_run(database)

    async with _turns(app).lock(workspace_id):
        # This call starts now and waits for its turn while another rerun runs.
        waiting = asyncio.create_task(refresh_due(app, tokens.agent, ("low_stock",)))
        await asyncio.sleep(0.2)
        covering = await plan_kinds(app, tokens.agent, ("low_stock",), now=clock.now)
        assert await database.run_write(applier(tokens.agent, covering, clock.now)) == {"low_stock"}
        covered_version = (await run_of(database, "low_stock")).change_version
        # A write after the call started: the call need not wait for a rerun of it.
        await logged_touch(database, 1, workspace_id)
    found = await waiting

    assert found == {}
    assert (await run_of(database, "low_stock")).change_version == covered_version


async def test_waiting_call_reruns_uncovered_writes(database):
    tokens, _clock, app, workspace_id = await written_since_last_run(database)

    async with _turns(app).lock(workspace_id):
        waiting = asyncio.create_task(refresh_due(app, tokens.agent, ("low_stock",)))
        await asyncio.sleep(0.2)
    found = await waiting
    version = await change_version_of(database, workspace_id)

    assert list(found) == ["low_stock"]
    assert (await run_of(database, "low_stock")).change_version == version


async def change_version_of(database, workspace_id: int) -> int:
    async with database.read() as session:
        return await freshness.change_version(session, workspace_id=workspace_id)


async def test_withdrawn_draft_reruns_reopened_delay(database):
    tokens = await small_workspace(database)
    orders = await late_orders(database, tokens)
    clock = Clock(START)
    app = Order3(database, clock=clock)
    await refresh_due(app, tokens.agent, ("supplier_delay",))
    delay = (await delay_records(database))[(orders["A"], "WIDGET-1")]
    drafted = await drafts_service.draft_purchase_order(
        app, tokens.agent, supplier="ACME", lines=[PurchaseLine(sku="WIDGET-1", quantity=Decimal(20), location="WH1")],
        rationale="PO A is late; order from stock elsewhere.", title="", exception_ids=[delay.id], idempotency_key=None,
    )
    # The late line arrives in full while the draft linked to its delay is still open.
    await receiving.receive(app, tokens.admin, purchase_order=orders["A"], line_no=1, quantity="10", delivery="DN-A")
    clock.now += timedelta(seconds=30)
    await refresh_due(app, tokens.agent, ("supplier_delay",))
    async with database.read() as session:
        waiting = await session.get(ExceptionRecord, delay.id)

    await approvals.withdraw_draft(app, tokens.agent, draft_id=drafted.draft_id, reason="The goods arrived.")
    clock.now += timedelta(seconds=30)
    await refresh_due(app, tokens.agent, ("supplier_delay",))
    async with database.read() as session:
        after = await session.get(ExceptionRecord, delay.id)
    report = await check_stock_ledger(app, tokens.admin)

    assert waiting.status == "drafted"
    # Reopened by the withdrawal, the delay is rerun and resolves: its line was received in full.
    assert after.status == "resolved"
    assert report.findings_differences == []


async def test_released_claim_can_be_claimed_again(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    app = Order3(database, clock=Clock(START))
    await refresh_due(app, tokens.agent, ("low_stock",))
    workspace_id = tokens.agent.workspace_id
    now = START + FINDER_MAX_AGE
    first_until = now + WHOLE_RUN_CLAIM

    async def claim(until):
        async def work(session):
            return await freshness.claim_whole_runs(session, workspace_id=workspace_id, kinds=("low_stock",), now=now, until=until)

        return await database.run_write(work)

    async def release(until):
        async def work(session):
            await freshness.release_whole_claims(session, workspace_id=workspace_id, kinds=("low_stock",), until=until)

        await database.run_write(work)

    assert await claim(first_until) == {"low_stock"}
    assert await claim(first_until + timedelta(seconds=1)) == set()
    # Another claim's end leaves this one in place.
    await release(first_until + timedelta(seconds=1))
    assert await claim(first_until + timedelta(seconds=2)) == set()
    await release(first_until)
    assert await claim(first_until + timedelta(seconds=3)) == {"low_stock"}


async def test_failed_last_seen_move_keeps_rerun(database, caplog):
    # A whole rerun commits first and moves last_seen afterwards; a move that fails must not fail the call.
    if not database.is_sqlite:
        pytest.skip("the failing move is made with a SQLite trigger")
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(START)
    app = Order3(database, clock=clock)
    await refresh_due(app, tokens.agent, ("low_stock",), force=True)
    async with database.write() as session:
        await session.execute(
            text(
                "CREATE TRIGGER hold_last_seen BEFORE UPDATE OF last_seen ON exception_record "
                "BEGIN SELECT RAISE(ABORT, 'last_seen is held by the test'); END"
            )
        )

    clock.now += timedelta(minutes=1)
    with caplog.at_level(logging.WARNING, logger="order3_mcp.services.finder_refresh"):
        found = await refresh_due(app, tokens.agent, ("low_stock",), force=True)

    assert found == {"low_stock": 1}
    assert (await run_of(database, "low_stock")).whole_refreshed_at == START + timedelta(minutes=1)
    async with database.read() as session:
        [record] = (await session.execute(select(ExceptionRecord).where(ExceptionRecord.kind == "low_stock"))).scalars()
    assert record.last_seen == START
    assert "could not move last_seen of the low_stock records" in caplog.text
    assert "nor of the later kinds (none)" in caplog.text
    assert "last_seen is held by the test" in caplog.text

"""Adjustment drafts: an agent drafts a signed stock change over MCP, an approver's approval posts it."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from mcp import Client
from sqlalchemy import select, update
from typer.testing import CliRunner, Result

from order3_mcp.cli import app as cli
from order3_mcp.server import build_server
from order3_mcp.services import approvals
from store.db import Database, open_database
from store.models import ActivityEvent, Draft, IdempotencyRecord, Item, Movement
from store.stock import Place, record_movement
from tests.conftest import new_database_location
from tests.factory import (
    Tokens,
    issue_secret,
    last_event,
    ledger_mismatches,
    make_app,
    row_count,
    stock_levels,
    stock_workspace,
)

RATIONALE = "Three widgets in bin A-01 were crushed by a forklift this morning."
runner = CliRunner()

# Stock before any adjustment: small_workspace's 5 at WH1 and the 10 in bin A-01.
BEFORE = {"WIDGET-1@WH1": Decimal(5), "WIDGET-1@WH1/A-01": Decimal(10)}


def order3(db: Path, *args: str, token: str) -> Result:
    return runner.invoke(cli, ["--db", str(db), "--token", token, *args], env={"ORDER3_TOKEN": None, "ORDER3_DB": None, "COLUMNS": "200"})



def adjustment_arguments(**changes: object) -> dict[str, object]:
    arguments: dict[str, object] = {
        "sku": "WIDGET-1",
        "location": "WH1",
        "bin": "A-01",
        "quantity": -3,
        "reason_code": "damaged",
        "rationale": RATIONALE,
    }
    arguments.update(changes)
    return arguments




async def draft_as_agent(database: Database, tokens: Tokens, **changes: object) -> dict[str, object]:
    # JSON-RPC framing, so the arguments and the structured result are serialised as over stdio.
    async with Client(build_server(make_app(database), tokens.agent), mode="legacy") as client:
        result = await client.call_tool("draft_adjustment", adjustment_arguments(**changes))
    assert not result.is_error, result.content[0].text
    return result.structured_content


def test_adjustment_from_agent_draft_to_posted_movement(tmp_path: Path) -> None:
    db = new_database_location(tmp_path, "order3.db")

    async def draft() -> tuple[Tokens, str, dict[str, object]]:
        database = await open_database(db)
        try:
            tokens = await stock_workspace(database)
            carol = await issue_secret(database, workspace_id=1, principal="carol", kind="user", role="approver")
            return tokens, carol, await draft_as_agent(database, tokens)
        finally:
            await database.dispose()

    async def read_back() -> tuple[dict[str, Decimal], list[object], list[Movement]]:
        database = await open_database(db)
        try:
            async with database.read() as session:
                adjustments = (await session.execute(select(Movement).where(Movement.kind == "adjustment"))).scalars().all()
            return await stock_levels(database), await ledger_mismatches(database, workspace_id=1), list(adjustments)
        finally:
            await database.dispose()

    tokens, carol, drafted = anyio.run(draft)
    draft_id = str(drafted["draft_id"])

    # -3 units at the item's unit cost of 2.50 USD.
    assert drafted["estimated_value"] == "-7.5"
    assert drafted["policy_rule"] == "stock-correction-up-to-500"
    assert drafted["approval_owner"] == "1 approver with role approver or admin (policy rule stock-correction-up-to-500)"
    assert drafted["title"] == "Adjust WIDGET-1 at WH1/A-01 by -3 (damaged)"

    shown = order3(db, "drafts", "show", draft_id, token=carol)
    assert shown.exit_code == 0, shown.stderr
    assert "Adjustment: -3 each of WIDGET-1 at WH1/A-01, reason damaged" in shown.stdout.splitlines()
    assert "On hand at WH1/A-01 when drafted: 10" in shown.stdout.splitlines()
    assert "Value change: -7.5 USD (unit cost 2.5, item unit cost)" in shown.stdout.splitlines()

    # A buyer may not approve stock corrections under the default policy.
    refused = order3(db, "drafts", "approve", draft_id, token=tokens.buyer_secret)
    assert refused.exit_code == 3
    assert anyio.run(read_back)[0] == BEFORE

    approved = order3(db, "drafts", "approve", draft_id, token=carol)
    assert approved.exit_code == 0, approved.stderr
    assert approved.stdout.splitlines() == [
        "Draft 1 is executed.",
        "Posted adjustment movement 3: WIDGET-1 at WH1/A-01 now has 7 on hand.",
    ]
    levels, mismatches, adjustments = anyio.run(read_back)
    assert levels == {"WIDGET-1@WH1": Decimal(5), "WIDGET-1@WH1/A-01": Decimal(7)}
    assert mismatches == []
    assert [(m.quantity, m.from_location_id, m.from_bin_id, m.to_location_id, m.reference, m.actor) for m in adjustments] == [
        (Decimal(3), 1, 1, None, "adjustment damaged, draft 1", "carol")
    ]

    again = order3(db, "drafts", "execute", draft_id, token=carol)
    assert again.exit_code == 5
    assert "was already executed" in again.stderr
    assert anyio.run(read_back)[0]["WIDGET-1@WH1/A-01"] == Decimal(7)


async def test_found_adjustment_adds_stock_at_an_empty_place(database):
    tokens = await stock_workspace(database)
    app = make_app(database)
    drafted = await draft_as_agent(database, tokens, location="WH2", bin="B-02", quantity="1.5", reason_code="Found")

    detail = await approvals.approve_draft(app, tokens.admin, draft_id=drafted["draft_id"], expected_hash="", reason="")

    assert detail.status == "executed"
    assert await stock_levels(database) == {**BEFORE, "WIDGET-1@WH2/B-02": Decimal("1.5")}
    assert await ledger_mismatches(database, workspace_id=tokens.admin.workspace_id) == []


@pytest.mark.parametrize(
    ("changes", "value", "rule", "approvals"),
    [
        ({"quantity": -200, "reason_code": "lost", "bin": ""}, "-500", "stock-correction-up-to-500", 1),
        ({"sku": "GADGET-2", "quantity": 60, "reason_code": "found", "bin": ""}, "540", "stock-correction-above-500", 2),
        ({"sku": "GADGET-2", "quantity": "55.6", "reason_code": "correction"}, "500.4", "stock-correction-above-500", 2),
    ],
)
async def test_value_change_picks_the_approval_rule(database, changes, value, rule, approvals):
    tokens = await stock_workspace(database)
    async with database.write() as session:
        widget = (await session.execute(select(Item).where(Item.sku == "WIDGET-1"))).scalar_one()
        await record_movement(
            session, workspace_id=1, item_id=widget.id, kind="receipt", quantity=Decimal(195), destination=Place(1), actor="test"
        )

    drafted = await draft_as_agent(database, tokens, **changes)

    assert (drafted["estimated_value"], drafted["policy_rule"], drafted["approvals_required"]) == (value, rule, approvals)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"reason_code": "broken"},
            "reason_code: Reason code 'broken' is unknown; use one of damaged, lost, expired, found, correction.",
        ),
        (
            {"quantity": 3, "reason_code": "lost"},
            "reason_code: Reason lost removes stock, so the quantity must be negative; send -3",
        ),
        ({"quantity": -3, "reason_code": "found"}, "reason_code: Reason found adds stock, so the quantity must be positive; send 3"),
        ({"quantity": 0}, "quantity 0 changes nothing"),
        ({"quantity": "-0"}, "quantity 0 changes nothing"),
        ({"quantity": " -3"}, "quantity ' -3' is not a plain decimal number"),
        ({"quantity": "-1e3"}, "quantity '-1e3' is not a plain decimal number"),
        ({"quantity": False}, "quantity False is a boolean"),
        ({"quantity": -(10**30)}, "above the maximum"),
        (
            {"quantity": -11},
            "quantity: Item WIDGET-1 has 10 on hand at WH1/A-01; removing 11 would make stock negative; remove at most 10.",
        ),
        ({"sku": "NOPE-1"}, "sku: Item 'NOPE-1' does not exist in this workspace"),
        ({"location": "WH%"}, "location: Location 'WH%' does not exist in this workspace"),
        ({"bin": "B-02"}, "bin: Bin 'B-02' does not exist in location WH1"),
        ({"rationale": "broken"}, "Rationale 'broken' is too short"),
    ],
)
async def test_invalid_adjustment_draft_writes_nothing(database, changes, message):
    tokens = await stock_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        result = await client.call_tool("draft_adjustment", adjustment_arguments(**changes))

    assert result.is_error
    assert message in result.content[0].text
    assert await row_count(database, Draft) == 0
    assert await stock_levels(database) == BEFORE
    event = await last_event(database)
    assert (event.action, event.outcome) == ("draft_adjustment", "invalid")


async def test_item_costed_in_another_currency_cannot_be_adjusted(database):
    tokens = await stock_workspace(database)
    async with database.write() as session:
        await session.execute(update(Item).where(Item.sku == "WIDGET-1").values(currency="EUR"))
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        result = await client.call_tool("draft_adjustment", adjustment_arguments())

    assert result.is_error
    assert "sku: item WIDGET-1 cannot be valued for the approval rules because the item's unit cost is in EUR" in result.content[0].text
    assert await row_count(database, Draft) == 0


async def test_inactive_item_can_still_be_written_off(database):
    tokens = await stock_workspace(database)
    async with database.write() as session:
        await session.execute(update(Item).where(Item.sku == "WIDGET-1").values(active=False))
    app = make_app(database)
    drafted = await draft_as_agent(database, tokens, quantity=-10, reason_code="expired")

    detail = await approvals.approve_draft(app, tokens.admin, draft_id=drafted["draft_id"], expected_hash="", reason="")

    assert detail.status == "executed"
    assert (await stock_levels(database))["WIDGET-1@WH1/A-01"] == Decimal(0)


async def test_removal_below_zero_fails_at_execution(database):
    tokens = await stock_workspace(database)
    app = make_app(database)
    drafted = await draft_as_agent(database, tokens, quantity=-8)
    async with database.write() as session:
        # Six of the ten leave bin A-01 after the draft was prepared.
        await record_movement(
            session, workspace_id=1, item_id=1, kind="shipment", quantity=Decimal(6), source=Place(1, 1), actor="test"
        )

    detail = await approvals.approve_draft(app, tokens.admin, draft_id=drafted["draft_id"], expected_hash="", reason="")

    assert detail.status == "failed"
    assert detail.failure_reason == (
        "Item WIDGET-1 has 4 on hand at WH1/A-01; removing 8 would make stock negative; the adjustment can no longer be posted."
    )
    assert await stock_levels(database) == {"WIDGET-1@WH1": Decimal(5), "WIDGET-1@WH1/A-01": Decimal(4)}
    assert await row_count(database, Movement) == 3
    assert await ledger_mismatches(database, workspace_id=1) == []
    event = await last_event(database)
    assert (event.action, event.outcome) == ("execute_draft", "invalid")


async def test_adjustment_retry_with_same_key_writes_nothing_new(database):
    tokens = await stock_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        first = await client.call_tool("draft_adjustment", adjustment_arguments(idempotency_key="crushed-1"))
        second = await client.call_tool("draft_adjustment", adjustment_arguments(idempotency_key="crushed-1"))
        other = await client.call_tool("draft_adjustment", adjustment_arguments(quantity=-4, idempotency_key="crushed-1"))

    assert not first.is_error
    assert second.structured_content == first.structured_content
    assert await row_count(database, Draft) == 1
    assert await row_count(database, IdempotencyRecord) == 1
    assert other.is_error
    assert "Idempotency key 'crushed-1' was already used" in other.content[0].text
    async with database.read() as session:
        events = (await session.execute(select(ActivityEvent).order_by(ActivityEvent.seq))).scalars().all()
    assert [(e.action, e.outcome) for e in events] == [
        ("draft_adjustment", "ok"),
        ("draft_adjustment", "replayed"),
        ("draft_adjustment", "conflict"),
    ]
    assert "Replayed" in events[1].summary
    assert await stock_levels(database) == BEFORE


async def test_two_removals_of_seven_from_ten(any_database):
    tokens = await stock_workspace(any_database)
    app = make_app(any_database)
    draft_ids = [(await draft_as_agent(any_database, tokens, quantity=-7))["draft_id"] for _ in range(2)]

    results = await asyncio.gather(
        *(approvals.approve_draft(app, tokens.admin, draft_id=draft_id, expected_hash="", reason="") for draft_id in draft_ids)
    )

    assert sorted(detail.status for detail in results) == ["executed", "failed"]
    assert (await stock_levels(any_database))["WIDGET-1@WH1/A-01"] == Decimal(3)
    assert await ledger_mismatches(any_database, workspace_id=1) == []


def test_failed_execution_exits_nonzero(tmp_path: Path) -> None:
    db = new_database_location(tmp_path, "order3.db")

    async def draft_then_empty_bin() -> tuple[str, dict[str, object]]:
        database = await open_database(db)
        try:
            tokens = await stock_workspace(database)
            carol = await issue_secret(database, workspace_id=1, principal="carol", kind="user", role="approver")
            drafted = await draft_as_agent(database, tokens, quantity=-10, reason_code="damaged")
            async with database.write() as session:
                await record_movement(
                    session, workspace_id=1, item_id=1, kind="shipment", quantity=Decimal(5),
                    source=Place(1, 1), actor="test",
                )
            return carol, drafted
        finally:
            await database.dispose()

    carol, drafted = anyio.run(draft_then_empty_bin)
    # Only 5 of the 10 to write off are left in A-01, so execution fails on approval.
    approved = order3(db, "drafts", "approve", str(drafted["draft_id"]), token=carol)

    assert approved.exit_code == 5, approved.output
    assert "is failed" in approved.stdout
    assert "Execution failed:" in approved.stdout

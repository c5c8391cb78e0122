"""Transfer drafts: an agent drafts over MCP, a person approves and executes, stock ships and is received."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from mcp import Client
from sqlalchemy import select, update
from typer.testing import CliRunner, Result

from order3_mcp.app import Order3
from order3_mcp.cli import app as cli
from order3_mcp.server import build_server
from order3_mcp.services import approvals, transfers
from store.db import Database, open_database
from store.errors import ConflictError, PermissionDeniedError
from store.models import (
    ActivityEvent,
    Draft,
    ExceptionRecord,
    IdempotencyRecord,
    Item,
    Location,
    Movement,
    Reservation,
    Transfer,
)
from store.stock import Place, record_movement
from tests.conftest import new_database_location
from tests.factory import (
    Tokens,
    last_event,
    ledger_mismatches,
    make_app,
    row_count,
    stock_levels,
    stock_workspace,
)

RATIONALE = "WH2 has no WIDGET-1 left while WH1 bin A-01 holds 8 available."
runner = CliRunner()

# Stock before any transfer: small_workspace's 5 at WH1 and the 10 in bin A-01.
BEFORE = {"WIDGET-1@WH1": Decimal(5), "WIDGET-1@WH1/A-01": Decimal(10)}


def order3(db: Path, *args: str, token: str) -> Result:
    return runner.invoke(cli, ["--db", str(db), "--token", token, *args], env={"ORDER3_TOKEN": None, "ORDER3_DB": None, "COLUMNS": "200"})



def transfer_arguments(**changes: object) -> dict[str, object]:
    arguments: dict[str, object] = {
        "sku": "WIDGET-1",
        "quantity": 4,
        "from_location": "WH1",
        "from_bin": "A-01",
        "to_location": "WH2",
        "to_bin": "B-02",
        "rationale": RATIONALE,
    }
    arguments.update(changes)
    return arguments





async def draft_as_agent(database: Database, tokens: Tokens, **changes: object) -> dict[str, object]:
    # JSON-RPC framing, so the arguments and the structured result are serialised as over stdio.
    async with Client(build_server(make_app(database), tokens.agent), mode="legacy") as client:
        result = await client.call_tool("draft_transfer", transfer_arguments(**changes))
    assert not result.is_error, result.content[0].text
    return result.structured_content


def test_transfer_from_agent_draft_to_receipt(tmp_path: Path) -> None:
    db = new_database_location(tmp_path, "order3.db")

    async def draft() -> tuple[Tokens, dict[str, object]]:
        database = await open_database(db)
        try:
            tokens = await stock_workspace(database)
            return tokens, await draft_as_agent(database, tokens)
        finally:
            await database.dispose()

    async def read_back() -> tuple[dict[str, Decimal], list[object]]:
        database = await open_database(db)
        try:
            return await stock_levels(database), await ledger_mismatches(database, workspace_id=1)
        finally:
            await database.dispose()

    tokens, drafted = anyio.run(draft)
    draft_id = str(drafted["draft_id"])

    # 4 units at the item's unit cost of 2.50 USD.
    assert drafted["estimated_value"] == "10"
    assert drafted["policy_rule"] == "transfer"
    assert drafted["approval_owner"] == "1 approver with role buyer or approver or admin (policy rule transfer)"
    assert drafted["status"] == "pending_approval"

    shown = order3(db, "drafts", "show", draft_id, token=tokens.buyer_secret)
    assert shown.exit_code == 0, shown.stderr
    assert "Transfer: 4 each of WIDGET-1 from WH1/A-01 to WH2/B-02" in shown.stdout.splitlines()
    assert "Available at WH1/A-01 when drafted: 8" in shown.stdout.splitlines()
    assert "Moved value: 10 USD (unit cost 2.5, item unit cost); inventory value change 0" in shown.stdout.splitlines()

    approved = order3(db, "drafts", "approve", draft_id, token=tokens.buyer_secret)
    assert approved.exit_code == 0, approved.stderr
    assert approved.stdout == "Draft 1 is approved.\n"
    assert anyio.run(read_back)[0] == BEFORE

    executed = order3(db, "drafts", "execute", draft_id, token=tokens.buyer_secret)
    assert executed.exit_code == 0, executed.stderr
    assert executed.stdout.splitlines() == [
        "Draft 1 is executed.",
        (
            "Shipped transfer TR-000001 into IN-TRANSIT. Once the goods arrive, receive it at WH2/B-02 with "
            "`order3 transfer receive TR-000001`."
        ),
    ]
    levels, mismatches = anyio.run(read_back)
    assert levels == {"WIDGET-1@WH1": Decimal(5), "WIDGET-1@WH1/A-01": Decimal(6), "WIDGET-1@IN-TRANSIT": Decimal(4)}
    assert mismatches == []

    listed = order3(db, "transfer", "list", "--status", "in_transit", token=tokens.buyer_secret)
    assert listed.exit_code == 0, listed.stderr
    assert "TR-000001" in listed.stdout
    assert "1 transfers" in listed.stdout

    received = order3(db, "transfer", "receive", "TR-000001", token=tokens.buyer_secret)
    assert received.exit_code == 0, received.stderr
    assert received.stdout == "Received transfer TR-000001: 4 WIDGET-1 moved from IN-TRANSIT into WH2/B-02.\n"
    levels, mismatches = anyio.run(read_back)
    assert levels == {
        "WIDGET-1@WH1": Decimal(5),
        "WIDGET-1@WH1/A-01": Decimal(6),
        "WIDGET-1@IN-TRANSIT": Decimal(0),
        "WIDGET-1@WH2/B-02": Decimal(4),
    }
    assert mismatches == []

    again = order3(db, "transfer", "receive", "tr-000001", token=tokens.buyer_secret)
    assert again.exit_code == 5
    assert "Transfer TR-000001 was already received by alice" in again.stderr
    assert anyio.run(read_back)[0]["WIDGET-1@WH2/B-02"] == Decimal(4)

    verified = order3(db, "verify", token=tokens.buyer_secret)
    assert verified.exit_code == 0, verified.stdout
    assert "Mismatches: 0" in verified.stdout


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sku": "NOPE-1"}, "sku: Item 'NOPE-1' does not exist in this workspace"),
        ({"from_location": "WH9"}, "from_location: Location 'WH9' does not exist in this workspace"),
        # A LIKE wildcard is an unknown code, not a pattern that matches WH1 or WH2.
        ({"to_location": "WH_"}, "to_location: Location 'WH_' does not exist in this workspace"),
        ({"from_bin": "Z-9"}, "from_bin: Bin 'Z-9' does not exist in location WH1"),
        ({"to_bin": "A-01"}, "to_bin: Bin 'A-01' does not exist in location WH2"),
        ({"quantity": 0}, "quantity 0 must be greater than zero"),
        ({"quantity": -4}, "quantity -4 must be greater than zero"),
        ({"quantity": "-4"}, "quantity '-4' is not a plain decimal number"),
        ({"quantity": True}, "quantity True is a boolean"),
        ({"quantity": "1e3"}, "quantity '1e3' is not a plain decimal number"),
        ({"quantity": "0.0000001"}, "more than 6 decimal places"),
        ({"to_location": "wh1", "to_bin": "a-01"}, "the source and destination are both WH1/A-01"),
        (
            {"quantity": 9},
            (
                "quantity: Item WIDGET-1 has 8 available at WH1/A-01 (10 on hand there, 2 reserved in that bin, "
                "2 of the 15 on hand at WH1 reserved); a transfer of 9 would take stock that is reserved or not there; "
                "transfer at most 8."
            ),
        ),
        (
            {"sku": "GADGET-2", "from_bin": ""},
            (
                "quantity: Item GADGET-2 has 0 available at WH1 (0 on hand there, 0 of the 0 on hand at WH1 reserved); "
                "a transfer of 4 would take stock that is reserved or not there; choose another source."
            ),
        ),
        ({"rationale": "move it"}, "Rationale 'move it' is too short"),
    ],
)
async def test_invalid_transfer_draft_writes_nothing(database, changes, message):
    tokens = await stock_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        result = await client.call_tool("draft_transfer", transfer_arguments(**changes))

    assert result.is_error
    assert message in result.content[0].text
    assert await row_count(database, Draft) == 0
    assert await stock_levels(database) == BEFORE
    event = await last_event(database)
    assert (event.action, event.outcome) == ("draft_transfer", "invalid")


async def test_transfer_draft_of_inactive_item_is_refused(database):
    tokens = await stock_workspace(database)
    async with database.write() as session:
        await session.execute(update(Item).where(Item.sku == "WIDGET-1").values(active=False))
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        result = await client.call_tool("draft_transfer", transfer_arguments())

    assert result.is_error
    assert "sku: item WIDGET-1 is inactive and cannot be transferred" in result.content[0].text
    assert await row_count(database, Draft) == 0


async def test_transfer_out_of_transit_location_is_refused(database):
    tokens = await stock_workspace(database)
    async with database.write() as session:
        session.add(Location(workspace_id=tokens.agent.workspace_id, code="TRUCK-1", name="Truck", kind="transit"))
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        result = await client.call_tool("draft_transfer", transfer_arguments(from_location="TRUCK-1", from_bin=""))

    assert result.is_error
    assert "from_location: location TRUCK-1 is a transit location for shipped transfers" in result.content[0].text
    assert await row_count(database, Draft) == 0


async def test_location_level_reservation_limits_bin_transfer(database):
    tokens = await stock_workspace(database)
    async with database.write() as session:
        # Reserved anywhere in WH1: 15 on hand, 2 + 10 reserved, so only 3 may leave.
        session.add(
            Reservation(workspace_id=tokens.agent.workspace_id, item_id=1, location_id=1, quantity=Decimal(10), status="active")
        )
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        refused = await client.call_tool("draft_transfer", transfer_arguments(quantity=4))
        allowed = await client.call_tool("draft_transfer", transfer_arguments(quantity=3))

    assert refused.is_error
    assert "has 3 available at WH1/A-01" in refused.content[0].text
    assert not allowed.is_error
    assert await row_count(database, Draft) == 1


async def test_linked_exception_moves_to_drafted(database):
    tokens = await stock_workspace(database)
    async with database.write() as session:
        session.add_all(
            [
                ExceptionRecord(
                    workspace_id=tokens.agent.workspace_id, kind="low_stock", fingerprint="low_stock:item=1:location=2",
                    item_id=1, sku="WIDGET-1", reason="WIDGET-1 is low at WH2.",
                ),
                ExceptionRecord(
                    workspace_id=tokens.agent.workspace_id, kind="supplier_delay", fingerprint="supplier_delay:supplier=1",
                    supplier_id=1, supplier_code="ACME", reason="ACME is late.",
                ),
            ]
        )
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        unrelated = await client.call_tool("draft_transfer", transfer_arguments(exception_ids=[2]))
        linked = await client.call_tool("draft_transfer", transfer_arguments(exception_ids=[1]))

    assert unrelated.is_error
    assert "is about supplier ACME, which this draft does not transfer" in unrelated.content[0].text
    assert not linked.is_error
    assert linked.structured_content["exception_ids"] == [1]
    async with database.read() as session:
        statuses = dict((await session.execute(select(ExceptionRecord.id, ExceptionRecord.status))).all())
    assert statuses == {1: "drafted", 2: "open"}


async def test_transfer_retry_with_same_key_writes_nothing_new(database):
    tokens = await stock_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        first = await client.call_tool("draft_transfer", transfer_arguments(idempotency_key="move-1"))
        second = await client.call_tool("draft_transfer", transfer_arguments(idempotency_key="move-1"))
        other = await client.call_tool("draft_transfer", transfer_arguments(quantity=5, idempotency_key="move-1"))

    assert second.structured_content == first.structured_content
    assert await row_count(database, Draft) == 1
    assert await row_count(database, IdempotencyRecord) == 1
    assert other.is_error
    assert "Idempotency key 'move-1' was already used" in other.content[0].text
    async with database.read() as session:
        events = (await session.execute(select(ActivityEvent).order_by(ActivityEvent.seq))).scalars().all()
    assert [(e.action, e.outcome) for e in events] == [
        ("draft_transfer", "ok"),
        ("draft_transfer", "replayed"),
        ("draft_transfer", "conflict"),
    ]
    assert "Replayed" in events[1].summary


async def _deactivate_widget(database: Database) -> None:
    async with database.write() as session:
        await session.execute(update(Item).where(Item.sku == "WIDGET-1").values(active=False))


async def _reserve_more_at_a01(database: Database) -> None:
    async with database.write() as session:
        session.add(
            Reservation(workspace_id=1, item_id=1, location_id=1, bin_id=1, quantity=Decimal(5), reference="SO-2", status="active")
        )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_deactivate_widget, "Item WIDGET-1 is no longer active, so it cannot be transferred."),
        (
            _reserve_more_at_a01,
            (
                "Item WIDGET-1 has 3 available at WH1/A-01 (10 on hand there, 7 reserved in that bin, 7 of the 15 on "
                "hand at WH1 reserved); a transfer of 4 would take stock that is reserved or not there; it can no "
                "longer be shipped."
            ),
        ),
    ],
)
async def test_failed_revalidation_leaves_stock_unchanged(database, change, reason):
    tokens = await stock_workspace(database)
    async with database.write() as session:
        session.add(
            ExceptionRecord(
                workspace_id=tokens.agent.workspace_id, kind="low_stock", fingerprint="low_stock:item=1:location=2",
                item_id=1, sku="WIDGET-1", reason="WIDGET-1 is low at WH2.",
            )
        )
    app = make_app(database)
    drafted = await draft_as_agent(database, tokens, exception_ids=[1])
    await approvals.approve_draft(app, tokens.buyer, draft_id=drafted["draft_id"], expected_hash="", reason="")
    await change(database)

    detail = await approvals.execute_draft(app, tokens.buyer, draft_id=drafted["draft_id"])

    assert detail.status == "failed"
    assert detail.failure_reason == reason
    assert await stock_levels(database) == BEFORE
    assert await row_count(database, Transfer) == 0
    assert await row_count(database, Movement) == 2
    async with database.read() as session:
        exception = (await session.execute(select(ExceptionRecord))).scalar_one()
    # No open draft is linked to the exception any more, so it needs a next action again.
    assert exception.status == "open"
    event = await last_event(database)
    assert (event.action, event.outcome, event.draft_id) == ("execute_draft", "invalid", drafted["draft_id"])


async def _shipped(database: Database, tokens: Tokens) -> Order3:
    app = make_app(database)
    drafted = await draft_as_agent(database, tokens)
    await approvals.approve_draft(app, tokens.buyer, draft_id=drafted["draft_id"], expected_hash="", reason="")
    detail = await approvals.execute_draft(app, tokens.buyer, draft_id=drafted["draft_id"])
    assert detail.status == "executed"
    assert detail.result == "destination=WH2/B-02, transfer=TR-000001, transit_location=IN-TRANSIT"
    return app


async def test_ship_and_receive_on_each_backend(any_database):
    tokens = await stock_workspace(any_database)
    app = await _shipped(any_database, tokens)

    received = await transfers.receive_transfer(app, tokens.buyer, transfer="1")

    assert (received.number, received.status, received.received_by) == ("TR-000001", "received", "alice")
    assert (received.from_place, received.to_place, received.transit_place) == ("WH1/A-01", "WH2/B-02", "IN-TRANSIT")
    assert await stock_levels(any_database) == {
        "WIDGET-1@WH1": Decimal(5),
        "WIDGET-1@WH1/A-01": Decimal(6),
        "WIDGET-1@IN-TRANSIT": Decimal(0),
        "WIDGET-1@WH2/B-02": Decimal(4),
    }
    assert await ledger_mismatches(any_database, workspace_id=tokens.buyer.workspace_id) == []
    async with any_database.read() as session:
        movements = (await session.execute(select(Movement).where(Movement.kind == "transfer").order_by(Movement.id))).scalars().all()
    assert [(m.quantity, m.reference, m.actor) for m in movements] == [
        (Decimal(4), "TR-000001 shipped", "alice"),
        (Decimal(4), "TR-000001 received", "alice"),
    ]


async def test_receiving_twice_is_a_conflict(database):
    tokens = await stock_workspace(database)
    app = await _shipped(database, tokens)
    await transfers.receive_transfer(app, tokens.buyer, transfer="TR-000001")

    with pytest.raises(ConflictError, match="was already received by alice"):
        await transfers.receive_transfer(app, tokens.second_buyer, transfer="TR-000001")

    assert await row_count(database, Movement) == 4
    event = await last_event(database)
    assert (event.action, event.outcome, event.actor) == ("transfer_receive", "conflict", "bob")


async def test_receipt_retried_with_same_key_writes_nothing_new(database):
    tokens = await stock_workspace(database)
    app = await _shipped(database, tokens)

    first = await transfers.receive_transfer(app, tokens.buyer, transfer="TR-000001", idempotency_key="dock-7")
    second = await transfers.receive_transfer(app, tokens.buyer, transfer="TR-000001", idempotency_key="dock-7")

    assert second == first
    assert await row_count(database, Movement) == 4
    assert (await stock_levels(database))["WIDGET-1@WH2/B-02"] == Decimal(4)


async def test_agent_cannot_receive_a_transfer(database):
    tokens = await stock_workspace(database)
    app = await _shipped(database, tokens)

    with pytest.raises(PermissionDeniedError, match="needs the 'change' scope"):
        await transfers.receive_transfer(app, tokens.agent, transfer="TR-000001")

    assert (await stock_levels(database))["WIDGET-1@IN-TRANSIT"] == Decimal(4)


async def test_transfer_between_bins_of_one_location(database):
    tokens = await stock_workspace(database)
    app = make_app(database)
    drafted = await draft_as_agent(database, tokens, quantity="2.5", to_location="WH1", to_bin="")
    await approvals.approve_draft(app, tokens.buyer, draft_id=drafted["draft_id"], expected_hash="", reason="")
    await approvals.execute_draft(app, tokens.buyer, draft_id=drafted["draft_id"])

    await transfers.receive_transfer(app, tokens.buyer, transfer="TR-000001")

    levels = await stock_levels(database)
    assert (levels["WIDGET-1@WH1/A-01"], levels["WIDGET-1@WH1"], levels["WIDGET-1@IN-TRANSIT"]) == (
        Decimal("7.5"),
        Decimal("7.5"),
        Decimal(0),
    )


async def test_concurrent_executions_ship_available_stock_once(any_database):
    tokens = await stock_workspace(any_database)
    app = make_app(any_database)
    draft_ids = []
    for _ in range(2):
        drafted = await draft_as_agent(any_database, tokens, quantity=7)
        await approvals.approve_draft(app, tokens.buyer, draft_id=drafted["draft_id"], expected_hash="", reason="")
        draft_ids.append(drafted["draft_id"])

    results = await asyncio.gather(
        *(approvals.execute_draft(app, tokens.buyer, draft_id=draft_id) for draft_id in draft_ids), return_exceptions=True
    )

    executed = [r for r in results if not isinstance(r, BaseException) and r.status == "executed"]
    # SQLite serialises the two executions, so the second fails its check; on
    # PostgreSQL the second can instead lose the race on the stock level row.
    others = [r for r in results if isinstance(r, ConflictError) or (not isinstance(r, BaseException) and r.status == "failed")]
    assert len(executed) == 1
    assert len(others) == 1
    assert await row_count(any_database, Transfer) == 1
    levels = await stock_levels(any_database)
    assert (levels["WIDGET-1@WH1/A-01"], levels["WIDGET-1@IN-TRANSIT"]) == (Decimal(3), Decimal(7))
    assert await ledger_mismatches(any_database, workspace_id=tokens.buyer.workspace_id) == []


async def test_first_shipments_of_two_items_race_safely(any_database):
    tokens = await stock_workspace(any_database)
    async with any_database.write() as session:
        gadget = (await session.execute(select(Item).where(Item.sku == "GADGET-2"))).scalar_one()
        await record_movement(
            session, workspace_id=1, item_id=gadget.id, kind="opening_balance", quantity=Decimal(6), destination=Place(2), actor="test"
        )
    app = make_app(any_database)
    draft_ids = []
    for changes in ({}, {"sku": "GADGET-2", "from_location": "WH2", "from_bin": "", "to_location": "WH1", "to_bin": ""}):
        drafted = await draft_as_agent(any_database, tokens, **changes)
        await approvals.approve_draft(app, tokens.buyer, draft_id=drafted["draft_id"], expected_hash="", reason="")
        draft_ids.append(drafted["draft_id"])

    # Both create the transit location and number a transfer; only one of each may exist.
    results = await asyncio.gather(
        *(approvals.execute_draft(app, tokens.buyer, draft_id=draft_id) for draft_id in draft_ids), return_exceptions=True
    )

    unexpected = [r for r in results if isinstance(r, BaseException) and not isinstance(r, ConflictError)]
    assert unexpected == []
    executed = [r for r in results if not isinstance(r, BaseException)]
    assert all(r.status == "executed" for r in executed)
    assert await row_count(any_database, Transfer) == len(executed) >= 1
    async with any_database.read() as session:
        transit = (await session.execute(select(Location.code).where(Location.kind == "transit"))).scalars().all()
    assert transit == ["IN-TRANSIT"]
    assert await ledger_mismatches(any_database, workspace_id=tokens.buyer.workspace_id) == []


async def test_transit_code_taken_by_warehouse_is_a_conflict(database):
    tokens = await stock_workspace(database)
    async with database.write() as session:
        session.add(Location(workspace_id=tokens.agent.workspace_id, code="IN-TRANSIT", name="Dock", kind="warehouse"))
    app = make_app(database)
    drafted = await draft_as_agent(database, tokens)
    await approvals.approve_draft(app, tokens.buyer, draft_id=drafted["draft_id"], expected_hash="", reason="")

    with pytest.raises(ConflictError, match="Location IN-TRANSIT is a warehouse location, so transfers cannot ship into it"):
        await approvals.execute_draft(app, tokens.buyer, draft_id=drafted["draft_id"])

    async with database.read() as session:
        status = (await session.execute(select(Draft.status))).scalar_one()
    assert status == "approved"
    assert await stock_levels(database) == BEFORE
    assert await row_count(database, Transfer) == 0

"""Receiving against purchase order lines with the real CLI runner: partial, over-receipt, duplicates and refusals."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner, Result

from order3_mcp.cli import app as cli
from policies import scopes_for
from store.db import Database, open_database
from store.models import (
    ActivityEvent,
    Bin,
    Item,
    Location,
    Movement,
    PurchaseOrder,
    PurchaseOrderLine,
    ReceivingEvent,
    StockLevel,
)
from store.purchasing import NewLine, issue_purchase_order
from store.stock import verify_ledger
from store.tokens import issue_token
from tests.conftest import new_database_location
from tests.factory import small_workspace

runner = CliRunner()


@dataclass
class Shop:
    """A small workspace with issued purchase order PO-000001 and the secrets of its principals."""

    db: Path
    agent: str
    carol: str


def order3(db: Path, *args: str, token: str) -> Result:
    """Run `order3 --db DB --token TOKEN ARGS` with nothing taken from the environment."""
    return runner.invoke(
        cli, ["--db", str(db), "--token", token, *args], env={"ORDER3_TOKEN": None, "ORDER3_DB": None, "COLUMNS": "200"}
    )


def on(db: Path, step: Any) -> Any:
    """Run an async function of the Database on a fresh connection to the test file."""

    async def main() -> Any:
        database = await open_database(db)
        try:
            return await step(database)
        finally:
            await database.dispose()

    return anyio.run(main)


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    """PO-000001 from ACME: line 1 is 40 WIDGET-1 for WH1 (5 on hand there), line 2 is 10 GADGET-2 with no destination."""
    db = new_database_location(tmp_path, "order3.db")

    async def build(database: Database) -> Shop:
        tokens = await small_workspace(database)
        async with database.write() as session:
            _, carol = await issue_token(
                session, workspace_id=1, principal_kind="user", principal="carol", role="operator",
                scopes=scopes_for(principal_kind="user", role="operator"),
            )
            session.add(Bin(workspace_id=1, location_id=1, code="B1"))
            await issue_purchase_order(
                session,
                workspace_id=1,
                supplier_id=1,
                currency="USD",
                lines=[
                    NewLine(item_id=1, supplier_item_id=1, quantity=Decimal(40), unit_price=Decimal("2.5"), destination_location_id=1, expected_date=None),
                    NewLine(item_id=2, supplier_item_id=None, quantity=Decimal(10), unit_price=Decimal(9), destination_location_id=None, expected_date=None),
                ],
                expected_date=None,
                owner="alice",
                description="Test order",
            )
        return Shop(db=db, agent=tokens.agent_secret, carol=carol)

    return on(db, build)


def receive(shop: Shop, *args: str, token: str | None = None) -> Result:
    return order3(shop.db, "receive", *args, token=token or shop.carol)


def state(db: Path) -> dict[str, Any]:
    """Received quantity per line, order status, WIDGET-1 and GADGET-2 on hand at WH1, and row counts."""

    async def read(database: Database) -> dict[str, Any]:
        async with database.read() as session:
            lines = (await session.execute(select(PurchaseOrderLine).order_by(PurchaseOrderLine.line_no))).scalars().all()
            order = (await session.execute(select(PurchaseOrder))).scalar_one()
            levels = (
                await session.execute(
                    select(Item.sku, StockLevel.bin_key, StockLevel.on_hand)
                    .join(Item, Item.id == StockLevel.item_id)
                    .join(Location, Location.id == StockLevel.location_id)
                    .order_by(Item.sku, StockLevel.bin_key)
                )
            ).all()
            _, mismatches = await verify_ledger(session, workspace_id=1)
            return {
                "received": [line.quantity_received for line in lines],
                "status": order.status,
                "stock": {(sku, bin_key): quantity for sku, bin_key, quantity in levels},
                "events": (await session.execute(select(func.count()).select_from(ReceivingEvent))).scalar_one(),
                "movements": (await session.execute(select(func.count()).select_from(Movement))).scalar_one(),
                "ledger_mismatches": mismatches,
            }

    return on(db, read)


def test_partial_then_rest_receives_order(shop: Shop) -> None:
    first = receive(shop, "PO-000001", "1", "15")
    after_first = state(shop.db)
    rest = receive(shop, "po-000001", "1", "25")
    gadgets = receive(shop, "PO-000001", "2", "10", "--location", "WH1", "--bin", "b1")

    assert first.exit_code == 0, first.stderr
    assert "Received 15 WIDGET-1 on PO-000001 line 1 at WH1 (receiving event 1, movement 2)." in first.stdout
    assert "Line 1: 15 of 40 received, 25 outstanding. PO-000001 is partially_received." in first.stdout
    assert "On hand of WIDGET-1 at WH1 outside its bins: 20." in first.stdout
    assert after_first["received"] == [Decimal(15), Decimal(0)]
    assert after_first["status"] == "partially_received"
    assert rest.exit_code == 0, rest.stderr
    assert "Line 1: 40 of 40 received, 0 outstanding. PO-000001 is partially_received." in rest.stdout
    assert gadgets.exit_code == 0, gadgets.stderr
    assert "PO-000001 is received." in gadgets.stdout
    assert "On hand of GADGET-2 at WH1 bin B1: 10." in gadgets.stdout
    final = state(shop.db)
    assert final["received"] == [Decimal(40), Decimal(10)]
    assert final["status"] == "received"
    assert final["stock"] == {("GADGET-2", 1): Decimal(10), ("WIDGET-1", 0): Decimal(45)}
    assert final["events"] == 3
    assert final["ledger_mismatches"] == []


def test_receipt_writes_event_and_movement(shop: Shop) -> None:
    receive(shop, "PO-000001", "1", "12.5", "--delivery", "DN-7")

    async def read(database: Database) -> tuple[Any, Any, Any]:
        async with database.read() as session:
            event = (await session.execute(select(ReceivingEvent))).scalar_one()
            movement = (await session.execute(select(Movement).where(Movement.id == event.movement_id))).scalar_one()
            activity = (await session.execute(select(ActivityEvent).order_by(ActivityEvent.seq.desc()))).scalars().first()
            return event, movement, activity

    event, movement, activity = on(shop.db, read)

    assert (event.quantity, event.location_id, event.bin_id, event.actor) == (Decimal("12.5"), 1, None, "carol")
    assert event.external_ref == "delivery:line:1:DN-7"
    assert (movement.kind, movement.quantity, movement.to_location_id, movement.from_location_id) == ("receipt", Decimal("12.5"), 1, None)
    assert (movement.reference_kind, movement.reference_id, movement.unit_cost) == ("purchase_order_line", 1, Decimal("2.5"))
    assert (activity.action, activity.outcome, activity.actor, activity.channel) == ("receive", "ok", "carol", "cli")
    assert activity.summary == "Received 12.5 WIDGET-1 on PO-000001 line 1 at WH1: 12.5 of 40 received; PO-000001 is partially_received."


def test_over_receipt_within_tolerance(shop: Shop) -> None:
    # The default policy allows 5 % over: 42 of 40.
    result = receive(shop, "PO-000001", "1", "42")

    assert result.exit_code == 0, result.stderr
    assert "Line 1: 42 of 40 received, 0 outstanding." in result.stdout
    after = state(shop.db)
    assert after["received"] == [Decimal(42), Decimal(0)]
    assert after["stock"][("WIDGET-1", 0)] == Decimal(47)
    assert after["ledger_mismatches"] == []


def test_over_receipt_beyond_tolerance(shop: Shop) -> None:
    before = state(shop.db)

    result = receive(shop, "PO-000001", "1", "43")

    assert result.exit_code == 2
    assert (
        "Receiving 43 on PO-000001 line 1 (WIDGET-1) would make 43 received against 40 ordered; the over-receipt "
        "tolerance of 5% (receiving_over_pct in the policy) allows at most 42 in total, so at most 42 more can be "
        "received on this line." in result.stderr
    )
    assert state(shop.db) == before
    assert before["received"] == [Decimal(0), Decimal(0)]


def test_over_receipt_after_partial(shop: Shop) -> None:
    receive(shop, "PO-000001", "1", "40")
    full = receive(shop, "PO-000001", "1", "3")
    within = receive(shop, "PO-000001", "1", "2")
    beyond = receive(shop, "PO-000001", "1", "0.000001")

    assert full.exit_code == 2
    assert "allows at most 42 in total, so at most 2 more can be received on this line." in full.stderr
    assert within.exit_code == 0, within.stderr
    assert beyond.exit_code == 2
    assert "so nothing more can be received on this line." in beyond.stderr
    after = state(shop.db)
    assert after["received"] == [Decimal(42), Decimal(0)]
    assert after["stock"][("WIDGET-1", 0)] == Decimal(47)


def test_duplicate_delivery_is_conflict(shop: Shop) -> None:
    first = receive(shop, "PO-000001", "1", "10", "--delivery", "DN-1")

    again = receive(shop, "PO-000001", "1", "10", "--delivery", "DN-1")
    other_line = receive(shop, "PO-000001", "2", "4", "--delivery", "DN-1", "--location", "WH1")

    assert first.exit_code == 0, first.stderr
    assert again.exit_code == 5
    assert "Delivery 'DN-1' was already received on PO-000001 line 1 (WIDGET-1): receiving event 1, 10 received by carol at" in again.stderr
    assert "Nothing was received again" in again.stderr
    # One delivery note covers several lines of an order, so the same reference on another line is a new receipt.
    assert other_line.exit_code == 0, other_line.stderr
    after = state(shop.db)
    assert after["received"] == [Decimal(10), Decimal(4)]
    assert after["stock"] == {("GADGET-2", 0): Decimal(4), ("WIDGET-1", 0): Decimal(15)}
    assert after["events"] == 2


def test_same_idempotency_key_replays_receipt(shop: Shop) -> None:
    first = receive(shop, "PO-000001", "1", "10", "--idempotency-key", "rcv-1")
    again = receive(shop, "PO-000001", "1", "10", "--idempotency-key", "rcv-1")
    changed = receive(shop, "PO-000001", "1", "11", "--idempotency-key", "rcv-1")

    assert again.exit_code == 0, again.stderr
    assert again.stdout == (
        "Nothing received: idempotency key 'rcv-1' already recorded this receipt (receiving event 1, movement 2), "
        "so this is a replay of it.\n"
        "Stored figures of that earlier receipt: 10 WIDGET-1 received on PO-000001 line 1 at WH1.\n"
        "As of that receipt: line 1 had 10 of 40 received, 30 outstanding; PO-000001 was partially_received; "
        "on hand of WIDGET-1 at WH1 was 15.\n"
    )
    assert first.stdout.startswith("Received 10 WIDGET-1 on PO-000001 line 1 at WH1 (receiving event 1, movement 2).")
    assert changed.exit_code == 5
    after = state(shop.db)
    assert after["received"] == [Decimal(10), Decimal(0)]
    assert after["events"] == 1


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ("closed", "Purchase order PO-000001 is closed, so it accepts no receipts"),
        ("received", "Purchase order PO-000001 is fully received, so it accepts no further receipts"),
        ("cancelled", "Purchase order PO-000001 is cancelled, so it accepts no receipts"),
    ],
)
def test_finished_order_rejects_receipt(shop: Shop, status: str, message: str) -> None:
    async def finish(database: Database) -> None:
        async with database.write() as session:
            await session.execute(update(PurchaseOrder).values(status=status))

    on(shop.db, finish)
    before = state(shop.db)

    result = receive(shop, "PO-000001", "1", "1")

    assert result.exit_code == 5
    assert message in result.stderr
    assert state(shop.db) == before


def test_fully_received_order_rejects_more(shop: Shop) -> None:
    receive(shop, "PO-000001", "1", "40")
    receive(shop, "PO-000001", "2", "10", "--location", "WH1")

    result = receive(shop, "PO-000001", "1", "1")

    assert result.exit_code == 5
    assert "Purchase order PO-000001 is fully received, so it accepts no further receipts" in result.stderr
    assert state(shop.db)["received"] == [Decimal(40), Decimal(10)]


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (("PO-000001", "2", "1"), 2, "PO-000001 line 2 has no destination location; pass --location CODE"),
        (("PO-000001", "3", "1"), 4, "Purchase order PO-000001 has no line 3; its lines are 1, 2."),
        (("PO-999999", "1", "1"), 4, "Purchase order 'PO-999999' does not exist in this workspace"),
        (("PO-000001", "1", "1e3"), 2, "Received quantity '1e3' is not a plain decimal number"),
        (("PO-000001", "1", "0"), 2, "quantity 0 must be greater than zero"),
        (("PO-000001", "1", "1", "--bin", "Z9"), 4, "Bin 'Z9' does not exist at WH1; bins there: B1."),
        (("PO-000001", "1", "1", "--location", "WH9"), 4, "Location 'WH9' does not exist in this workspace"),
    ],
)
def test_bad_receipt_input_rejected(shop: Shop, args: tuple[str, ...], exit_code: int, message: str) -> None:
    before = state(shop.db)

    result = receive(shop, *args)

    assert result.exit_code == exit_code
    assert message in result.stderr
    assert state(shop.db) == before


def test_agent_cannot_receive(shop: Shop) -> None:
    result = receive(shop, "PO-000001", "1", "1", token=shop.agent)

    assert result.exit_code == 3
    assert "needs the 'change' scope" in result.stderr
    assert state(shop.db)["events"] == 0


async def test_concurrent_receipts_within_tolerance(any_database: Database) -> None:
    from order3_mcp.services import receiving
    from store.errors import ConflictError, InvalidInputError
    from tests.factory import make_app

    tokens = await small_workspace(any_database)
    async with any_database.write() as session:
        await issue_purchase_order(
            session, workspace_id=1, supplier_id=1, currency="USD", expected_date=None, owner="alice", description="",
            lines=[NewLine(item_id=1, supplier_item_id=1, quantity=Decimal(40), unit_price=Decimal("2.5"), destination_location_id=1, expected_date=None)],
        )
    service = make_app(any_database)

    outcomes = await asyncio.gather(
        receiving.receive(service, tokens.buyer, purchase_order="PO-000001", line_no=1, quantity="30"),
        receiving.receive(service, tokens.admin, purchase_order="PO-000001", line_no=1, quantity="30"),
        return_exceptions=True,
    )

    refused = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(refused) == 1
    assert isinstance(refused[0], ConflictError | InvalidInputError)
    async with any_database.read() as session:
        line = (await session.execute(select(PurchaseOrderLine))).scalar_one()
        level = (await session.execute(select(StockLevel.on_hand).where(StockLevel.item_id == 1))).scalar_one()
        events = (await session.execute(select(func.count()).select_from(ReceivingEvent))).scalar_one()
        _, mismatches = await verify_ledger(session, workspace_id=1)
    assert line.quantity_received == Decimal(30)
    assert level == Decimal(35)
    assert events == 1
    assert mismatches == []


@pytest.mark.parametrize(
    ("ordered", "over_pct", "expected"),
    [("40", "5", "42"), ("33", "5", "34.65"), ("100", "0", "100"), ("0.000003", "50", "0.000004"), ("7", "2.5", "7.175")],
)
def test_max_received_exact_and_plain(ordered: str, over_pct: str, expected: str) -> None:
    from order3_mcp.services.receiving import max_received

    assert str(max_received(Decimal(ordered), Decimal(over_pct))) == expected


def test_agent_sees_receipt_over_mcp(shop: Shop) -> None:
    from mcp import Client

    from order3_mcp.app import Order3
    from order3_mcp.server import build_server

    receive(shop, "PO-000001", "1", "15")

    async def read(database: Database) -> tuple[Any, Any]:
        service = Order3(database)
        caller = await service.authenticate(shop.agent, channel="mcp")
        async with Client(build_server(service, caller), mode="legacy") as client:
            item = await client.call_tool("get_item", {"sku": "WIDGET-1"})
            events = await client.call_tool("list_receiving_events", {"purchase_order": "PO-000001"})
        return item.structured_content, events.structured_content

    item, events = on(shop.db, read)

    assert (item["on_hand"], item["on_order"]) == ("20", "25")
    assert [(e["line"], e["sku"], e["quantity"], e["actor"]) for e in events["receiving_events"]] == [(1, "WIDGET-1", "15", "carol")]


@pytest.mark.parametrize(
    ("quantity", "message"),
    [
        (
            "abc",
            (
                "Received quantity 'abc' is not a plain decimal number; send digits with an optional decimal point, "
                "such as 12 or \"12.5\", without spaces, signs or exponents."
            ),
        ),
        ("0.0000001", "Received quantity 0.0000001 has more than 6 decimal places."),
    ],
)
def test_bad_quantity_message_reads_once(shop: Shop, quantity: str, message: str) -> None:
    result = receive(shop, "PO-000001", "1", quantity)

    assert result.exit_code == 2
    assert " ".join(result.stderr.split()) == message

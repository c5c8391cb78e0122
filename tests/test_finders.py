"""Tests for the exception finders and the exception records they persist."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import Database
from store.errors import InvalidInputError, NotFoundError
from store.finders import (
    Finding,
    OnTimeRecord,
    find_count_drift,
    find_low_stock,
    find_receiving_variances,
    find_supplier_delays,
    get_exception,
    list_exceptions,
    refresh_exceptions,
    suggest_order_quantity,
    supplier_on_time_records,
)
from store.finders import records as records_module
from store.finders.findings import (
    QuantityMemo,
    build_finding,
    quantity,
    scaled_text,
    utc_text,
)
from store.finders.records import RecordScope, apply_refresh, plan_refresh
from store.models import (
    CountResult,
    Draft,
    ExceptionRecord,
    Item,
    Location,
    PurchaseOrder,
    PurchaseOrderLine,
    ReceivingEvent,
    ReorderRule,
    Reservation,
    Supplier,
    SupplierItem,
    Workspace,
)
from store.stock import Place, record_movement
from store.sync.exception_writes import upsert_findings
from store.types import from_scaled
from store.workspaces import create_workspace, sku_key

NOW = datetime(2026, 3, 10, 11, 30, tzinfo=UTC)
D = Decimal
ZERO = Decimal(0)
ONE = Decimal(1)


# --- data builders -----------------------------------------------------------


async def add_workspace(session: AsyncSession, *, name: str = "main", timezone: str = "UTC") -> Workspace:
    return await create_workspace(session, name=name, timezone=timezone)


async def add_item(
    session: AsyncSession, *, workspace: Workspace, sku: str, owner: str = "", unit_cost: Decimal = ZERO
) -> Item:
    item = Item(workspace_id=workspace.id, sku=sku, sku_key=sku_key(sku), name=sku, owner=owner, unit_cost=unit_cost)
    session.add(item)
    await session.flush()
    return item


async def add_location(session: AsyncSession, *, workspace: Workspace, code: str, owner: str = "") -> Location:
    location = Location(workspace_id=workspace.id, code=code, name=code, owner=owner)
    session.add(location)
    await session.flush()
    return location


async def add_supplier(
    session: AsyncSession, *, workspace: Workspace, code: str, lead_time_days: int = 14, owner: str = ""
) -> Supplier:
    supplier = Supplier(workspace_id=workspace.id, code=code, name=code, lead_time_days=lead_time_days, owner=owner)
    session.add(supplier)
    await session.flush()
    return supplier


async def add_supplier_item(
    session: AsyncSession,
    *,
    supplier: Supplier,
    item: Item,
    unit_price: Decimal | None = None,
    pack_size: Decimal | None = None,
    min_order_qty: Decimal = ONE,
    lead_time_days: int | None = None,
    preferred: bool = False,
) -> SupplierItem:
    supplier_item = SupplierItem(
        workspace_id=item.workspace_id,
        supplier_id=supplier.id,
        item_id=item.id,
        unit_price=unit_price,
        pack_size=pack_size,
        min_order_qty=min_order_qty,
        lead_time_days=lead_time_days,
        preferred=preferred,
    )
    session.add(supplier_item)
    await session.flush()
    return supplier_item


async def add_rule(
    session: AsyncSession,
    *,
    item: Item,
    location: Location | None,
    reorder_point: Decimal,
    reorder_quantity: Decimal | None = None,
    max_level: Decimal | None = None,
    preferred_supplier: Supplier | None = None,
) -> ReorderRule:
    rule = ReorderRule(
        workspace_id=item.workspace_id,
        item_id=item.id,
        location_id=location.id if location else None,
        location_key=location.id if location else 0,
        reorder_point=reorder_point,
        reorder_quantity=reorder_quantity,
        max_level=max_level,
        preferred_supplier_id=preferred_supplier.id if preferred_supplier else None,
    )
    session.add(rule)
    await session.flush()
    return rule


async def receive_stock(session: AsyncSession, *, item: Item, location: Location, quantity: Decimal) -> None:
    await record_movement(
        session,
        workspace_id=item.workspace_id,
        item_id=item.id,
        kind="receipt",
        quantity=quantity,
        destination=Place(location.id),
        actor="test",
    )


async def add_order(
    session: AsyncSession,
    *,
    supplier: Supplier,
    number: str,
    status: str = "issued",
    expected_date: date | None = None,
    owner: str = "",
) -> PurchaseOrder:
    order = PurchaseOrder(
        workspace_id=supplier.workspace_id,
        number=number,
        supplier_id=supplier.id,
        status=status,
        expected_date=expected_date,
        owner=owner,
    )
    session.add(order)
    await session.flush()
    return order


async def add_line(
    session: AsyncSession,
    *,
    order: PurchaseOrder,
    item: Item,
    ordered: Decimal,
    received: Decimal = ZERO,
    line_no: int = 1,
    destination: Location | None = None,
    expected_date: date | None = None,
) -> PurchaseOrderLine:
    line = PurchaseOrderLine(
        workspace_id=order.workspace_id,
        purchase_order_id=order.id,
        line_no=line_no,
        item_id=item.id,
        quantity_ordered=ordered,
        quantity_received=received,
        destination_location_id=destination.id if destination else None,
        expected_date=expected_date,
    )
    session.add(line)
    await session.flush()
    return line


async def add_receipt(session: AsyncSession, *, line: PurchaseOrderLine, quantity: Decimal, at: datetime) -> None:
    session.add(
        ReceivingEvent(workspace_id=line.workspace_id, purchase_order_line_id=line.id, quantity=quantity, received_at=at)
    )
    await session.flush()


async def add_draft(
    session: AsyncSession, *, workspace: Workspace, lines: list[dict[str, Any]], status: str = "pending_approval"
) -> Draft:
    draft = Draft(
        workspace_id=workspace.id,
        kind="purchase_order",
        title="Restock",
        rationale="Low stock",
        payload={"supplier_code": "DIGIKEY", "lines": lines},
        payload_hash="0" * 64,
        status=status,
        created_by_kind="agent",
        created_by="agent-1",
    )
    session.add(draft)
    await session.flush()
    return draft


async def add_count(
    session: AsyncSession,
    *,
    item: Item,
    location: Location,
    counted: Decimal,
    system: Decimal,
    at: datetime,
) -> CountResult:
    result = CountResult(
        workspace_id=item.workspace_id,
        item_id=item.id,
        location_id=location.id,
        counted_quantity=counted,
        system_quantity=system,
        variance=counted - system,
        counted_at=at,
        actor="counter",
    )
    session.add(result)
    await session.flush()
    return result


def synthetic_finding(number: int, *, kind: str = "count_drift") -> Finding:
    return Finding(
        kind=kind,
        fingerprint=f"{kind}:item={number}:location=1",
        reason=f"Problem {number}.",
        suggested_draft_kind="count_task",
        evidence={"number": number},
    )


# --- low stock -----------------------------------------------------------------


async def test_low_stock_at_location_rounds_to_packs(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        item = await add_item(session, workspace=workspace, sku="R_10R", owner="buyer-anna")
        wh1 = await add_location(session, workspace=workspace, code="WH1")
        wh2 = await add_location(session, workspace=workspace, code="WH2")
        digikey = await add_supplier(session, workspace=workspace, code="DIGIKEY", lead_time_days=7)
        await add_supplier_item(session, supplier=digikey, item=item, unit_price=D("0.25"), pack_size=D(10))
        await add_rule(session, item=item, location=wh1, reorder_point=D(10), max_level=D(50))
        await add_rule(session, item=item, location=wh2, reorder_point=D(10), max_level=D(50))
        await receive_stock(session, item=item, location=wh1, quantity=D(5))
        await receive_stock(session, item=item, location=wh2, quantity=D(100))

    async with database.read() as session:
        findings = await find_low_stock(session, workspace_id=workspace.id, now=NOW)

    assert len(findings) == 1
    finding = findings[0]
    assert finding.kind == "low_stock"
    assert finding.fingerprint == f"low_stock:item={item.id}:location={wh1.id}"
    assert finding.location_code == "WH1"
    assert finding.supplier_code == "DIGIKEY"
    assert finding.owner == "buyer-anna"
    assert finding.suggested_draft_kind == "purchase_order"
    assert finding.reason == (
        "R_10R at WH1 has 5 available, 0 on order and 0 in open drafts, at or below the reorder point of 10, "
        "so 50 should be ordered from DIGIKEY."
    )
    assert finding.evidence["available"] == "5"
    assert finding.evidence["target_level"] == "50"
    assert finding.evidence["need"] == "45"
    assert finding.evidence["suggested_quantity"] == "50"
    assert finding.evidence["packs"] == "5"
    assert finding.evidence["lead_time_days"] == 7
    assert finding.evidence["unit_price"] == "0.25"
    assert finding.evidence["as_of"] == "2026-03-10T11:30:00+00:00"


async def test_low_stock_location_filter_skips_other_locations(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        item = await add_item(session, workspace=workspace, sku="R1")
        wh1 = await add_location(session, workspace=workspace, code="WH1")
        wh2 = await add_location(session, workspace=workspace, code="WH2")
        await add_rule(session, item=item, location=wh1, reorder_point=D(10))
        await add_rule(session, item=item, location=wh2, reorder_point=D(10))
        await add_rule(session, item=item, location=None, reorder_point=D(10))

    async with database.read() as session:
        everywhere = await find_low_stock(session, workspace_id=workspace.id, now=NOW)
        at_wh2 = await find_low_stock(session, workspace_id=workspace.id, location_id=wh2.id, now=NOW)

    assert [finding.location_id for finding in everywhere] == [None, wh1.id, wh2.id]
    assert [finding.location_id for finding in at_wh2] == [wh2.id]


async def test_low_stock_workspace_wide_sums_every_location(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        item = await add_item(session, workspace=workspace, sku="R1")
        wh1 = await add_location(session, workspace=workspace, code="WH1")
        wh2 = await add_location(session, workspace=workspace, code="WH2")
        supplier = await add_supplier(session, workspace=workspace, code="MOUSER")
        await add_rule(session, item=item, location=None, reorder_point=D(30))
        await add_rule(session, item=item, location=wh1, reorder_point=D(5))
        await receive_stock(session, item=item, location=wh1, quantity=D(10))
        await receive_stock(session, item=item, location=wh2, quantity=D(15))
        order = await add_order(session, supplier=supplier, number="PO1")
        # No destination: counts for the workspace-wide rule only.
        await add_line(session, order=order, item=item, ordered=D(3))

    async with database.read() as session:
        findings = await find_low_stock(session, workspace_id=workspace.id, now=NOW)

    assert len(findings) == 1
    finding = findings[0]
    assert finding.fingerprint == f"low_stock:item={item.id}:location=*"
    assert finding.location_id is None
    assert finding.evidence["scope"] == "workspace"
    assert finding.evidence["on_hand"] == "25"
    assert finding.evidence["on_order"] == "3"
    assert finding.evidence["stock_position"] == "28"
    assert finding.evidence["target_level"] == "60"
    assert finding.evidence["target_source"] == "2 × reorder_point"
    assert finding.evidence["suggested_quantity"] == "32"
    assert finding.reason.startswith("R1 across all locations has 25 available, 3 on order")
    assert finding.evidence["notes"] == [
        "No supplier sells R1, so pack size and minimum order quantity are unknown."
    ]


async def test_only_active_reservations_reduce_available(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        item = await add_item(session, workspace=workspace, sku="R1")
        wh1 = await add_location(session, workspace=workspace, code="WH1")
        wh2 = await add_location(session, workspace=workspace, code="WH2")
        await add_rule(session, item=item, location=wh1, reorder_point=D(12), reorder_quantity=D(20))
        await receive_stock(session, item=item, location=wh1, quantity=D(20))
        for status, amount, location in (
            ("active", D(8), wh1),
            ("released", D(5), wh1),
            ("fulfilled", D(3), wh1),
            ("active", D(4), wh2),
        ):
            session.add(
                Reservation(
                    workspace_id=workspace.id, item_id=item.id, location_id=location.id, quantity=amount, status=status
                )
            )

    async with database.read() as session:
        findings = await find_low_stock(session, workspace_id=workspace.id, now=NOW)

    assert len(findings) == 1
    assert findings[0].evidence["on_hand"] == "20"
    assert findings[0].evidence["reserved"] == "8"
    assert findings[0].evidence["available"] == "12"
    assert findings[0].evidence["target_level"] == "32"
    assert findings[0].evidence["suggested_quantity"] == "20"


async def test_on_order_suppresses_low_stock(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        item = await add_item(session, workspace=workspace, sku="R1")
        wh1 = await add_location(session, workspace=workspace, code="WH1")
        wh2 = await add_location(session, workspace=workspace, code="WH2")
        supplier = await add_supplier(session, workspace=workspace, code="MOUSER")
        await add_rule(session, item=item, location=wh1, reorder_point=D(10))
        await receive_stock(session, item=item, location=wh1, quantity=D(5))
        issued = await add_order(session, supplier=supplier, number="PO1", status="issued")
        await add_line(session, order=issued, item=item, ordered=D(10), received=D(4), destination=wh1)
        # None of these is on order for WH1.
        for number, status, destination in (
            ("PO2", "draft", wh1),
            ("PO3", "cancelled", wh1),
            ("PO4", "received", wh1),
            ("PO5", "issued", wh2),
        ):
            order = await add_order(session, supplier=supplier, number=number, status=status)
            await add_line(session, order=order, item=item, ordered=D(100), destination=destination)

    async with database.read() as session:
        findings = await find_low_stock(session, workspace_id=workspace.id, now=NOW)

    # 5 available + 6 on order = 11 is above the reorder point of 10.
    assert findings == []


async def test_partly_covered_need_counts_on_order(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        item = await add_item(session, workspace=workspace, sku="R1")
        wh1 = await add_location(session, workspace=workspace, code="WH1")
        supplier = await add_supplier(session, workspace=workspace, code="MOUSER")
        await add_rule(session, item=item, location=wh1, reorder_point=D(10), max_level=D(40))
        await receive_stock(session, item=item, location=wh1, quantity=D(5))
        order = await add_order(session, supplier=supplier, number="PO1", status="partially_received")
        await add_line(session, order=order, item=item, ordered=D(10), received=D(7), destination=wh1)
        # Received beyond ordered: contributes nothing, never a negative on order.
        await add_line(session, order=order, item=item, ordered=D(10), received=D(12), line_no=2, destination=wh1)

    async with database.read() as session:
        findings = await find_low_stock(session, workspace_id=workspace.id, now=NOW)

    assert len(findings) == 1
    assert findings[0].evidence["on_order"] == "3"
    assert findings[0].evidence["stock_position"] == "8"
    assert findings[0].evidence["suggested_quantity"] == "32"


async def test_open_draft_suppresses_repeated_suggestion(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        item = await add_item(session, workspace=workspace, sku="R1")
        wh1 = await add_location(session, workspace=workspace, code="WH1")
        await add_rule(session, item=item, location=wh1, reorder_point=D(10), max_level=D(50))
        await receive_stock(session, item=item, location=wh1, quantity=D(5))

    async with database.read() as session:
        first = await find_low_stock(session, workspace_id=workspace.id, now=NOW)
    assert first[0].evidence["suggested_quantity"] == "45"

    async with database.write() as session:
        line = {"sku": "R1", "item_id": item.id, "quantity": "45", "location_code": "WH1"}
        await add_draft(session, workspace=workspace, lines=[line], status="rejected")
        await add_draft(session, workspace=workspace, lines=[line], status="executed")
    async with database.read() as session:
        after_closed_drafts = await find_low_stock(session, workspace_id=workspace.id, now=NOW)
    assert after_closed_drafts[0].evidence["in_open_drafts"] == "0"

    async with database.write() as session:
        draft = await add_draft(session, workspace=workspace, lines=[line])
    async with database.read() as session:
        after_open_draft = await find_low_stock(session, workspace_id=workspace.id, now=NOW)
    assert after_open_draft == []

    async with database.write() as session:
        await session.execute(update(Draft).where(Draft.id == draft.id).values(status="withdrawn"))
        # Matched by SKU alone, case and spaces ignored.
        await add_draft(
            session,
            workspace=workspace,
            lines=[{"sku": " r1 ", "quantity": "3", "location_code": "WH1"}],
            status="approved",
        )
    async with database.read() as session:
        partly_drafted = await find_low_stock(session, workspace_id=workspace.id, now=NOW)
    assert len(partly_drafted) == 1
    assert partly_drafted[0].evidence["in_open_drafts"] == "3"
    assert partly_drafted[0].evidence["stock_position"] == "8"
    assert partly_drafted[0].evidence["suggested_quantity"] == "42"
    assert len(partly_drafted[0].evidence["open_draft_ids"]) == 1


async def test_pack_rounding_orders_units_not_packs(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        item = await add_item(session, workspace=workspace, sku="R1")
        wh1 = await add_location(session, workspace=workspace, code="WH1")
        supplier = await add_supplier(session, workspace=workspace, code="DIGIKEY")
        await add_supplier_item(session, supplier=supplier, item=item, pack_size=D(10), min_order_qty=D(1))
        await add_rule(session, item=item, location=wh1, reorder_point=D(10), max_level=D(50))
        await receive_stock(session, item=item, location=wh1, quantity=D(10))

    async with database.read() as session:
        findings = await find_low_stock(session, workspace_id=workspace.id, now=NOW)

    assert findings[0].evidence["need"] == "40"
    assert findings[0].evidence["suggested_quantity"] == "40"
    assert findings[0].evidence["packs"] == "4"


async def test_moq_not_whole_packs_rounds_up_to_packs(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        item = await add_item(session, workspace=workspace, sku="R1")
        wh1 = await add_location(session, workspace=workspace, code="WH1")
        supplier = await add_supplier(session, workspace=workspace, code="DIGIKEY")
        await add_supplier_item(session, supplier=supplier, item=item, pack_size=D(10), min_order_qty=D(25))
        await add_rule(session, item=item, location=wh1, reorder_point=D(10), max_level=D(15))
        await receive_stock(session, item=item, location=wh1, quantity=D(10))

    async with database.read() as session:
        findings = await find_low_stock(session, workspace_id=workspace.id, now=NOW)

    assert findings[0].evidence["need"] == "5"
    assert findings[0].evidence["suggested_quantity"] == "30"
    assert findings[0].evidence["packs"] == "3"
    assert findings[0].evidence["notes"] == [
        "The minimum order quantity 25 is not a whole number of packs of 10; rounded up."
    ]


async def test_missing_pack_size_is_not_rounded_and_noted(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        item = await add_item(session, workspace=workspace, sku="R1")
        wh1 = await add_location(session, workspace=workspace, code="WH1")
        supplier = await add_supplier(session, workspace=workspace, code="DIGIKEY")
        await add_supplier_item(session, supplier=supplier, item=item, pack_size=None)
        await add_rule(session, item=item, location=wh1, reorder_point=D(10), reorder_quantity=D(30))
        await receive_stock(session, item=item, location=wh1, quantity=D(3))

    async with database.read() as session:
        findings = await find_low_stock(session, workspace_id=workspace.id, now=NOW)

    assert findings[0].evidence["target_level"] == "40"
    assert findings[0].evidence["suggested_quantity"] == "37"
    assert findings[0].evidence["pack_size"] is None
    assert findings[0].evidence["packs"] is None
    assert findings[0].evidence["notes"] == [
        "The supplier item has no pack size, so the quantity is not rounded to packs."
    ]


@pytest.mark.parametrize(
    ("need", "pack_size", "min_order_qty", "expected"),
    [
        (D(40), D(10), D(1), D(40)),
        (D(41), D(10), D(1), D(50)),
        (D(5), D(10), D(25), D(30)),
        (D(5), None, D(25), D(25)),
        (D("2.5"), D("0.5"), D(1), D("2.5")),
        (D(0), D(10), D(25), D(0)),
    ],
)
def test_suggest_order_quantity_rounding(
    need: Decimal, pack_size: Decimal | None, min_order_qty: Decimal, expected: Decimal
) -> None:
    suggestion = suggest_order_quantity(need=need, pack_size=pack_size, min_order_qty=min_order_qty)

    assert suggestion.quantity == expected


async def test_supplier_choice_lead_time_and_price(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        wh1 = await add_location(session, workspace=workspace, code="WH1")
        cheap = await add_supplier(session, workspace=workspace, code="CHEAP", lead_time_days=7, owner="sam")
        marked = await add_supplier(session, workspace=workspace, code="MARKED", lead_time_days=30)
        named = await add_supplier(session, workspace=workspace, code="NAMED", lead_time_days=21)
        by_flag = await add_item(session, workspace=workspace, sku="FLAG")
        by_rule = await add_item(session, workspace=workspace, sku="RULE")
        by_price = await add_item(session, workspace=workspace, sku="PRICE")
        for item in (by_flag, by_rule, by_price):
            await add_supplier_item(session, supplier=cheap, item=item, unit_price=D("0.10"))
            await add_supplier_item(session, supplier=named, item=item, unit_price=D("0.20"))
            await add_rule(
                session,
                item=item,
                location=wh1,
                reorder_point=D(10),
                preferred_supplier=named if item is by_rule else None,
            )
        await add_supplier_item(session, supplier=marked, item=by_flag, unit_price=D("0.30"), lead_time_days=3, preferred=True)

    async with database.read() as session:
        findings = {finding.sku: finding for finding in await find_low_stock(session, workspace_id=workspace.id, now=NOW)}

    assert findings["FLAG"].supplier_code == "MARKED"
    assert findings["FLAG"].evidence["supplier_choice"] == "preferred supplier item"
    assert findings["FLAG"].evidence["lead_time_days"] == 3
    assert findings["FLAG"].evidence["unit_price"] == "0.3"
    assert findings["RULE"].supplier_code == "NAMED"
    assert findings["RULE"].evidence["supplier_choice"] == "reorder rule"
    assert findings["RULE"].evidence["lead_time_days"] == 21
    assert findings["RULE"].evidence["unit_price"] == "0.2"
    assert findings["PRICE"].supplier_code == "CHEAP"
    assert findings["PRICE"].evidence["supplier_choice"] == "cheapest supplier item"
    assert findings["PRICE"].evidence["lead_time_days"] == 7
    assert findings["PRICE"].evidence["unit_price"] == "0.1"
    assert findings["PRICE"].owner == "sam"


async def test_low_stock_rejects_naive_now(database: Database) -> None:
    async with database.read() as session:
        with pytest.raises(InvalidInputError, match="has no timezone"):
            await find_low_stock(session, workspace_id=1, now=datetime(2026, 3, 10, 11, 30))


# --- supplier delays ----------------------------------------------------------


async def _late_line_setup(session: AsyncSession, *, timezone: str, expected: list[date]) -> Workspace:
    workspace = await add_workspace(session, name=timezone, timezone=timezone)
    item = await add_item(session, workspace=workspace, sku="R_10R")
    supplier = await add_supplier(session, workspace=workspace, code="DIGIKEY")
    order = await add_order(session, supplier=supplier, number="PO0001")
    for line_no, expected_date in enumerate(expected, start=1):
        await add_line(
            session, order=order, item=item, ordered=D(1000), line_no=line_no, expected_date=expected_date
        )
    return workspace


@pytest.mark.parametrize(
    ("now", "timezone", "expected_days_late"),
    [
        # 2026-03-10T11:30Z is 2026-03-11 00:30 in Auckland (UTC+13) but 04:30 on 03-10 in Los Angeles (UTC-7).
        (NOW, "Pacific/Auckland", {date(2026, 3, 1): 10, date(2026, 3, 9): 2, date(2026, 3, 10): 1}),
        (NOW, "America/Los_Angeles", {date(2026, 3, 1): 9, date(2026, 3, 9): 1}),
        # 2026-03-10T03:00Z is 16:00 on 03-10 in Auckland but 20:00 on 03-09 in Los Angeles.
        (datetime(2026, 3, 10, 3, 0, tzinfo=UTC), "Pacific/Auckland", {date(2026, 3, 9): 1, date(2026, 3, 1): 9}),
        (datetime(2026, 3, 10, 3, 0, tzinfo=UTC), "America/Los_Angeles", {date(2026, 3, 1): 8}),
    ],
)
async def test_supplier_delay_uses_workspace_business_date(
    database: Database, now: datetime, timezone: str, expected_days_late: dict[date, int]
) -> None:
    async with database.write() as session:
        workspace = await _late_line_setup(
            session, timezone=timezone, expected=[date(2026, 3, 1), date(2026, 3, 9), date(2026, 3, 10)]
        )

    async with database.read() as session:
        findings = await find_supplier_delays(session, workspace_id=workspace.id, timezone=timezone, now=now)

    days_late = {date.fromisoformat(finding.evidence["expected_date"]): finding.evidence["days_late"] for finding in findings}
    assert days_late == expected_days_late


async def test_supplier_delay_reason_and_fingerprint(database: Database) -> None:
    async with database.write() as session:
        workspace = await _late_line_setup(session, timezone="Pacific/Auckland", expected=[date(2021, 12, 10)])

    async with database.read() as session:
        findings = await find_supplier_delays(
            session, workspace_id=workspace.id, timezone="Pacific/Auckland", now=datetime(2024, 12, 2, 12, tzinfo=UTC)
        )

    assert len(findings) == 1
    finding = findings[0]
    assert finding.fingerprint == f"supplier_delay:po_line={finding.purchase_order_line_id}"
    assert finding.reason == (
        "PO0001 line 1 for R_10R (1000 ordered, 0 received) from DIGIKEY was expected 2021-12-10 and is 1089 days late."
    )
    assert finding.suggested_draft_kind == "supplier_note"
    assert finding.purchase_order_number == "PO0001"
    assert finding.evidence["today"] == "2024-12-03"
    assert finding.evidence["supplier_on_time_rate"] is None
    assert finding.evidence["supplier_received_lines"] == 0


async def test_partially_received_line_is_still_delayed(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session, timezone="Pacific/Auckland")
        item = await add_item(session, workspace=workspace, sku="R1")
        wh1 = await add_location(session, workspace=workspace, code="WH1")
        supplier = await add_supplier(session, workspace=workspace, code="DIGIKEY", owner="buyer-bo")
        order = await add_order(
            session, supplier=supplier, number="PO7", status="partially_received", expected_date=date(2026, 3, 1)
        )
        partial = await add_line(session, order=order, item=item, ordered=D(1000), received=D(400), destination=wh1)
        await add_receipt(session, line=partial, quantity=D(400), at=datetime(2026, 3, 2, 9, tzinfo=UTC))
        await add_line(session, order=order, item=item, ordered=D(50), received=D(50), line_no=2)

    async with database.read() as session:
        findings = await find_supplier_delays(session, workspace_id=workspace.id, timezone="Pacific/Auckland", now=NOW)

    assert len(findings) == 1
    finding = findings[0]
    assert finding.purchase_order_line_id == partial.id
    assert finding.location_code == "WH1"
    assert finding.owner == "buyer-bo"
    assert finding.evidence["days_late"] == 10
    assert finding.evidence["expected_date_source"] == "order"
    assert finding.evidence["quantity_outstanding"] == "600"
    assert finding.evidence["last_received_at"] == "2026-03-02T09:00:00+00:00"


async def test_supplier_on_time_rate_uses_business_dates(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session, timezone="Pacific/Auckland")
        item = await add_item(session, workspace=workspace, sku="R1")
        supplier = await add_supplier(session, workspace=workspace, code="DIGIKEY")
        done = await add_order(session, supplier=supplier, number="PO1", status="received")
        on_time = await add_line(
            session, order=done, item=item, ordered=D(10), received=D(10), expected_date=date(2026, 2, 1)
        )
        # 2026-02-01T10:00Z is still 2026-02-01 in Auckland (23:00).
        await add_receipt(session, line=on_time, quantity=D(10), at=datetime(2026, 2, 1, 10, tzinfo=UTC))
        late = await add_line(
            session, order=done, item=item, ordered=D(10), received=D(10), line_no=2, expected_date=date(2026, 2, 1)
        )
        # 2026-02-01T11:00Z is already 2026-02-02 in Auckland, although its UTC date is the expected one.
        await add_receipt(session, line=late, quantity=D(4), at=datetime(2026, 1, 30, tzinfo=UTC))
        await add_receipt(session, line=late, quantity=D(6), at=datetime(2026, 2, 1, 11, tzinfo=UTC))
        short = await add_line(
            session, order=done, item=item, ordered=D(10), received=D(5), line_no=3, expected_date=date(2026, 2, 1)
        )
        await add_receipt(session, line=short, quantity=D(5), at=datetime(2026, 1, 1, tzinfo=UTC))
        open_order = await add_order(session, supplier=supplier, number="PO2", expected_date=date(2026, 3, 1))
        await add_line(session, order=open_order, item=item, ordered=D(10))

    async with database.read() as session:
        findings = await find_supplier_delays(session, workspace_id=workspace.id, timezone="Pacific/Auckland", now=NOW)

    assert len(findings) == 1
    assert findings[0].evidence["supplier_received_lines"] == 2
    assert findings[0].evidence["supplier_on_time_lines"] == 1
    assert findings[0].evidence["supplier_on_time_rate"] == "0.5000"


@pytest.mark.parametrize(
    ("received_at", "on_time"),
    [
        # Berlin is UTC+1 until 2026-03-29 01:00Z and UTC+2 from then until 2026-10-25 01:00Z.
        (datetime(2026, 3, 28, 22, 30, tzinfo=UTC), True),  # 23:30 on 03-28 in Berlin
        (datetime(2026, 3, 28, 23, 30, tzinfo=UTC), False),  # 00:30 on 03-29
        (datetime(2026, 3, 29, 21, 30, tzinfo=UTC), True),  # 23:30 on 03-29 after the change
        (datetime(2026, 3, 29, 22, 30, tzinfo=UTC), False),  # 00:30 on 03-30
        (datetime(2026, 10, 25, 22, 30, tzinfo=UTC), True),  # 23:30 on 10-25 after the change back
        (datetime(2026, 10, 25, 23, 30, tzinfo=UTC), False),  # 00:30 on 10-26
    ],
)
async def test_on_time_rate_across_dst_changes(
    any_database: Database, received_at: datetime, on_time: bool
) -> None:
    expected = received_at.date()
    async with any_database.write() as session:
        workspace = await add_workspace(session, timezone="Europe/Berlin")
        item = await add_item(session, workspace=workspace, sku="R1")
        supplier = await add_supplier(session, workspace=workspace, code="DIGIKEY")
        done = await add_order(session, supplier=supplier, number="PO1", status="received")
        line = await add_line(session, order=done, item=item, ordered=D(10), received=D(10), expected_date=expected)
        await add_receipt(session, line=line, quantity=D(10), at=received_at)
        open_order = await add_order(session, supplier=supplier, number="PO2", expected_date=date(2026, 11, 1))
        await add_line(session, order=open_order, item=item, ordered=D(10))

    async with any_database.read() as session:
        findings = await find_supplier_delays(
            session, workspace_id=workspace.id, timezone="Europe/Berlin", now=datetime(2026, 12, 1, tzinfo=UTC)
        )
        records = await supplier_on_time_records(
            session, workspace_id=workspace.id, supplier_ids={supplier.id}, timezone="Europe/Berlin"
        )

    assert len(findings) == 1
    assert findings[0].evidence["supplier_received_lines"] == 1
    assert findings[0].evidence["supplier_on_time_lines"] == (1 if on_time else 0)
    assert findings[0].evidence["supplier_on_time_rate"] == ("1.0000" if on_time else "0.0000")
    assert records == {supplier.id: OnTimeRecord(on_time_lines=1 if on_time else 0, received_lines=1)}


async def test_supplier_delay_rejects_unknown_timezone(database: Database) -> None:
    async with database.read() as session:
        with pytest.raises(InvalidInputError, match="'Mars/Olympus' is not an IANA timezone"):
            await find_supplier_delays(session, workspace_id=1, timezone="Mars/Olympus", now=NOW)


# --- receiving variances ------------------------------------------------------


async def test_short_and_over_receiving_against_tolerances(database: Database) -> None:
    received_quantities = {
        1: D(95),  # exactly 5 % short: at the boundary, not a finding
        2: D("94.999999"),  # just beyond 5 % short
        3: D(110),  # exactly 10 % over: at the boundary
        4: D("110.000001"),  # just beyond 10 % over
        5: D(100),
        6: D(0),
    }
    async with database.write() as session:
        workspace = await add_workspace(session)
        item = await add_item(session, workspace=workspace, sku="R1", owner="")
        supplier = await add_supplier(session, workspace=workspace, code="DIGIKEY")
        received = await add_order(session, supplier=supplier, number="PO1", status="received", owner="po-owner")
        lines = {
            line_no: await add_line(session, order=received, item=item, ordered=D(100), received=amount, line_no=line_no)
            for line_no, amount in received_quantities.items()
            if line_no != 6
        }
        closed = await add_order(session, supplier=supplier, number="PO2", status="closed")
        lines[6] = await add_line(session, order=closed, item=item, ordered=D(100), received=D(0), line_no=6)
        # Lines of an open PO are still receiving: never a receiving variance.
        still_open = await add_order(session, supplier=supplier, number="PO3", status="partially_received")
        await add_line(session, order=still_open, item=item, ordered=D(100), received=D(10))

    async with database.read() as session:
        findings = await find_receiving_variances(
            session, workspace_id=workspace.id, short_pct=D(5), over_pct=D(10)
        )

    by_line = {finding.purchase_order_line_id: finding for finding in findings}
    assert set(by_line) == {lines[2].id, lines[4].id, lines[6].id}
    assert by_line[lines[2].id].evidence["direction"] == "short"
    assert by_line[lines[2].id].fingerprint == f"short_receiving:po_line={lines[2].id}"
    assert by_line[lines[4].id].evidence["direction"] == "over"
    assert by_line[lines[4].id].fingerprint == f"over_receiving:po_line={lines[4].id}"
    assert by_line[lines[4].id].kind == "short_receiving"
    assert by_line[lines[2].id].owner == "po-owner"
    assert by_line[lines[6].id].reason == (
        "PO2 line 6 for R1 from DIGIKEY was received short: 0 of 100 ordered (-100), beyond the 5% tolerance."
    )


async def test_fractional_tolerance_boundary(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        item = await add_item(session, workspace=workspace, sku="R1")
        supplier = await add_supplier(session, workspace=workspace, code="DIGIKEY")
        order = await add_order(session, supplier=supplier, number="PO1", status="received")
        boundary = await add_line(session, order=order, item=item, ordered=D(200), received=D(195))
        beyond = await add_line(session, order=order, item=item, ordered=D(200), received=D("194.999"), line_no=2)

    async with database.read() as session:
        findings = await find_receiving_variances(
            session, workspace_id=workspace.id, short_pct=D("2.5"), over_pct=D(0)
        )

    assert [finding.purchase_order_line_id for finding in findings] == [beyond.id]
    assert boundary.id != beyond.id


# --- count drift --------------------------------------------------------------


async def test_count_drift_keeps_snapshot_variance(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        item = await add_item(session, workspace=workspace, sku="R1")
        wh1 = await add_location(session, workspace=workspace, code="WH1", owner="lead-wh1")
        await receive_stock(session, item=item, location=wh1, quantity=D(100))
        await add_count(session, item=item, location=wh1, counted=D(90), system=D(100), at=datetime(2026, 3, 1, 8, tzinfo=UTC))
        await receive_stock(session, item=item, location=wh1, quantity=D(30))

    async with database.read() as session:
        findings = await find_count_drift(
            session, workspace_id=workspace.id, abs_tol=D(5), pct_tol=D(5), value_tol=None, repeat=0
        )

    assert len(findings) == 1
    finding = findings[0]
    assert finding.fingerprint == f"count_drift:item={item.id}:location={wh1.id}"
    assert finding.suggested_draft_kind == "count_task"
    assert finding.owner == "lead-wh1"
    assert finding.evidence["variance"] == "-10"
    assert finding.evidence["system_quantity"] == "100"
    assert finding.evidence["triggers"] == ["tolerance"]
    assert finding.evidence["recent_counts"] == [
        {
            "count_id": finding.evidence["count_id"],
            "counted_quantity": "90",
            "system_quantity": "100",
            "variance": "-10",
            "counted_at": "2026-03-01T08:00:00+00:00",
            "bin_id": None,
            "actor": "counter",
            "task_id": None,
        }
    ]
    assert finding.reason == (
        "R1 at WH1 was last counted at 90 against a system quantity of 100 (variance -10) "
        "at 2026-03-01T08:00:00+00:00, beyond the tolerance of 5 units and 5%."
    )


@pytest.mark.parametrize(
    ("counted", "system", "unit_cost", "value_tol", "expected_triggers"),
    [
        (D(94), D(100), D(1), None, ["tolerance"]),
        (D(95), D(100), D(1), None, None),  # |5| is not above abs_tol 5
        (D(994), D(1000), D(1), None, None),  # |6| > 5 but not above 1 % of 1000
        (D(989), D(1000), D(1), None, ["tolerance"]),  # |11| > 5 and > 10
        (D(98), D(100), D(30), D(50), ["value"]),  # 2 × 30 = 60 > 50
        (D(98), D(100), D(25), D(50), None),  # 2 × 25 = 50 is not above 50
        (D(3), D(0), D(1), None, None),  # |3| is within abs_tol although the snapshot was 0
        (D(6), D(0), D(1), None, ["tolerance"]),
    ],
)
async def test_count_drift_tolerances(
    database: Database,
    counted: Decimal,
    system: Decimal,
    unit_cost: Decimal,
    value_tol: Decimal | None,
    expected_triggers: list[str] | None,
) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        item = await add_item(session, workspace=workspace, sku="R1", unit_cost=unit_cost)
        wh1 = await add_location(session, workspace=workspace, code="WH1")
        await add_count(session, item=item, location=wh1, counted=counted, system=system, at=NOW)

    async with database.read() as session:
        findings = await find_count_drift(
            session, workspace_id=workspace.id, abs_tol=D(5), pct_tol=D(1), value_tol=value_tol, repeat=0
        )

    triggers = findings[0].evidence["triggers"] if findings else None
    assert triggers == expected_triggers


async def test_repeated_drift_in_one_direction(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        item = await add_item(session, workspace=workspace, sku="R1")
        wh1 = await add_location(session, workspace=workspace, code="WH1")
        wh2 = await add_location(session, workspace=workspace, code="WH2")
        start = datetime(2026, 1, 1, tzinfo=UTC)
        # WH1: an old exact count, then six counts each one or two short.
        wh1_variances = [D(0), D(-1), D(-2), D(-1), D(-1), D(-2), D(-1)]
        for day, variance in enumerate(wh1_variances):
            await add_count(session, item=item, location=wh1, counted=50 + variance, system=D(50), at=start + timedelta(days=day))
        # WH2: small variances that change direction.
        for day, variance in enumerate([D(-1), D(1), D(-1)]):
            await add_count(session, item=item, location=wh2, counted=50 + variance, system=D(50), at=start + timedelta(days=day))

    async with database.read() as session:
        findings = await find_count_drift(
            session, workspace_id=workspace.id, abs_tol=D(5), pct_tol=D(5), value_tol=None, repeat=3
        )

    assert len(findings) == 1
    finding = findings[0]
    assert finding.location_id == wh1.id
    assert finding.evidence["triggers"] == ["repeated"]
    assert finding.evidence["repeated_direction"] == "under"
    assert [count["variance"] for count in finding.evidence["recent_counts"]] == ["-1", "-2", "-1", "-1", "-2"]
    assert finding.reason.endswith("after 3 counts in a row under the system quantity.")


async def test_count_drift_rejects_repeat_of_one(database: Database) -> None:
    async with database.read() as session:
        with pytest.raises(InvalidInputError, match="repeat=1 is invalid"):
            await find_count_drift(session, workspace_id=1, abs_tol=D(5), pct_tol=D(5), value_tol=None, repeat=1)


# --- conversions --------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [0, 1, -1, 1_000_000, -1_000_000, 1_500_000, -500_000, 100_000_000, 123_456_789, 2**63 - 1, -(2**63 - 1)],
)
def test_quantity_matches_from_scaled(raw: int) -> None:
    assert quantity(raw).as_tuple() == from_scaled(raw).as_tuple()
    assert scaled_text(raw) == str(from_scaled(raw))
    assert QuantityMemo()[raw].as_tuple() == from_scaled(raw).as_tuple()


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("2026-03-02 09:00:00.000000", "2026-03-02T09:00:00+00:00"),
        ("2026-03-02 09:00:00.250000", "2026-03-02T09:00:00.250000+00:00"),
        (datetime(2026, 3, 2, 9, 0, 0, 250000), "2026-03-02T09:00:00.250000+00:00"),
        ("2026-03-02T09:00:00", "2026-03-02T09:00:00+00:00"),
    ],
)
def test_utc_text_matches_isoformat(stored: datetime | str, expected: str) -> None:
    assert utc_text(stored) == expected


def test_build_finding_rejects_missing_field() -> None:
    with pytest.raises(ValueError, match="owner"):
        build_finding({"kind": "low_stock", "fingerprint": "x", "reason": "r", "suggested_draft_kind": "purchase_order", "evidence": {}})


# --- persistence --------------------------------------------------------------


async def _low_stock_workspace(database: Database) -> tuple[Workspace, Item, Location]:
    async with database.write() as session:
        workspace = await add_workspace(session)
        item = await add_item(session, workspace=workspace, sku="R1", owner="buyer-anna")
        wh1 = await add_location(session, workspace=workspace, code="WH1")
        await add_rule(session, item=item, location=wh1, reorder_point=D(10))
        await receive_stock(session, item=item, location=wh1, quantity=D(5))
    return workspace, item, wh1


async def _refresh_low_stock(database: Database, *, workspace: Workspace, now: datetime) -> Any:
    async with database.write() as session:
        findings = await find_low_stock(session, workspace_id=workspace.id, now=now)
        return await refresh_exceptions(session, workspace_id=workspace.id, kind="low_stock", findings=findings, now=now)


async def test_refresh_twice_creates_no_duplicate(database: Database) -> None:
    workspace, _, _ = await _low_stock_workspace(database)

    first = await _refresh_low_stock(database, workspace=workspace, now=NOW)
    later = NOW + timedelta(hours=1)
    async with database.write() as session:
        item = (await session.execute(update(Item).values(owner="buyer-bo").returning(Item.id))).scalar_one()
    second = await _refresh_low_stock(database, workspace=workspace, now=later)

    assert len(first.opened) == 1
    assert second.opened == ()
    assert second.updated == first.opened
    assert second.resolved == ()
    async with database.read() as session:
        records = await list_exceptions(session, workspace_id=workspace.id, statuses=None)
    assert [record.id for record in records] == list(first.opened)
    assert records[0].status == "open"
    assert records[0].first_seen == NOW
    assert records[0].last_seen == later
    assert records[0].owner == "buyer-bo"
    assert records[0].item_id == item
    assert records[0].version == 2


async def test_scoped_refresh_moves_last_seen_in_scope_only(database: Database) -> None:
    workspace, item, _ = await _low_stock_workspace(database)
    [record_id] = (await _refresh_low_stock(database, workspace=workspace, now=NOW)).opened

    async def rerun(item_ids: set[int], now: datetime) -> Any:
        async with database.write() as session:
            findings = await find_low_stock(session, workspace_id=workspace.id, now=now, item_ids=item_ids)
            return await refresh_exceptions(
                session, workspace_id=workspace.id, kind="low_stock", findings=findings, now=now,
                scope=RecordScope("item_id", frozenset(item_ids)),
            )

    later = NOW + timedelta(hours=1)
    in_scope = await rerun({item.id}, later)  # type: ignore[arg-type]
    out_of_scope = await rerun({item.id + 1000}, later + timedelta(hours=1))  # type: ignore[operator]

    async with database.read() as session:
        [record] = await list_exceptions(session, workspace_id=workspace.id, statuses=None)
    assert (in_scope.opened, in_scope.updated, in_scope.resolved) == ((), (), ())
    assert (out_of_scope.opened, out_of_scope.updated, out_of_scope.resolved) == ((), (), ())
    assert record.id == record_id
    assert record.last_seen == later
    assert record.version == 1


async def test_deferred_last_seen_move_by_range(database: Database, monkeypatch) -> None:
    # A whole refresh can leave its last_seen move to the caller, who runs it after the commit.
    # The move runs one id range at a time, so the write lock is released in between.
    monkeypatch.setattr(records_module, "_SEEN_AGAIN_PER_STATEMENT", 2)
    async with database.write() as session:
        workspace = await add_workspace(session)
        wh1 = await add_location(session, workspace=workspace, code="WH1")
        for number in range(5):
            item = await add_item(session, workspace=workspace, sku=f"R{number}")
            await add_rule(session, item=item, location=wh1, reorder_point=D(10))
    opened = (await _refresh_low_stock(database, workspace=workspace, now=NOW)).opened
    later = NOW + timedelta(hours=1)

    async with database.write() as session:
        findings = await find_low_stock(session, workspace_id=workspace.id, now=later)
        plan = await plan_refresh(session, workspace_id=workspace.id, kind="low_stock", findings=findings)
        result = await apply_refresh(session, plan, now=later, defer_seen_again=True)
    assert result.seen_again is not None
    assert result.seen_again.ranges == ((opened[0], opened[1]), (opened[2], opened[3]), (opened[4], opened[4]))
    async with database.read() as session:
        before = await list_exceptions(session, workspace_id=workspace.id, statuses=None)
    assert {record.last_seen for record in before} == {NOW}

    # Meanwhile one record is dismissed and a later rerun confirms another.
    async with database.write() as session:
        await session.execute(update(ExceptionRecord).where(ExceptionRecord.id == opened[1]).values(status="dismissed"))
        await session.execute(
            update(ExceptionRecord).where(ExceptionRecord.id == opened[3]).values(last_seen=later + timedelta(hours=1))
        )
    for statement in result.seen_again.statements():
        async with database.write() as session:
            await session.execute(statement)

    async with database.read() as session:
        after = {record.id: record.last_seen for record in await list_exceptions(session, workspace_id=workspace.id, statuses=None)}
    assert after == {
        opened[0]: later, opened[1]: NOW, opened[2]: later, opened[3]: later + timedelta(hours=1), opened[4]: later,
    }


async def test_refresh_keeps_later_opened_record(database: Database) -> None:
    # A sync batch may open a record for a fingerprint between a plan's snapshot and its write.
    workspace, _, _ = await _low_stock_workspace(database)
    async with database.read() as session:
        findings = await find_low_stock(session, workspace_id=workspace.id, now=NOW)
        plan = await plan_refresh(session, workspace_id=workspace.id, kind="low_stock", findings=findings)
    assert [finding.fingerprint for finding in plan.inserts] == [findings[0].fingerprint]

    async with database.write() as session:
        _, opened_elsewhere, _ = await upsert_findings(session, workspace_id=workspace.id, findings=findings, now=NOW)
    async with database.write() as session:
        result = await apply_refresh(session, plan, now=NOW + timedelta(minutes=1))

    async with database.read() as session:
        records = await list_exceptions(session, workspace_id=workspace.id, statuses=None)
    assert [record.id for record in records] == opened_elsewhere
    assert result.opened == ()
    assert result.ids_by_fingerprint == {findings[0].fingerprint: opened_elsewhere[0]}


async def test_resolved_problem_that_recurs_opens_new_record(database: Database) -> None:
    workspace, item, wh1 = await _low_stock_workspace(database)
    first = await _refresh_low_stock(database, workspace=workspace, now=NOW)

    async with database.write() as session:
        await receive_stock(session, item=item, location=wh1, quantity=D(50))
    resolved_at = NOW + timedelta(days=1)
    cleared = await _refresh_low_stock(database, workspace=workspace, now=resolved_at)

    async with database.write() as session:
        await record_movement(
            session,
            workspace_id=workspace.id,
            item_id=item.id,
            kind="shipment",
            quantity=D(50),
            source=Place(wh1.id),
            actor="test",
        )
    recurred = await _refresh_low_stock(database, workspace=workspace, now=NOW + timedelta(days=2))

    assert cleared.resolved == first.opened
    assert len(recurred.opened) == 1
    assert recurred.opened != first.opened
    async with database.read() as session:
        old = await get_exception(session, workspace_id=workspace.id, exception_id=first.opened[0])
        live = await list_exceptions(session, workspace_id=workspace.id)
    assert old.status == "resolved"
    assert old.resolved_at == resolved_at
    assert [record.id for record in live] == list(recurred.opened)


async def test_dismissed_record_is_never_reopened(database: Database) -> None:
    workspace, _, _ = await _low_stock_workspace(database)
    first = await _refresh_low_stock(database, workspace=workspace, now=NOW)
    async with database.write() as session:
        await session.execute(
            update(ExceptionRecord)
            .where(ExceptionRecord.id == first.opened[0])
            .values(status="dismissed", dismissed_reason="Phasing out")
        )

    again = await _refresh_low_stock(database, workspace=workspace, now=NOW + timedelta(hours=1))

    assert len(again.opened) == 1
    assert again.opened != first.opened
    async with database.read() as session:
        dismissed = await get_exception(session, workspace_id=workspace.id, exception_id=first.opened[0])
    assert dismissed.status == "dismissed"
    assert dismissed.last_seen == NOW


async def test_drafted_record_stays_drafted_on_refresh(database: Database) -> None:
    workspace, item, wh1 = await _low_stock_workspace(database)
    first = await _refresh_low_stock(database, workspace=workspace, now=NOW)
    async with database.write() as session:
        await session.execute(
            update(ExceptionRecord).where(ExceptionRecord.id == first.opened[0]).values(status="drafted")
        )

    again = await _refresh_low_stock(database, workspace=workspace, now=NOW + timedelta(hours=1))

    assert again.updated == first.opened
    assert again.ids_by_fingerprint == {f"low_stock:item={item.id}:location={wh1.id}": first.opened[0]}
    async with database.read() as session:
        record = await get_exception(session, workspace_id=workspace.id, exception_id=first.opened[0])
    assert record.status == "drafted"


async def test_refresh_leaves_other_kinds_alone(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        drift = await refresh_exceptions(
            session, workspace_id=workspace.id, kind="count_drift", findings=[synthetic_finding(1)], now=NOW
        )
        low = await refresh_exceptions(session, workspace_id=workspace.id, kind="low_stock", findings=[], now=NOW)

    assert low.resolved == ()
    async with database.read() as session:
        record = await get_exception(session, workspace_id=workspace.id, exception_id=drift.opened[0])
    assert record.status == "open"


async def test_refresh_rejects_finding_of_other_kind(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        with pytest.raises(InvalidInputError, match="of kind 'count_drift'"):
            await refresh_exceptions(
                session, workspace_id=workspace.id, kind="low_stock", findings=[synthetic_finding(1)], now=NOW
            )


async def test_pagination_has_no_gaps_when_rows_arrive(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        await refresh_exceptions(
            session,
            workspace_id=workspace.id,
            kind="count_drift",
            findings=[synthetic_finding(number) for number in range(5)],
            now=NOW,
        )

    seen: list[int] = []
    after_id: int | None = None
    for page_number in range(10):
        async with database.read() as session:
            page = await list_exceptions(session, workspace_id=workspace.id, after_id=after_id, limit=2)
        if not page:
            break
        seen.extend(record.id for record in page)
        after_id = page[-1].id
        if page_number == 0:
            async with database.write() as session:
                await refresh_exceptions(
                    session,
                    workspace_id=workspace.id,
                    kind="count_drift",
                    findings=[synthetic_finding(number) for number in range(7)],
                    now=NOW,
                )

    async with database.read() as session:
        every = await list_exceptions(session, workspace_id=workspace.id, limit=100)
    assert len(seen) == 7
    assert len(set(seen)) == 7
    assert seen == [record.id for record in every]


async def test_list_exceptions_filters(database: Database) -> None:
    async with database.write() as session:
        workspace = await add_workspace(session)
        wh1 = await add_location(session, workspace=workspace, code="WH1")
        supplier = await add_supplier(session, workspace=workspace, code="DIGIKEY")
        located = Finding(
            kind="supplier_delay",
            fingerprint="supplier_delay:po_line=1",
            reason="Late.",
            suggested_draft_kind="supplier_note",
            location_id=wh1.id,
            supplier_id=supplier.id,
            owner="buyer-bo",
        )
        await refresh_exceptions(session, workspace_id=workspace.id, kind="supplier_delay", findings=[located], now=NOW)
        await refresh_exceptions(
            session, workspace_id=workspace.id, kind="count_drift", findings=[synthetic_finding(1)], now=NOW
        )

    async with database.read() as session:
        by_kind = await list_exceptions(session, workspace_id=workspace.id, kinds=["count_drift"])
        by_location = await list_exceptions(session, workspace_id=workspace.id, location_id=wh1.id)
        by_supplier = await list_exceptions(session, workspace_id=workspace.id, supplier_id=supplier.id)
        by_owner = await list_exceptions(session, workspace_id=workspace.id, owner="buyer-bo")
        resolved = await list_exceptions(session, workspace_id=workspace.id, statuses=["resolved"])

    assert [record.kind for record in by_kind] == ["count_drift"]
    assert [record.fingerprint for record in by_location] == ["supplier_delay:po_line=1"]
    assert [record.fingerprint for record in by_supplier] == ["supplier_delay:po_line=1"]
    assert [record.fingerprint for record in by_owner] == ["supplier_delay:po_line=1"]
    assert resolved == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"kinds": ["late"]}, "kinds 'late' is unknown"),
        ({"statuses": []}, "statuses is empty"),
        ({"limit": 0}, "limit=0 is invalid"),
        ({"limit": 501}, "limit=501 is invalid"),
    ],
)
async def test_list_exceptions_rejects_bad_filters(database: Database, arguments: dict[str, Any], message: str) -> None:
    async with database.read() as session:
        with pytest.raises(InvalidInputError, match=message):
            await list_exceptions(session, workspace_id=1, **arguments)


async def test_get_exception_names_missing_id(database: Database) -> None:
    async with database.write() as session:
        home = await add_workspace(session, name="home")
        other = await add_workspace(session, name="other")
        result = await refresh_exceptions(
            session, workspace_id=home.id, kind="count_drift", findings=[synthetic_finding(1)], now=NOW
        )

    async with database.read() as session:
        with pytest.raises(NotFoundError, match=f"Exception {result.opened[0]} does not exist in this workspace"):
            await get_exception(session, workspace_id=other.id, exception_id=result.opened[0])

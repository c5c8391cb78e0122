"""Tests for the InvenTree importer.

Expected figures are computed from the export with plain Python here, not with the
importer's helpers, so a wrong mapping rule cannot confirm itself.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from store.db import Database, open_database
from store.errors import InvalidInputError
from store.importers.inventree import ImportSummary, import_inventree
from store.models import (
    OPEN_PO_STATUSES,
    Bin,
    CountResult,
    Item,
    Location,
    PurchaseOrder,
    PurchaseOrderLine,
    ReceivingEvent,
    ReorderRule,
    Reservation,
    StockLevel,
    Supplier,
    SupplierItem,
    SupplierPriceBreak,
)
from store.stock import verify_ledger
from store.workspaces import create_workspace
from tests.conftest import (
    INVENTREE_DEMO,
    copy_database,
    drop_database,
    new_database_location,
)

if not INVENTREE_DEMO.exists():
    pytest.skip(f"the InvenTree demo export is not at {INVENTREE_DEMO}", allow_module_level=True)

# InvenTree StockStatusGroups.AVAILABLE_CODES and the open purchase order statuses (placed, on hold).
AVAILABLE_STOCK_STATUSES = {10, 50, 55, 85}
OPEN_INVENTREE_PO_STATUSES = {20, 25}


def _demo_records() -> dict[str, dict[Any, dict[str, Any]]]:
    records: dict[str, dict[Any, dict[str, Any]]] = defaultdict(dict)
    for entry in json.loads(INVENTREE_DEMO.read_text(encoding="utf-8")):
        records[entry["model"]][entry["pk"]] = entry["fields"]
    return records


DEMO = _demo_records()


def _ref(model: str, pk: Any) -> str:
    return f"inventree:{model}:{pk}"


def _in_stock(stock_item: dict[str, Any]) -> bool:
    return (
        Decimal(stock_item["quantity"]) > 0
        and stock_item["sales_order"] is None
        and stock_item["belongs_to"] is None
        and stock_item["customer"] is None
        and stock_item["consumed_by"] is None
        and not stock_item["is_building"]
        and stock_item["status"] in AVAILABLE_STOCK_STATUSES
    )


async def _row_counts(session: AsyncSession) -> dict[str, int]:
    counts = {}
    for table in SQLModel.metadata.sorted_tables:
        counts[table.name] = (await session.execute(select(func.count()).select_from(table))).scalar_one()
    return counts


@dataclass(frozen=True)
class DemoImport:
    """A database with the demo export imported once per module, copied for each test."""

    location: str
    workspace_id: int
    summary: ImportSummary


@dataclass(frozen=True)
class ImportedDemo:
    """A test's own database with the demo export imported."""

    database: Database
    workspace_id: int
    summary: ImportSummary


async def _import_demo_into(location: str) -> DemoImport:
    database = await open_database(location)
    try:
        async with database.write() as session:
            workspace = await create_workspace(session, name="demo", base_currency="USD")
            summary = await import_inventree(session, workspace_id=workspace.id, path=INVENTREE_DEMO, actor="importer")
            workspace_id = workspace.id
    finally:
        await database.dispose()
    return DemoImport(location=location, workspace_id=workspace_id, summary=summary)


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoImport]:
    # The full import takes a few seconds, so it runs once per module and each test reads a copy.
    location = new_database_location(tmp_path_factory.mktemp("inventree"), "demo.db", outlives_test=True)
    yield asyncio.run(_import_demo_into(location))
    drop_database(location)


@pytest.fixture
async def demo(demo_template: DemoImport, tmp_path: Path) -> AsyncIterator[ImportedDemo]:
    """A copy of the imported demo database for one test."""
    location = copy_database(demo_template.location, tmp_path)
    database = await open_database(location)
    try:
        yield ImportedDemo(database=database, workspace_id=demo_template.workspace_id, summary=demo_template.summary)
    finally:
        await database.dispose()
        drop_database(location)


async def test_demo_import_counts_match_export(demo: ImportedDemo) -> None:
    parts = DEMO["part.part"]
    top_locations = [pk for pk, location in DEMO["stock.stocklocation"].items() if location["parent"] is None]
    suppliers = [pk for pk, company in DEMO["company.company"].items() if company["is_supplier"]]

    async with demo.database.read() as session:
        items = (await session.execute(select(func.count()).select_from(Item))).scalar_one()
        locations = (await session.execute(select(func.count()).select_from(Location))).scalar_one()
        supplier_rows = (await session.execute(select(func.count()).select_from(Supplier))).scalar_one()

    assert items == len(parts) == 414
    assert locations == len(top_locations)
    assert supplier_rows == len(suppliers)
    assert demo.summary.items.imported == len(parts)
    assert demo.summary.suppliers.imported == len(suppliers)
    assert len(demo.summary.suppliers.skipped) == len(DEMO["company.company"]) - len(suppliers)


async def test_open_po_lines_match_placed_orders(demo: ImportedDemo) -> None:
    open_orders = {
        pk for pk, order in DEMO["order.purchaseorder"].items() if order["status"] in OPEN_INVENTREE_PO_STATUSES
    }
    expected = [pk for pk, line in DEMO["order.purchaseorderlineitem"].items() if line["order"] in open_orders]

    async with demo.database.read() as session:
        rows = (
            await session.execute(
                select(PurchaseOrderLine.external_ref)
                .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
                .where(PurchaseOrder.status.in_(OPEN_PO_STATUSES))
            )
        ).scalars()
        refs = set(rows)

    assert refs == {_ref("order.purchaseorderlineitem", pk) for pk in expected}
    assert len(refs) == 7


async def test_on_hand_per_part_matches_in_stock_items(demo: ImportedDemo) -> None:
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for stock_item in DEMO["stock.stockitem"].values():
        if _in_stock(stock_item) and stock_item["location"] is not None:
            expected[_ref("part.part", stock_item["part"])] += Decimal(stock_item["quantity"])

    async with demo.database.read() as session:
        rows = (
            await session.execute(
                select(Item.external_ref, func.sum(StockLevel.__table__.c.on_hand))
                .join(StockLevel, StockLevel.item_id == Item.id)
                .group_by(Item.external_ref)
            )
        ).all()
    on_hand = {ref: total for ref, total in rows if total}

    assert on_hand == dict(expected)


async def test_stock_that_left_inventree_is_skipped(demo: ImportedDemo) -> None:
    stock_items = DEMO["stock.stockitem"]
    left_stock = [pk for pk, item in stock_items.items() if not _in_stock(item)]
    no_location = [pk for pk, item in stock_items.items() if _in_stock(item) and item["location"] is None]
    skipped = {record.pk: record.reason for record in demo.summary.stock.skipped}

    assert demo.summary.stock.imported == len(stock_items) - len(left_stock) - len(no_location)
    assert set(skipped) == set(left_stock) | set(no_location)
    assert all(skipped[pk] == "the stock item has no location" for pk in no_location)
    assert skipped[1012] == "shipped against a sales order"
    assert any(reason.startswith("status 65 (Rejected)") for reason in skipped.values())


async def test_ledger_verifies_after_import(demo: ImportedDemo) -> None:
    async with demo.database.read() as session:
        checked, mismatches = await verify_ledger(session, workspace_id=demo.workspace_id)

    assert checked > 0
    assert mismatches == []


async def test_second_run_writes_nothing(demo: ImportedDemo) -> None:
    async with demo.database.write() as session:
        before = await _row_counts(session)
        summary = await import_inventree(session, workspace_id=demo.workspace_id, path=INVENTREE_DEMO, actor="importer")
        after = await _row_counts(session)

    assert after == before
    for kind, tally in summary.tallies():
        first = getattr(demo.summary, kind)
        assert tally.imported == 0, kind
        assert tally.already_present == first.imported, kind
        assert len(tally.skipped) == len(first.skipped), kind


async def test_po0001_is_issued_and_unreceived(demo: ImportedDemo) -> None:
    async with demo.database.read() as session:
        order = (await session.execute(select(PurchaseOrder).where(PurchaseOrder.number == "PO0001"))).scalar_one()
        lines = (
            (await session.execute(select(PurchaseOrderLine).where(PurchaseOrderLine.purchase_order_id == order.id)))
            .scalars()
            .all()
        )
        receipts = (
            await session.execute(
                select(func.count())
                .select_from(ReceivingEvent)
                .where(ReceivingEvent.purchase_order_line_id.in_([line.id for line in lines]))
            )
        ).scalar_one()

    assert order.status == "issued"
    assert order.expected_date == date(2021, 12, 10)
    assert order.issued_at == datetime(2021, 11, 26, tzinfo=UTC)
    assert order.owner == "engineering"
    assert len(lines) == 3
    assert all(line.quantity_received == 0 for line in lines)
    assert receipts == 0


async def test_partially_received_lines_keep_both_quantities(demo: ImportedDemo) -> None:
    supplier_parts = DEMO["company.supplierpart"]
    partial = {
        pk: line
        for pk, line in DEMO["order.purchaseorderlineitem"].items()
        if 0 < Decimal(line["received"]) < Decimal(line["quantity"])
    }

    async with demo.database.read() as session:
        rows = (
            await session.execute(
                select(PurchaseOrderLine, PurchaseOrder.status)
                .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
                .where(PurchaseOrderLine.external_ref.in_([_ref("order.purchaseorderlineitem", pk) for pk in partial]))
            )
        ).all()
        receipts = {
            event.purchase_order_line_id: event.quantity
            for event in (await session.execute(select(ReceivingEvent))).scalars()
        }

    assert len(rows) == len(partial) == 2
    for line, status in rows:
        source = partial[int(line.external_ref.rsplit(":", 1)[1])]
        pack = Decimal(supplier_parts[source["part"]]["pack_quantity_native"])
        assert line.quantity_ordered == Decimal(source["quantity"]) * pack
        assert line.quantity_received == Decimal(source["received"]) * pack
        assert receipts[line.id] == line.quantity_received
        assert status == "partially_received"


async def test_pack_quantities_convert_to_stock_units(demo: ImportedDemo) -> None:
    async with demo.database.read() as session:
        reel = (
            await session.execute(
                select(SupplierItem).where(SupplierItem.external_ref == _ref("company.supplierpart", 1019))
            )
        ).scalar_one()
        reel_break = (
            await session.execute(select(SupplierPriceBreak).where(SupplierPriceBreak.supplier_item_id == reel.id))
        ).scalar_one()
        paint_line = (
            await session.execute(
                select(PurchaseOrderLine).where(
                    PurchaseOrderLine.external_ref == _ref("order.purchaseorderlineitem", 13)
                )
            )
        ).scalar_one()

    # Supplier part 1019 sells 100 m reels at 250 USD per reel.
    assert reel.pack_size == Decimal(100)
    assert reel.min_order_qty == Decimal(100)
    assert reel.unit_price == Decimal("2.5")
    assert reel_break.quantity == Decimal(100)
    assert reel_break.unit_price == Decimal("2.5")
    # Line 13 orders 3 packs of 10 l red paint at 107.50 EUR per pack.
    assert paint_line.quantity_ordered == Decimal(30)
    assert paint_line.quantity_received == Decimal(30)
    assert paint_line.unit_price == Decimal("10.75")


async def test_reservations_come_from_allocations(demo: ImportedDemo) -> None:
    allocations = DEMO["order.salesorderallocation"]
    shipped = {
        pk
        for pk, allocation in allocations.items()
        if allocation["shipment"] is not None
        and DEMO["order.salesordershipment"][allocation["shipment"]]["shipment_date"]
    }

    async with demo.database.read() as session:
        reservations = (await session.execute(select(Reservation))).scalars().all()

    by_ref = {reservation.external_ref: reservation for reservation in reservations}
    skipped = {record.pk for record in demo.summary.reservations.skipped}
    assert len(reservations) + len(skipped) == len(allocations)
    assert skipped == {4}
    for pk, allocation in allocations.items():
        if pk in skipped:
            continue
        reservation = by_ref[_ref("order.salesorderallocation", pk)]
        line = DEMO["order.salesorderlineitem"][allocation["line"]]
        assert reservation.reference == DEMO["order.salesorder"][line["order"]]["reference"]
        assert reservation.quantity == Decimal(allocation["quantity"])
        assert reservation.status == ("fulfilled" if pk in shipped else "active")


async def test_stocktakes_become_count_history(demo: ImportedDemo) -> None:
    stocktakes = DEMO["part.partstocktake"]

    async with demo.database.read() as session:
        counts = (
            (await session.execute(select(CountResult).where(CountResult.source == "inventree:stocktake")))
            .scalars()
            .all()
        )
        first_item = (
            await session.execute(select(Item).where(Item.external_ref == _ref("part.part", stocktakes[1]["part"])))
        ).scalar_one()

    assert len(counts) == len(stocktakes)
    first = next(count for count in counts if count.external_ref == _ref("part.partstocktake", 1))
    assert first.item_id == first_item.id
    assert first.location_id is None
    assert first.counted_quantity == Decimal(stocktakes[1]["quantity"])
    assert first.counted_at == datetime(2022, 12, 31, tzinfo=UTC)
    assert first.actor == "admin"
    assert first.system_quantity is None


async def test_minimum_stock_becomes_reorder_point(demo: ImportedDemo) -> None:
    minimums = {
        _ref("part.part", pk): Decimal(part["minimum_stock"])
        for pk, part in DEMO["part.part"].items()
        if Decimal(part["minimum_stock"]) > 0
    }

    async with demo.database.read() as session:
        rules = (await session.execute(select(Item.external_ref, ReorderRule).join(Item))).all()

    assert {ref: rule.reorder_point for ref, rule in rules} == minimums
    assert all(rule.location_id is None and rule.source == "inventree:minimum_stock" for _, rule in rules)


async def test_ipn_becomes_sku_else_part_pk(demo: ImportedDemo) -> None:
    async with demo.database.read() as session:
        skus = dict((await session.execute(select(Item.external_ref, Item.sku))).all())

    assert skus[_ref("part.part", 72)] == "widget.red"
    assert skus[_ref("part.part", 1)] == "PART-1"


async def test_nested_locations_become_bins(demo: ImportedDemo) -> None:
    async with demo.database.read() as session:
        bins = dict((await session.execute(select(Bin.external_ref, Bin.code))).all())

    assert bins[_ref("stock.stocklocation", 5)] == "Office Block/Room 101"
    assert _ref("stock.stocklocation", 13) not in bins
    assert {record.pk for record in demo.summary.bins.skipped} == {13, 15, 17}


async def test_summary_lines_report_each_kind(demo: ImportedDemo) -> None:
    lines = demo.summary.lines()

    assert lines[0] == "items: 414 imported, 0 already present, 0 skipped"
    assert "skipped stock (18): the stock item has no location" in lines


async def test_missing_file_raises_and_writes_nothing(database: Database, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-export.json"
    async with database.write() as session:
        workspace = await create_workspace(session, name="main")
        before = await _row_counts(session)

        with pytest.raises(InvalidInputError, match=r"no-such-export\.json"):
            await import_inventree(session, workspace_id=workspace.id, path=missing, actor="importer")

        assert await _row_counts(session) == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"model": "part.part", "pk": 1, "fields": {}}', "is not a Django fixture"),
        ("[1, 2]", "is not a Django fixture"),
        ('[{"model": "auth.permission", "pk": 1, "fields": {}}]', "none of the InvenTree models"),
    ],
)
async def test_bad_export_raises_and_writes_nothing(
    database: Database, tmp_path: Path, content: str, message: str
) -> None:
    export = tmp_path / "export.json"
    export.write_text(content, encoding="utf-8")
    async with database.write() as session:
        workspace = await create_workspace(session, name="main")
        before = await _row_counts(session)

        with pytest.raises(InvalidInputError, match=message):
            await import_inventree(session, workspace_id=workspace.id, path=export, actor="importer")

        assert await _row_counts(session) == before


def _record(model: str, pk: int, **fields: Any) -> dict[str, Any]:
    return {"model": model, "pk": pk, "fields": fields}


def _part(pk: int, ipn: str | None) -> dict[str, Any]:
    return _record(
        "part.part",
        pk,
        name=f"Part {pk}",
        description="",
        IPN=ipn,
        units="",
        active=True,
        minimum_stock="0",
        default_supplier=None,
        category=None,
        responsible_owner=None,
    )


def _stock_item(pk: int, *, part: int, location: int, quantity: str) -> dict[str, Any]:
    return _record(
        "stock.stockitem",
        pk,
        part=part,
        location=location,
        quantity=quantity,
        status=10,
        parent=None,
        sales_order=None,
        customer=None,
        belongs_to=None,
        consumed_by=None,
        is_building=False,
        purchase_price=None,
        purchase_price_currency="EUR",
        serial=None,
        batch=None,
    )


# A small export with the cases the demo data lacks: the metadata entry newer
# exports start with, a structural location that contains stock, clashing IPNs, a
# supplier part without a pack size and a stock count.
SMALL_EXPORT = [
    {"metadata": True, "comment": "This file contains a dump of the InvenTree database"},
    _record("common.inventreesetting", 1, key="INVENTREE_DEFAULT_CURRENCY", value="EUR"),
    _record("stock.stocklocation", 1, name="Main Store", parent=None, structural=False, owner=None),
    _record("stock.stocklocation", 2, name="Aisle 1", parent=1, structural=True, owner=None),
    _record("stock.stocklocation", 3, name="Shelf A", parent=2, structural=False, owner=None),
    _record("stock.stocklocation", 4, name="Empty Rack", parent=1, structural=True, owner=None),
    _part(1, "DUP"),
    _part(2, "dup"),
    _part(3, "PART-4"),
    _part(4, None),
    _record("company.company", 1, name="Acme", is_supplier=True, is_customer=False, is_manufacturer=False, currency=""),
    _record("company.supplierpart", 1, part=1, supplier=1, SKU="AC-1", pack_quantity_native=None, multiple=1),
    _record("company.supplierpricebreak", 1, part=1, quantity="10", price="5.00", price_currency="EUR"),
    _record(
        "order.purchaseorder",
        1,
        reference="PO-SMALL",
        status=20,
        supplier=1,
        order_currency=None,
        target_date=None,
        issue_date="2024-03-01",
        complete_date=None,
        creation_date="2024-03-01",
        responsible=None,
    ),
    _record(
        "order.purchaseorderlineitem",
        1,
        order=1,
        part=1,
        quantity="5",
        received="0",
        purchase_price="5.00",
        purchase_price_currency="EUR",
        target_date=None,
        destination=None,
    ),
    _stock_item(1, part=3, location=2, quantity="10"),
    _stock_item(2, part=3, location=3, quantity="4"),
    _record(
        "stock.stockitemtracking",
        1,
        item=1,
        tracking_type=1,
        date="2024-03-01T09:00:00Z",
        user=None,
        notes="",
        deltas={"location": 2, "quantity": 12.0},
    ),
    _record(
        "stock.stockitemtracking",
        2,
        item=1,
        tracking_type=10,
        date="2024-03-05T09:00:00Z",
        user=None,
        notes="",
        deltas={"quantity": 10.0},
    ),
]


async def _import_small_export(database: Database, tmp_path: Path) -> tuple[int, ImportSummary]:
    export = tmp_path / "small.json"
    export.write_text(json.dumps(SMALL_EXPORT), encoding="utf-8")
    async with database.write() as session:
        workspace = await create_workspace(session, name="small", base_currency="USD")
        summary = await import_inventree(session, workspace_id=workspace.id, path=export, actor="importer")
    return workspace.id, summary


async def test_structural_location_with_stock_becomes_bin(database: Database, tmp_path: Path) -> None:
    _, summary = await _import_small_export(database, tmp_path)

    async with database.read() as session:
        bins = dict((await session.execute(select(Bin.external_ref, Bin.code))).all())

    assert bins == {_ref("stock.stocklocation", 2): "Aisle 1", _ref("stock.stocklocation", 3): "Aisle 1/Shelf A"}
    assert [(record.pk, record.reason) for record in summary.bins.skipped] == [
        (4, "structural location: InvenTree keeps no stock in it, so it is no bin")
    ]


async def test_clashing_ipns_fall_back_to_part_pk(database: Database, tmp_path: Path) -> None:
    await _import_small_export(database, tmp_path)

    async with database.read() as session:
        skus = dict((await session.execute(select(Item.external_ref, Item.sku))).all())

    assert skus == {
        _ref("part.part", 1): "PART-1",
        _ref("part.part", 2): "PART-2",
        _ref("part.part", 3): "PART-4",
        _ref("part.part", 4): "INVENTREE-PART-4",
    }


async def test_missing_pack_size_stays_unknown(database: Database, tmp_path: Path) -> None:
    _, summary = await _import_small_export(database, tmp_path)

    async with database.read() as session:
        supplier_item = (await session.execute(select(SupplierItem))).scalar_one()
        supplier = (await session.execute(select(Supplier))).scalar_one()

    assert supplier_item.pack_size is None
    assert supplier_item.unit_price is None
    assert supplier.currency == "EUR"
    assert [record.reason for record in summary.price_breaks.skipped] == [
        "its supplier part has no pack size, so the price per stock unit is unknown"
    ]
    assert [record.reason for record in summary.purchase_order_lines.skipped] == [
        "its supplier part has no pack size, so quantities cannot be converted to stock units"
    ]


async def test_stock_count_entry_keeps_variance(database: Database, tmp_path: Path) -> None:
    await _import_small_export(database, tmp_path)

    async with database.read() as session:
        count = (
            await session.execute(select(CountResult).where(CountResult.source == "inventree:stock_count"))
        ).scalar_one()
        aisle = (
            await session.execute(select(Bin).where(Bin.external_ref == _ref("stock.stocklocation", 2)))
        ).scalar_one()

    assert (count.location_id, count.bin_id) == (aisle.location_id, aisle.id)
    assert count.counted_quantity == Decimal(10)
    assert count.system_quantity == Decimal(12)
    assert count.variance == Decimal(-2)
    assert count.counted_at == datetime(2024, 3, 5, 9, tzinfo=UTC)

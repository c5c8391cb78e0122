"""Map InvenTree stock items, sales order allocations, stocktakes and stock counts onto the Order3 ledger.

Stock that InvenTree counts as in stock becomes one opening-balance movement per
stock item. Allocations become reservations, and stocktakes and counted stock
become count history.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from store.importers.inventree_context import ImportRun, external_ref
from store.importers.inventree_fixture import (
    Fields,
    RecordSkipped,
    clip,
    currency_or,
    exact_quantity,
    money,
    parse_date,
    parse_decimal,
    parse_timestamp,
    start_of_day,
)
from store.models import CountResult, Movement, Reservation
from store.stock import Place, record_movement
from store.types import utc_now

STOCK_MODEL = "stock.stockitem"
TRACKING_MODEL = "stock.stockitemtracking"
ALLOCATION_MODEL = "order.salesorderallocation"
STOCKTAKE_MODEL = "part.partstocktake"

# InvenTree StockStatus codes (stock/status_codes.py).
STOCK_STATUS_NAMES = {
    10: "OK",
    50: "Attention needed",
    55: "Damaged",
    60: "Destroyed",
    65: "Rejected",
    70: "Lost",
    75: "Quarantined",
    85: "Returned",
}
# StockStatusGroups.AVAILABLE_CODES: the statuses InvenTree counts as in stock.
AVAILABLE_STATUSES = frozenset({10, 50, 55, 85})

# StockHistoryCode values (stock/status_codes.py).
STOCK_COUNTED = 10
SHIPPED_AGAINST_SALES_ORDER = 60
SENT_TO_CUSTOMER = 100

# SalesOrderStatusGroups.OPEN (order/status_codes.py): pending, in progress, on hold.
OPEN_SALES_ORDER_STATUSES = frozenset({10, 15, 25})

STOCKTAKE_SOURCE = "inventree:stocktake"
STOCK_COUNT_SOURCE = "inventree:stock_count"

# Split-off stock items point at the item they came from. The bound stops a cycle of parent links.
MAX_PARENT_DEPTH = 50


def out_of_stock_reason(stock_item: Fields) -> str | None:
    """Return why InvenTree would not count a stock item as in stock, or None if it would.

    Mirrors StockItem.IN_STOCK_FILTER in InvenTree's stock/models.py: positive
    quantity, no sales order, not installed in another item, no customer, not
    consumed by a build, not being built, and a status in the available group.
    """
    quantity = parse_decimal(stock_item.get("quantity"), label="quantity")
    if quantity is None or quantity <= 0:
        return "the quantity is zero or negative"
    if stock_item.get("customer") is not None:
        return "sent to a customer"
    if stock_item.get("sales_order") is not None:
        return "shipped against a sales order"
    if stock_item.get("belongs_to") is not None:
        return "installed in another stock item"
    if stock_item.get("consumed_by") is not None:
        return "consumed by a build order"
    if stock_item.get("is_building"):
        return "still being built (an unfinished build output)"
    status = stock_item.get("status")
    if status not in AVAILABLE_STATUSES:
        name = STOCK_STATUS_NAMES.get(status, "unknown")
        return f"status {status} ({name}) is not an available stock status"
    return None


async def import_stock(run: ImportRun) -> None:
    """Write one opening-balance movement per stock item that InvenTree counts as in stock."""
    for pk, stock_item in run.fixture.rows(STOCK_MODEL):
        ref = external_ref(STOCK_MODEL, pk)
        if run.existing_id(Movement, ref) is not None:
            run.summary.stock.already_present += 1
            continue
        try:
            movement = await _opening_balance(run, pk, stock_item, ref)
        except RecordSkipped as skipped:
            run.summary.stock.skip(model=STOCK_MODEL, pk=pk, reason=skipped.reason)
            continue
        run.remember(Movement, ref, movement.id)  # type: ignore[arg-type]
        run.summary.stock.imported += 1


async def _opening_balance(run: ImportRun, pk: Any, stock_item: Fields, ref: str) -> Movement:
    reason = out_of_stock_reason(stock_item)
    if reason is not None:
        raise RecordSkipped(reason)
    part_pk = stock_item.get("part")
    item_id = run.items.get(part_pk)
    if item_id is None:
        raise RecordSkipped("the part was not imported")
    if stock_item.get("location") is None:
        raise RecordSkipped("the stock item has no location")
    place = run.place_of(stock_item["location"])
    if place is None:
        raise RecordSkipped("its stock location was not imported")
    quantity = exact_quantity(parse_decimal(stock_item["quantity"], label="quantity"), label="quantity")

    # Movement.unit_cost has no currency of its own: it is in the item's currency.
    unit_cost: Decimal | None = None
    price = parse_decimal(stock_item.get("purchase_price"), label="purchase price")
    item_currency = run.item_currencies[part_pk]
    if price is not None and currency_or(stock_item.get("purchase_price_currency"), "") == item_currency:
        unit_cost = money(price)

    reference = f"InvenTree stock item {pk}"
    if stock_item.get("serial"):
        reference += f", serial {stock_item['serial']}"
    if stock_item.get("batch"):
        reference += f", batch {stock_item['batch']}"
    return await record_movement(
        run.session,
        workspace_id=run.workspace_id,
        item_id=item_id,
        kind="opening_balance",
        quantity=quantity,
        destination=place,
        actor=run.actor,
        reference=clip(reference, 200),
        unit_cost=unit_cost,
        external_ref=ref,
    )


def _tracked_location(run: ImportRun, stock_pk: Any) -> Any:
    """Return the last location recorded in an item's history before it left stock, or None."""
    location = None
    for _, entry in run.fixture.history(stock_pk):
        if entry.get("tracking_type") in (SHIPPED_AGAINST_SALES_ORDER, SENT_TO_CUSTOMER):
            break
        deltas = entry.get("deltas")
        if isinstance(deltas, dict) and deltas.get("location") is not None:
            location = deltas["location"]
    return location


def _location_before_shipping(run: ImportRun, stock_pk: Any) -> Any:
    """Return where a shipped stock item was held, following split-off items to their parent."""
    pk = stock_pk
    for _ in range(MAX_PARENT_DEPTH):
        stock_item = run.fixture.get(STOCK_MODEL, pk)
        if stock_item is None:
            return None
        location = _tracked_location(run, pk)
        if location is None:
            location = stock_item.get("location")
        if location is not None:
            return location
        pk = stock_item.get("parent")
        if pk is None:
            return None
    return None


async def import_reservations(run: ImportRun) -> None:
    """Turn sales order allocations into reservations of the allocated stock."""
    new_reservations: list[tuple[str, Reservation]] = []
    for pk, allocation in run.fixture.rows(ALLOCATION_MODEL):
        ref = external_ref(ALLOCATION_MODEL, pk)
        if run.existing_id(Reservation, ref) is not None:
            run.summary.reservations.already_present += 1
            continue
        try:
            new_reservations.append((ref, _reservation(run, allocation, ref)))
        except RecordSkipped as skipped:
            run.summary.reservations.skip(model=ALLOCATION_MODEL, pk=pk, reason=skipped.reason)

    await run.add_all(Reservation, new_reservations)
    run.summary.reservations.imported += len(new_reservations)


def _reservation(run: ImportRun, allocation: Fields, ref: str) -> Reservation:
    fixture = run.fixture
    stock_pk = allocation.get("item")
    stock_item = fixture.get(STOCK_MODEL, stock_pk)
    if stock_item is None:
        raise RecordSkipped("the allocated stock item is missing from the export")
    item_id = run.items.get(stock_item.get("part"))
    if item_id is None:
        raise RecordSkipped("the part of the allocated stock item was not imported")
    line = fixture.get("order.salesorderlineitem", allocation.get("line"))
    order = fixture.get("order.salesorder", line.get("order")) if line else None
    if order is None:
        raise RecordSkipped("the sales order of the allocation is missing from the export")
    shipment = fixture.get("order.salesordershipment", allocation.get("shipment"))

    # InvenTree marks a shipment as shipped by giving it a shipment date.
    if shipment is not None and shipment.get("shipment_date"):
        status = "fulfilled"
    elif order.get("status") in OPEN_SALES_ORDER_STATUSES:
        status = "active"
    else:
        # Cancelled, lost or returned orders, and completed orders that never shipped this allocation.
        status = "released"

    location_pk = stock_item.get("location") if status == "active" else _location_before_shipping(run, stock_pk)
    if location_pk is None:
        raise RecordSkipped("the location of the allocated stock item is unknown")
    place = run.place_of(location_pk)
    if place is None:
        raise RecordSkipped("the stock location of the allocated stock item was not imported")
    quantity = parse_decimal(allocation.get("quantity"), label="allocated quantity")
    if quantity is None or quantity <= 0:
        raise RecordSkipped("the allocated quantity is zero")

    return Reservation(
        workspace_id=run.workspace_id,
        item_id=item_id,
        location_id=place.location_id,
        bin_id=place.bin_id,
        quantity=exact_quantity(quantity, label="allocated quantity"),
        reference=clip(order.get("reference"), 200),
        status=status,
        external_ref=ref,
    )


async def import_counts(run: ImportRun) -> None:
    """Import part stocktakes and counted stock items as count history."""
    new_counts: list[tuple[str, CountResult]] = []
    for pk, stocktake in run.fixture.rows(STOCKTAKE_MODEL):
        ref = external_ref(STOCKTAKE_MODEL, pk)
        if run.existing_id(CountResult, ref) is not None:
            run.summary.counts.already_present += 1
            continue
        try:
            new_counts.append((ref, _stocktake(run, stocktake, ref)))
        except RecordSkipped as skipped:
            run.summary.counts.skip(model=STOCKTAKE_MODEL, pk=pk, reason=skipped.reason)

    for pk, entry in run.fixture.rows(TRACKING_MODEL):
        if entry.get("tracking_type") != STOCK_COUNTED:
            continue
        ref = external_ref(TRACKING_MODEL, pk)
        if run.existing_id(CountResult, ref) is not None:
            run.summary.counts.already_present += 1
            continue
        try:
            new_counts.append((ref, _stock_count(run, pk, entry, ref)))
        except RecordSkipped as skipped:
            run.summary.counts.skip(model=TRACKING_MODEL, pk=pk, reason=skipped.reason)

    await run.add_all(CountResult, new_counts)
    run.summary.counts.imported += len(new_counts)


def _stocktake(run: ImportRun, stocktake: Fields, ref: str) -> CountResult:
    """Map a part stocktake: a workspace-wide total counted on one date."""
    item_id = run.items.get(stocktake.get("part"))
    if item_id is None:
        raise RecordSkipped("the part was not imported")
    counted = parse_decimal(stocktake.get("quantity"), label="counted quantity")
    if counted is None:
        raise RecordSkipped("the stocktake records no quantity")
    return CountResult(
        workspace_id=run.workspace_id,
        item_id=item_id,
        location_id=None,
        bin_id=None,
        counted_quantity=exact_quantity(counted, label="counted quantity"),
        source=STOCKTAKE_SOURCE,
        note=clip(stocktake.get("note"), 1000),
        actor=clip(run.fixture.username(stocktake.get("user")) or run.actor, 120),
        counted_at=start_of_day(parse_date(stocktake.get("date")), timezone=run.timezone) or utc_now(),
        external_ref=ref,
    )


def _stock_count(run: ImportRun, pk: Any, entry: Fields, ref: str) -> CountResult:
    """Map a "stock counted" tracking entry at the place the item was held when counted.

    The entry stores only the counted quantity. The quantity before the count is
    the one recorded by the latest earlier entry of the same item. Without such an
    entry, the system quantity and variance stay empty.
    """
    stock_item = run.fixture.get(STOCK_MODEL, entry.get("item"))
    if stock_item is None:
        raise RecordSkipped("the counted stock item is missing from the export")
    history = run.fixture.history(entry.get("item"))
    position = [entry_pk for entry_pk, _ in history].index(pk)
    item_id = run.items.get(stock_item.get("part"))
    if item_id is None:
        raise RecordSkipped("the part of the counted stock item was not imported")
    deltas = entry.get("deltas") if isinstance(entry.get("deltas"), dict) else {}
    counted = parse_decimal(deltas.get("quantity"), label="counted quantity")
    if counted is None:
        raise RecordSkipped("the count entry records no quantity")
    counted = exact_quantity(counted, label="counted quantity")

    location_pk = None
    system_quantity: Decimal | None = None
    for _, earlier in history[:position]:
        earlier_deltas = earlier.get("deltas")
        if not isinstance(earlier_deltas, dict):
            continue
        if earlier_deltas.get("location") is not None:
            location_pk = earlier_deltas["location"]
        if earlier_deltas.get("quantity") is not None:
            system_quantity = parse_decimal(earlier_deltas["quantity"], label="quantity before the count")
    if deltas.get("location") is not None:
        location_pk = deltas["location"]
    if location_pk is None:
        location_pk = stock_item.get("location")
    place: Place | None = run.place_of(location_pk)
    if place is None:
        raise RecordSkipped("the location of the counted stock item is unknown or was not imported")
    if system_quantity is not None:
        system_quantity = exact_quantity(system_quantity, label="quantity before the count")

    return CountResult(
        workspace_id=run.workspace_id,
        item_id=item_id,
        location_id=place.location_id,
        bin_id=place.bin_id,
        counted_quantity=counted,
        system_quantity=system_quantity,
        variance=counted - system_quantity if system_quantity is not None else None,
        source=STOCK_COUNT_SOURCE,
        note=clip(entry.get("notes"), 1000),
        actor=clip(run.fixture.username(entry.get("user")) or run.actor, 120),
        counted_at=parse_timestamp(entry.get("date")) or utc_now(),
        external_ref=ref,
    )

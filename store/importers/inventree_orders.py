"""Map InvenTree purchase orders, their lines and the quantities received on them onto Order3 records.

InvenTree counts purchase order line quantities and prices in supplier packs:
receiving one unit of a line books `pack_quantity_native` units of stock, and the
line price divided by it is the price per stock unit. Lines are converted with the
pack sizes the supplier part step recorded, and skipped when a pack size is missing.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select

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
from store.importers.inventree_suppliers import SUPPLIER_PART_MODEL
from store.models import PurchaseOrder, PurchaseOrderLine, ReceivingEvent, Supplier
from store.stock import Place
from store.types import utc_now

ORDER_MODEL = "order.purchaseorder"
LINE_MODEL = "order.purchaseorderlineitem"

# InvenTree PurchaseOrderStatus codes (order/status_codes.py).
PO_PENDING, PO_PLACED, PO_ON_HOLD, PO_COMPLETE, PO_CANCELLED, PO_LOST, PO_RETURNED = 10, 20, 25, 30, 40, 50, 60
# StockHistoryCode.RECEIVED_AGAINST_PURCHASE_ORDER (stock/status_codes.py).
RECEIVED_AGAINST_PURCHASE_ORDER = 70


def _order_status(code: Any, *, received_any: bool, received_all: bool) -> str:
    """Map an InvenTree PurchaseOrderStatus code onto an Order3 purchase order status."""
    if code == PO_PENDING:
        return "draft"
    # Order3 has no "on hold": the order is still placed with the supplier, so it stays open.
    if code in (PO_PLACED, PO_ON_HOLD):
        return "partially_received" if received_any else "issued"
    if code == PO_COMPLETE:
        return "received" if received_all else "closed"
    # InvenTree groups cancelled, lost and returned orders as failed: nothing more is expected.
    if code in (PO_CANCELLED, PO_LOST, PO_RETURNED):
        return "cancelled"
    raise RecordSkipped(f"status {code!r} is not an InvenTree purchase order status")


def _line_units(run: ImportRun, line: Fields) -> tuple[Decimal, Decimal]:
    """Return a line's ordered and received quantities converted from supplier packs to stock units.

    Raises:
        RecordSkipped: If the pack size is unknown or a quantity cannot be stored exactly.
    """
    supplier_part_pk = line.get("part")
    if run.fixture.get(SUPPLIER_PART_MODEL, supplier_part_pk) is None:
        raise RecordSkipped("the line has no supplier part in the export")
    pack = run.pack_sizes.get(supplier_part_pk)
    if pack is None:
        raise RecordSkipped("its supplier part has no pack size, so quantities cannot be converted to stock units")
    ordered = parse_decimal(line.get("quantity"), label="ordered quantity") or Decimal(0)
    received = parse_decimal(line.get("received"), label="received quantity") or Decimal(0)
    return (
        exact_quantity(ordered * pack, label="ordered quantity"),
        exact_quantity(received * pack, label="received quantity"),
    )


def _order_currency(order: Fields, lines: list[tuple[Any, Fields]], supplier_currency: str) -> str:
    """Return the order's currency: its own, else the one currency its line prices share, else the supplier's."""
    if order.get("order_currency"):
        return currency_or(order["order_currency"], supplier_currency)
    line_currencies = {
        line.get("purchase_price_currency")
        for _, line in lines
        if line.get("purchase_price") is not None and line.get("purchase_price_currency")
    }
    if len(line_currencies) == 1:
        return currency_or(line_currencies.pop(), supplier_currency)
    return supplier_currency


async def import_purchase_orders(run: ImportRun) -> None:
    """Import purchase orders with their lines and the receipts recorded on those lines."""
    lines_by_order: dict[Any, list[tuple[Any, Fields]]] = {}
    for pk, line in run.fixture.rows(LINE_MODEL):
        lines_by_order.setdefault(line.get("order"), []).append((pk, line))
    supplier_currencies = dict(
        (
            await run.session.execute(
                select(Supplier.id, Supplier.currency).where(Supplier.workspace_id == run.workspace_id)
            )
        ).all()
    )
    stored = (
        await run.session.execute(
            select(
                PurchaseOrder.external_ref, PurchaseOrder.number, PurchaseOrder.currency, PurchaseOrder.expected_date
            ).where(PurchaseOrder.workspace_id == run.workspace_id)
        )
    ).all()
    taken_numbers = {number.casefold() for _, number, _, _ in stored}
    # (currency, expected date) of every order already in the workspace, for lines added to it now.
    order_terms: dict[str, tuple[str, date | None]] = {
        ref: (currency, expected) for ref, _, currency, expected in stored if ref
    }

    new_orders: list[tuple[str, PurchaseOrder]] = []
    for pk, order in run.fixture.rows(ORDER_MODEL):
        ref = external_ref(ORDER_MODEL, pk)
        if run.existing_id(PurchaseOrder, ref) is not None:
            run.summary.purchase_orders.already_present += 1
            continue
        try:
            purchase_order = _purchase_order(
                run, pk, order, lines_by_order.get(pk, []), supplier_currencies, taken_numbers
            )
        except RecordSkipped as skipped:
            run.summary.purchase_orders.skip(model=ORDER_MODEL, pk=pk, reason=skipped.reason)
            continue
        taken_numbers.add(purchase_order.number.casefold())
        order_terms[ref] = (purchase_order.currency, purchase_order.expected_date)
        new_orders.append((ref, purchase_order))

    await run.add_all(PurchaseOrder, new_orders)
    run.summary.purchase_orders.imported += len(new_orders)

    await _import_lines(run, lines_by_order, order_terms)


def _purchase_order(
    run: ImportRun,
    pk: Any,
    order: Fields,
    lines: list[tuple[Any, Fields]],
    supplier_currencies: dict[int, str],
    taken_numbers: set[str],
) -> PurchaseOrder:
    supplier_id = run.suppliers.get(order.get("supplier"))
    if supplier_id is None:
        raise RecordSkipped("the supplier company was not imported")
    number = clip(order.get("reference"), 60) or f"INVENTREE-PO-{pk}"
    if number.casefold() in taken_numbers:
        raise RecordSkipped(f"purchase order number {number!r} is already used in this workspace")

    received = [parse_decimal(line.get("received"), label="received quantity") or Decimal(0) for _, line in lines]
    ordered = [parse_decimal(line.get("quantity"), label="ordered quantity") or Decimal(0) for _, line in lines]
    status = _order_status(
        order.get("status"),
        received_any=any(quantity > 0 for quantity in received),
        received_all=all(got >= wanted for got, wanted in zip(received, ordered, strict=True)),
    )
    return PurchaseOrder(
        workspace_id=run.workspace_id,
        number=number,
        supplier_id=supplier_id,
        status=status,
        currency=_order_currency(order, lines, supplier_currencies[supplier_id]),
        expected_date=parse_date(order.get("target_date")),
        owner=clip(run.fixture.owner_name(order.get("responsible")), 120),
        description=clip(order.get("description"), 1000),
        external_ref=external_ref(ORDER_MODEL, pk),
        created_at=start_of_day(parse_date(order.get("creation_date")), timezone=run.timezone) or utc_now(),
        issued_at=start_of_day(parse_date(order.get("issue_date")), timezone=run.timezone),
        completed_at=start_of_day(parse_date(order.get("complete_date")), timezone=run.timezone),
    )


async def _import_lines(
    run: ImportRun,
    lines_by_order: dict[Any, list[tuple[Any, Fields]]],
    order_terms: dict[str, tuple[str, date | None]],
) -> None:
    # Purchase order line pk → (line id, received stock units) for the receiving events.
    receipts: dict[Any, tuple[int, Decimal]] = {}
    new_lines: list[tuple[str, PurchaseOrderLine]] = []
    # external ref → (line pk, received stock units) of the lines written now.
    pending: dict[str, tuple[Any, Decimal]] = {}
    for order_pk, lines in lines_by_order.items():
        order_ref = external_ref(ORDER_MODEL, order_pk)
        order_id = run.existing_id(PurchaseOrder, order_ref)
        for line_no, (pk, line) in enumerate(lines, start=1):
            ref = external_ref(LINE_MODEL, pk)
            try:
                line_id = run.existing_id(PurchaseOrderLine, ref)
                if line_id is not None:
                    received = _line_units(run, line)[1]
                    run.summary.purchase_order_lines.already_present += 1
                    receipts[pk] = (line_id, received)
                    continue
                if order_id is None:
                    raise RecordSkipped("its purchase order was not imported")
                currency, expected = order_terms[order_ref]
                order_line, received = _order_line(
                    run, pk, line, order_id=order_id, line_no=line_no, currency=currency, expected=expected
                )
            except RecordSkipped as skipped:
                run.summary.purchase_order_lines.skip(model=LINE_MODEL, pk=pk, reason=skipped.reason)
                continue
            new_lines.append((ref, order_line))
            pending[ref] = (pk, received)

    ids = await run.add_all(PurchaseOrderLine, new_lines)
    run.summary.purchase_order_lines.imported += len(new_lines)
    for ref, (pk, received) in pending.items():
        receipts[pk] = (ids[ref], received)

    await _import_receiving_events(run, receipts)


def _order_line(
    run: ImportRun,
    pk: Any,
    line: Fields,
    *,
    order_id: int,
    line_no: int,
    currency: str,
    expected: date | None,
) -> tuple[PurchaseOrderLine, Decimal]:
    supplier_part = run.fixture.get(SUPPLIER_PART_MODEL, line.get("part")) or {}
    item_id = run.items.get(supplier_part.get("part"))
    if item_id is None:
        raise RecordSkipped("the part of its supplier part was not imported")
    ordered, received = _line_units(run, line)

    # Order3 keeps one currency per order, so a line priced in another currency keeps no unit price.
    unit_price: Decimal | None = None
    price = parse_decimal(line.get("purchase_price"), label="purchase price")
    if price is not None and currency_or(line.get("purchase_price_currency"), currency) == currency:
        unit_price = money(price / run.pack_sizes[line.get("part")])

    destination = run.place_of(line.get("destination"))
    order_line = PurchaseOrderLine(
        workspace_id=run.workspace_id,
        purchase_order_id=order_id,
        line_no=line_no,
        item_id=item_id,
        supplier_item_id=run.supplier_items.get(line.get("part")),
        quantity_ordered=ordered,
        quantity_received=received,
        unit_price=unit_price,
        # InvenTree uses the order's target date for a line without its own.
        expected_date=parse_date(line.get("target_date")) or expected,
        destination_location_id=destination.location_id if destination else None,
        external_ref=external_ref(LINE_MODEL, pk),
    )
    return order_line, received


def _receipt_entries(run: ImportRun) -> dict[tuple[Any, Any], list[Fields]]:
    """Index "received against purchase order" tracking entries by (order pk, supplier part pk), oldest first."""
    entries: dict[tuple[Any, Any], list[Fields]] = {}
    for stock_pk, stock_item in run.fixture.rows("stock.stockitem"):
        for _, entry in run.fixture.history(stock_pk):
            deltas = entry.get("deltas") or {}
            if entry.get("tracking_type") == RECEIVED_AGAINST_PURCHASE_ORDER and isinstance(deltas, dict):
                key = (deltas.get("purchaseorder"), stock_item.get("supplier_part"))
                entries.setdefault(key, []).append(entry)
    return entries


async def _import_receiving_events(run: ImportRun, receipts: dict[Any, tuple[int, Decimal]]) -> None:
    """Record one receiving event per line with a received quantity.

    The received stock is already part of the opening balances, so no receipt
    movement is written and `movement_id` stays empty.
    """
    tracked = _receipt_entries(run)
    new_events: list[tuple[str, ReceivingEvent]] = []
    for pk, (line_id, received) in receipts.items():
        if received <= 0:
            continue
        ref = external_ref(LINE_MODEL, pk)
        if run.existing_id(ReceivingEvent, ref) is not None:
            run.summary.receiving_events.already_present += 1
            continue
        line = run.fixture.get(LINE_MODEL, pk) or {}
        order = run.fixture.get(ORDER_MODEL, line.get("order")) or {}
        entries = tracked.get((line.get("order"), line.get("part")), [])
        latest = entries[-1] if entries else None
        received_at, place, actor = _receipt_details(run, latest, line, order)
        new_events.append(
            (
                ref,
                ReceivingEvent(
                    workspace_id=run.workspace_id,
                    purchase_order_line_id=line_id,
                    quantity=received,
                    location_id=place.location_id if place else None,
                    bin_id=place.bin_id if place else None,
                    movement_id=None,
                    actor=clip(actor, 120),
                    received_at=received_at,
                    external_ref=ref,
                ),
            )
        )

    await run.add_all(ReceivingEvent, new_events)
    run.summary.receiving_events.imported += len(new_events)


def _receipt_details(
    run: ImportRun, entry: Fields | None, line: Fields, order: Fields
) -> tuple[datetime, Place | None, str]:
    """Return the time, place and person of a line's receipt.

    The tracking entry InvenTree wrote at receipt is the best source. Without one,
    the order's completion, issue or creation date stands in for the time, and the
    line's destination for the place.
    """
    deltas = entry.get("deltas") if entry else None
    deltas = deltas if isinstance(deltas, dict) else {}
    received_at = parse_timestamp(entry.get("date")) if entry else None
    for column in ("complete_date", "issue_date", "creation_date"):
        if received_at is None:
            received_at = start_of_day(parse_date(order.get(column)), timezone=run.timezone)
    place = run.place_of(deltas.get("location")) or run.place_of(line.get("destination"))
    actor = ""
    if entry and entry.get("user"):
        actor = run.fixture.username(entry["user"])
    if not actor and order.get("received_by"):
        actor = run.fixture.username(order["received_by"])
    return received_at or utc_now(), place, actor or run.actor

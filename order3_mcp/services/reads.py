"""Read services: items, locations, stock, movements, counts, suppliers, orders, reservations."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from order3_mcp.pagination import check_limit, decode_cursor, render_page
from order3_mcp.schemas import (
    CountOut,
    CountPage,
    ItemDetail,
    ItemPage,
    ItemSummary,
    LocationOut,
    LocationPage,
    MovementOut,
    MovementPage,
    PurchaseOrderDetail,
    PurchaseOrderLineOut,
    PurchaseOrderOut,
    PurchaseOrderPage,
    ReceivingEventOut,
    ReceivingEventPage,
    ReservationOut,
    ReservationPage,
    StockAtPlace,
    StockOut,
    SupplierDetail,
    SupplierOut,
    SupplierPage,
)
from store import catalog, inventory, purchasing
from store.errors import InvalidInputError
from store.models import (
    OPEN_PO_STATUSES,
    PO_STATUSES,
    RESERVATION_STATUSES,
    Bin,
    CountResult,
    Item,
    Location,
    Movement,
    PurchaseOrder,
    PurchaseOrderLine,
    ReceivingEvent,
    Reservation,
    Supplier,
    SupplierItem,
)


def iso(value: object) -> str | None:
    """Return `value.isoformat()` or None."""
    return value.isoformat() if value is not None else None  # type: ignore[attr-defined]


async def _names(session: AsyncSession, model: type, ids: set[int], column: str) -> dict[int, str]:
    if not ids:
        return {}
    rows = await session.execute(select(model.id, getattr(model, column)).where(model.id.in_(ids)))
    return {row[0]: row[1] for row in rows}


def _place(location_code: str, bin_code: str) -> str:
    return f"{location_code}/{bin_code}" if bin_code else location_code


async def search_items(
    app: Order3, caller: Caller, *, query: str, active_only: bool, cursor: str | None, limit: int
) -> ItemPage:
    """Search items by SKU, name, category or description."""

    async def work(session: AsyncSession) -> Outcome:
        check_limit(limit)
        after = decode_cursor(cursor, "search_items")
        rows = await catalog.search_items(
            session, workspace_id=caller.workspace_id, query=query, active_only=active_only, after_id=after, limit=limit + 1
        )
        items, next_cursor = render_page(
            "search_items",
            rows,
            limit,
            lambda i: i.id,
            lambda i: ItemSummary(sku=i.sku, name=i.name, unit=i.unit, category=i.category, owner=i.owner, active=i.active),
        )
        return Outcome(ItemPage(items=items, next_cursor=next_cursor), f"Found {len(items)} items for {query!r}.")

    return await app.run(caller, "search_items", {"query": query, "cursor": cursor, "limit": limit}, work, result_type=ItemPage)


async def get_item(app: Order3, caller: Caller, *, sku: str) -> ItemDetail:
    """Return one item with its stock position and supplier offers."""

    async def work(session: AsyncSession) -> Outcome:
        item = await catalog.get_item_by_sku(session, workspace_id=caller.workspace_id, sku=sku)
        position = await inventory.stock_position(session, workspace_id=caller.workspace_id, item_id=item.id)  # type: ignore[arg-type]
        offers = await catalog.supplier_items_for_item(session, workspace_id=caller.workspace_id, item_id=item.id)  # type: ignore[arg-type]
        result = ItemDetail(
            sku=item.sku,
            name=item.name,
            description=item.description,
            unit=item.unit,
            unit_cost=str(item.unit_cost),
            currency=item.currency,
            category=item.category,
            owner=item.owner,
            active=item.active,
            on_hand=str(position.on_hand),
            reserved=str(position.reserved),
            available=str(position.available),
            on_order=str(position.on_order),
            stock=[StockAtPlace(location=r.location_code, bin=r.bin_code, on_hand=str(r.on_hand)) for r in position.rows],
            suppliers=[describe_offer(offer, supplier) for offer, supplier in offers],
        )
        return Outcome(result, f"Read item {item.sku}.", affected=[{"kind": "item", "id": item.id}])

    return await app.run(caller, "get_item", {"sku": sku}, work, result_type=ItemDetail)


def describe_offer(offer: SupplierItem, supplier: Supplier) -> str:
    """Return a one-line description of a supplier offer."""
    lead = offer.lead_time_days if offer.lead_time_days is not None else supplier.lead_time_days
    price = f"{offer.unit_price} {offer.currency}" if offer.unit_price is not None else "unknown"
    pack = str(offer.pack_size) if offer.pack_size is not None else "unknown"
    preferred = " (preferred)" if offer.preferred else ""
    return (
        f"{supplier.code}{preferred} sku={offer.supplier_sku or '-'} price={price} pack={pack} "
        f"moq={offer.min_order_qty} lead={lead}d"
    )


async def list_locations(app: Order3, caller: Caller, *, cursor: str | None, limit: int) -> LocationPage:
    """List locations with their bins."""

    async def work(session: AsyncSession) -> Outcome:
        check_limit(limit)
        after = decode_cursor(cursor, "list_locations")
        rows = await catalog.list_locations(session, workspace_id=caller.workspace_id, after_id=after, limit=limit + 1)
        locations, next_cursor = render_page(
            "list_locations",
            rows,
            limit,
            lambda row: row[0].id,
            lambda row: LocationOut(
                code=row[0].code, name=row[0].name, kind=row[0].kind, owner=row[0].owner, bins=[b.code for b in row[1]]
            ),
        )
        return Outcome(LocationPage(locations=locations, next_cursor=next_cursor), f"Listed {len(locations)} locations.")

    return await app.run(caller, "list_locations", {"cursor": cursor, "limit": limit}, work, result_type=LocationPage)


async def get_stock(app: Order3, caller: Caller, *, sku: str, location: str) -> StockOut:
    """Return on hand, reserved, available and on order for one item."""

    async def work(session: AsyncSession) -> Outcome:
        item = await catalog.get_item_by_sku(session, workspace_id=caller.workspace_id, sku=sku)
        position = await inventory.stock_position(session, workspace_id=caller.workspace_id, item_id=item.id)  # type: ignore[arg-type]
        rows = position.rows
        reserved = position.reserved
        location_code = ""
        if location.strip():
            place = await catalog.get_location_by_code(session, workspace_id=caller.workspace_id, code=location)
            rows = [row for row in rows if row.location_id == place.id]
            reserved = position.reserved_by_location.get(place.id, reserved * 0)  # type: ignore[arg-type]
            location_code = place.code
        on_hand = sum((row.on_hand for row in rows), position.on_hand * 0)
        result = StockOut(
            sku=item.sku,
            location=location_code,
            on_hand=str(on_hand),
            reserved=str(reserved),
            available=str(on_hand - reserved),
            on_order=str(position.on_order),
            places=[StockAtPlace(location=r.location_code, bin=r.bin_code, on_hand=str(r.on_hand)) for r in rows],
        )
        return Outcome(result, f"Read stock of {item.sku}.", affected=[{"kind": "item", "id": item.id}])

    return await app.run(caller, "get_stock", {"sku": sku, "location": location}, work, result_type=StockOut)


async def list_movements(
    app: Order3, caller: Caller, *, sku: str, location: str, cursor: str | None, limit: int
) -> MovementPage:
    """List ledger movements, optionally for one item or location."""

    async def work(session: AsyncSession) -> Outcome:
        check_limit(limit)
        after = decode_cursor(cursor, "list_movements")
        item_id = location_id = None
        if sku.strip():
            item_id = (await catalog.get_item_by_sku(session, workspace_id=caller.workspace_id, sku=sku)).id
        if location.strip():
            location_id = (await catalog.get_location_by_code(session, workspace_id=caller.workspace_id, code=location)).id
        rows = await inventory.list_movements(
            session, workspace_id=caller.workspace_id, item_id=item_id, location_id=location_id, after_id=after, limit=limit + 1
        )
        kept = rows[:limit]
        skus = await _names(session, Item, {m.item_id for m in kept}, "sku")
        locations = await _names(
            session, Location, {x for m in kept for x in (m.from_location_id, m.to_location_id) if x}, "code"
        )
        bins = await _names(session, Bin, {x for m in kept for x in (m.from_bin_id, m.to_bin_id) if x}, "code")

        def where(location_ref: int | None, bin_ref: int | None) -> str:
            if location_ref is None:
                return ""
            return _place(locations.get(location_ref, str(location_ref)), bins.get(bin_ref, "") if bin_ref else "")

        def render(m: Movement) -> MovementOut:
            return MovementOut(
                id=m.id,  # type: ignore[arg-type]
                sku=skus.get(m.item_id, ""),
                kind=m.kind,
                quantity=str(m.quantity),
                from_place=where(m.from_location_id, m.from_bin_id),
                to_place=where(m.to_location_id, m.to_bin_id),
                reference=m.reference or (f"{m.reference_kind}:{m.reference_id}" if m.reference_kind else ""),
                actor=m.actor,
                occurred_at=m.occurred_at.isoformat(),
            )

        movements, next_cursor = render_page("list_movements", rows, limit, lambda m: m.id, render)
        return Outcome(MovementPage(movements=movements, next_cursor=next_cursor), f"Listed {len(movements)} movements.")

    arguments = {"sku": sku, "location": location, "cursor": cursor, "limit": limit}
    return await app.run(caller, "list_movements", arguments, work, result_type=MovementPage)


async def list_counts(app: Order3, caller: Caller, *, sku: str, location: str, cursor: str | None, limit: int) -> CountPage:
    """List count results, optionally for one item or location."""

    async def work(session: AsyncSession) -> Outcome:
        check_limit(limit)
        after = decode_cursor(cursor, "list_counts")
        item_id = location_id = None
        if sku.strip():
            item_id = (await catalog.get_item_by_sku(session, workspace_id=caller.workspace_id, sku=sku)).id
        if location.strip():
            location_id = (await catalog.get_location_by_code(session, workspace_id=caller.workspace_id, code=location)).id
        rows = await inventory.list_counts(
            session, workspace_id=caller.workspace_id, item_id=item_id, location_id=location_id, after_id=after, limit=limit + 1
        )
        kept = rows[:limit]
        skus = await _names(session, Item, {c.item_id for c in kept}, "sku")
        locations = await _names(session, Location, {c.location_id for c in kept if c.location_id}, "code")
        def render(c: CountResult) -> CountOut:
            return CountOut(
                id=c.id,  # type: ignore[arg-type]
                sku=skus.get(c.item_id, ""),
                location=locations.get(c.location_id, "") if c.location_id else "",
                counted_quantity=str(c.counted_quantity),
                system_quantity=str(c.system_quantity) if c.system_quantity is not None else None,
                variance=str(c.variance) if c.variance is not None else None,
                source=c.source,
                actor=c.actor,
                counted_at=c.counted_at.isoformat(),
            )

        counts, next_cursor = render_page("list_counts", rows, limit, lambda c: c.id, render)
        return Outcome(CountPage(counts=counts, next_cursor=next_cursor), f"Listed {len(counts)} counts.")

    arguments = {"sku": sku, "location": location, "cursor": cursor, "limit": limit}
    return await app.run(caller, "list_counts", arguments, work, result_type=CountPage)


def supplier_out(supplier: Supplier) -> SupplierOut:
    """Convert a supplier row to its tool result."""
    return SupplierOut(
        code=supplier.code,
        name=supplier.name,
        contact_email=supplier.contact_email,
        currency=supplier.currency,
        lead_time_days=supplier.lead_time_days,
        owner=supplier.owner,
        active=supplier.active,
    )


async def list_suppliers(app: Order3, caller: Caller, *, query: str, cursor: str | None, limit: int) -> SupplierPage:
    """List suppliers whose code or name contains `query`."""

    async def work(session: AsyncSession) -> Outcome:
        check_limit(limit)
        after = decode_cursor(cursor, "list_suppliers")
        rows = await catalog.list_suppliers(session, workspace_id=caller.workspace_id, query=query, after_id=after, limit=limit + 1)
        suppliers, next_cursor = render_page("list_suppliers", rows, limit, lambda s: s.id, supplier_out)
        return Outcome(SupplierPage(suppliers=suppliers, next_cursor=next_cursor), f"Listed {len(suppliers)} suppliers.")

    arguments = {"query": query, "cursor": cursor, "limit": limit}
    return await app.run(caller, "list_suppliers", arguments, work, result_type=SupplierPage)


async def get_supplier(app: Order3, caller: Caller, *, code: str) -> SupplierDetail:
    """Return one supplier with its open purchase orders."""

    async def work(session: AsyncSession) -> Outcome:
        supplier = await catalog.get_supplier_by_code(session, workspace_id=caller.workspace_id, code=code)
        open_orders = (
            await session.execute(
                select(PurchaseOrder.number)
                .where(PurchaseOrder.supplier_id == supplier.id, PurchaseOrder.status.in_(OPEN_PO_STATUSES))
                .order_by(PurchaseOrder.id)
            )
        ).scalars().all()
        item_count = (
            await session.execute(select(func.count()).select_from(SupplierItem).where(SupplierItem.supplier_id == supplier.id))
        ).scalar_one()
        result = SupplierDetail(**supplier_out(supplier).model_dump(), open_purchase_orders=list(open_orders), item_count=item_count)
        return Outcome(result, f"Read supplier {supplier.code}.", affected=[{"kind": "supplier", "id": supplier.id}])

    return await app.run(caller, "get_supplier", {"code": code}, work, result_type=SupplierDetail)


def order_out(order: PurchaseOrder, supplier_code: str) -> PurchaseOrderOut:
    """Convert a purchase order row to its tool result."""
    return PurchaseOrderOut(
        number=order.number,
        supplier=supplier_code,
        status=order.status,
        currency=order.currency,
        expected_date=iso(order.expected_date),
        owner=order.owner,
        issued_at=iso(order.issued_at),
    )


async def list_purchase_orders(
    app: Order3, caller: Caller, *, status: str, supplier: str, cursor: str | None, limit: int
) -> PurchaseOrderPage:
    """List purchase orders, optionally by status and supplier."""

    async def work(session: AsyncSession) -> Outcome:
        check_limit(limit)
        after = decode_cursor(cursor, "list_purchase_orders")
        if status and status not in PO_STATUSES:
            raise InvalidInputError(f"Purchase order status {status!r} is unknown; use one of {', '.join(PO_STATUSES)}.")
        supplier_id = None
        if supplier.strip():
            supplier_id = (await catalog.get_supplier_by_code(session, workspace_id=caller.workspace_id, code=supplier)).id
        rows = await purchasing.list_purchase_orders(
            session, workspace_id=caller.workspace_id, status=status or None, supplier_id=supplier_id, after_id=after, limit=limit + 1
        )
        orders, next_cursor = render_page(
            "list_purchase_orders", rows, limit, lambda row: row[0].id, lambda row: order_out(row[0], row[1].code)
        )
        result = PurchaseOrderPage(purchase_orders=orders, next_cursor=next_cursor)
        return Outcome(result, f"Listed {len(orders)} purchase orders.")

    arguments = {"status": status, "supplier": supplier, "cursor": cursor, "limit": limit}
    return await app.run(caller, "list_purchase_orders", arguments, work, result_type=PurchaseOrderPage)


async def get_purchase_order(app: Order3, caller: Caller, *, number: str) -> PurchaseOrderDetail:
    """Return one purchase order with its lines."""

    async def work(session: AsyncSession) -> Outcome:
        order = await purchasing.get_purchase_order_by_number(session, workspace_id=caller.workspace_id, number=number)
        supplier_code = (await session.execute(select(Supplier.code).where(Supplier.id == order.supplier_id))).scalar_one()
        lines = await purchasing.purchase_order_lines(session, purchase_order_id=order.id)  # type: ignore[arg-type]
        destinations = await _names(
            session, Location, {line.destination_location_id for line, _ in lines if line.destination_location_id}, "code"
        )
        result = PurchaseOrderDetail(
            **order_out(order, supplier_code).model_dump(),
            description=order.description,
            draft_id=order.draft_id,
            lines=[
                PurchaseOrderLineOut(
                    line=line.line_no,
                    sku=item.sku,
                    ordered=str(line.quantity_ordered),
                    received=str(line.quantity_received),
                    open=str(max(line.quantity_ordered - line.quantity_received, line.quantity_ordered * 0)),
                    unit_price=str(line.unit_price) if line.unit_price is not None else None,
                    expected_date=iso(line.expected_date),
                    destination=destinations.get(line.destination_location_id, "") if line.destination_location_id else "",
                )
                for line, item in lines
            ],
        )
        return Outcome(result, f"Read purchase order {order.number}.", affected=[{"kind": "purchase_order", "id": order.id}])

    return await app.run(caller, "get_purchase_order", {"number": number}, work, result_type=PurchaseOrderDetail)


async def list_receiving_events(
    app: Order3, caller: Caller, *, purchase_order: str, cursor: str | None, limit: int
) -> ReceivingEventPage:
    """List receiving events, optionally for one purchase order."""

    async def work(session: AsyncSession) -> Outcome:
        check_limit(limit)
        after = decode_cursor(cursor, "list_receiving_events")
        order_id = None
        if purchase_order.strip():
            order_id = (
                await purchasing.get_purchase_order_by_number(session, workspace_id=caller.workspace_id, number=purchase_order)
            ).id
        rows = await purchasing.list_receiving_events(
            session, workspace_id=caller.workspace_id, purchase_order_id=order_id, after_id=after, limit=limit + 1
        )
        kept = rows[:limit]
        skus = await _names(session, Item, {line.item_id for _, line, _ in kept}, "sku")
        def render(row: tuple[ReceivingEvent, PurchaseOrderLine, PurchaseOrder]) -> ReceivingEventOut:
            event, line, order = row
            return ReceivingEventOut(
                id=event.id,  # type: ignore[arg-type]
                purchase_order=order.number,
                line=line.line_no,
                sku=skus.get(line.item_id, ""),
                quantity=str(event.quantity),
                received_at=event.received_at.isoformat(),
                actor=event.actor,
            )

        events, next_cursor = render_page("list_receiving_events", rows, limit, lambda row: row[0].id, render)
        result = ReceivingEventPage(receiving_events=events, next_cursor=next_cursor)
        return Outcome(result, f"Listed {len(events)} receiving events.")

    arguments = {"purchase_order": purchase_order, "cursor": cursor, "limit": limit}
    return await app.run(caller, "list_receiving_events", arguments, work, result_type=ReceivingEventPage)


async def list_reservations(
    app: Order3, caller: Caller, *, sku: str, status: str, cursor: str | None, limit: int
) -> ReservationPage:
    """List reservations, optionally for one item or status."""

    async def work(session: AsyncSession) -> Outcome:
        check_limit(limit)
        after = decode_cursor(cursor, "list_reservations")
        if status and status not in RESERVATION_STATUSES:
            raise InvalidInputError(f"Reservation status {status!r} is unknown; use one of {', '.join(RESERVATION_STATUSES)}.")
        item_id = None
        if sku.strip():
            item_id = (await catalog.get_item_by_sku(session, workspace_id=caller.workspace_id, sku=sku)).id
        rows = await inventory.list_reservations(
            session, workspace_id=caller.workspace_id, item_id=item_id, status=status or None, after_id=after, limit=limit + 1
        )
        kept = rows[:limit]
        skus = await _names(session, Item, {r.item_id for r in kept}, "sku")
        locations = await _names(session, Location, {r.location_id for r in kept}, "code")
        def render(r: Reservation) -> ReservationOut:
            return ReservationOut(
                id=r.id,  # type: ignore[arg-type]
                sku=skus.get(r.item_id, ""),
                location=locations.get(r.location_id, ""),
                quantity=str(r.quantity),
                reference=r.reference,
                status=r.status,
            )

        reservations, next_cursor = render_page("list_reservations", rows, limit, lambda r: r.id, render)
        return Outcome(ReservationPage(reservations=reservations, next_cursor=next_cursor), f"Listed {len(reservations)} reservations.")

    arguments = {"sku": sku, "status": status, "cursor": cursor, "limit": limit}
    return await app.run(caller, "list_reservations", arguments, work, result_type=ReservationPage)

"""Receiving against purchase order lines: the receiving event, the receipt movement and the order's progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.changes import touch_items
from store.errors import ConflictError, InvalidInputError, NotFoundError
from store.models import (
    OPEN_PO_STATUSES,
    Item,
    Movement,
    PurchaseOrder,
    PurchaseOrderLine,
    ReceivingEvent,
    StockLevel,
)
from store.stock import Place, record_movement


@dataclass(frozen=True)
class Receipt:
    """The records one receipt wrote, with the line and order as they are afterwards."""

    event: ReceivingEvent
    movement: Movement
    line: PurchaseOrderLine
    order: PurchaseOrder
    on_hand: Decimal


def delivery_ref(line_id: int, delivery: str) -> str:
    """Return the receiving event's external reference for a delivery received on one line."""
    return f"delivery:line:{line_id}:{delivery}"


def check_open_for_receiving(order: PurchaseOrder) -> None:
    """Reject receiving against an order that is not issued or partially received.

    Raises:
        ConflictError: Naming the order's status and what to do instead.
    """
    if order.status in OPEN_PO_STATUSES:
        return
    reasons = {
        "received": "is fully received, so it accepts no further receipts; record extra goods as a new purchase order",
        "closed": "is closed, so it accepts no receipts; a late delivery for it needs a new purchase order",
        "cancelled": "is cancelled, so it accepts no receipts; a delivery for it needs a new purchase order",
        "draft": "is not issued yet, so nothing can be received against it",
    }
    reason = reasons.get(order.status, f"is {order.status}, so it accepts no receipts")
    raise ConflictError(f"Purchase order {order.number} {reason}.")


async def get_order_line(session: AsyncSession, *, order: PurchaseOrder, line_no: int) -> tuple[PurchaseOrderLine, Item]:
    """Return line `line_no` of a purchase order with its item.

    Raises:
        NotFoundError: Listing the order's line numbers when there is no such line.
    """
    rows = (
        await session.execute(
            select(PurchaseOrderLine, Item)
            .join(Item, Item.id == PurchaseOrderLine.item_id)
            .where(PurchaseOrderLine.purchase_order_id == order.id)
            .order_by(PurchaseOrderLine.line_no)
        )
    ).all()
    for line, item in rows:
        if line.line_no == line_no:
            return line, item
    numbers = ", ".join(str(line.line_no) for line, _ in rows) or "none"
    raise NotFoundError(f"Purchase order {order.number} has no line {line_no}; its lines are {numbers}.")


async def find_delivery(session: AsyncSession, *, workspace_id: int, line_id: int, delivery: str) -> ReceivingEvent | None:
    """Return the earlier receipt of `delivery` on this line, if there is one."""
    return (
        await session.execute(
            select(ReceivingEvent).where(
                ReceivingEvent.workspace_id == workspace_id,
                ReceivingEvent.external_ref == delivery_ref(line_id, delivery),
            )
        )
    ).scalar_one_or_none()


async def receive_line(
    session: AsyncSession,
    *,
    order: PurchaseOrder,
    line: PurchaseOrderLine,
    item: Item,
    quantity: Decimal,
    max_received: Decimal,
    place: Place,
    delivery: str,
    actor: str,
    received_at: datetime,
    tolerance_note: str,
) -> Receipt:
    """Receive `quantity` on a line in the caller's transaction.

    Writes the receipt movement through the ledger, the receiving event, the
    line's new received quantity and the order's status: received once every
    line has its ordered quantity, partially received before that. Both row
    updates are conditional on the version read, so a concurrent receipt on the
    same line or order makes this one fail rather than overwrite it.

    Args:
        max_received: The maximum total the line may have received, from the
            over-receipt tolerance. `tolerance_note` describes that tolerance.

    Raises:
        ConflictError: If the order is not open for receiving, the delivery was
            already received on this line, or the line or order changed concurrently.
        InvalidInputError: If the receipt would take the line past `max_received`.
    """
    check_open_for_receiving(order)
    label = f"{order.number} line {line.line_no} ({item.sku})"
    if delivery:
        earlier = await find_delivery(session, workspace_id=order.workspace_id, line_id=line.id, delivery=delivery)  # type: ignore[arg-type]
        if earlier is not None:
            raise ConflictError(
                f"Delivery {delivery!r} was already received on {label}: receiving event {earlier.id}, "
                f"{earlier.quantity} received by {earlier.actor or 'unknown'} at {earlier.received_at.isoformat()}. "
                "Nothing was received again; use another delivery reference if this is a different delivery."
            )
    total = line.quantity_received + quantity
    if total > max_received:
        room = max(max_received - line.quantity_received, Decimal(0))
        more = f"at most {room} more" if room > 0 else "nothing more"
        raise InvalidInputError(
            f"Receiving {quantity} on {label} would make {total} received against {line.quantity_ordered} ordered; "
            f"{tolerance_note} allows at most {max_received} in total, so {more} can be received on this line."
        )

    movement = await record_movement(
        session,
        workspace_id=order.workspace_id,
        item_id=item.id,  # type: ignore[arg-type]
        kind="receipt",
        quantity=quantity,
        destination=place,
        actor=actor,
        reference_kind="purchase_order_line",
        reference_id=line.id,
        reference=f"{order.number} line {line.line_no}",
        unit_cost=line.unit_price,
        occurred_at=received_at,
        item_label=item.sku,
    )
    event = ReceivingEvent(
        workspace_id=order.workspace_id,
        purchase_order_line_id=line.id,  # type: ignore[arg-type]
        quantity=quantity,
        location_id=place.location_id,
        bin_id=place.bin_id,
        movement_id=movement.id,
        actor=actor,
        received_at=received_at,
        external_ref=delivery_ref(line.id, delivery) if delivery else None,  # type: ignore[arg-type]
    )
    session.add(event)
    await session.flush()

    changed = await session.execute(
        update(PurchaseOrderLine)
        .where(PurchaseOrderLine.id == line.id, PurchaseOrderLine.version == line.version)
        .values(quantity_received=total, version=line.version + 1)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        raise ConflictError(f"{label} was received by someone else while this request ran; check it and retry.")
    await session.refresh(line)
    await _update_order_status(session, order=order, now=received_at)

    on_hand = (
        await session.execute(
            select(StockLevel.on_hand).where(
                StockLevel.workspace_id == order.workspace_id,
                StockLevel.item_id == item.id,
                StockLevel.location_id == place.location_id,
                StockLevel.bin_key == place.bin_key,
            )
        )
    ).scalar_one()
    return Receipt(event=event, movement=movement, line=line, order=order, on_hand=on_hand)


async def _update_order_status(session: AsyncSession, *, order: PurchaseOrder, now: datetime) -> None:
    lines = (
        await session.execute(select(PurchaseOrderLine).where(PurchaseOrderLine.purchase_order_id == order.id))
    ).scalars().all()
    complete = all(line.quantity_received >= line.quantity_ordered for line in lines)
    status = "received" if complete else "partially_received"
    changed = await session.execute(
        update(PurchaseOrder)
        .where(PurchaseOrder.id == order.id, PurchaseOrder.version == order.version)
        .values(status=status, version=order.version + 1, completed_at=now if complete else None)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        raise ConflictError(f"Purchase order {order.number} changed while this receipt ran; check it and retry.")
    if status != order.status:
        # The order's status and completion time feed the findings of every line, not only the one received,
        # whose item the receipt's movement touches anyway.
        touch_items(session, (line.item_id for line in lines))
    await session.refresh(order)

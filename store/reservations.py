"""Reservations: promising available stock to an order without overselling."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.changes import touch_items
from store.errors import InvalidInputError
from store.models import Reservation, StockLevel


async def reserve_stock(
    session: AsyncSession,
    *,
    workspace_id: int,
    item_id: int,
    location_id: int,
    quantity: Decimal,
    reference: str,
    item_label: str | None = None,
) -> Reservation:
    """Reserve `quantity` of an item at a location if that much is available.

    Available is on hand minus active reservations at the location. The stock
    level rows are read FOR UPDATE, so on PostgreSQL a second reservation for
    the same stock waits and then sees the first; SQLite's BEGIN IMMEDIATE
    already serialises the two transactions.

    Raises:
        InvalidInputError: If the quantity is not positive or exceeds what is available.
    """
    if quantity <= 0:
        raise InvalidInputError(f"Reservation quantity {quantity} must be greater than zero.")
    levels = (
        await session.execute(
            select(StockLevel.on_hand)
            .where(
                StockLevel.workspace_id == workspace_id,
                StockLevel.item_id == item_id,
                StockLevel.location_id == location_id,
            )
            .with_for_update()
        )
    ).scalars().all()
    on_hand = sum(levels, Decimal(0))
    reserved = (
        await session.execute(
            select(func.coalesce(func.sum(Reservation.quantity), 0)).where(
                Reservation.workspace_id == workspace_id,
                Reservation.item_id == item_id,
                Reservation.location_id == location_id,
                Reservation.status == "active",
            )
        )
    ).scalar_one()
    available = on_hand - Decimal(reserved)
    if quantity > available:
        raise InvalidInputError(
            f"Item {item_label or item_id} has {available} available at location {location_id} "
            f"({on_hand} on hand, {Decimal(reserved)} reserved); a reservation of {quantity} would oversell it."
        )
    reservation = Reservation(
        workspace_id=workspace_id,
        item_id=item_id,
        location_id=location_id,
        quantity=quantity,
        reference=reference,
        status="active",
    )
    session.add(reservation)
    await session.flush()
    touch_items(session, [item_id])
    return reservation

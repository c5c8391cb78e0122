"""Both sides of a mismatch as they are now: the current external snapshot and Order3's own figure.

A reconciliation draft records both figures when it is prepared, and its
execution reads them again here. The mismatch finder reads the same
`is_current` snapshot and builds the same `Measurement`, so a reconciliation
and the finder never disagree on what "ours" is.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.changes import touch_items
from store.errors import ConflictError
from store.finders.mismatches import Measurement
from store.models import ExternalSnapshot, Item, Location, Reservation, StockLevel
from store.stock import Place


async def current_snapshot(
    session: AsyncSession, *, workspace_id: int, source: str, record_kind: str, item_id: int, location_id: int | None
) -> ExternalSnapshot | None:
    """Return the snapshot the mismatch finder compares for this source, kind, item and location, if any."""
    return (
        await session.execute(
            select(ExternalSnapshot)
            .where(
                ExternalSnapshot.workspace_id == workspace_id,
                ExternalSnapshot.is_current.is_(True),
                ExternalSnapshot.record_kind == record_kind,
                ExternalSnapshot.source == source,
                ExternalSnapshot.item_id == item_id,
                ExternalSnapshot.location_key == (location_id or 0),
            )
            .order_by(ExternalSnapshot.id.desc())
        )
    ).scalars().first()


async def measure(
    session: AsyncSession, *, snapshot: ExternalSnapshot, item: Item, location: Location | None
) -> Measurement:
    """Return both sides of a snapshot's comparison with Order3's current figures.

    On hand sums every bin of the location (or every location for a
    workspace-wide snapshot). Reservations count only for channel quantities,
    as in the mismatch finder.
    """
    # SUM keeps the column's type, so it returns an exact Decimal (or None for no rows).
    levels = select(func.sum(StockLevel.on_hand)).where(
        StockLevel.workspace_id == snapshot.workspace_id, StockLevel.item_id == item.id
    )
    held = select(func.sum(Reservation.quantity)).where(
        Reservation.workspace_id == snapshot.workspace_id, Reservation.item_id == item.id, Reservation.status == "active"
    )
    if location is not None:
        levels = levels.where(StockLevel.location_id == location.id)
        held = held.where(Reservation.location_id == location.id)
    on_hand = (await session.execute(levels)).scalar_one() or Decimal(0)
    reserved = Decimal(0)
    if snapshot.record_kind == "channel_quantity":
        reserved = (await session.execute(held)).scalar_one() or Decimal(0)
    reported = snapshot.quantity if snapshot.record_kind == "channel_quantity" else snapshot.value
    return Measurement(
        source=snapshot.source,
        record_kind=snapshot.record_kind,
        external_id=snapshot.external_id,
        batch_id=snapshot.batch_id,
        received_at=snapshot.received_at,
        item_id=item.id,  # type: ignore[arg-type]
        sku=item.sku,
        item_owner=item.owner,
        location_id=location.id if location else None,
        location_code=location.code if location else "",
        reported=reported if reported is not None else Decimal(0),
        on_hand=on_hand,
        reserved=reserved,
        unit_cost=item.unit_cost,
        currency=item.currency,
    )


async def on_hand_at(session: AsyncSession, *, workspace_id: int, item_id: int, place: Place) -> Decimal:
    """Return the on hand of one stock level row: a location's own stock, or one bin's."""
    level = (
        await session.execute(
            select(StockLevel.on_hand).where(
                StockLevel.workspace_id == workspace_id,
                StockLevel.item_id == item_id,
                StockLevel.location_id == place.location_id,
                StockLevel.bin_key == place.bin_key,
            )
        )
    ).scalar_one_or_none()
    return level if level is not None else Decimal(0)


async def acknowledge_snapshot(session: AsyncSession, *, snapshot_id: int) -> None:
    """Stop comparing a snapshot whose difference a person accepted, so the mismatch finder no longer reports it.

    The snapshot row stays, as received. The next snapshot the source sends for
    the same item and location becomes current and is compared again.

    Raises:
        ConflictError: If the snapshot stopped being current while this request ran.
    """
    changed = await session.execute(
        update(ExternalSnapshot)
        .where(ExternalSnapshot.id == snapshot_id, ExternalSnapshot.is_current.is_(True))
        .values(is_current=False)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        raise ConflictError(f"External snapshot {snapshot_id} was replaced while this request ran; retry it.")
    item_id = (await session.execute(select(ExternalSnapshot.item_id).where(ExternalSnapshot.id == snapshot_id))).scalar_one()
    touch_items(session, [item_id])

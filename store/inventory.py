"""Read side of stock: levels with availability, movements, reservations and counts."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import bindparam, func, literal, null, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import (
    OPEN_PO_STATUSES,
    Bin,
    CountResult,
    Location,
    Movement,
    PurchaseOrder,
    PurchaseOrderLine,
    Reservation,
    StockLevel,
)
from store.paging import keyset_page


@dataclass(frozen=True)
class StockRow:
    """On hand at one location or bin."""

    location_id: int
    location_code: str
    bin_id: int | None
    bin_code: str
    on_hand: Decimal


@dataclass(frozen=True)
class StockPosition:
    """An item's stock across the workspace."""

    rows: list[StockRow]
    on_hand: Decimal
    reserved: Decimal
    available: Decimal
    on_order: Decimal
    reserved_by_location: dict[int, Decimal]


# The statement of `stock_position`, built once: it runs on every get_item call.
_POSITION = union_all(
    select(
        literal("level").label("part"),
        StockLevel.location_id,
        Location.code.label("location_code"),
        StockLevel.bin_id,
        Bin.code.label("bin_code"),
        StockLevel.on_hand.label("quantity"),
    )
    .join(Location, Location.id == StockLevel.location_id)
    .outerjoin(Bin, Bin.id == StockLevel.bin_id)
    .where(
        StockLevel.workspace_id == bindparam("workspace_id"),
        StockLevel.item_id == bindparam("item_id"),
        StockLevel.on_hand != 0,
    ),
    select(
        literal("reserved"),
        Reservation.location_id,
        null(),
        null(),
        null(),
        func.sum(Reservation.__table__.c.quantity),
    )
    .where(
        Reservation.workspace_id == bindparam("workspace_id"),
        Reservation.item_id == bindparam("item_id"),
        Reservation.status == "active",
    )
    .group_by(Reservation.location_id),
    select(
        literal("ordered"),
        null(),
        null(),
        null(),
        null(),
        func.sum(PurchaseOrderLine.__table__.c.quantity_ordered - PurchaseOrderLine.__table__.c.quantity_received),
    )
    .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
    .where(
        PurchaseOrderLine.workspace_id == bindparam("workspace_id"),
        PurchaseOrderLine.item_id == bindparam("item_id"),
        PurchaseOrder.status.in_(OPEN_PO_STATUSES),
        PurchaseOrderLine.quantity_ordered > PurchaseOrderLine.quantity_received,
    ),
).order_by("part", "location_code", "bin_code")


async def stock_position(session: AsyncSession, *, workspace_id: int, item_id: int) -> StockPosition:
    """Return on hand per place, active reservations and open on-order quantity for one item."""
    rows: list[StockRow] = []
    reserved_by_location: dict[int, Decimal] = {}
    on_order = Decimal(0)
    # One statement: stock per place ("level"), reservations per location ("reserved") and open PO quantity ("ordered").
    for part, location_id, location_code, bin_id, bin_code, quantity in (
        await session.execute(_POSITION, {"workspace_id": workspace_id, "item_id": item_id})
    ).all():
        if part == "level":
            rows.append(StockRow(location_id, location_code, bin_id, bin_code or "", quantity))
        elif part == "reserved":
            reserved_by_location[location_id] = quantity
        elif quantity is not None:
            on_order = quantity

    on_hand = sum((row.on_hand for row in rows), Decimal(0))
    reserved = sum(reserved_by_location.values(), Decimal(0))
    return StockPosition(
        rows=rows,
        on_hand=on_hand,
        reserved=reserved,
        available=on_hand - reserved,
        on_order=on_order,
        reserved_by_location=reserved_by_location,
    )


@dataclass(frozen=True)
class PlaceAvailability:
    """What can leave one place: its on hand, and the reservations that claim stock there.

    A reservation pinned to a bin claims stock in that bin, and one without a bin
    claims stock anywhere in the location. So stock may leave a bin only while it
    stays above the bin's own reservations and the location as a whole can still
    cover all of its reservations.
    """

    on_hand: Decimal
    reserved_here: Decimal
    location_on_hand: Decimal
    location_reserved: Decimal

    @property
    def available(self) -> Decimal:
        return min(self.on_hand - self.reserved_here, self.location_on_hand - self.location_reserved)


async def on_hand_at(
    session: AsyncSession, *, workspace_id: int, item_id: int, location_id: int, bin_id: int | None, lock: bool = False
) -> Decimal:
    """Return the on hand of an item at one location, or one bin of it; bin None is stock held at the location itself.

    With `lock`, the stock level row is read FOR UPDATE, as in `availability_at`.
    """
    statement = select(StockLevel.on_hand).where(
        StockLevel.workspace_id == workspace_id,
        StockLevel.item_id == item_id,
        StockLevel.location_id == location_id,
        StockLevel.bin_key == (bin_id or 0),
    )
    if lock:
        statement = statement.with_for_update()
    on_hand = (await session.execute(statement)).scalar_one_or_none()
    return on_hand if on_hand is not None else Decimal(0)


async def availability_at(
    session: AsyncSession, *, workspace_id: int, item_id: int, location_id: int, bin_id: int | None, lock: bool = False
) -> PlaceAvailability:
    """Return on hand and active reservations of an item at one place and across its location.

    With `lock`, the item's stock level rows at the location are read FOR UPDATE,
    as `reserve_stock` reads them. On PostgreSQL a concurrent writer of the same
    stock then waits for this transaction and reads what it committed; SQLite's
    BEGIN IMMEDIATE already serialises writers.
    """
    statement = select(StockLevel.bin_key, StockLevel.on_hand).where(
        StockLevel.workspace_id == workspace_id,
        StockLevel.item_id == item_id,
        StockLevel.location_id == location_id,
    )
    if lock:
        statement = statement.with_for_update()
    on_hand_by_bin = dict((await session.execute(statement)).all())
    reserved_rows = (
        await session.execute(
            select(Reservation.bin_id, func.sum(Reservation.__table__.c.quantity))
            .where(
                Reservation.workspace_id == workspace_id,
                Reservation.item_id == item_id,
                Reservation.location_id == location_id,
                Reservation.status == "active",
            )
            .group_by(Reservation.bin_id)
        )
    ).all()
    reserved_by_bin: dict[int | None, Decimal] = {reserved_bin: total for reserved_bin, total in reserved_rows}
    return PlaceAvailability(
        on_hand=on_hand_by_bin.get(bin_id or 0, Decimal(0)),
        reserved_here=reserved_by_bin.get(bin_id, Decimal(0)) if bin_id is not None else Decimal(0),
        location_on_hand=sum(on_hand_by_bin.values(), Decimal(0)),
        location_reserved=sum(reserved_by_bin.values(), Decimal(0)),
    )


async def list_movements(
    session: AsyncSession,
    *,
    workspace_id: int,
    item_id: int | None = None,
    location_id: int | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> list[Movement]:
    """Return ledger entries newest last, filtered by item and by either side's location."""
    statement = select(Movement).where(Movement.workspace_id == workspace_id)
    if item_id is not None:
        statement = statement.where(Movement.item_id == item_id)
    if location_id is not None:
        statement = statement.where(
            (Movement.from_location_id == location_id) | (Movement.to_location_id == location_id)
        )
    return await keyset_page(session, statement, Movement.id, after_id=after_id, limit=limit)


async def list_reservations(
    session: AsyncSession,
    *,
    workspace_id: int,
    item_id: int | None = None,
    status: str | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> list[Reservation]:
    """Return reservations ordered by id."""
    statement = select(Reservation).where(Reservation.workspace_id == workspace_id)
    if item_id is not None:
        statement = statement.where(Reservation.item_id == item_id)
    if status is not None:
        statement = statement.where(Reservation.status == status)
    return await keyset_page(session, statement, Reservation.id, after_id=after_id, limit=limit)


async def list_counts(
    session: AsyncSession,
    *,
    workspace_id: int,
    item_id: int | None = None,
    location_id: int | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> list[CountResult]:
    """Return count results ordered by id."""
    statement = select(CountResult).where(CountResult.workspace_id == workspace_id)
    if item_id is not None:
        statement = statement.where(CountResult.item_id == item_id)
    if location_id is not None:
        statement = statement.where(CountResult.location_id == location_id)
    return await keyset_page(session, statement, CountResult.id, after_id=after_id, limit=limit)

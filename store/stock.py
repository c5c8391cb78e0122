"""The movement ledger: every change to on hand goes through `record_movement`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.changes import touch_items
from store.dialect import insert_ignoring_conflict
from store.errors import ConflictError, InvalidInputError
from store.models import MOVEMENT_KINDS, Movement, StockLevel
from store.types import utc_now


@dataclass(frozen=True)
class Place:
    """A location, optionally narrowed to one bin."""

    location_id: int
    bin_id: int | None = None

    @property
    def bin_key(self) -> int:
        return self.bin_id or 0


async def _level(session: AsyncSession, *, workspace_id: int, item_id: int, place: Place) -> StockLevel | None:
    # FOR NO KEY UPDATE: on PostgreSQL a second writer of the same level waits here
    # for this transaction and then reads its committed quantity, instead of failing
    # the version check below. SQLite ignores the clause; BEGIN IMMEDIATE serialises there.
    return (
        await session.execute(
            select(StockLevel)
            .where(
                StockLevel.workspace_id == workspace_id,
                StockLevel.item_id == item_id,
                StockLevel.location_id == place.location_id,
                StockLevel.bin_key == place.bin_key,
            )
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def _change_level(
    session: AsyncSession,
    *,
    workspace_id: int,
    item_id: int,
    place: Place,
    delta: Decimal,
    allow_negative: bool,
    item_label: str,
) -> None:
    level = await _level(session, workspace_id=workspace_id, item_id=item_id, place=place)
    current = level.on_hand if level is not None else Decimal(0)
    new = current + delta
    if new < 0 and not allow_negative:
        where = f"location {place.location_id}" + (f" bin {place.bin_id}" if place.bin_id else "")
        raise InvalidInputError(
            f"Item {item_label} has {current} on hand at {where}; removing {-delta} would make stock negative."
        )
    if level is None:
        # Two first movements into one place may race to create its level. The
        # loser's insert does nothing, and it changes the winner's row instead.
        created = await session.execute(
            insert_ignoring_conflict(session, StockLevel.__table__, index_elements=["item_id", "location_id", "bin_key"]).values(
                workspace_id=workspace_id,
                item_id=item_id,
                location_id=place.location_id,
                bin_id=place.bin_id,
                bin_key=place.bin_key,
                on_hand=new,
                version=1,
                updated_at=utc_now(),
            )
        )
        if created.rowcount == 1:
            return
        await _change_level(
            session, workspace_id=workspace_id, item_id=item_id, place=place, delta=delta,
            allow_negative=allow_negative, item_label=item_label,
        )
        return
    # Conditional on the version read above: a concurrent writer that slipped past
    # the transaction lock (possible only on PostgreSQL) makes this match no row.
    changed = await session.execute(
        update(StockLevel)
        .where(StockLevel.id == level.id, StockLevel.version == level.version)
        .values(on_hand=new, version=level.version + 1, updated_at=utc_now())
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        raise ConflictError(f"Stock of item {item_label} changed while this request ran; retry it.")
    await session.refresh(level)


async def record_movement(
    session: AsyncSession,
    *,
    workspace_id: int,
    item_id: int,
    kind: str,
    quantity: Decimal,
    source: Place | None = None,
    destination: Place | None = None,
    actor: str,
    reference_kind: str = "",
    reference_id: int | None = None,
    reference: str = "",
    unit_cost: Decimal | None = None,
    occurred_at: datetime | None = None,
    external_ref: str | None = None,
    allow_negative: bool = False,
    item_label: str | None = None,
) -> Movement:
    """Append a movement and update the affected stock levels in the caller's transaction.

    Raises:
        InvalidInputError: If the quantity is not positive, the kind is unknown,
            neither side is given, or the source would go negative.
        ConflictError: If a stock level changed concurrently.
    """
    if kind not in MOVEMENT_KINDS:
        raise InvalidInputError(f"Movement kind {kind!r} is unknown; use one of {', '.join(MOVEMENT_KINDS)}.")
    if quantity <= 0:
        raise InvalidInputError(f"Movement quantity {quantity} must be greater than zero.")
    if source is None and destination is None:
        raise InvalidInputError("A movement needs a source, a destination, or both.")
    label = item_label or str(item_id)
    touch_items(session, [item_id])

    if source is not None:
        await _change_level(
            session,
            workspace_id=workspace_id,
            item_id=item_id,
            place=source,
            delta=-quantity,
            allow_negative=allow_negative,
            item_label=label,
        )
    if destination is not None:
        await _change_level(
            session,
            workspace_id=workspace_id,
            item_id=item_id,
            place=destination,
            delta=quantity,
            allow_negative=True,
            item_label=label,
        )

    movement = Movement(
        workspace_id=workspace_id,
        item_id=item_id,
        kind=kind,
        quantity=quantity,
        from_location_id=source.location_id if source else None,
        from_bin_id=source.bin_id if source else None,
        to_location_id=destination.location_id if destination else None,
        to_bin_id=destination.bin_id if destination else None,
        unit_cost=unit_cost,
        reference_kind=reference_kind,
        reference_id=reference_id,
        reference=reference,
        actor=actor,
        occurred_at=occurred_at or utc_now(),
        external_ref=external_ref,
    )
    session.add(movement)
    await session.flush()
    return movement


@dataclass(frozen=True)
class LedgerMismatch:
    """A stock level whose stored on hand differs from the sum of its movements."""

    item_id: int
    location_id: int
    bin_id: int | None
    on_hand: Decimal
    ledger_sum: Decimal


async def verify_ledger(session: AsyncSession, *, workspace_id: int) -> tuple[int, list[LedgerMismatch]]:
    """Compare every stock level with the sum of movements into and out of it.

    The bin fallback is an inline literal: PostgreSQL matches GROUP BY
    expressions textually, and two bound parameters would not match.

    Returns the number of levels checked and the ones that disagree, including
    ledger balances that have no stock level row at all.
    """
    inbound = (
        select(
            Movement.item_id.label("item_id"),
            Movement.to_location_id.label("location_id"),
            func.coalesce(Movement.to_bin_id, literal_column("0")).label("bin_key"),
            func.sum(Movement.__table__.c.quantity).label("qty"),
        )
        .where(Movement.workspace_id == workspace_id, Movement.to_location_id.is_not(None))
        .group_by(Movement.item_id, Movement.to_location_id, func.coalesce(Movement.to_bin_id, literal_column("0")))
    )
    outbound = (
        select(
            Movement.item_id.label("item_id"),
            Movement.from_location_id.label("location_id"),
            func.coalesce(Movement.from_bin_id, literal_column("0")).label("bin_key"),
            func.sum(Movement.__table__.c.quantity).label("qty"),
        )
        .where(Movement.workspace_id == workspace_id, Movement.from_location_id.is_not(None))
        .group_by(Movement.item_id, Movement.from_location_id, func.coalesce(Movement.from_bin_id, literal_column("0")))
    )
    # SUM runs over the stored integers and converts once, so the totals are exact.
    balances: dict[tuple[int, int, int], Decimal] = {}
    for row in (await session.execute(inbound)).all():
        key = (row.item_id, row.location_id, row.bin_key)
        balances[key] = balances.get(key, Decimal(0)) + row.qty
    for row in (await session.execute(outbound)).all():
        key = (row.item_id, row.location_id, row.bin_key)
        balances[key] = balances.get(key, Decimal(0)) - row.qty

    mismatches: list[LedgerMismatch] = []
    levels = (await session.execute(select(StockLevel).where(StockLevel.workspace_id == workspace_id))).scalars().all()
    for level in levels:
        key = (level.item_id, level.location_id, level.bin_key)
        ledger = balances.pop(key, Decimal(0))
        if ledger != level.on_hand:
            mismatches.append(LedgerMismatch(level.item_id, level.location_id, level.bin_id, level.on_hand, ledger))
    for (item_id, location_id, bin_key), ledger in balances.items():
        if ledger != 0:
            mismatches.append(LedgerMismatch(item_id, location_id, bin_key or None, Decimal(0), ledger))
    return len(levels), mismatches

"""The transfer flow: ship stock from a source into transit, then receive it at the destination."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.errors import ConflictError, NotFoundError
from store.models import Location, Transfer
from store.paging import keyset_page
from store.stock import Place, record_movement

# Code of the location created to hold goods in transit when a workspace has none of kind "transit".
TRANSIT_CODE = "IN-TRANSIT"


async def transit_location(session: AsyncSession, *, workspace_id: int) -> Location:
    """Return the workspace's transit location, creating IN-TRANSIT on first use.

    The oldest location of kind "transit" is used when there is one.

    NOTE: stock here counts toward no location's availability, so the low-stock
    finder does not see a transfer on its way to a destination.

    Raises:
        ConflictError: If no transit location exists and the code IN-TRANSIT
            belongs to a location of another kind.
    """
    existing = (
        await session.execute(
            select(Location).where(Location.workspace_id == workspace_id, Location.kind == "transit").order_by(Location.id)
        )
    ).scalars().first()
    if existing is not None:
        return existing

    same_code = (
        await session.execute(select(Location).where(Location.workspace_id == workspace_id, Location.code == TRANSIT_CODE))
    ).scalar_one_or_none()
    if same_code is not None:
        raise ConflictError(
            f"Location {TRANSIT_CODE} is a {same_code.kind} location, so transfers cannot ship into it; give the "
            "workspace a location of kind transit, which transfers then use, and execute the draft again."
        )
    # A new, empty location changes no finding; the movement into it touches its item.
    location = Location(workspace_id=workspace_id, code=TRANSIT_CODE, name="Goods in transit between locations", kind="transit")
    try:
        async with session.begin_nested():
            session.add(location)
    except IntegrityError:
        # Another transaction created it first, which can happen on PostgreSQL
        # only; the savepoint keeps this transaction usable to read that row.
        location = (
            await session.execute(
                select(Location).where(Location.workspace_id == workspace_id, Location.code == TRANSIT_CODE)
            )
        ).scalar_one()
    return location


async def _next_number(session: AsyncSession, *, workspace_id: int) -> str:
    # Transfers are never deleted, so the count gives the next free number. Two
    # writers that race on PostgreSQL collide on the unique (workspace, number).
    existing = (
        await session.execute(select(func.count()).select_from(Transfer).where(Transfer.workspace_id == workspace_id))
    ).scalar_one()
    return f"TR-{existing + 1:06d}"


async def ship_transfer(
    session: AsyncSession,
    *,
    workspace_id: int,
    item_id: int,
    quantity: Decimal,
    source: Place,
    destination: Place,
    unit_cost: Decimal | None,
    actor: str,
    draft_id: int | None,
    shipped_at: datetime,
    item_label: str,
) -> Transfer:
    """Create a transfer and move its quantity from the source into the transit location.

    Raises:
        InvalidInputError: If the source has less on hand than the quantity.
        ConflictError: If the transfer number or a stock level was taken concurrently,
            or no transit location can be used (see `transit_location`).
    """
    transit = await transit_location(session, workspace_id=workspace_id)
    transfer = Transfer(
        workspace_id=workspace_id,
        number=await _next_number(session, workspace_id=workspace_id),
        item_id=item_id,
        quantity=quantity,
        from_location_id=source.location_id,
        from_bin_id=source.bin_id,
        to_location_id=destination.location_id,
        to_bin_id=destination.bin_id,
        transit_location_id=transit.id,  # type: ignore[arg-type]
        status="in_transit",
        unit_cost=unit_cost,
        draft_id=draft_id,
        shipped_by=actor,
        shipped_at=shipped_at,
    )
    session.add(transfer)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError("Another transfer was numbered at the same time; retry the request.") from exc

    movement = await record_movement(
        session,
        workspace_id=workspace_id,
        item_id=item_id,
        kind="transfer",
        quantity=quantity,
        source=source,
        destination=Place(transit.id),  # type: ignore[arg-type]
        actor=actor,
        reference_kind="transfer",
        reference_id=transfer.id,
        reference=f"{transfer.number} shipped",
        unit_cost=unit_cost,
        occurred_at=shipped_at,
        item_label=item_label,
    )
    transfer.ship_movement_id = movement.id
    await session.flush()
    return transfer


async def receive_transfer(
    session: AsyncSession, *, transfer: Transfer, actor: str, received_at: datetime, item_label: str
) -> Transfer:
    """Move an in-transit transfer's quantity from the transit location to its destination.

    Raises:
        ConflictError: If the transfer was already received, or is received by
            another request at the same time.
        InvalidInputError: If the transit location no longer has the quantity on
            hand, for example after a correction there by another tool.
    """
    if transfer.status != "in_transit":
        raise ConflictError(
            f"Transfer {transfer.number} was already received by {transfer.received_by or 'an unknown actor'} "
            f"at {transfer.received_at.isoformat() if transfer.received_at else 'an unknown time'}; a transfer is received only once."
        )
    movement = await record_movement(
        session,
        workspace_id=transfer.workspace_id,
        item_id=transfer.item_id,
        kind="transfer",
        quantity=transfer.quantity,
        source=Place(transfer.transit_location_id),
        destination=Place(transfer.to_location_id, transfer.to_bin_id),
        actor=actor,
        reference_kind="transfer",
        reference_id=transfer.id,
        reference=f"{transfer.number} received",
        unit_cost=transfer.unit_cost,
        occurred_at=received_at,
        item_label=item_label,
    )
    # Conditional on the status and version read: of two concurrent receipts, the
    # second matches no row and its movement is rolled back with it.
    changed = await session.execute(
        update(Transfer)
        .where(Transfer.id == transfer.id, Transfer.version == transfer.version, Transfer.status == "in_transit")
        .values(
            status="received",
            received_by=actor,
            received_at=received_at,
            receive_movement_id=movement.id,
            version=transfer.version + 1,
        )
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        raise ConflictError(f"Transfer {transfer.number} was received by another request at the same time; nothing was written.")
    await session.refresh(transfer)
    return transfer


async def get_transfer_by_number(session: AsyncSession, *, workspace_id: int, number: str) -> Transfer:
    """Return the transfer numbered `number`: "TR-000001" in any case, or just its number, 1.

    Raises:
        NotFoundError: If the workspace has no such transfer.
    """
    clean = number.strip().upper()
    if clean.isdigit():
        clean = f"TR-{int(clean):06d}"
    transfer = (
        await session.execute(select(Transfer).where(Transfer.workspace_id == workspace_id, Transfer.number == clean))
    ).scalar_one_or_none()
    if transfer is None:
        raise NotFoundError(f"Transfer {number!r} does not exist in this workspace; `order3 transfer list` shows transfer numbers.")
    return transfer


async def list_transfers(
    session: AsyncSession, *, workspace_id: int, status: str | None = None, after_id: int | None = None, limit: int = 50
) -> list[Transfer]:
    """Return transfers ordered by id, optionally only those in one status."""
    statement = select(Transfer).where(Transfer.workspace_id == workspace_id)
    if status is not None:
        statement = statement.where(Transfer.status == status)
    return await keyset_page(session, statement, Transfer.id, after_id=after_id, limit=limit)

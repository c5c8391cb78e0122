"""Transfer services: receiving a shipped transfer at its destination, and listing transfers."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from order3_mcp.pagination import check_limit, decode_cursor, render_page
from order3_mcp.schemas import TransferOut, TransferPage
from store import transfers
from store.changes import item_scoped
from store.errors import InvalidInputError
from store.models import TRANSFER_STATUSES, Bin, Item, Location, Transfer


async def _render(session: AsyncSession, rows: list[Transfer]) -> dict[int, TransferOut]:
    """Return each transfer's view by id, with SKUs and place codes in place of ids."""
    location_ids = {i for t in rows for i in (t.from_location_id, t.to_location_id, t.transit_location_id)}
    bin_ids = {i for t in rows for i in (t.from_bin_id, t.to_bin_id) if i is not None}
    locations = dict((await session.execute(select(Location.id, Location.code).where(Location.id.in_(location_ids)))).all())
    bins = dict((await session.execute(select(Bin.id, Bin.code).where(Bin.id.in_(bin_ids)))).all()) if bin_ids else {}
    skus = dict((await session.execute(select(Item.id, Item.sku).where(Item.id.in_({t.item_id for t in rows})))).all())

    def place(location_id: int, bin_id: int | None) -> str:
        return f"{locations[location_id]}/{bins[bin_id]}" if bin_id is not None else locations[location_id]

    return {
        t.id: TransferOut(  # type: ignore[misc]
            number=t.number,
            sku=skus[t.item_id],
            quantity=str(t.quantity),
            from_place=place(t.from_location_id, t.from_bin_id),
            to_place=place(t.to_location_id, t.to_bin_id),
            transit_place=locations[t.transit_location_id],
            status=t.status,
            draft_id=t.draft_id,
            shipped_by=t.shipped_by,
            shipped_at=t.shipped_at.isoformat(),
            received_by=t.received_by,
            received_at=t.received_at.isoformat() if t.received_at else None,
        )
        for t in rows
    }


async def receive_transfer(app: Order3, caller: Caller, *, transfer: str, idempotency_key: str | None = None) -> TransferOut:
    """Receive a shipped transfer at its destination: the stock leaves transit and arrives there.

    Raises:
        NotFoundError: If the workspace has no such transfer.
        ConflictError: If it was already received.
    """

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        found = await transfers.get_transfer_by_number(session, workspace_id=caller.workspace_id, number=transfer)
        sku = (await session.execute(select(Item.sku).where(Item.id == found.item_id))).scalar_one()
        received = await transfers.receive_transfer(session, transfer=found, actor=caller.principal, received_at=app.clock(), item_label=sku)
        view = (await _render(session, [received]))[received.id]  # type: ignore[index]
        summary = (
            f"Received transfer {view.number}: {view.quantity} {view.sku} from {view.transit_place} into {view.to_place}."
        )
        affected = [{"kind": "transfer", "id": received.id}, {"kind": "movement", "id": received.receive_movement_id}]
        return Outcome(view, summary, affected=affected, draft_id=received.draft_id)

    return await app.run(
        caller, "transfer_receive", {"transfer": transfer}, work, result_type=TransferOut, idempotency_key=idempotency_key
    )


async def list_transfers(app: Order3, caller: Caller, *, status: str, cursor: str | None, limit: int) -> TransferPage:
    """List transfers, optionally only those in transit or received."""

    async def work(session: AsyncSession) -> Outcome:
        check_limit(limit)
        after = decode_cursor(cursor, "transfer_list")
        if status and status not in TRANSFER_STATUSES:
            raise InvalidInputError(f"Transfer status {status!r} is unknown; use one of {', '.join(TRANSFER_STATUSES)}.")
        rows = await transfers.list_transfers(
            session, workspace_id=caller.workspace_id, status=status or None, after_id=after, limit=limit + 1
        )
        views = await _render(session, rows) if rows else {}
        listed, next_cursor = render_page("transfer_list", rows, limit, lambda t: t.id, lambda t: views[t.id])
        return Outcome(TransferPage(transfers=listed, next_cursor=next_cursor), f"Listed {len(listed)} transfers.")

    arguments = {"status": status, "cursor": cursor, "limit": limit}
    return await app.run(caller, "transfer_list", arguments, work, result_type=TransferPage)

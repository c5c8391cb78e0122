"""Supplier note drafts: executed by queuing the note in the outbox, where an integration picks it up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.services.kinds import KindExecutor, Performed
from store.models import Draft, PurchaseOrder, Supplier
from store.outbox import queue_message

if TYPE_CHECKING:
    from order3_mcp.app import Caller, Order3


async def revalidate(session: AsyncSession, draft: Draft) -> str:
    """Return why the note can no longer be queued: supplier inactive, address changed, or order gone."""
    payload = draft.payload
    supplier = (await session.execute(select(Supplier).where(Supplier.id == payload["supplier_id"]))).scalar_one_or_none()
    if supplier is None or not supplier.active:
        return f"Supplier {payload['supplier_code']} is no longer active, so the note was not queued."
    # The approver saw the recipient address; a note never goes to an address nobody approved.
    if supplier.contact_email != payload["recipient"]:
        return (
            f"Supplier {supplier.code}'s contact email changed from {payload['recipient']!r} to "
            f"{supplier.contact_email!r} since the draft; prepare a new note for the new address."
        )
    if payload.get("purchase_order_id") is not None:
        order = (
            await session.execute(select(PurchaseOrder).where(PurchaseOrder.id == payload["purchase_order_id"]))
        ).scalar_one_or_none()
        if order is None or order.supplier_id != supplier.id:
            return f"Purchase order {payload['purchase_order_number']} no longer belongs to supplier {supplier.code}."
    return ""


async def perform(session: AsyncSession, app: Order3, caller: Caller, draft: Draft) -> Performed:
    """Queue the note in the outbox; nothing is sent from Order3 itself."""
    payload = draft.payload
    message = await queue_message(
        session,
        workspace_id=caller.workspace_id,
        supplier_id=payload["supplier_id"],
        recipient=payload["recipient"],
        subject=payload["subject"],
        body=payload["body"],
        draft_id=draft.id,  # type: ignore[arg-type]
        purchase_order_id=payload.get("purchase_order_id"),
        queued_by=caller.principal,
        now=app.clock(),
    )
    return {"outbox_message": message.id}, [{"kind": "outbox_message", "id": message.id}]


EXECUTOR = KindExecutor(revalidate=revalidate, perform=perform)

"""Outbox services: reading the supplier notes that executed drafts queued."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from order3_mcp.pagination import check_limit, decode_cursor, render_page
from order3_mcp.schemas import OutboxMessageDetail, OutboxMessageOut, OutboxPage
from order3_mcp.services.supplier_notes import find_supplier
from store import outbox
from store.models import OutboxMessage


def _fields(message: OutboxMessage, suppliers: dict[int, str], orders: dict[int, str]) -> dict[str, object]:
    return {
        "message_id": message.id,
        "supplier": suppliers.get(message.supplier_id, ""),
        "recipient": message.recipient,
        "purchase_order": orders.get(message.purchase_order_id, "") if message.purchase_order_id is not None else "",
        "subject": message.subject,
        "status": message.status,
        "draft_id": message.draft_id,
        "queued_by": message.queued_by,
        "created_at": message.created_at.isoformat(),
    }


async def list_outbox(
    app: Order3, caller: Caller, *, status: str, supplier: str, cursor: str | None, limit: int
) -> OutboxPage:
    """List outbox messages, optionally of one status and one supplier."""

    async def work(session: AsyncSession) -> Outcome:
        check_limit(limit)
        after = decode_cursor(cursor, "list_outbox")
        supplier_id = None
        if supplier.strip():
            supplier_id = (await find_supplier(session, workspace_id=caller.workspace_id, code=supplier)).id
        rows = await outbox.list_messages(
            session,
            workspace_id=caller.workspace_id,
            status=status.strip() or None,
            supplier_id=supplier_id,
            after_id=after,
            limit=limit + 1,
        )
        suppliers, orders = await outbox.message_labels(session, rows)
        listed, next_cursor = render_page(
            "list_outbox", rows, limit, lambda m: m.id, lambda m: OutboxMessageOut(**_fields(m, suppliers, orders))
        )
        return Outcome(OutboxPage(messages=listed, next_cursor=next_cursor), f"Listed {len(listed)} outbox messages.")

    arguments = {"status": status, "supplier": supplier, "cursor": cursor, "limit": limit}
    return await app.run(caller, "list_outbox", arguments, work, result_type=OutboxPage)


async def get_outbox_message(app: Order3, caller: Caller, *, message_id: int) -> OutboxMessageDetail:
    """Return one outbox message with its body."""

    async def work(session: AsyncSession) -> Outcome:
        message = await outbox.get_message(session, workspace_id=caller.workspace_id, message_id=message_id)
        suppliers, orders = await outbox.message_labels(session, [message])
        detail = OutboxMessageDetail(**_fields(message, suppliers, orders), body=message.body)
        return Outcome(
            detail, f"Read outbox message {message.id}.", affected=[{"kind": "outbox_message", "id": message.id}],
            draft_id=message.draft_id,
        )

    return await app.run(caller, "get_outbox_message", {"message_id": message_id}, work, result_type=OutboxMessageDetail)

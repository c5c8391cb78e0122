"""The supplier outbox: notes queued by executed drafts for a mail integration to send."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.errors import ConflictError, InvalidInputError, NotFoundError
from store.models import OUTBOX_STATUSES, OutboxMessage, PurchaseOrder, Supplier
from store.paging import keyset_page


async def queue_message(
    session: AsyncSession,
    *,
    workspace_id: int,
    supplier_id: int,
    recipient: str,
    subject: str,
    body: str,
    draft_id: int,
    purchase_order_id: int | None,
    queued_by: str,
    now: datetime,
) -> OutboxMessage:
    """Queue one supplier message for a draft, in the caller's transaction.

    Raises:
        ConflictError: If the draft already queued a message, or another request
            queued one for it at the same time; a draft queues its note once.
    """
    existing = (
        await session.execute(
            select(OutboxMessage.id).where(OutboxMessage.workspace_id == workspace_id, OutboxMessage.draft_id == draft_id)
        )
    ).scalar_one_or_none()
    if existing is not None:
        raise ConflictError(f"Draft {draft_id} already queued outbox message {existing}; a draft queues its note once.")
    message = OutboxMessage(
        workspace_id=workspace_id,
        supplier_id=supplier_id,
        recipient=recipient,
        subject=subject,
        body=body,
        draft_id=draft_id,
        purchase_order_id=purchase_order_id,
        status="queued",
        queued_by=queued_by,
        created_at=now,
    )
    session.add(message)
    try:
        await session.flush()
    except IntegrityError as exc:
        # Two executions of one draft can both pass the check above on PostgreSQL;
        # the unique (workspace, draft) constraint stops the second one here.
        raise ConflictError(
            f"Draft {draft_id} queued its note in another request that ran at the same time; a draft queues its note once."
        ) from exc
    return message


async def list_messages(
    session: AsyncSession,
    *,
    workspace_id: int,
    status: str | None = None,
    supplier_id: int | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> list[OutboxMessage]:
    """Return outbox messages in id order, optionally of one status and one supplier.

    Raises:
        InvalidInputError: For an unknown status.
    """
    if status is not None and status not in OUTBOX_STATUSES:
        raise InvalidInputError(f"Outbox status {status!r} is unknown; use one of {', '.join(OUTBOX_STATUSES)}.")
    statement = select(OutboxMessage).where(OutboxMessage.workspace_id == workspace_id)
    if status is not None:
        statement = statement.where(OutboxMessage.status == status)
    if supplier_id is not None:
        statement = statement.where(OutboxMessage.supplier_id == supplier_id)
    return await keyset_page(session, statement, OutboxMessage.id, after_id=after_id, limit=limit)


async def get_message(session: AsyncSession, *, workspace_id: int, message_id: int) -> OutboxMessage:
    """Return one outbox message of the workspace.

    Raises:
        NotFoundError: If there is none with that id.
    """
    message = (
        await session.execute(
            select(OutboxMessage).where(OutboxMessage.workspace_id == workspace_id, OutboxMessage.id == message_id)
        )
    ).scalar_one_or_none()
    if message is None:
        raise NotFoundError(
            f"Outbox message {message_id} does not exist in this workspace; `order3 outbox list` shows the ids."
        )
    return message


async def message_labels(
    session: AsyncSession, messages: list[OutboxMessage]
) -> tuple[dict[int, str], dict[int, str]]:
    """Return the supplier code by supplier id and the purchase order number by order id for these messages."""
    supplier_ids = sorted({message.supplier_id for message in messages})
    order_ids = sorted({message.purchase_order_id for message in messages if message.purchase_order_id is not None})
    suppliers: dict[int, str] = {}
    orders: dict[int, str] = {}
    if supplier_ids:
        rows = await session.execute(select(Supplier.id, Supplier.code).where(Supplier.id.in_(supplier_ids)))
        suppliers = {row[0]: row[1] for row in rows.all()}
    if order_ids:
        rows = await session.execute(select(PurchaseOrder.id, PurchaseOrder.number).where(PurchaseOrder.id.in_(order_ids)))
        orders = {row[0]: row[1] for row in rows.all()}
    return suppliers, orders

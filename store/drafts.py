"""Draft records: creation, status changes guarded by version, approvals and exception links."""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CompoundSelect, Select, bindparam, select, union, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.activity import canonical_json
from store.changes import FINDER_KINDS, touch_everything, touch_items
from store.errors import ConflictError, NotFoundError
from store.freshness import note_change
from store.models import (
    OPEN_DRAFT_STATUSES,
    Approval,
    CountSheet,
    Draft,
    DraftException,
    ExceptionRecord,
)
from store.paging import keyset_page
from store.types import utc_now


def payload_hash(kind: str, payload: dict[str, Any]) -> str:
    """Return the SHA-256 that approvals bind to: the kind and the canonical payload."""
    return hashlib.sha256(canonical_json({"kind": kind, "payload": payload}).encode()).hexdigest()


async def create_draft(
    session: AsyncSession,
    *,
    workspace_id: int,
    kind: str,
    title: str,
    rationale: str,
    payload: dict[str, Any],
    affected: list[dict[str, Any]],
    created_by_kind: str,
    created_by: str,
    created_by_token_id: int | None,
    on_behalf_of: str,
    approval_role: str,
    approvals_required: int,
    policy_rule: str,
    policy_version: str,
    auto_execute: bool,
    expires_at: datetime | None,
    estimated_value: Decimal,
    currency: str,
    idempotency_key: str | None,
    exception_ids: list[int],
    created_at: datetime | None = None,
) -> Draft:
    """Insert a pending draft and link it to the exceptions it answers, moving them to drafted.

    `created_at` defaults to the current time; services pass their clock's time.
    """
    draft = Draft(
        workspace_id=workspace_id,
        kind=kind,
        title=title,
        rationale=rationale,
        payload=payload,
        payload_hash=payload_hash(kind, payload),
        affected=affected,
        status="pending_approval",
        created_by_kind=created_by_kind,
        created_by=created_by,
        created_by_token_id=created_by_token_id,
        on_behalf_of=on_behalf_of,
        approval_role=approval_role,
        approvals_required=approvals_required,
        policy_rule=policy_rule,
        policy_version=policy_version,
        auto_execute=auto_execute,
        expires_at=expires_at,
        estimated_value=estimated_value,
        currency=currency,
        idempotency_key=idempotency_key,
    )
    if created_at is not None:
        draft.created_at = created_at
        draft.updated_at = created_at
    session.add(draft)
    await session.flush()
    for exception_id in exception_ids:
        session.add(DraftException(draft_id=draft.id, exception_id=exception_id))  # type: ignore[arg-type]
    if exception_ids:
        await session.execute(
            update(ExceptionRecord)
            .where(
                ExceptionRecord.workspace_id == workspace_id,
                ExceptionRecord.id.in_(exception_ids),
                ExceptionRecord.status == "open",
            )
            .values(status="drafted", version=ExceptionRecord.version + 1)
            .execution_options(synchronize_session=False)
        )
    await session.flush()
    await touch_draft_items(session, draft)
    return draft


async def touch_draft_items(session: AsyncSession, draft: Draft) -> None:
    """Record a change to the open-draft quantities of a purchase_order draft's items.

    Only purchase_order drafts count toward findings, and only toward low
    stock, which adds their quantities while they are pending approval or
    approved. Other kinds of draft touch nothing.
    """
    # Imported here because store.finders imports this module.
    from store.finders.open_drafts import draft_item_ids

    if draft.kind == "purchase_order":
        item_ids = await draft_item_ids(session, workspace_id=draft.workspace_id, payload=draft.payload)
        touch_items(session, item_ids, kinds=("low_stock",))


async def get_draft(session: AsyncSession, *, workspace_id: int, draft_id: int) -> Draft:
    """Return a draft of this workspace.

    Raises:
        NotFoundError: If there is none with that id.
    """
    draft = (
        await session.execute(select(Draft).where(Draft.workspace_id == workspace_id, Draft.id == draft_id))
    ).scalar_one_or_none()
    if draft is None:
        raise NotFoundError(f"Draft {draft_id} does not exist in this workspace; list drafts to see their ids.")
    return draft


async def list_drafts(
    session: AsyncSession,
    *,
    workspace_id: int,
    statuses: tuple[str, ...] | None = None,
    kind: str | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> list[Draft]:
    """Return drafts ordered by id."""
    statement = select(Draft).where(Draft.workspace_id == workspace_id)
    if statuses:
        statement = statement.where(Draft.status.in_(statuses))
    if kind is not None:
        statement = statement.where(Draft.kind == kind)
    return await keyset_page(session, statement, Draft.id, after_id=after_id, limit=limit)


# Built once: every draft view runs both.
_APPROVALS_OF_DRAFT = select(Approval).where(Approval.draft_id == bindparam("draft_id")).order_by(Approval.id)
_EXCEPTIONS_OF_DRAFT = (
    select(DraftException.exception_id)
    .where(DraftException.draft_id == bindparam("draft_id"))
    .order_by(DraftException.exception_id)
)


async def draft_approvals(session: AsyncSession, *, draft_id: int) -> list[Approval]:
    """Return every decision recorded on a draft, oldest first."""
    return list((await session.execute(_APPROVALS_OF_DRAFT, {"draft_id": draft_id})).scalars().all())


async def linked_exception_ids(session: AsyncSession, *, draft_id: int) -> list[int]:
    """Return the ids of exceptions a draft answers."""
    return list((await session.execute(_EXCEPTIONS_OF_DRAFT, {"draft_id": draft_id})).scalars().all())


async def record_decision(
    session: AsyncSession,
    *,
    draft: Draft,
    approver: str,
    token_id: int | None,
    role: str,
    decision: str,
    reason: str,
) -> Approval:
    """Store one approval or rejection, bound to the draft's current payload hash."""
    approval = Approval(
        workspace_id=draft.workspace_id,
        draft_id=draft.id,  # type: ignore[arg-type]
        approver=approver,
        token_id=token_id,
        role=role,
        decision=decision,
        payload_hash=draft.payload_hash,
        reason=reason,
    )
    session.add(approval)
    await session.flush()
    return approval


async def change_status(
    session: AsyncSession,
    *,
    draft: Draft,
    from_statuses: tuple[str, ...],
    to_status: str,
    **values: Any,
) -> Draft:
    """Move a draft to `to_status` only if it is still in one of `from_statuses` at the version read.

    This conditional update is what makes approval and execution happen once:
    of two concurrent callers, the second matches no row.

    Raises:
        ConflictError: If the draft changed since it was read.
    """
    now = utc_now()
    changed = await session.execute(
        update(Draft)
        .where(Draft.id == draft.id, Draft.version == draft.version, Draft.status.in_(from_statuses))
        .values(status=to_status, version=draft.version + 1, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        raise ConflictError(
            f"Draft {draft.id} changed while this request ran (it was {draft.status}); reload it with get_draft and retry."
        )
    await session.refresh(draft)
    await touch_draft_items(session, draft)
    return draft


async def has_overdue(session: AsyncSession, *, workspace_id: int, now: datetime) -> bool:
    """Return True when a pending or approved draft's approval window has ended, so `expire_overdue` has work."""
    found = await session.execute(
        select(Draft.id)
        .where(
            Draft.workspace_id == workspace_id,
            Draft.status.in_(OPEN_DRAFT_STATUSES),
            Draft.expires_at.is_not(None),
            Draft.expires_at <= now,
        )
        .limit(1)
    )
    return found.first() is not None


async def expire_overdue(session: AsyncSession, *, workspace_id: int, now: datetime) -> list[int]:
    """Mark pending or approved drafts whose approval window has ended as expired.

    Their linked exceptions that were waiting on them go back to open, because
    no draft will answer them now. Returns the ids of the drafts expired.
    """
    overdue = list(
        (
            await session.execute(
                select(Draft.id).where(
                    Draft.workspace_id == workspace_id,
                    Draft.status.in_(OPEN_DRAFT_STATUSES),
                    Draft.expires_at.is_not(None),
                    Draft.expires_at <= now,
                )
            )
        )
        .scalars()
        .all()
    )
    if not overdue:
        return []
    for draft in (await session.execute(select(Draft).where(Draft.id.in_(overdue), Draft.kind == "purchase_order"))).scalars():
        await touch_draft_items(session, draft)
    await session.execute(
        update(Draft)
        .where(Draft.id.in_(overdue), Draft.status.in_(OPEN_DRAFT_STATUSES))
        .values(status="expired", version=Draft.version + 1, updated_at=now, decided_at=now)
        .execution_options(synchronize_session=False)
    )
    linked = select(DraftException.exception_id).where(DraftException.draft_id.in_(overdue))
    await reopen_unanswered(session, linked=linked)
    # Quantities in open drafts count toward low stock, so the finders must run again.
    await note_change(session, workspace_id=workspace_id)
    return overdue


def answered_by_open_drafts(*, excluding_draft_id: int | None = None) -> CompoundSelect[Any]:
    """Select the ids of exceptions whose answer is still under way.

    That is a link to a pending or approved draft, or to an executed count-task
    draft whose count task is still open: the drift it answers is settled only
    when the counts are submitted.
    """
    pending = (
        select(DraftException.exception_id)
        .join(Draft, Draft.id == DraftException.draft_id)
        .where(Draft.status.in_(OPEN_DRAFT_STATUSES))
    )
    if excluding_draft_id is not None:
        pending = pending.where(Draft.id != excluding_draft_id)
    counting = (
        select(DraftException.exception_id)
        .join(CountSheet, CountSheet.draft_id == DraftException.draft_id)
        .where(CountSheet.status == "open")
    )
    return union(pending, counting)


async def reopen_unanswered(
    session: AsyncSession, *, linked: Select[Any] | list[int], excluding_draft_id: int | None = None
) -> None:
    """Move drafted exceptions among `linked` back to open unless another open draft is still linked to them.

    A drafted record waits for its draft even when its finder no longer finds
    the problem. Reopened, it must be rerun, so its item is touched for its kind.
    """
    reopened = await session.execute(
        update(ExceptionRecord)
        .where(
            ExceptionRecord.id.in_(linked),
            ExceptionRecord.id.not_in(answered_by_open_drafts(excluding_draft_id=excluding_draft_id)),
            ExceptionRecord.status == "drafted",
        )
        .values(status="open", version=ExceptionRecord.version + 1)
        .returning(ExceptionRecord.kind, ExceptionRecord.item_id)
        .execution_options(synchronize_session=False)
    )
    for kind, item_id in reopened.all():
        if kind not in FINDER_KINDS:
            continue
        if item_id is None:
            touch_everything(session)
        else:
            touch_items(session, [item_id], kinds=(kind,))

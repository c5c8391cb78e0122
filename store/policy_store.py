"""Policy versions per workspace, the facts drafts were routed on, and a supplier's spend per day."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, type_coerce
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.changes import touch_everything
from store.dialect import needs_row_locks
from store.errors import ConflictError
from store.models import Draft, DraftPolicyFacts, PolicyVersion, StockLevel, Supplier
from store.types import Fixed6


async def latest_policy_version(session: AsyncSession, *, workspace_id: int) -> PolicyVersion | None:
    """Return the policy most recently loaded into the workspace, or None if none was."""
    statement = (
        select(PolicyVersion)
        .where(PolicyVersion.workspace_id == workspace_id)
        .order_by(PolicyVersion.id.desc())  # type: ignore[union-attr]
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def get_policy_version(session: AsyncSession, *, workspace_id: int, version: str) -> PolicyVersion | None:
    """Return the policy loaded into the workspace under `version`, or None."""
    statement = select(PolicyVersion).where(PolicyVersion.workspace_id == workspace_id, PolicyVersion.version == version)
    return (await session.execute(statement)).scalar_one_or_none()


async def list_policy_versions(session: AsyncSession, *, workspace_id: int, limit: int) -> list[PolicyVersion]:
    """Return up to `limit` policies loaded into the workspace, newest first."""
    statement = (
        select(PolicyVersion)
        .where(PolicyVersion.workspace_id == workspace_id)
        .order_by(PolicyVersion.id.desc())  # type: ignore[union-attr]
        .limit(limit)
    )
    return list((await session.execute(statement)).scalars().all())


async def add_policy_version(
    session: AsyncSession,
    *,
    workspace_id: int,
    name: str,
    version: str,
    sha256: str,
    text: str,
    source: str,
    rule_count: int,
    loaded_by: str,
    token_id: int | None,
    loaded_at: datetime,
) -> PolicyVersion:
    """Store a loaded policy text, which makes it the workspace's active policy.

    Raises:
        ConflictError: If another load stored the same version first.
    """
    row = PolicyVersion(
        workspace_id=workspace_id,
        name=name,
        version=version,
        sha256=sha256,
        text=text,
        source=source,
        rule_count=rule_count,
        loaded_by=loaded_by,
        token_id=token_id,
        loaded_at=loaded_at,
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:
        # The unique (workspace_id, version) key caught a concurrent load of the same version.
        raise ConflictError(
            f"Policy version {version!r} was loaded by another request at the same time; "
            "run `order3 policy show` and load again with a new version if needed."
        ) from exc
    touch_everything(session)
    return row


async def record_draft_facts(
    session: AsyncSession, *, workspace_id: int, draft_id: int, facts: dict[str, Any], recorded_at: datetime
) -> None:
    """Store the routing facts of a new draft."""
    session.add(DraftPolicyFacts(draft_id=draft_id, workspace_id=workspace_id, facts=facts, recorded_at=recorded_at))
    await session.flush()


async def draft_facts(session: AsyncSession, *, draft_id: int) -> dict[str, Any] | None:
    """Return the routing facts stored for a draft, or None for a draft prepared without them."""
    row = await session.get(DraftPolicyFacts, draft_id)
    return dict(row.facts) if row is not None else None


async def supplier_spend(
    session: AsyncSession,
    *,
    workspace_id: int,
    supplier_id: int,
    start: datetime,
    end: datetime,
    statuses: tuple[str, ...],
    before_draft_id: int | None = None,
    lock_supplier: bool = False,
) -> Decimal:
    """Return the estimated value of the supplier's purchase-order drafts created in [start, end).

    Only drafts in `statuses` count; with `before_draft_id`, only drafts created before that one.
    With `lock_supplier`, the supplier row is locked until the transaction ends, so a
    transaction about to add a draft for this supplier reads a total no other such
    transaction can change before it commits.
    """
    if lock_supplier and needs_row_locks(session):
        # On PostgreSQL at READ COMMITTED, a second drafter waits here, and its sum below
        # then sees the first one's committed draft. SQLite already serialises write
        # transactions (BEGIN IMMEDIATE) and ignores the lock. FOR NO KEY UPDATE leaves
        # inserts that reference the supplier, such as purchase orders, unblocked.
        lock = select(Supplier.id).where(Supplier.workspace_id == workspace_id, Supplier.id == supplier_id)
        await session.execute(lock.with_for_update(key_share=True))
    total = type_coerce(func.coalesce(func.sum(Draft.__table__.c.estimated_value), 0), Fixed6)
    statement = select(total).where(
        Draft.workspace_id == workspace_id,
        Draft.kind == "purchase_order",
        Draft.status.in_(statuses),  # type: ignore[attr-defined]
        Draft.created_at >= start,
        Draft.created_at < end,
        # JSON path access compiles to json_extract on SQLite and ->> on PostgreSQL.
        Draft.payload["supplier_id"].as_integer() == supplier_id,  # type: ignore[index]
    )
    if before_draft_id is not None:
        statement = statement.where(Draft.id < before_draft_id)  # type: ignore[operator]
    return (await session.execute(statement)).scalar_one()


async def on_hand_at(session: AsyncSession, *, workspace_id: int, item_id: int, location_id: int) -> Decimal:
    """Return an item's on hand at a location, over all its bins."""
    statement = select(StockLevel.on_hand).where(
        StockLevel.workspace_id == workspace_id, StockLevel.item_id == item_id, StockLevel.location_id == location_id
    )
    return sum((await session.execute(statement)).scalars().all(), Decimal(0))

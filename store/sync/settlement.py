"""Settling a sync conflict once a person has chosen a side: Order3's values or the integration's.

The sync itself never picks a winner (see `store.sync.changes`). A
reconciliation draft reads both sides here when it is prepared, and again
when it is executed, from the newest snapshot the source sent for the record.
Taking the integration's values writes them with a conditional update on the
record's version, and records the agreement in the sync state, so the source's
next change applies by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.changes import touch_record
from store.errors import ConflictError
from store.models import (
    LIVE_EXCEPTION_STATUSES,
    ExceptionRecord,
    ExternalSnapshot,
    Item,
    Location,
    PurchaseOrder,
    Supplier,
    SyncState,
)
from store.sync.changes import LABELS, ChangedModel, render
from store.sync.records import ChangedRecord, RecordInvalidError, parse_record

MODELS: dict[str, type[ChangedModel]] = {
    "item": Item,
    "location": Location,
    "supplier": Supplier,
    "purchase_order": PurchaseOrder,
}


@dataclass(frozen=True)
class ConflictSides:
    """Both sides of a sync conflict as they are now.

    `theirs` contains the typed field values of the newest snapshot the source sent
    for the record, and `ours` the record's current values of the same fields,
    rendered as text. `differing` names the fields whose values differ.
    """

    kind: str
    record: ChangedModel
    code: str
    snapshot: ExternalSnapshot
    change: ChangedRecord
    theirs: dict[str, Any]
    ours: dict[str, str]
    differing: tuple[str, ...]

    @property
    def label(self) -> str:
        """Return a name such as "Supplier ACME"."""
        return f"{LABELS[self.kind]} {self.code}"


def record_id_of(exception: ExceptionRecord, kind: str) -> int | None:
    """Return the id of our record a sync conflict exception is about."""
    columns = {
        "item": exception.item_id,
        "location": exception.location_id,
        "supplier": exception.supplier_id,
        "purchase_order": exception.purchase_order_id,
    }
    return columns.get(kind)


def _code(record: ChangedModel) -> str:
    if isinstance(record, Item):
        return record.sku
    if isinstance(record, PurchaseOrder):
        return record.number
    return record.code


async def conflict_sides(
    session: AsyncSession, *, workspace_id: int, source: str, kind: str, record_id: int
) -> ConflictSides | None:
    """Return both sides of the record's newest snapshot from `source`, or None when our record or the snapshot is gone.

    The newest snapshot may have any outcome: a later batch that agreed or was
    applied also counts, so a caller can tell the conflict was overtaken.
    """
    model = MODELS.get(kind)
    if model is None:
        return None
    record = await session.get(model, record_id)
    if record is None or record.workspace_id != workspace_id:
        return None
    snapshot = (
        await session.execute(
            select(ExternalSnapshot)
            .where(
                ExternalSnapshot.workspace_id == workspace_id,
                ExternalSnapshot.source == source,
                ExternalSnapshot.record_kind == kind,
                ExternalSnapshot.record_id == record_id,
                ExternalSnapshot.outcome != "invalid",
            )
            .order_by(ExternalSnapshot.id.desc())
        )
    ).scalars().first()
    if snapshot is None:
        return None
    try:
        change = parse_record(snapshot.payload)
    except RecordInvalidError:
        # A stored snapshot that compared once parses again; this guards against edited rows.
        return None
    theirs = change.fields.sent()  # type: ignore[union-attr]
    ours = {name: render(getattr(record, name)) for name in theirs}
    differing = tuple(name for name, value in theirs.items() if getattr(record, name) != value)
    return ConflictSides(
        kind=kind,
        record=record,
        code=_code(record),
        snapshot=snapshot,
        change=change,  # type: ignore[arg-type]
        theirs=theirs,
        ours=ours,
        differing=differing,
    )


async def take_theirs(session: AsyncSession, sides: ConflictSides, *, source: str, now: datetime) -> None:
    """Write the integration's differing values to our record and record the agreement in the sync state.

    Raises:
        ConflictError: If our record changed after `sides` was read.
    """
    record = sides.record
    model = type(record)
    values = {name: sides.theirs[name] for name in sides.differing}
    extra: dict[str, Any] = {"updated_at": now} if isinstance(record, Item) else {}
    changed = await session.execute(
        update(model)
        .where(model.id == record.id, model.version == record.version)  # type: ignore[arg-type]
        .values(**values, **extra, version=record.version + 1)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:
        raise ConflictError(f"{sides.label} changed while this request ran; retry it.")
    await touch_record(session, record)
    await session.refresh(record)

    state = (
        await session.execute(
            select(SyncState).where(
                SyncState.workspace_id == record.workspace_id,
                SyncState.source == source,
                SyncState.record_kind == sides.kind,
                SyncState.key == sides.code,
            )
        )
    ).scalar_one_or_none()
    if state is None:
        state = SyncState(
            workspace_id=record.workspace_id,
            source=source,
            record_kind=sides.kind,
            key=sides.code,
            record_id=record.id,  # type: ignore[arg-type]
            our_version=record.version,
            their_version=sides.change.version,
            agreed_at=now,
            batch_id=sides.snapshot.batch_id,
        )
        session.add(state)
    else:
        state.our_version = record.version
        state.their_version = sides.change.version
        state.agreed_at = now
        state.batch_id = sides.snapshot.batch_id
    await session.flush()


async def resolve_exception(session: AsyncSession, *, exception_id: int, now: datetime) -> bool:
    """Mark a live sync conflict exception resolved, because no finder recomputes sync conflicts.

    Returns False when the exception was already dismissed or resolved, which
    leaves it as it is.
    """
    changed = await session.execute(
        update(ExceptionRecord)
        .where(ExceptionRecord.id == exception_id, ExceptionRecord.status.in_(LIVE_EXCEPTION_STATUSES))
        .values(status="resolved", resolved_at=now, version=ExceptionRecord.version + 1)
        .execution_options(synchronize_session=False)
    )
    return changed.rowcount == 1

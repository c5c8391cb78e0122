"""Persist finder results as exception records, and list and fetch those records.

A finding's fingerprint ties it to at most one live (open or drafted) record.
Refreshing a kind opens records for new problems, updates live ones in place,
and resolves live ones whose problem was not found again. Dismissed and
resolved records are never reopened; a recurrence opens a new record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, insert, or_, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.drafts import answered_by_open_drafts
from store.errors import InvalidInputError, NotFoundError
from store.finders.findings import Finding, check_aware
from store.models import (
    EXCEPTION_KINDS,
    EXCEPTION_STATUSES,
    LIVE_EXCEPTION_STATUSES,
    ExceptionRecord,
)

# Largest page `list_exceptions` returns.
MAX_PAGE_SIZE = 500

_table = ExceptionRecord.__table__
# PostgreSQL rejects a reason longer than its column; SQLite would store it whole.
_REASON_LENGTH: int = _table.c.reason.type.length
# Spelled as equalities because an IN list is an expanding parameter, which executemany rejects.
_IS_LIVE: ColumnElement[bool] = or_(*(_table.c.status == status for status in LIVE_EXCEPTION_STATUSES))


@dataclass(frozen=True)
class RefreshResult:
    """The record ids one refresh opened, updated and resolved, and the live record id of every current finding."""

    kind: str
    opened: tuple[int, ...]
    updated: tuple[int, ...]
    resolved: tuple[int, ...]
    ids_by_fingerprint: dict[str, int]


def _check_findings(kind: str, findings: Sequence[Finding]) -> None:
    if kind not in EXCEPTION_KINDS:
        raise InvalidInputError(f"Exception kind {kind!r} is unknown; use one of {', '.join(EXCEPTION_KINDS)}.")
    seen: set[str] = set()
    for finding in findings:
        if finding.kind != kind:
            raise InvalidInputError(
                f"Finding {finding.fingerprint!r} is of kind {finding.kind!r}; refresh it with kind={finding.kind!r}."
            )
        if finding.fingerprint in seen:
            raise InvalidInputError(
                f"Fingerprint {finding.fingerprint!r} appears twice in one refresh; a finder must report a problem once."
            )
        seen.add(finding.fingerprint)


def _clip_reason(reason: str) -> str:
    return reason if len(reason) <= _REASON_LENGTH else reason[: _REASON_LENGTH - 1] + "…"


def _described(finding: Finding) -> dict[str, Any]:
    """Return the columns that describe a finding and may change while its record stays live."""
    return {
        "item_id": finding.item_id,
        "sku": finding.sku,
        "location_id": finding.location_id,
        "location_code": finding.location_code,
        "supplier_id": finding.supplier_id,
        "supplier_code": finding.supplier_code,
        "purchase_order_id": finding.purchase_order_id,
        "purchase_order_number": finding.purchase_order_number,
        "purchase_order_line_id": finding.purchase_order_line_id,
        "owner": finding.owner,
        "reason": _clip_reason(finding.reason),
        "evidence": finding.evidence,
        "suggested_draft_kind": finding.suggested_draft_kind,
    }


async def suppressed_fingerprints(
    session: AsyncSession, *, workspace_id: int, kind: str | None = None, fingerprints: Iterable[str] | None = None
) -> dict[str, list[int]]:
    """Return the dismissed records that still hold back their fingerprint, by fingerprint."""
    statement = select(_table.c.id, _table.c.fingerprint).where(
        _table.c.workspace_id == workspace_id, _table.c.status == "dismissed", _table.c.suppressing.is_(True)
    )
    if kind is not None:
        statement = statement.where(_table.c.kind == kind)
    if fingerprints is not None:
        statement = statement.where(_table.c.fingerprint.in_(sorted(set(fingerprints))))
    held: dict[str, list[int]] = defaultdict(list)
    for record_id, fingerprint in (await session.execute(statement)).all():
        held[fingerprint].append(record_id)
    return held


async def update_suppression(
    session: AsyncSession, *, held: dict[str, list[int]], still_found: set[str], now: datetime
) -> None:
    """Touch the dismissed records whose problem is still found, and release the others."""
    touched = [record_id for fingerprint, ids in held.items() if fingerprint in still_found for record_id in ids]
    released = [record_id for fingerprint, ids in held.items() if fingerprint not in still_found for record_id in ids]
    if touched:
        await session.execute(
            update(_table).where(_table.c.id.in_(touched)).values(last_seen=now).execution_options(synchronize_session=False)
        )
    if released:
        await session.execute(
            update(_table).where(_table.c.id.in_(released)).values(suppressing=False).execution_options(synchronize_session=False)
        )


async def refresh_exceptions(
    session: AsyncSession, *, workspace_id: int, kind: str, findings: Sequence[Finding], now: datetime
) -> RefreshResult:
    """Upsert the current findings of one kind by fingerprint and resolve the live records not found again.

    Runs three bulk statements at most (update, insert, resolve) after one read,
    inside the caller's transaction. On SQLite the write transaction's
    BEGIN IMMEDIATE keeps two refreshes from both opening a record for one
    fingerprint. NOTE: on PostgreSQL two concurrent refreshes of one kind can
    both insert a record for the same fingerprint. A partial unique index on
    (workspace_id, fingerprint) over live statuses would prevent that.

    Raises:
        InvalidInputError: For an unknown kind, a finding of another kind, a
            fingerprint given twice, or a naive `now`.
    """
    _check_findings(kind, findings)
    check_aware(now)

    # A drafted record whose draft is still open waits for that draft: the draft's
    # own quantities hide the problem from the finder, so "not found" does not
    # mean the numbers cleared. Executing, rejecting or withdrawing the draft ends the wait.
    awaiting_draft = _table.c.id.in_(answered_by_open_drafts())
    live_rows = await session.execute(
        select(_table.c.id, _table.c.fingerprint, awaiting_draft)
        .where(
            _table.c.workspace_id == workspace_id,
            _table.c.kind == kind,
            _table.c.status.in_(LIVE_EXCEPTION_STATUSES),
        )
        .order_by(_table.c.id)
    )
    live: dict[str, list[int]] = defaultdict(list)
    waiting: set[int] = set()
    for record_id, fingerprint, is_waiting in live_rows.all():
        live[fingerprint].append(record_id)
        if is_waiting:
            waiting.add(record_id)

    found = {finding.fingerprint for finding in findings}
    # A dismissed problem that is still there opens no new record.
    held = await suppressed_fingerprints(session, workspace_id=workspace_id, kind=kind)
    await update_suppression(session, held=held, still_found=found, now=now)
    findings = [finding for finding in findings if finding.fingerprint not in held or finding.fingerprint in live]
    updates = [
        {"b_id": record_id, "b_last_seen": now, **{f"b_{name}": value for name, value in _described(finding).items()}}
        for finding in findings
        for record_id in live.get(finding.fingerprint, ())
    ]
    inserts = [
        {
            "workspace_id": workspace_id,
            "kind": kind,
            "fingerprint": finding.fingerprint,
            "status": "open",
            **_described(finding),
            "first_seen": now,
            "last_seen": now,
            "resolved_at": None,
            "dismissed_reason": "",
            "suppressing": False,
            "version": 1,
        }
        for finding in findings
        if finding.fingerprint not in live
    ]
    stale = [
        record_id
        for fingerprint, ids in live.items()
        if fingerprint not in found
        for record_id in ids
        if record_id not in waiting
    ]

    if updates:
        # The status condition leaves alone a record dismissed since it was read.
        columns = {name: bindparam(f"b_{name}", type_=_table.c[name].type) for name in _described(findings[0])}
        await session.execute(
            update(_table)
            .where(_table.c.id == bindparam("b_id"), _IS_LIVE)
            .values(
                last_seen=bindparam("b_last_seen", type_=_table.c.last_seen.type),
                version=_table.c.version + 1,
                **columns,
            ),
            updates,
        )
    ids_by_fingerprint = {fingerprint: ids[0] for fingerprint, ids in live.items() if fingerprint in found}
    opened: list[int] = []
    if inserts:
        returned = await session.execute(
            insert(_table).returning(_table.c.id, _table.c.fingerprint), inserts
        )
        for record_id, fingerprint in returned.all():
            opened.append(record_id)
            ids_by_fingerprint[fingerprint] = record_id
    if stale:
        await session.execute(
            update(_table)
            .where(_table.c.id == bindparam("b_id"), _IS_LIVE)
            .values(
                status="resolved",
                resolved_at=bindparam("b_resolved_at", type_=_table.c.resolved_at.type),
                version=_table.c.version + 1,
            ),
            [{"b_id": record_id, "b_resolved_at": now} for record_id in stale],
        )

    return RefreshResult(
        kind=kind,
        opened=tuple(opened),
        updated=tuple(update_row["b_id"] for update_row in updates),
        resolved=tuple(stale),
        ids_by_fingerprint=ids_by_fingerprint,
    )


def _check_values(name: str, values: Iterable[str] | None, allowed: tuple[str, ...]) -> list[str] | None:
    if values is None:
        return None
    chosen = list(values)
    if not chosen:
        raise InvalidInputError(f"{name} is empty; pass None to match every value, or some of {', '.join(allowed)}.")
    unknown = [value for value in chosen if value not in allowed]
    if unknown:
        raise InvalidInputError(f"{name} {unknown[0]!r} is unknown; use some of {', '.join(allowed)}.")
    return chosen


async def list_exceptions(
    session: AsyncSession,
    *,
    workspace_id: int,
    kinds: Iterable[str] | None = None,
    statuses: Iterable[str] | None = LIVE_EXCEPTION_STATUSES,
    location_id: int | None = None,
    supplier_id: int | None = None,
    owner: str | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> list[ExceptionRecord]:
    """List exception records in id order, starting after `after_id`, for keyset pagination.

    Records inserted during a page walk have larger ids than every row already
    returned, so a walk neither repeats nor skips rows. `None` for `kinds` or
    `statuses` matches every value.

    Raises:
        InvalidInputError: For an unknown kind or status, an empty filter, or a
            limit outside 1 to MAX_PAGE_SIZE.
    """
    kind_filter = _check_values("kinds", kinds, EXCEPTION_KINDS)
    status_filter = _check_values("statuses", statuses, EXCEPTION_STATUSES)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInputError(f"limit={limit!r} is invalid; pass a page size from 1 to {MAX_PAGE_SIZE}.")

    # One index range per (kind, status), each already in id order, merged and cut
    # to the page. A single query ordered by id makes SQLite walk every record of
    # the workspace when the filter matches few of them.
    filters: list[ColumnElement[bool]] = []
    if location_id is not None:
        filters.append(ExceptionRecord.location_id == location_id)
    if supplier_id is not None:
        filters.append(ExceptionRecord.supplier_id == supplier_id)
    if owner is not None:
        filters.append(ExceptionRecord.owner == owner)
    if after_id is not None:
        filters.append(ExceptionRecord.id > after_id)
    ranges = [
        select(ExceptionRecord.id)
        .where(
            ExceptionRecord.workspace_id == workspace_id,
            ExceptionRecord.kind == kind,
            ExceptionRecord.status == status,
            *filters,
        )
        .order_by(ExceptionRecord.id)
        .limit(limit)
        .subquery()
        for kind in dict.fromkeys(kind_filter if kind_filter is not None else EXCEPTION_KINDS)
        for status in dict.fromkeys(status_filter if status_filter is not None else EXCEPTION_STATUSES)
    ]
    merged = union_all(*(select(part.c.id) for part in ranges)).subquery()
    page_ids = select(merged.c.id).order_by(merged.c.id).limit(limit)
    query = select(ExceptionRecord).where(ExceptionRecord.id.in_(page_ids)).order_by(ExceptionRecord.id)
    return list((await session.execute(query)).scalars().all())


async def get_exception(session: AsyncSession, *, workspace_id: int, exception_id: int) -> ExceptionRecord:
    """Return one exception record of the workspace.

    Raises:
        NotFoundError: If no record has that id in this workspace.
    """
    record = (
        await session.execute(
            select(ExceptionRecord).where(ExceptionRecord.workspace_id == workspace_id, ExceptionRecord.id == exception_id)
        )
    ).scalar_one_or_none()
    if record is None:
        raise NotFoundError(
            f"Exception {exception_id} does not exist in this workspace; list exceptions to find a valid id."
        )
    return record

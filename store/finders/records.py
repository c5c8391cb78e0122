"""Persist finder results as exception records, and list and fetch those records.

A finding's fingerprint ties it to at most one live (open or drafted) record.
Refreshing a kind opens records for new problems, updates live ones in place,
and resolves live ones whose problem was not found again. Dismissed and
resolved records are never reopened; a recurrence opens a new record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from operator import itemgetter
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
    """The record ids one refresh opened, updated and resolved, and the live record id of every current finding.

    `updated` contains the records whose description changed, and the drafted
    records found again. A record found again unchanged only has its last_seen moved.
    """

    kind: str
    opened: tuple[int, ...]
    updated: tuple[int, ...]
    resolved: tuple[int, ...]
    ids_by_fingerprint: dict[str, int]
    #: The last_seen move of a whole plan's unchanged records, when the caller runs it after the transaction.
    seen_again: SeenAgain | None = None


@dataclass(frozen=True)
class SeenAgain:
    """Moving last_seen of the open records a whole refresh found again unchanged, in short statements.

    A whole refresh at 100,000 items finds about 66,000 low-stock records
    again, and moving all their last_seen in one statement held the write lock
    for about 240 ms. last_seen only records when a finder last confirmed a
    record, so the move can run after the refresh commits. It runs one id
    range per short transaction, and other writers get the lock in between.
    Each statement skips records that changed status or were confirmed later.
    """

    workspace_id: int
    kind: str
    now: datetime
    waiting: tuple[int, ...]
    excluded: RecordScope | None
    #: Inclusive (first id, last id) ranges of the unchanged records, at most `_SEEN_AGAIN_PER_STATEMENT` each.
    ranges: tuple[tuple[int, int], ...]

    def statements(self) -> list[Any]:
        """Return one UPDATE per id range."""
        return [_seen_again(self, low, high) for low, high in self.ranges]


def _seen_again(pending: SeenAgain, low: int | None = None, high: int | None = None) -> Any:
    statement = update(_table).where(
        _table.c.workspace_id == pending.workspace_id,
        _table.c.kind == pending.kind,
        _table.c.status == "open",
        _table.c.last_seen < pending.now,
    )
    if low is not None:
        statement = statement.where(_table.c.id.between(low, high))
    if pending.waiting:
        statement = statement.where(_table.c.id.not_in(pending.waiting))
    if pending.excluded is not None:
        statement = statement.where(pending.excluded.exclusion())
    return statement.values(last_seen=pending.now).execution_options(synchronize_session=False)


@dataclass(frozen=True)
class RecordScope:
    """The part of a kind a refresh covers: the records whose `column` value is one of `ids`."""

    column: str
    ids: frozenset[int]

    def __post_init__(self) -> None:
        if self.column not in ("item_id", "supplier_id"):
            raise InvalidInputError(f"A refresh scope column must be item_id or supplier_id, not {self.column!r}.")

    def clause(self) -> ColumnElement[bool]:
        """Return the condition that selects the records in scope."""
        return _table.c[self.column].in_(sorted(self.ids))

    def covers(self, finding: Finding) -> bool:
        """Return True when `finding` belongs to the scope."""
        return getattr(finding, self.column) in self.ids

    @property
    def empty(self) -> bool:
        """Return True when the scope covers no record."""
        return not self.ids

    def covers_record(self, item_id: int | None, supplier_id: int | None) -> bool:
        """Return True when a record with this item and supplier belongs to the scope."""
        return (item_id if self.column == "item_id" else supplier_id) in self.ids

    def exclusion(self) -> ColumnElement[bool]:
        """Return the condition that selects the records outside the scope, those without the column's value included."""
        column = _table.c[self.column]
        return or_(column.is_(None), column.not_in(sorted(self.ids)))


@dataclass
class RefreshPlan:
    """The writes of one refresh, worked out from a read of the stored records.

    Each update and resolution names the record version it was planned
    against, so a record that changed in the meantime (dismissed, drafted) is
    left for the next refresh.
    """

    workspace_id: int
    kind: str
    scope: RecordScope | None
    #: (record id, version read, described columns) of records whose description changed or that are drafted.
    updates: list[tuple[int, int, dict[str, Any]]]
    #: Findings with no live record.
    inserts: list[Finding]
    #: (record id, version read) of live records not found again and not waiting for a draft.
    stale: list[tuple[int, int]]
    #: Live records not found again but left live because an open draft is linked to them.
    waiting: list[int]
    #: Records whose description differs from the finding's (a subset of `updates`).
    changed: list[int]
    #: Dismissed records still suppressing their fingerprint: those found again, and those not.
    held_found: list[int]
    held_released: list[int]
    ids_by_fingerprint: dict[str, int]
    #: Open records found again unchanged, whose last_seen alone moves.
    unchanged: list[int] = field(default_factory=list)
    #: (item id, supplier id) of each record in `stale`.
    stale_keys: dict[int, tuple[int | None, int | None]] = field(default_factory=dict)
    #: Records a whole plan leaves alone because reruns written after its snapshot cover them (see `without`).
    excluded: RecordScope | None = None

    @property
    def writes(self) -> int:
        """Return how many records applying the plan changes, besides moving last_seen."""
        return len(self.updates) + len(self.inserts) + len(self.stale) + len(self.held_released)

    def without(self, excluded: RecordScope) -> RefreshPlan:
        """Return this whole plan without its writes to the records of `excluded`.

        For a whole plan that reruns of changed items overtook: they wrote the
        records of those items from newer data, so the whole plan must not
        overwrite them. Releases of dismissed records are left out too, since
        they are not tied to an item here, and the next whole run makes them.

        Raises:
            InvalidInputError: If the plan covers a scope rather than every item.
        """
        if self.scope is not None:
            raise InvalidInputError("Only a whole plan can leave records out; this plan already covers a scope.")

        def kept(item_id: int | None, supplier_id: int | None) -> bool:
            return not excluded.covers_record(item_id, supplier_id)

        updates = [update for update in self.updates if kept(update[2]["item_id"], update[2]["supplier_id"])]
        updated_ids = {record_id for record_id, _version, _described in updates}
        return replace(
            self,
            updates=updates,
            changed=[record_id for record_id in self.changed if record_id in updated_ids],
            inserts=[finding for finding in self.inserts if not excluded.covers(finding)],
            stale=[entry for entry in self.stale if kept(*self.stale_keys[entry[0]])],
            held_released=[],
            excluded=excluded,
        )


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
    session: AsyncSession,
    *,
    workspace_id: int,
    kind: str | None = None,
    fingerprints: Iterable[str] | None = None,
    scope: RecordScope | None = None,
) -> dict[str, list[int]]:
    """Return the dismissed records that still hold back their fingerprint, by fingerprint."""
    statement = select(_table.c.id, _table.c.fingerprint).where(
        _table.c.workspace_id == workspace_id, _table.c.status == "dismissed", _table.c.suppressing.is_(True)
    )
    if kind is not None:
        statement = statement.where(_table.c.kind == kind)
    if fingerprints is not None:
        statement = statement.where(_table.c.fingerprint.in_(sorted(set(fingerprints))))
    if scope is not None:
        statement = statement.where(scope.clause())
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
    await _write_suppression(session, touched=touched, released=released, now=now)


async def _write_suppression(session: AsyncSession, *, touched: list[int], released: list[int], now: datetime) -> None:
    if touched:
        await session.execute(
            update(_table).where(_table.c.id.in_(touched)).values(last_seen=now).execution_options(synchronize_session=False)
        )
    if released:
        await session.execute(
            update(_table).where(_table.c.id.in_(released)).values(suppressing=False).execution_options(synchronize_session=False)
        )


# Record ids named in one UPDATE, because SQLite limits the bound parameters of a statement.
_IDS_PER_STATEMENT = 5_000
# Records whose last_seen one deferred statement of a whole refresh moves: about 8 ms at 100,000 items.
_SEEN_AGAIN_PER_STATEMENT = 2_000

_DESCRIBED_COLUMNS = tuple(_described(Finding(kind="", fingerprint="", reason="", suggested_draft_kind="")))
_EVIDENCE_AT = _DESCRIBED_COLUMNS.index("evidence")
_ITEM_AT = _DESCRIBED_COLUMNS.index("item_id")
_SUPPLIER_AT = _DESCRIBED_COLUMNS.index("supplier_id")
# Evidence keys that only record when the figures were computed. A record whose
# other columns are unchanged keeps its stored evidence, and its last_seen
# gives the time the figures were last confirmed (see `confirmed_evidence`).
VOLATILE_EVIDENCE = ("as_of",)


def _same_description(described: dict[str, Any], stored: Sequence[Any]) -> bool:
    """Return True when a finding describes its record as stored, apart from the time its figures were computed."""
    for position, value in enumerate(described.values()):
        kept = stored[position]
        if position == _EVIDENCE_AT and isinstance(value, dict) and isinstance(kept, dict):
            if {k: v for k, v in value.items() if k not in VOLATILE_EVIDENCE} != {
                k: v for k, v in kept.items() if k not in VOLATILE_EVIDENCE
            }:
                return False
        elif value != kept:
            return False
    return True


def confirmed_evidence(record: ExceptionRecord) -> dict[str, Any]:
    """Return a record's evidence with `as_of` set to when a finder last confirmed its figures (its last_seen)."""
    evidence = dict(record.evidence)
    if "as_of" in evidence and record.last_seen is not None:
        evidence["as_of"] = record.last_seen.isoformat()
    return evidence


async def plan_refresh(
    session: AsyncSession,
    *,
    workspace_id: int,
    kind: str,
    findings: Sequence[Finding],
    scope: RecordScope | None = None,
) -> RefreshPlan:
    """Compare the current findings of one kind with its stored records and return the changes to write.

    Only reads, so it can run on a snapshot without the write lock. With a
    `scope`, only the records in it are compared, and `findings` must all
    belong to it: a refresh of a few items leaves the other items' records alone.

    Raises:
        InvalidInputError: For an unknown kind, a finding of another kind or
            outside the scope, or a fingerprint given twice.
    """
    _check_findings(kind, findings)
    if scope is not None:
        outside = next((finding for finding in findings if not scope.covers(finding)), None)
        if outside is not None:
            raise InvalidInputError(
                f"Finding {outside.fingerprint!r} has {scope.column} {getattr(outside, scope.column)!r}, outside the "
                "refresh scope; run the finder with the same scope."
            )
    if scope is not None and scope.empty:
        # Nothing to compare. SQLite does not see that an empty IN list matches no
        # row, so the statements below would read every record of the kind.
        return RefreshPlan(
            workspace_id=workspace_id, kind=kind, scope=scope, updates=[], changed=[], inserts=[], stale=[],
            waiting=[], held_found=[], held_released=[], ids_by_fingerprint={}, unchanged=[],
        )

    # A drafted record whose draft is still open waits for that draft: the draft's
    # own quantities hide the problem from the finder, so "not found" does not
    # mean the numbers cleared. Executing, rejecting or withdrawing the draft ends the wait.
    awaiting_draft = _table.c.id.in_(answered_by_open_drafts())
    statement = (
        select(
            _table.c.id, _table.c.fingerprint, _table.c.version, _table.c.status, awaiting_draft,
            *(_table.c[name] for name in _DESCRIBED_COLUMNS),
        )
        .where(
            _table.c.workspace_id == workspace_id,
            _table.c.kind == kind,
            _table.c.status.in_(LIVE_EXCEPTION_STATUSES),
        )
    )
    if scope is None:
        statement = statement.order_by(_table.c.id)
    else:
        # Ordered by id, SQLite reads every record of the workspace in id order rather than
        # the few of the scope through the item or supplier index, so the rows are sorted here.
        statement = statement.where(scope.clause())
    by_fingerprint = {finding.fingerprint: finding for finding in findings}
    found = set(by_fingerprint)
    live: set[str] = set()
    updates: list[tuple[int, int, dict[str, Any]]] = []
    changed: list[int] = []
    stale: list[tuple[int, int]] = []
    waiting: list[int] = []
    ids_by_fingerprint: dict[str, int] = {}
    unchanged: list[int] = []
    stale_keys: dict[int, tuple[int | None, int | None]] = {}
    rows = (await session.execute(statement)).all()
    if scope is not None:
        rows.sort(key=itemgetter(0))
    for record_id, fingerprint, version, status, is_waiting, *stored in rows:
        live.add(fingerprint)
        finding = by_fingerprint.get(fingerprint)
        if finding is None:
            if is_waiting:
                waiting.append(record_id)
            else:
                stale.append((record_id, version))
                stale_keys[record_id] = (stored[_ITEM_AT], stored[_SUPPLIER_AT])
            continue
        ids_by_fingerprint.setdefault(fingerprint, record_id)
        described = _described(finding)
        same = _same_description(described, stored)
        if not same:
            changed.append(record_id)
        if status != "open" or not same:
            updates.append((record_id, version, described))
        else:
            unchanged.append(record_id)

    # A dismissed problem that is still there opens no new record.
    held = await suppressed_fingerprints(session, workspace_id=workspace_id, kind=kind, scope=scope)
    held_found = [record_id for fingerprint, ids in held.items() if fingerprint in found for record_id in ids]
    held_released = [record_id for fingerprint, ids in held.items() if fingerprint not in found for record_id in ids]
    inserts = [finding for finding in findings if finding.fingerprint not in live and finding.fingerprint not in held]
    return RefreshPlan(
        workspace_id=workspace_id,
        kind=kind,
        scope=scope,
        updates=updates,
        changed=changed,
        inserts=inserts,
        stale=stale,
        waiting=waiting,
        held_found=held_found,
        held_released=held_released,
        ids_by_fingerprint=ids_by_fingerprint,
        unchanged=unchanged,
        stale_keys=stale_keys,
    )


async def _live_ids(session: AsyncSession, *, workspace_id: int, fingerprints: list[str]) -> dict[str, int]:
    """Return the id of the live record of each fingerprint that has one (the oldest, should there be several)."""
    found: dict[str, int] = {}
    for start in range(0, len(fingerprints), _IDS_PER_STATEMENT):
        # No ORDER BY, which would lead SQLite to the workspace index and every record of the workspace.
        rows = await session.execute(
            select(_table.c.id, _table.c.fingerprint).where(
                _table.c.workspace_id == workspace_id,
                _table.c.fingerprint.in_(fingerprints[start : start + _IDS_PER_STATEMENT]),
                _table.c.status.in_(LIVE_EXCEPTION_STATUSES),
            )
        )
        for record_id, fingerprint in rows.all():
            found[fingerprint] = min(record_id, found.get(fingerprint, record_id))
    return found


async def apply_refresh(
    session: AsyncSession, plan: RefreshPlan, *, now: datetime, defer_seen_again: bool = False
) -> RefreshResult:
    """Write a refresh plan in the caller's write transaction.

    Changed records are updated, new findings inserted, and live records not
    found again resolved, each guarded by the version the plan read. A new
    finding whose fingerprint got a live record since the plan's snapshot
    (from a sync batch, say) keeps that record instead of opening another. The other
    live records in scope, found again unchanged, get last_seen = `now` in one
    statement, or, for a whole plan with `defer_seen_again`, in the statements
    of the returned `seen_again` for the caller to run after this transaction
    commits. On SQLite the write transaction's BEGIN IMMEDIATE keeps two
    refreshes from both opening a record for one fingerprint; callers that
    plan outside the write transaction must check that no other refresh of the
    kind was applied in between (see `store.freshness`).

    Raises:
        InvalidInputError: For a naive `now`.
    """
    check_aware(now)
    kind = plan.kind
    await _write_suppression(session, touched=plan.held_found, released=plan.held_released, now=now)
    updated: list[int] = []
    if plan.updates:
        # The status and version conditions leave alone a record changed since it was read.
        columns = {name: bindparam(f"b_{name}", type_=_table.c[name].type) for name in _DESCRIBED_COLUMNS}
        await session.execute(
            update(_table)
            .where(_table.c.id == bindparam("b_id"), _table.c.version == bindparam("b_version"), _IS_LIVE)
            .values(last_seen=bindparam("b_last_seen", type_=_table.c.last_seen.type), version=_table.c.version + 1, **columns)
            .execution_options(synchronize_session=False),
            [
                {"b_id": record_id, "b_version": version, "b_last_seen": now, **{f"b_{name}": value for name, value in described.items()}}
                for record_id, version, described in plan.updates
            ],
        )
        updated = [record_id for record_id, _, _ in plan.updates]
    ids_by_fingerprint = dict(plan.ids_by_fingerprint)
    opened: list[int] = []
    # A writer outside the finders (a sync batch, say) may have opened a record for one of
    # these fingerprints since the plan's snapshot. That record stays the only live one.
    opened_since = await _live_ids(session, workspace_id=plan.workspace_id, fingerprints=[f.fingerprint for f in plan.inserts])
    ids_by_fingerprint.update(opened_since)
    inserts = [finding for finding in plan.inserts if finding.fingerprint not in opened_since]
    if inserts:
        returned = await session.execute(
            insert(_table).returning(_table.c.id, _table.c.fingerprint),
            [
                {
                    "workspace_id": plan.workspace_id,
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
                for finding in inserts
            ],
        )
        for record_id, fingerprint in returned.all():
            opened.append(record_id)
            ids_by_fingerprint[fingerprint] = record_id
    if plan.stale:
        await session.execute(
            update(_table)
            .where(_table.c.id == bindparam("b_id"), _table.c.version == bindparam("b_version"), _IS_LIVE)
            .values(
                status="resolved",
                resolved_at=bindparam("b_resolved_at", type_=_table.c.resolved_at.type),
                version=_table.c.version + 1,
            )
            .execution_options(synchronize_session=False),
            [{"b_id": record_id, "b_version": version, "b_resolved_at": now} for record_id, version in plan.stale],
        )
    seen_again: SeenAgain | None = None
    if plan.scope is None:
        # Every other live record was found again unchanged. Only a deferred move needs the id ranges.
        unchanged = sorted(plan.unchanged) if defer_seen_again else []
        seen_again = SeenAgain(
            workspace_id=plan.workspace_id,
            kind=kind,
            now=now,
            waiting=tuple(plan.waiting),
            excluded=plan.excluded,
            ranges=tuple(
                (unchanged[start], unchanged[min(start + _SEEN_AGAIN_PER_STATEMENT, len(unchanged)) - 1])
                for start in range(0, len(unchanged), _SEEN_AGAIN_PER_STATEMENT)
            ),
        )
        if not defer_seen_again:
            await session.execute(_seen_again(seen_again))
            seen_again = None
    else:
        # A rerun of a few items names its records: a condition on the scope led SQLite
        # to the kind index and a read of every open record of the kind.
        for start in range(0, len(plan.unchanged), _IDS_PER_STATEMENT):
            chunk = plan.unchanged[start : start + _IDS_PER_STATEMENT]
            await session.execute(
                update(_table)
                .where(_table.c.id.in_(chunk), _table.c.status == "open", _table.c.last_seen < now)
                .values(last_seen=now)
                .execution_options(synchronize_session=False)
            )

    return RefreshResult(
        kind=kind,
        opened=tuple(opened),
        updated=tuple(updated),
        resolved=tuple(record_id for record_id, _ in plan.stale),
        ids_by_fingerprint=ids_by_fingerprint,
        seen_again=seen_again,
    )


async def refresh_exceptions(
    session: AsyncSession,
    *,
    workspace_id: int,
    kind: str,
    findings: Sequence[Finding],
    now: datetime,
    scope: RecordScope | None = None,
) -> RefreshResult:
    """Upsert the current findings of one kind by fingerprint and resolve the live records not found again.

    Plans and applies in the caller's write transaction; see `plan_refresh` and `apply_refresh`.

    Raises:
        InvalidInputError: For an unknown kind, a finding of another kind or
            outside the scope, a fingerprint given twice, or a naive `now`.
    """
    plan = await plan_refresh(session, workspace_id=workspace_id, kind=kind, findings=findings, scope=scope)
    return await apply_refresh(session, plan, now=now)


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

"""Keep the stored exceptions current: rerun a finder when its inputs may have changed, without holding the write lock.

A refresh of one kind reads a single snapshot on a read-only transaction: the
change counter, the business date, the policy, the finder's findings and the
stored records. It works out which records change, and then writes only those
changes in a short write transaction. The write lock is therefore held for
the writes alone, not for the seconds a finder can take on a large
workspace, and other callers keep reading and writing meanwhile.

The applying transaction checks that no other refresh of the kind was applied
since the snapshot (another process, or another task of this one): if one was,
the plan is dropped, because the other refresh saw data at least as new.
Within one process, refreshes of a workspace take turns, so callers that ask
at the same moment share one run instead of each starting their own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3
from order3_mcp.services.drafts import expire_due_drafts
from order3_mcp.services.policy_routing import active_policy
from order3_mcp.services.progress import ProgressCallback
from policies import Tolerances
from store import changes, finders, freshness
from store.errors import InvalidInputError
from store.finders.records import RecordScope, RefreshPlan, apply_refresh, plan_refresh
from store.models import LIVE_EXCEPTION_STATUSES, ExceptionRecord

logger = logging.getLogger(__name__)

# A finder whose inputs did not change reruns anyway once its last run is this old,
# so a change made outside Order3 shows up within this time.
FINDER_MAX_AGE = timedelta(minutes=5)

# Kinds a finder can recompute; sync conflicts are opened only by the sync path.
REFRESHABLE_KINDS = ("low_stock", "supplier_delay", "short_receiving", "count_drift", "mismatch")

# How many times a refresh is planned again when another refresh was applied while it was planned.
PLAN_ATTEMPTS = 3

# A refresh reruns only the items written since the last run when there are at most this many;
# past that a whole run is cheaper.
MAX_SCOPED_ITEMS = 10_000

# Change log rows kept behind the counter for a kind that has not run for a while;
# a kind further behind gets a whole run.
CHANGE_LOG_KEPT = 10_000


async def compute_findings(
    session: AsyncSession,
    *,
    caller: Caller,
    kind: str,
    tolerances: Tolerances,
    now: datetime,
    scope: RecordScope | None = None,
) -> list[finders.Finding]:
    """Run the finder of `kind` (over `scope` only, when given) and add each finding's item context."""
    workspace_id = caller.workspace_id
    if scope is not None and scope.column != ("supplier_id" if kind == "supplier_delay" else "item_id"):
        raise InvalidInputError(f"A {kind} refresh cannot be limited by {scope.column}; see `refresh_scope`.")
    ids = scope.ids if scope is not None else None
    finder: Callable[[], Awaitable[list[finders.Finding]]]
    if kind == "low_stock":
        finder = lambda: finders.find_low_stock(session, workspace_id=workspace_id, now=now, item_ids=ids)
    elif kind == "supplier_delay":
        finder = lambda: finders.find_supplier_delays(
            session, workspace_id=workspace_id, timezone=caller.timezone, now=now, supplier_ids=ids
        )
    elif kind == "short_receiving":
        finder = lambda: finders.find_receiving_variances(
            session,
            workspace_id=workspace_id,
            short_pct=tolerances.receiving_short_pct,
            over_pct=tolerances.receiving_over_pct,
            item_ids=ids,
        )
    elif kind == "count_drift":
        finder = lambda: finders.find_count_drift(
            session,
            workspace_id=workspace_id,
            abs_tol=tolerances.count_drift_abs,
            pct_tol=tolerances.count_drift_pct,
            value_tol=tolerances.count_drift_value,
            repeat=tolerances.count_drift_repeat,
            item_ids=ids,
        )
    elif kind == "mismatch":
        finder = lambda: finders.find_mismatches(
            session,
            workspace_id=workspace_id,
            qty_tol=tolerances.mismatch_qty_abs,
            value_tol=tolerances.mismatch_value_abs,
            now=now,
            item_ids=ids,
        )
    else:
        raise InvalidInputError(f"Exception kind {kind!r} is not computed by a finder; use one of {', '.join(REFRESHABLE_KINDS)}.")
    found = await finder()
    return await finders.add_item_context(session, workspace_id=workspace_id, findings=found)


async def refresh_scope(session: AsyncSession, *, workspace_id: int, kind: str, item_ids: frozenset[int]) -> RecordScope:
    """Return the records a refresh of `kind` must cover after the finder inputs of `item_ids` changed.

    Supplier delays are scoped by supplier: a receipt changes its supplier's
    on-time rate, which every delay finding of that supplier shows.
    """
    if kind == "supplier_delay":
        suppliers = await finders.suppliers_of_items(session, workspace_id=workspace_id, item_ids=item_ids) if item_ids else set()
        return RecordScope("supplier_id", frozenset(suppliers))
    return RecordScope("item_id", item_ids)


async def refresh_kind(app: Order3, caller: Caller, session: AsyncSession, kind: str) -> int:
    """Recompute one kind of exception in the caller's write transaction; return the number found in the part rerun.

    For actions that settle exceptions in the same transaction as their own
    writes (executing a draft, submitting a count). Only the items this
    transaction has touched so far are rerun, unless it may have changed
    everything.
    """
    now = app.clock()
    tolerances = (await active_policy(app, session, workspace_id=caller.workspace_id)).tolerances
    declared = changes.touched(session)
    scope = None
    if not declared.everything and len(declared.item_ids) <= MAX_SCOPED_ITEMS:
        scope = await refresh_scope(session, workspace_id=caller.workspace_id, kind=kind, item_ids=frozenset(declared.item_ids))
    findings = await compute_findings(session, caller=caller, kind=kind, tolerances=tolerances, now=now, scope=scope)
    plan = await plan_refresh(session, workspace_id=caller.workspace_id, kind=kind, findings=findings, scope=scope)
    await apply_refresh(session, plan, now=now)
    return len(findings)


@dataclass(frozen=True)
class _Snapshot:
    """The state a refresh starts from: the counter, business date, policy and the kind's last run."""

    version: int
    today: Any
    policy: str
    run: tuple[Any, ...] | None


class RefreshTurns:
    """One lock per (event loop, workspace), so a process refreshes a workspace's findings one run at a time."""

    def __init__(self) -> None:
        self._locks: dict[tuple[asyncio.AbstractEventLoop, int], asyncio.Lock] = {}

    def lock(self, workspace_id: int) -> asyncio.Lock:
        """Return the lock of `workspace_id` on the running loop."""
        loop = asyncio.get_running_loop()
        key = (loop, workspace_id)
        held = self._locks.get(key)
        if held is None:
            # Drop the locks of loops that have closed (each CLI command runs its own loop).
            self._locks = {known: lock for known, lock in self._locks.items() if not known[0].is_closed()}
            held = self._locks[key] = asyncio.Lock()
        return held


def _turns(app: Order3) -> RefreshTurns:
    turns = getattr(app, "refresh_turns", None)
    if turns is None:
        turns = app.refresh_turns = RefreshTurns()  # type: ignore[attr-defined]
    return turns


async def _is_due(session: AsyncSession, app: Order3, caller: Caller, kind: str, snapshot: _Snapshot, now: datetime) -> bool:
    return await freshness.is_stale(
        session,
        workspace_id=caller.workspace_id,
        kind=kind,
        version=snapshot.version,
        business_date=snapshot.today,
        now=now,
        max_age=FINDER_MAX_AGE,
        policy_fingerprint=snapshot.policy,
    )


async def _snapshot(app: Order3, caller: Caller, session: AsyncSession, kind: str, now: datetime) -> tuple[_Snapshot, Tolerances]:
    policy = await active_policy(app, session, workspace_id=caller.workspace_id)
    snapshot = _Snapshot(
        version=await freshness.change_version(session, workspace_id=caller.workspace_id),
        today=finders.business_date(now, timezone=caller.timezone),
        policy=policy.fingerprint,
        run=await freshness.read_run(session, workspace_id=caller.workspace_id, kind=kind),
    )
    return snapshot, policy.tolerances


async def refresh_due(
    app: Order3,
    caller: Caller,
    kinds: tuple[str, ...],
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> dict[str, int]:
    """Rerun the finders of `kinds` whose inputs may have changed (all of them with `force`); return the counts found.

    A kind reruns when something was written since its last run, the business
    date turned, the policy changed, or its last run is older than
    FINDER_MAX_AGE. Overdue drafts are expired first, since they stop holding
    back the exceptions they answered. `progress` is called before the reruns
    and after each one.
    """
    wanted = tuple(kind for kind in kinds if kind in REFRESHABLE_KINDS)
    found: dict[str, int] = {}
    if not wanted:
        return found
    async with _turns(app).lock(caller.workspace_id):
        await expire_due_drafts(app, caller)
        now = app.clock()
        async with app.database.read_only() as session:
            due = []
            for kind in wanted:
                snapshot, _ = await _snapshot(app, caller, session, kind, now)
                if force or await _is_due(session, app, caller, kind, snapshot, now):
                    due.append(kind)
        if progress is not None and due:
            await progress(0, len(due), f"Rerunning the finders for {', '.join(due)}.")
        for done, kind in enumerate(due, start=1):
            found[kind] = await _refresh_one(app, caller, kind, force=force)
            if progress is not None:
                await progress(done, len(due), f"Reran the {kind} finder: {found[kind]} found.")
    return found


@dataclass(frozen=True)
class PlannedRefresh:
    """A refresh worked out on one snapshot.

    `plan` is None when the kind was no longer due (`found` then counts its
    live records), or when a whole run is needed and the caller asked to run
    those elsewhere (`whole_needed`).
    """

    snapshot: _Snapshot
    plan: RefreshPlan | None
    found: int
    whole_needed: bool = False

    @property
    def whole(self) -> bool:
        """Return True when the plan covers every record of the kind."""
        return self.plan is not None and self.plan.scope is None


async def _changed_scope(
    session: AsyncSession, caller: Caller, kind: str, snapshot: _Snapshot, now: datetime
) -> RecordScope | None:
    """Return the records to rerun when only writes logged item by item happened since the last whole run, else None."""
    if snapshot.run is None:
        return None
    run_version, run_date, refreshed_at, run_policy, _ = snapshot.run
    if run_date != snapshot.today or run_policy != snapshot.policy or not timedelta(0) <= now - refreshed_at <= FINDER_MAX_AGE:
        return None
    items = await changes.changed_items_since(
        session, workspace_id=caller.workspace_id, after_version=run_version, through_version=snapshot.version
    )
    if items is None or len(items) > MAX_SCOPED_ITEMS:
        return None
    return await refresh_scope(session, workspace_id=caller.workspace_id, kind=kind, item_ids=items)


async def plan_kind(
    app: Order3,
    caller: Caller,
    kind: str,
    *,
    now: datetime,
    check_due: bool,
    whole: bool = False,
    whole_elsewhere: bool = False,
) -> PlannedRefresh:
    """Plan a refresh of `kind` on a read-only snapshot.

    With `check_due`, nothing is planned if the kind is no longer due. Unless
    `whole` is set, only the items written since the last run are rerun when the
    change log names them all; with `whole_elsewhere`, a whole run is not
    planned here but reported as `whole_needed`.
    """
    async with app.database.read_only() as session:
        snapshot, tolerances = await _snapshot(app, caller, session, kind, now)
        if check_due and not await _is_due(session, app, caller, kind, snapshot, now):
            return PlannedRefresh(snapshot, None, await _live_count(session, caller, kind))
        scope = None if whole else await _changed_scope(session, caller, kind, snapshot, now)
        if scope is None and whole_elsewhere:
            return PlannedRefresh(snapshot, None, 0, whole_needed=True)
        findings = await compute_findings(session, caller=caller, kind=kind, tolerances=tolerances, now=now, scope=scope)
        plan = await plan_refresh(session, workspace_id=caller.workspace_id, kind=kind, findings=findings, scope=scope)
    return PlannedRefresh(snapshot, plan, len(findings))


async def _refresh_one(app: Order3, caller: Caller, kind: str, *, force: bool) -> int:
    """Plan one kind's refresh on a snapshot and apply it; plan again if another refresh got there first.

    With scan workers (`order3 serve --http`), a whole-workspace plan runs in
    a worker process, so the serving event loop stays free for other callers.
    A plan over the few items written since the last run stays in process.
    """
    workers = app.scan_workers
    for attempt in range(1, PLAN_ATTEMPTS + 1):
        now = app.clock()
        check_due = attempt > 1 and not force
        planned = await plan_kind(app, caller, kind, now=now, check_due=check_due, whole=force, whole_elsewhere=workers is not None)
        if planned.whole_needed and workers is not None:
            planned = await workers.plan(app, caller, kind, now=now, check_due=check_due)
        if planned.plan is None:
            # The refresh applied by someone else is current; use its records.
            return planned.found
        if await app.database.run_write(_applier(caller, kind, planned, now)):
            logger.debug(
                "refreshed %s of workspace %d (%s): %d found, %d records written",
                kind, caller.workspace_id, "whole" if planned.whole else "changed items", planned.found, planned.plan.writes,
            )
            return planned.found
        logger.info("another refresh of %s was applied while this one was planned; planning again", kind)
    async with app.database.read_only() as session:
        return await _live_count(session, caller, kind)


def _applier(caller: Caller, kind: str, planned: PlannedRefresh, now: datetime) -> Callable[[AsyncSession], Awaitable[bool]]:
    """Return the write step of a planned refresh; it returns False, writing nothing, if another refresh came first."""
    snapshot, plan = planned.snapshot, planned.plan
    assert plan is not None

    async def apply(session: AsyncSession) -> bool:
        await freshness.lock_refresh(session, workspace_id=caller.workspace_id, kind=kind)
        if await freshness.read_run(session, workspace_id=caller.workspace_id, kind=kind) != snapshot.run:
            return False
        await apply_refresh(session, plan, now=now)
        await freshness.mark_refreshed(
            session,
            workspace_id=caller.workspace_id,
            kind=kind,
            version=snapshot.version,
            business_date=snapshot.today,
            now=now,
            policy_fingerprint=snapshot.policy,
            whole=planned.whole,
        )
        # Log rows every kind has read are no longer needed, nor rows far behind the counter.
        consumed = await freshness.oldest_run_version(session, workspace_id=caller.workspace_id, kinds=REFRESHABLE_KINDS)
        await changes.prune_change_log(
            session, workspace_id=caller.workspace_id, through_version=max(consumed, snapshot.version - CHANGE_LOG_KEPT)
        )
        return True

    return apply


async def _live_count(session: AsyncSession, caller: Caller, kind: str) -> int:
    counted = await session.execute(
        select(func.count())
        .select_from(ExceptionRecord)
        .where(
            ExceptionRecord.workspace_id == caller.workspace_id,
            ExceptionRecord.kind == kind,
            ExceptionRecord.status.in_(LIVE_EXCEPTION_STATUSES),
        )
    )
    return int(counted.scalar_one())


@dataclass(frozen=True)
class StoredFindingsCheck:
    """How the stored exceptions of the finder kinds compare with a recomputation on the same snapshot."""

    #: Kinds compared, with the number of findings the recomputation found.
    checked: dict[str, int]
    #: Kinds not compared because a rerun is due, so their records are expected to lag.
    skipped: list[str]
    #: One line per difference.
    differences: list[str]


async def check_stored_findings(app: Order3, caller: Caller, session: AsyncSession) -> StoredFindingsCheck:
    """Recompute every current finder kind in `session` and compare the result with the stored records.

    A kind is current when nothing was written since its last run, on the same
    business date and policy. Its stored records must then be exactly what a
    full run finds now: no finding without a live record (unless a dismissal
    holds it back), no live record the run does not find (unless a draft still
    answers it), and the same reason and evidence. Incremental refreshes must
    keep this true.
    """
    now = app.clock()
    checked: dict[str, int] = {}
    skipped: list[str] = []
    differences: list[str] = []
    for kind in REFRESHABLE_KINDS:
        snapshot, tolerances = await _snapshot(app, caller, session, kind, now)
        if snapshot.run is None or await freshness.is_stale(
            session,
            workspace_id=caller.workspace_id,
            kind=kind,
            version=snapshot.version,
            business_date=snapshot.today,
            now=now,
            max_age=timedelta.max,
            policy_fingerprint=snapshot.policy,
        ):
            skipped.append(kind)
            continue
        findings = await compute_findings(session, caller=caller, kind=kind, tolerances=tolerances, now=now)
        plan = await plan_refresh(session, workspace_id=caller.workspace_id, kind=kind, findings=findings)
        checked[kind] = len(findings)
        differences += [f"{kind}: {finding.fingerprint} is found but has no live record" for finding in plan.inserts]
        differences += [f"{kind}: record {record_id} is live but no longer found" for record_id, _ in plan.stale]
        differences += [f"{kind}: record {record_id} differs from what is found now" for record_id in plan.changed]
    return StoredFindingsCheck(checked=checked, skipped=skipped, differences=differences)

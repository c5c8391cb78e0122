"""Keep the stored exceptions current: rerun a finder when its inputs may have changed, without holding the write lock.

A refresh of one kind reads a single snapshot (the change counter, the
business date, the policy, the finder's findings and the stored records) on a
read-only transaction, works out which records change, and then applies only
those changes in a short write transaction. The write lock is therefore held
for the writes alone, not for the seconds a finder can take on a large
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
from store import finders, freshness
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
    finder: Callable[[], Awaitable[list[finders.Finding]]]
    if kind == "low_stock":
        finder = lambda: finders.find_low_stock(session, workspace_id=workspace_id, now=now)
    elif kind == "supplier_delay":
        finder = lambda: finders.find_supplier_delays(session, workspace_id=workspace_id, timezone=caller.timezone, now=now)
    elif kind == "short_receiving":
        finder = lambda: finders.find_receiving_variances(
            session,
            workspace_id=workspace_id,
            short_pct=tolerances.receiving_short_pct,
            over_pct=tolerances.receiving_over_pct,
        )
    elif kind == "count_drift":
        finder = lambda: finders.find_count_drift(
            session,
            workspace_id=workspace_id,
            abs_tol=tolerances.count_drift_abs,
            pct_tol=tolerances.count_drift_pct,
            value_tol=tolerances.count_drift_value,
            repeat=tolerances.count_drift_repeat,
        )
    elif kind == "mismatch":
        finder = lambda: finders.find_mismatches(
            session,
            workspace_id=workspace_id,
            qty_tol=tolerances.mismatch_qty_abs,
            value_tol=tolerances.mismatch_value_abs,
            now=now,
        )
    else:
        raise InvalidInputError(f"Exception kind {kind!r} is not computed by a finder; use one of {', '.join(REFRESHABLE_KINDS)}.")
    found = await finder()
    if scope is not None:
        found = [finding for finding in found if scope.covers(finding)]
    return await finders.add_item_context(session, workspace_id=workspace_id, findings=found)


async def refresh_kind(app: Order3, caller: Caller, session: AsyncSession, kind: str) -> int:
    """Recompute one kind of exception and persist it in the caller's write transaction; return the number found.

    For actions that must settle exceptions in the same transaction as their
    own writes (executing a draft, submitting a count).
    """
    now = app.clock()
    tolerances = (await active_policy(app, session, workspace_id=caller.workspace_id)).tolerances
    findings = await compute_findings(session, caller=caller, kind=kind, tolerances=tolerances, now=now)
    plan = await plan_refresh(session, workspace_id=caller.workspace_id, kind=kind, findings=findings)
    await apply_refresh(session, plan, now=now)
    return len(findings)


@dataclass(frozen=True)
class _Snapshot:
    """What a refresh saw at its start: the counter, business date, policy and the kind's last run."""

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
    """A refresh worked out on one snapshot: what it saw, what to write (None when the kind was not due), and the count found."""

    snapshot: _Snapshot
    plan: RefreshPlan | None
    found: int


async def plan_kind(
    app: Order3, caller: Caller, kind: str, *, now: datetime, check_due: bool, scope: RecordScope | None = None
) -> PlannedRefresh:
    """Plan a refresh of `kind` on a read-only snapshot; with `check_due`, plan nothing if it is no longer due."""
    async with app.database.read_only() as session:
        snapshot, tolerances = await _snapshot(app, caller, session, kind, now)
        if check_due and not await _is_due(session, app, caller, kind, snapshot, now):
            return PlannedRefresh(snapshot, None, await _live_count(session, caller, kind))
        findings = await compute_findings(session, caller=caller, kind=kind, tolerances=tolerances, now=now, scope=scope)
        plan = await plan_refresh(session, workspace_id=caller.workspace_id, kind=kind, findings=findings, scope=scope)
    return PlannedRefresh(snapshot, plan, len(findings))


async def _refresh_one(app: Order3, caller: Caller, kind: str, *, force: bool) -> int:
    """Plan one kind's refresh on a snapshot and apply it; plan again if another refresh got there first.

    With scan workers (`order3 serve --http`), the whole-workspace plan runs in
    a worker process, so the serving event loop stays free for other callers.
    """
    workers = app.scan_workers
    for attempt in range(1, PLAN_ATTEMPTS + 1):
        now = app.clock()
        check_due = attempt > 1 and not force
        if workers is not None:
            planned = await workers.plan(app, caller, kind, now=now, check_due=check_due)
        else:
            planned = await plan_kind(app, caller, kind, now=now, check_due=check_due)
        if planned.plan is None:
            # The refresh applied by someone else is current; use its records.
            return planned.found
        if await app.database.run_write(_applier(caller, kind, planned.plan, planned.snapshot, now)):
            logger.debug(
                "refreshed %s of workspace %d: %d found, %d records written",
                kind, caller.workspace_id, planned.found, planned.plan.writes,
            )
            return planned.found
        logger.info("another refresh of %s was applied while this one was planned; planning again", kind)
    async with app.database.read_only() as session:
        return await _live_count(session, caller, kind)


def _applier(
    caller: Caller, kind: str, plan: RefreshPlan, snapshot: _Snapshot, now: datetime
) -> Callable[[AsyncSession], Awaitable[bool]]:
    """Return the write step of a planned refresh; it returns False, writing nothing, if another refresh came first."""

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

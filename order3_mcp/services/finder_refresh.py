"""Keep the stored exceptions current: rerun a finder when its inputs may have changed, without holding the write lock.

A refresh of one kind reads a single snapshot on a read-only transaction: the
change counter, the business date, the policy, the finder's findings and the
stored records. It works out which records change, and then writes only those
changes in a short write transaction. The write lock is therefore held for
the writes alone, not for the seconds a finder can take on a large
workspace, and other callers keep reading and writing meanwhile.

The applying transaction checks that no other refresh of the kind was applied
since the snapshot, by another process or another task of this one. If one
was, the plan is dropped and the kind is planned again from a new snapshot.
Within one process, refreshes of a workspace take turns, so callers that ask
at the same moment share one run instead of each starting their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3
from order3_mcp.services.drafts import expire_due_drafts
from order3_mcp.services.policy_routing import active_policy
from order3_mcp.services.progress import ProgressCallback
from policies import Tolerances
from store import changes, finders, freshness
from store.errors import InvalidInputError, Order3Error
from store.finders.records import (
    RecordScope,
    RefreshPlan,
    SeenAgain,
    apply_refresh,
    plan_refresh,
)

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

# How long a process's claim on a kind's next whole run lasts if the process stops before recording it.
WHOLE_RUN_CLAIM = timedelta(minutes=2)

# Planning in the serving process pauses this long between finder steps once it has
# kept the event loop for LONG_STEP_SECONDS, so the loop can serve other requests.
STEP_PAUSE_SECONDS = 0.005
LONG_STEP_SECONDS = 0.1

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
    context: bool = True,
) -> list[finders.Finding]:
    """Run the finder of `kind` (over `scope` only, when given) and, with `context`, add each finding's item context."""
    workspace_id = caller.workspace_id
    if scope is not None and scope.column != "item_id" and kind != "supplier_delay":
        raise InvalidInputError(f"A {kind} refresh cannot be limited by {scope.column}; see `refresh_scope`.")
    ids = scope.ids if scope is not None else None
    by_supplier = scope is not None and scope.column == "supplier_id"
    finder: Callable[[], Awaitable[list[finders.Finding]]]
    if kind == "low_stock":
        finder = lambda: finders.find_low_stock(session, workspace_id=workspace_id, now=now, item_ids=ids)
    elif kind == "supplier_delay":
        finder = lambda: finders.find_supplier_delays(
            session,
            workspace_id=workspace_id,
            timezone=caller.timezone,
            now=now,
            supplier_ids=ids if by_supplier else None,
            item_ids=None if by_supplier else ids,
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
    if not context:
        return found
    return await finders.add_item_context(session, workspace_id=workspace_id, findings=found)


async def refresh_scope(
    session: AsyncSession, *, workspace_id: int, kind: str, item_ids: frozenset[int], timezone: str
) -> RecordScope:
    """Return the records a refresh of `kind` must cover after the finder inputs of `item_ids` changed.

    Supplier delays also cover every line of a supplier whose on-time record
    changed (a receipt completed one of its lines, say), because every delay
    finding of that supplier shows the record. The fresh records of the
    suppliers of `item_ids` are compared with what their stored findings show.
    """
    if kind != "supplier_delay" or not item_ids:
        return RecordScope("item_id", item_ids)
    suppliers = await finders.suppliers_of_items(session, workspace_id=workspace_id, item_ids=item_ids)
    fresh = await finders.supplier_on_time_records(
        session, workspace_id=workspace_id, supplier_ids=suppliers, timezone=timezone
    )
    stored = await finders.stored_on_time_records(session, workspace_id=workspace_id, supplier_ids=suppliers)
    blank = finders.OnTimeRecord(0, 0)
    changed = {
        supplier_id
        for supplier_id, stored_pairs in stored.items()
        if stored_pairs != {(fresh.get(supplier_id, blank).on_time_lines, fresh.get(supplier_id, blank).received_lines)}
    }
    if not changed:
        return RecordScope("item_id", item_ids)
    extra = await finders.delay_items_of_suppliers(session, workspace_id=workspace_id, supplier_ids=changed)
    return RecordScope("item_id", item_ids | frozenset(extra))


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
    item_ids = declared.for_kind(kind)
    if not declared.everything and len(item_ids) <= MAX_SCOPED_ITEMS:
        scope = await refresh_scope(
            session, workspace_id=caller.workspace_id, kind=kind, item_ids=item_ids, timezone=caller.timezone
        )
    findings = await compute_findings(session, caller=caller, kind=kind, tolerances=tolerances, now=now, scope=scope)
    plan = await plan_refresh(session, workspace_id=caller.workspace_id, kind=kind, findings=findings, scope=scope)
    await apply_refresh(session, plan, now=now)
    return len(findings)


@dataclass(frozen=True)
class _Snapshot:
    """The state a refresh starts from: the counter, business date, policy and the kind's last run."""

    version: int
    today: date
    policy: str
    run: freshness.RunState | None

    def is_current(self) -> bool:
        """Return True when the kind's last run saw this counter, business date and policy, whatever its age."""
        return self.run is not None and self.run.matches(
            version=self.version, business_date=self.today, policy_fingerprint=self.policy
        )

    def is_aged(self, now: datetime) -> bool:
        """Return True when the kind ran, but its last whole run is past the maximum age."""
        return self.run is not None and self.run.is_aged(now, FINDER_MAX_AGE)

    def is_due(self, now: datetime, *, arrival: int | None = None) -> bool:
        """Return True when the kind never ran, or its counter, business date, policy or age is out of date.

        With `arrival`, the change counter when the caller asked, a last run that
        saw that value or a later one is not out of date for this caller, even
        if writes came after it: they came after the caller asked.
        """
        run = self.run
        if (
            arrival is not None
            and run is not None
            and run.change_version >= arrival
            and (run.business_date, run.policy_fingerprint) == (self.today, self.policy)
            and not self.is_aged(now)
        ):
            return False
        return not self.is_current() or self.is_aged(now)

    def whole_run_after(self, moment: datetime) -> bool:
        """Return True when the kind's last whole run started after `moment`, so it saw every write made before."""
        return self.run is not None and self.run.whole_refreshed_at > moment

    def covered_by(self, run: freshness.RunState | None, *, whole: bool) -> bool:
        """Return True when `run`, written by another refresh, saw at least what a refresh planned on this snapshot saw.

        A whole plan is covered only by a whole run written since this snapshot's.
        """
        if run is None or run.business_date != self.today or run.policy_fingerprint != self.policy:
            return False
        if run.change_version < self.version:
            return False
        if whole:
            return self.run is None or run.whole_refreshed_at > self.run.whole_refreshed_at
        return True


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


async def _read_state(
    app: Order3, caller: Caller, session: AsyncSession, kinds: tuple[str, ...], now: datetime
) -> tuple[dict[str, _Snapshot], Tolerances]:
    """Read what a refresh of `kinds` starts from, in four statements whatever the number of kinds."""
    policy = await active_policy(app, session, workspace_id=caller.workspace_id)
    version = await freshness.change_version(session, workspace_id=caller.workspace_id)
    today = finders.business_date(now, timezone=caller.timezone)
    runs = await freshness.read_runs(session, workspace_id=caller.workspace_id, kinds=kinds)
    return {kind: _Snapshot(version, today, policy.fingerprint, runs.get(kind)) for kind in kinds}, policy.tolerances


@dataclass(frozen=True)
class PlannedRefresh:
    """A refresh of one kind worked out on one snapshot: what it saw, what to write, and the number found."""

    snapshot: _Snapshot
    plan: RefreshPlan
    found: int

    @property
    def whole(self) -> bool:
        """Return True when the plan covers every record of the kind."""
        return self.plan.scope is None


async def _changed_scope(
    session: AsyncSession,
    caller: Caller,
    kind: str,
    snapshot: _Snapshot,
    now: datetime,
    changed: dict[int, changes.LoggedChanges | None],
    *,
    aged_ok: bool = False,
) -> RecordScope | None:
    """Return the records to rerun when only writes logged item by item happened since the last run, else None.

    `changed` keeps what the change log holds per starting version,
    since the kinds of one refresh usually last ran against the same version.
    With `aged_ok`, a last whole run past the maximum age does not by itself
    call for a whole run, because another process has claimed it.
    """
    run = snapshot.run
    if run is None or run.business_date != snapshot.today or run.policy_fingerprint != snapshot.policy:
        return None
    if not aged_ok and snapshot.is_aged(now):
        return None
    run_version = run.change_version
    if run_version not in changed:
        changed[run_version] = await changes.logged_changes_since(
            session, workspace_id=caller.workspace_id, after_version=run_version, through_version=snapshot.version
        )
    logged = changed[run_version]
    if logged is None:
        return None
    items = logged.for_kind(kind)
    if len(items) > MAX_SCOPED_ITEMS:
        return None
    return await refresh_scope(
        session, workspace_id=caller.workspace_id, kind=kind, item_ids=items, timezone=caller.timezone
    )


async def plan_kinds(
    app: Order3,
    caller: Caller,
    kinds: tuple[str, ...],
    *,
    now: datetime,
    force: bool = False,
    aged_ok: frozenset[str] = frozenset(),
    progress: Callable[[str, int], Awaitable[None]] | None = None,
) -> dict[str, PlannedRefresh]:
    """Plan a refresh of each due kind among `kinds` (every one with `force`) on one read-only snapshot.

    Unless `force` is set, a kind reruns only the items written since its
    last run when the change log names them all. The kinds in
    `aged_ok` rerun changed items only even past the maximum age, because
    another process has claimed their whole run. `progress` is awaited with
    each kind planned and its number of findings.
    """
    planned: dict[str, PlannedRefresh] = {}
    changed: dict[int, changes.LoggedChanges | None] = {}
    pause = _StepPause()
    async with app.database.read_only() as session:
        snapshots, tolerances = await _read_state(app, caller, session, kinds, now)
        computed: dict[str, tuple[RecordScope | None, list[finders.Finding]]] = {}
        for kind in kinds:
            snapshot = snapshots[kind]
            if not force and not snapshot.is_due(now):
                continue
            scope = None
            if not force:
                scope = await _changed_scope(session, caller, kind, snapshot, now, changed, aged_ok=kind in aged_ok)
            found = await compute_findings(
                session, caller=caller, kind=kind, tolerances=tolerances, now=now, scope=scope, context=False
            )
            computed[kind] = (scope, found)
            await pause.after_step()
        # One pass over the recent counts and reservations serves every kind: a whole run of
        # several kinds would otherwise read them once per kind.
        everything = await finders.add_item_context(
            session, workspace_id=caller.workspace_id, findings=[finding for _, found in computed.values() for finding in found]
        )
        start = 0
        for kind, (scope, found) in computed.items():
            findings = everything[start : start + len(found)]
            start += len(found)
            plan = await plan_refresh(session, workspace_id=caller.workspace_id, kind=kind, findings=findings, scope=scope)
            planned[kind] = PlannedRefresh(snapshots[kind], plan, len(findings))
            if progress is not None:
                await progress(kind, len(findings))
            await pause.after_step()
    return planned


class _StepPause:
    """A pause between planning steps, taken once they have kept the event loop for LONG_STEP_SECONDS.

    The inline SQLite driver never yields inside a statement, so a whole rerun
    planned in the serving process keeps the loop for seconds. A pause lets the
    loop serve other requests and send a stopped call's error, which over stdio
    takes several turns of the loop and a thread. Short steps, as in a rerun of
    a few changed items, pass without one.
    """

    def __init__(self) -> None:
        self._since = time.monotonic()

    async def after_step(self) -> None:
        if time.monotonic() - self._since >= LONG_STEP_SECONDS:
            await asyncio.sleep(STEP_PAUSE_SECONDS)
            self._since = time.monotonic()


async def refresh_due(
    app: Order3,
    caller: Caller,
    kinds: tuple[str, ...],
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> dict[str, int]:
    """Rerun the finders of `kinds` whose inputs may have changed (all of them with `force`); return the counts found.

    A kind reruns when something was written since its last run and before
    this call, the business date turned, the policy changed, or its last whole
    run is older than FINDER_MAX_AGE. Overdue drafts are expired first, because an expired draft
    no longer hides the exceptions linked to it. The due kinds are planned on one
    snapshot and written in one short transaction. With scan workers
    (`order3 serve --http`), the plans are made in a worker process, so the
    serving event loop stays free for other callers. `progress` is called
    before the reruns and after each one. In a server (`app.background_runs`),
    a rerun whose caller is stopped goes on and is written when done.
    """
    wanted = tuple(kind for kind in kinds if kind in REFRESHABLE_KINDS)
    if not wanted:
        return {}
    await expire_due_drafts(app, caller)
    # Callers that wait for their turn while another rerun runs are served by any
    # rerun that saw every write made before they asked, so a queue of finder
    # calls under steady writes plans once rather than once per call.
    requested_at = app.clock()
    async with app.database.read_only() as session:
        arrival = await freshness.change_version(session, workspace_id=caller.workspace_id)
    settled: set[str] = set()
    if app.background_runs is None:
        return await _refresh_in_turn(
            app, caller, wanted, arrival=arrival, requested_at=requested_at, force=force, progress=progress, settled=settled
        )
    # In a server the rerun outlives a call stopped at its deadline or by its client:
    # a whole run longer than the deadline would otherwise be thrown away at every
    # attempt and never written. The next call finds it written, or waits its turn.
    caller_waiting = True

    async def report(done: int, total: int, message: str) -> None:
        if caller_waiting and progress is not None:
            await progress(done, total, message)

    description = f"rerun of the {', '.join(wanted)} finder{'s' if len(wanted) > 1 else ''} of workspace {caller.workspace}"

    def ended(task: asyncio.Task[dict[str, int]]) -> None:
        # Logs how a rerun ended after its call was stopped, because no caller reads its result.
        kinds = ", ".join(sorted(settled)) or "none"
        if task.cancelled():
            logger.warning(
                "%s was stopped with the server; kinds brought up to date before that: %s. The next finder call "
                "reruns the others", description, kinds,
            )
        elif (error := task.exception()) is not None:
            logger.error("%s failed after its call was stopped (kinds up to date: %s)", description, kinds, exc_info=error)
        elif settled:
            logger.info("%s ended after its call was stopped; kinds brought up to date: %s", description, kinds)
        else:
            logger.info("%s ended after its call was stopped without a rerun of its own: another had covered it", description)

    work = _refresh_in_turn(
        app, caller, wanted, arrival=arrival, requested_at=requested_at, force=force, progress=report, settled=settled
    )
    try:
        return await app.background_runs.outlive(work, description=description, ended=ended)
    except asyncio.CancelledError:
        caller_waiting = False
        raise


async def _refresh_in_turn(
    app: Order3,
    caller: Caller,
    wanted: tuple[str, ...],
    *,
    arrival: int,
    requested_at: datetime,
    force: bool,
    progress: ProgressCallback | None,
    settled: set[str],
) -> dict[str, int]:
    """Rerun the due kinds among `wanted` once this process's earlier reruns of the workspace are done.

    A forced rerun is skipped for a kind whose whole run started after `requested_at`,
    so forced calls queued behind one another share a run instead of each
    rerunning every item. The kinds written or found up to date are added to
    `settled` as each transaction commits.
    """
    found: dict[str, int] = {}
    async with _turns(app).lock(caller.workspace_id):
        now = app.clock()
        async with app.database.read_only() as session:
            snapshots, _ = await _read_state(app, caller, session, wanted, now)
        if force:
            due = tuple(kind for kind in wanted if not snapshots[kind].whole_run_after(requested_at))
        else:
            due = tuple(kind for kind in wanted if snapshots[kind].is_due(now, arrival=arrival))
        if not due:
            return found
        claim_until = now + WHOLE_RUN_CLAIM
        aged_ok = frozenset() if force else await _whole_runs_claimed_elsewhere(app, caller, snapshots, due, now, claim_until)
        # A server reruns the changed items now and leaves the whole rerun that only
        # the maximum age calls for to a background run, which this process has claimed.
        background: frozenset[str] = frozenset()
        if not force and app.background_runs is not None:
            background = frozenset(kind for kind in due if snapshots[kind].is_aged(now)) - aged_ok
            aged_ok |= background
        counted = {"done": 0, "total": len(due)}

        async def report(kind: str, count: int) -> None:
            counted["done"] += 1
            if progress is not None:
                await progress(counted["done"], counted["total"], f"Reran the {kind} finder: {count} found.")

        if progress is not None:
            await progress(0, len(due), f"Rerunning the finders for {', '.join(due)}.")
        pending, force_now = due, force
        for _attempt in range(PLAN_ATTEMPTS):
            now = app.clock()
            if app.scan_workers is not None:
                # Every finder statement runs in the worker; the serving loop only writes the plans.
                planned = await app.scan_workers.plan(app, caller, pending, now=now, force=force_now, aged_ok=aged_ok)
                for kind, entry in planned.items():
                    await report(kind, entry.found)
            else:
                planned = await plan_kinds(app, caller, pending, now=now, force=force_now, aged_ok=aged_ok, progress=report)
            applied = await apply_planned(app, caller, planned, now, settled=settled)
            found.update({kind: planned[kind].found for kind in applied})
            # A kind that needed a whole rerun anyway (a write logged as everything, say) has had it.
            background -= {kind for kind in applied if planned[kind].whole}
            # A kind another refresh wrote since this snapshot is planned again; it may no longer be due.
            pending = tuple(kind for kind in planned if kind not in applied)
            counted["total"] += len(pending)
            if not pending:
                break
            logger.info("another refresh of %s was written while this one was planned; planning again", ", ".join(pending))
            force_now = False
    if background and app.background_runs is not None:
        app.background_runs.start(app, caller, tuple(sorted(background)), claimed_until=claim_until)
    return found


async def _whole_runs_claimed_elsewhere(
    app: Order3, caller: Caller, snapshots: dict[str, _Snapshot], due: tuple[str, ...], now: datetime, until: datetime
) -> frozenset[str]:
    """Claim the whole runs that only the maximum age calls for; return the kinds another process claimed first.

    Several server processes on one database would otherwise all start the
    same whole run of several seconds at once. The one that claims it runs
    it, and the others rerun changed items only until it is recorded.
    """
    aged = tuple(kind for kind in due if snapshots[kind].is_aged(now))
    if not aged:
        return frozenset()

    async def claim(session: AsyncSession) -> set[str]:
        return await freshness.claim_whole_runs(
            session, workspace_id=caller.workspace_id, kinds=aged, now=now, until=until
        )

    claimed = await app.database.run_write(claim)
    return frozenset(aged) - claimed


def applier(
    caller: Caller, planned: dict[str, PlannedRefresh], now: datetime, seen_again: list[SeenAgain] | None = None
) -> Callable[[AsyncSession], Awaitable[set[str]]]:
    """Return the write step of planned refreshes.

    The step returns the kinds that are settled: written by it, or covered by
    a refresh another caller wrote since the snapshot. The others are planned again.
    With a `seen_again` list, whole plans leave the last_seen move of their
    unchanged records there, for `move_last_seen` to run after the commit.
    """

    async def apply(session: AsyncSession) -> set[str]:
        if seen_again is not None:
            # A retried transaction starts the list again.
            seen_again.clear()
        kinds = tuple(planned)
        for kind in kinds:
            await freshness.lock_refresh(session, workspace_id=caller.workspace_id, kind=kind)
        runs = await freshness.read_runs(session, workspace_id=caller.workspace_id, kinds=kinds)
        applied: set[str] = set()
        for kind in kinds:
            entry = planned[kind]
            plan, version = entry.plan, entry.snapshot.version
            current = runs.get(kind)
            if current != entry.snapshot.run:
                if entry.snapshot.covered_by(current, whole=entry.whole):
                    # Another refresh wrote what this plan would: there is nothing left to do.
                    applied.add(kind)
                    continue
                merged = await _whole_plan_after_reruns(session, caller, kind, entry, current) if entry.whole else None
                if merged is None:
                    continue
                plan, version = merged
            result = await apply_refresh(session, plan, now=now, defer_seen_again=seen_again is not None)
            if result.seen_again is not None and result.seen_again.ranges and seen_again is not None:
                seen_again.append(result.seen_again)
            await freshness.mark_refreshed(
                session,
                workspace_id=caller.workspace_id,
                kind=kind,
                version=version,
                business_date=entry.snapshot.today,
                now=now,
                policy_fingerprint=entry.snapshot.policy,
                whole=entry.whole,
            )
            applied.add(kind)
            logger.debug(
                "refreshed %s of workspace %d (%s): %d found, %d records written",
                kind, caller.workspace_id, "whole" if entry.whole else "changed items", entry.found, plan.writes,
            )
        if applied:
            # Log rows every kind has read are no longer needed, nor rows far behind the counter.
            consumed = await freshness.oldest_run_version(session, workspace_id=caller.workspace_id, kinds=REFRESHABLE_KINDS)
            newest = max(planned[kind].snapshot.version for kind in applied)
            await changes.prune_change_log(
                session, workspace_id=caller.workspace_id, through_version=max(consumed, newest - CHANGE_LOG_KEPT)
            )
        return applied

    return apply


async def apply_planned(
    app: Order3, caller: Caller, planned: dict[str, PlannedRefresh], now: datetime, *, settled: set[str] | None = None
) -> set[str]:
    """Write planned refreshes in one transaction, then move last_seen of whole plans' unchanged records.

    Returns the settled kinds, and adds them to `settled` as soon as they are
    committed. The move runs in a task of its own: the rerun is committed by
    then, so a call cancelled or past its deadline meanwhile leaves the move to
    finish rather than stopping it halfway.
    """
    if not planned:
        return set()
    seen_again: list[SeenAgain] = []
    applied = await app.database.run_write(applier(caller, planned, now, seen_again))
    if settled is not None:
        settled |= applied
    if seen_again:
        task = asyncio.ensure_future(move_last_seen(app, caller.workspace_id, seen_again))
        _MOVES.add(task)
        task.add_done_callback(_MOVES.discard)
        await asyncio.shield(task)
    return applied


# Deferred last_seen moves still running, referenced here so they are not garbage collected.
_MOVES: set[asyncio.Future[None]] = set()


async def move_last_seen(app: Order3, workspace_id: int, pending: list[SeenAgain]) -> None:
    """Run the deferred last_seen moves, each statement in a short write transaction of its own.

    last_seen only records when a finder last confirmed a record, so a failed
    move (the write lock stayed taken past the busy timeout, say) is logged.
    The moves of that kind and of the later kinds then stop, because each
    further attempt could wait as long again. Those records keep the
    last_seen of the previous run until the next whole rerun, and the rerun
    itself stays written.
    """
    for position, entry in enumerate(pending):
        statements = entry.statements()
        for done, statement in enumerate(statements):

            async def move(session: AsyncSession, statement: Any = statement) -> None:
                await session.execute(statement)

            try:
                await app.database.run_write(move)
            except (Order3Error, DBAPIError) as exc:
                left = ", ".join(later.kind for later in pending[position + 1 :]) or "none"
                logger.warning(
                    "could not move last_seen of the %s records of workspace %d found again by a whole rerun "
                    "(%d of %d statements done), nor of the later kinds (%s): %s; the next whole rerun moves them",
                    entry.kind, workspace_id, done, len(statements), left, exc,
                )
                return


async def _whole_plan_after_reruns(
    session: AsyncSession, caller: Caller, kind: str, entry: PlannedRefresh, current: freshness.RunState | None
) -> tuple[RefreshPlan, int] | None:
    """Return a whole plan cut down to fit after the reruns of changed items written since its snapshot, or None.

    Under steady writes, other callers keep rerunning the changed items while a
    whole run of several seconds is planned, so the whole plan would always be
    planned again. Those reruns only covered items written since the run the
    plan started from, so the plan stays right for every other item. It is
    applied to the other items, and the kind's counter stays at the reruns'
    value, so the next call reruns whatever was written after them.
    Returns None when that cannot be shown: another whole run, another date or
    policy, or a write logged as everything.
    """
    read = entry.snapshot.run
    if read is None or current is None:
        return None
    if (current.business_date, current.policy_fingerprint, current.whole_refreshed_at) != (
        read.business_date,
        read.policy_fingerprint,
        read.whole_refreshed_at,
    ):
        return None
    latest = await freshness.change_version(session, workspace_id=caller.workspace_id)
    items = await changes.changed_items_since(
        session, workspace_id=caller.workspace_id, after_version=read.change_version, through_version=latest, kind=kind
    )
    if items is None or len(items) > MAX_SCOPED_ITEMS:
        return None
    if kind == "supplier_delay":
        # Every delay of the suppliers of those items is left out: a rerun may have
        # covered all of a supplier's lines when its on-time record changed.
        suppliers = await finders.suppliers_of_items(session, workspace_id=caller.workspace_id, item_ids=items)
        excluded = RecordScope("supplier_id", frozenset(suppliers))
    else:
        excluded = RecordScope("item_id", items)
    return entry.plan.without(excluded), current.change_version


@dataclass(frozen=True)
class StoredFindingsCheck:
    """The result of comparing the stored exceptions of the finder kinds with a recomputation on the same snapshot."""

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
    suppresses it), no live record the run does not find (unless an open draft
    is linked to it), and the same reason and evidence. Incremental refreshes must
    keep this true.
    """
    now = app.clock()
    checked: dict[str, int] = {}
    skipped: list[str] = []
    differences: list[str] = []
    snapshots, tolerances = await _read_state(app, caller, session, REFRESHABLE_KINDS, now)
    for kind in REFRESHABLE_KINDS:
        snapshot = snapshots[kind]
        if not snapshot.is_current():
            skipped.append(kind)
            continue
        findings = await compute_findings(session, caller=caller, kind=kind, tolerances=tolerances, now=now)
        plan = await plan_refresh(session, workspace_id=caller.workspace_id, kind=kind, findings=findings)
        checked[kind] = len(findings)
        differences += [f"{kind}: {finding.fingerprint} is found but has no live record" for finding in plan.inserts]
        differences += [f"{kind}: record {record_id} is live but no longer found" for record_id, _ in plan.stale]
        differences += [f"{kind}: record {record_id} differs from what is found now" for record_id in plan.changed]
    return StoredFindingsCheck(checked=checked, skipped=skipped, differences=differences)

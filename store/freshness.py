"""Decide whether an exception kind needs recomputing, from the change counter, the business date and age.

Every write action bumps the workspace's change counter in its own
transaction (`note_change`), which also logs the items that write touched
(`store.changes`). A refresh records the counter, the business date, the
policy and the time it ran (`mark_refreshed`). A later call recomputes a kind
only when the counter moved, the business date turned, the policy whose
tolerances it used was replaced, or the last whole run is older than the
maximum age (`RunState`). The age limit also bounds how long a change made
outside Order3 (a script writing to the database directly) can go unseen.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.changes import log_change
from store.dialect import POSTGRESQL, SQLITE, dialect_of, needs_row_locks, upsert_insert
from store.models import ChangeCounter, FinderRun

_COUNTERS = ChangeCounter.__table__
_RUNS = FinderRun.__table__

def _bump_statement(dialect: str) -> Any:
    # One upsert, so two first writes of a workspace cannot both try to insert.
    statement = upsert_insert(dialect, _COUNTERS).values(workspace_id=bindparam("workspace_id"), version=1)
    return statement.on_conflict_do_update(
        index_elements=[_COUNTERS.c.workspace_id], set_={"version": _COUNTERS.c.version + 1}
    ).returning(_COUNTERS.c.version)


_BUMPS = {dialect: _bump_statement(dialect) for dialect in (SQLITE, POSTGRESQL)}
_READ_COUNTER = select(_COUNTERS.c.version).where(_COUNTERS.c.workspace_id == bindparam("workspace_id"))
_RUN_COLUMNS = (
    _RUNS.c.kind,
    _RUNS.c.change_version,
    _RUNS.c.business_date,
    func.coalesce(_RUNS.c.whole_refreshed_at, _RUNS.c.refreshed_at),
    _RUNS.c.policy_fingerprint,
    _RUNS.c.refreshed_at,
)


class RunState(NamedTuple):
    """The last refresh of one exception kind, as the freshness checks read it."""

    change_version: int
    business_date: date
    #: When the kind last ran over every item; the maximum age counts from here.
    whole_refreshed_at: datetime
    policy_fingerprint: str
    #: When the kind last ran, over every item or over the items changed since.
    refreshed_at: datetime

    def matches(self, *, version: int, business_date: date, policy_fingerprint: str) -> bool:
        """Return True when the run saw this change counter, business date and policy."""
        return (self.change_version, self.business_date, self.policy_fingerprint) == (
            version,
            business_date,
            policy_fingerprint,
        )

    def is_aged(self, now: datetime, max_age: timedelta) -> bool:
        """Return True when the last whole run is older than `max_age` (or in the future of `now`)."""
        return not timedelta(0) <= now - self.whole_refreshed_at <= max_age


async def note_change(session: AsyncSession, *, workspace_id: int) -> None:
    """Bump the workspace's change counter inside the caller's write transaction and log what the write touched.

    The change_log row takes the transaction's `store.changes` declarations
    made before this call. A transaction that bumps the counter twice logs the
    later declarations under the later value only, but both rows commit
    together, so a reader never sees one without the other.
    """
    version = (await session.execute(_BUMPS[dialect_of(session)], {"workspace_id": workspace_id})).scalar_one()
    await log_change(session, workspace_id=workspace_id, version=version)


async def change_version(session: AsyncSession, *, workspace_id: int) -> int:
    """Return the workspace's change counter (0 before its first write)."""
    return (await session.execute(_READ_COUNTER, {"workspace_id": workspace_id})).scalar_one_or_none() or 0


async def read_runs(session: AsyncSession, *, workspace_id: int, kinds: tuple[str, ...]) -> dict[str, RunState]:
    """Return the last refresh of each of `kinds` that ran, in one statement."""
    rows = await session.execute(
        select(*_RUN_COLUMNS).where(_RUNS.c.workspace_id == workspace_id, _RUNS.c.kind.in_(kinds))
    )
    return {kind: RunState(*rest) for kind, *rest in rows.all()}


_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:lock_id)")


async def lock_refresh(session: AsyncSession, *, workspace_id: int, kind: str) -> None:
    """Let one write transaction at a time apply a refresh of `kind` in the workspace.

    A refresh is planned on a snapshot and applied later, so the applying
    transaction checks with `read_runs` that no other refresh was applied in
    between. On PostgreSQL this lock makes that check and the write one step.
    SQLite's BEGIN IMMEDIATE serialises writers already.
    """
    if not needs_row_locks(session):
        return
    digest = hashlib.sha256(f"finder-run:{workspace_id}:{kind}".encode()).digest()
    await session.execute(_ADVISORY_LOCK, {"lock_id": int.from_bytes(digest[:8], "big", signed=True)})


async def last_refreshed(session: AsyncSession, *, workspace_id: int, kinds: tuple[str, ...]) -> dict[str, datetime]:
    """Return when each of `kinds` was last recomputed. Kinds never computed are left out."""
    rows = await session.execute(
        select(_RUNS.c.kind, _RUNS.c.refreshed_at).where(_RUNS.c.workspace_id == workspace_id, _RUNS.c.kind.in_(kinds))
    )
    return {kind: refreshed_at for kind, refreshed_at in rows.all()}


async def mark_refreshed(
    session: AsyncSession,
    *,
    workspace_id: int,
    kind: str,
    version: int,
    business_date: date,
    now: datetime,
    policy_fingerprint: str,
    whole: bool = True,
) -> None:
    """Record that `kind` was recomputed at `now` against change counter `version`.

    A run over the items changed since the last one (`whole=False`) brings the
    records up to `version` but keeps the time of the last whole run. The
    maximum age counts from that time, so a whole run still happens now and
    then and picks up changes written outside Order3.
    """
    values: dict[str, Any] = {
        "change_version": version, "business_date": business_date, "policy_fingerprint": policy_fingerprint, "refreshed_at": now,
    }
    if whole:
        values["whole_refreshed_at"] = now
        values["whole_claimed_until"] = None
    changed = await session.execute(
        update(_RUNS).where(_RUNS.c.workspace_id == workspace_id, _RUNS.c.kind == kind).values(**values)
    )
    if changed.rowcount == 0:
        await session.execute(
            insert(_RUNS).values(
                workspace_id=workspace_id,
                kind=kind,
                change_version=version,
                business_date=business_date,
                refreshed_at=now,
                whole_refreshed_at=now,
                policy_fingerprint=policy_fingerprint,
            )
        )


async def oldest_run_version(session: AsyncSession, *, workspace_id: int, kinds: tuple[str, ...]) -> int:
    """Return the lowest change version any of `kinds` was refreshed against (0 if one never ran)."""
    rows = await session.execute(
        select(_RUNS.c.change_version).where(_RUNS.c.workspace_id == workspace_id, _RUNS.c.kind.in_(kinds))
    )
    versions = list(rows.scalars().all())
    return min(versions) if len(versions) == len(kinds) else 0


async def claim_whole_runs(
    session: AsyncSession, *, workspace_id: int, kinds: tuple[str, ...], now: datetime, until: datetime
) -> set[str]:
    """Claim the next run over every item of each of `kinds` until `until`; return the kinds claimed.

    A kind already claimed by someone else until after `now` is not claimed
    again. The claim ends when the run is recorded (`mark_refreshed` with
    `whole`), or at `until` if its process stopped first.
    """
    claimed: set[str] = set()
    for kind in kinds:
        changed = await session.execute(
            update(_RUNS)
            .where(
                _RUNS.c.workspace_id == workspace_id,
                _RUNS.c.kind == kind,
                (_RUNS.c.whole_claimed_until.is_(None)) | (_RUNS.c.whole_claimed_until <= now),
            )
            .values(whole_claimed_until=until)
        )
        if changed.rowcount:
            claimed.add(kind)
    return claimed


async def release_whole_claims(session: AsyncSession, *, workspace_id: int, kinds: tuple[str, ...], until: datetime) -> None:
    """End the claims on `kinds` made until `until`, so the next caller can run the whole runs they were for.

    A claim another process made since (with another `until`) is left alone.
    """
    await session.execute(
        update(_RUNS)
        .where(_RUNS.c.workspace_id == workspace_id, _RUNS.c.kind.in_(kinds), _RUNS.c.whole_claimed_until == until)
        .values(whole_claimed_until=None)
    )

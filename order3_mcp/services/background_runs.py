"""Whole finder reruns that only the maximum age calls for, run beside a server's calls.

A finder reruns over every item once its last whole run is older than
`finder_refresh.FINDER_MAX_AGE`, to catch changes written outside Order3.
At 100,000 items that takes seconds, and the call that found it due would
wait for it. In a server (`order3 serve`), that call reruns only the changed
items before it returns, and the whole rerun is planned here in a worker
process and written when done. A one-shot command has no background runs and
reruns every item itself.

A server's finder calls also run their reruns here (`outlive`), so a rerun
whose call is stopped at its deadline or by its client is still written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, call_continuing
from order3_mcp.services.finder_refresh import apply_planned
from order3_mcp.services.scan_workers import ScanWorkers
from store import freshness
from store.db import Database

logger = logging.getLogger(__name__)

T = TypeVar("T")


class BackgroundRuns:
    """Background whole reruns of one database, at most one at a time per workspace and kind."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._workers: ScanWorkers | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: set[tuple[int, str]] = set()
        # Reruns planning in the worker right now; the worker stops when none is.
        self._planning = 0

    def start(self, app: Order3, caller: Caller, kinds: tuple[str, ...], *, claimed_until: datetime) -> None:
        """Start a whole rerun of `kinds` for the caller's workspace, leaving out kinds whose rerun is still running.

        `claimed_until` is the end of this process's claim on those runs; a
        rerun that is dropped or fails ends the claim early.
        """
        idle = tuple(kind for kind in kinds if (caller.workspace_id, kind) not in self._running)
        if not idle:
            return
        keys = {(caller.workspace_id, kind) for kind in idle}
        self._running |= keys
        task = asyncio.get_running_loop().create_task(self._run(app, caller, idle, claimed_until))
        self._tasks.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            self._running -= keys

        task.add_done_callback(finished)

    async def _run(self, app: Order3, caller: Caller, kinds: tuple[str, ...], claimed_until: datetime) -> None:
        settled: set[str] = set()
        try:
            if self._workers is None:
                # Started on first use: most servers stop before a whole run ages.
                self._workers = ScanWorkers(self.database, workers=1)
            now = app.clock()
            self._planning += 1
            try:
                planned = await self._workers.plan(app, caller, kinds, now=now, force=True)
            finally:
                self._planning -= 1
                if self._planning == 0 and self._workers is not None:
                    # A plan over every item leaves a large heap in its worker. The
                    # worker stops when no other rerun is planning, which returns that memory.
                    self._workers.close()
                    self._workers = None
            settled = await apply_planned(app, caller, planned, now)
        except Exception:
            logger.exception("background whole rerun of %s for workspace %d failed", ", ".join(kinds), caller.workspace_id)
        dropped = tuple(kind for kind in kinds if kind not in settled)
        if settled:
            logger.info("background whole rerun of %s for workspace %d written", ", ".join(sorted(settled)), caller.workspace_id)
        if dropped:
            # Another rerun changed the kind in a way this plan cannot be written around
            # (a write logged as everything, say), or the run failed. Ending the claim
            # lets the next finder call start the whole rerun again.
            logger.warning(
                "background whole rerun of %s for workspace %d dropped; the next finder call starts it again",
                ", ".join(dropped), caller.workspace_id,
            )

            async def release(session: AsyncSession) -> None:
                await freshness.release_whole_claims(
                    session, workspace_id=caller.workspace_id, kinds=dropped, until=claimed_until
                )

            try:
                await app.database.run_write(release)
            except Exception:
                logger.exception(
                    "could not end the claim on %s for workspace %d; it lapses at %s",
                    ", ".join(dropped), caller.workspace_id, claimed_until,
                )

    async def outlive(
        self, work: Coroutine[Any, Any, T], *, description: str, ended: Callable[[asyncio.Task[T]], None]
    ) -> T:
        """Await `work` in a task of its own that keeps running if the caller is stopped.

        The stopped caller's call notes that `description` goes on (see
        `call_continuing`), and `ended` is called with the task when it ends,
        since no caller is left to read its result. `close` cancels the task
        when the server stops.
        """
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                logger.info("%s goes on after its call was stopped", description)
                task.add_done_callback(ended)
                continuing = call_continuing.get()
                if continuing is not None:
                    continuing.append(description)
            raise

    async def wait(self) -> None:
        """Wait until the background reruns started so far have finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def close(self) -> None:
        """Cancel the reruns still running and stop the worker. A cancelled rerun writes nothing."""
        for task in list(self._tasks):
            task.cancel()
        if self._workers is not None:
            self._workers.close()

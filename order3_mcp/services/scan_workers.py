"""Worker processes that plan finder runs, so a long scan never blocks the serving event loop.

The SQLite driver runs each statement in the calling task, which is the
fastest way to serve short calls but blocks the event loop while a statement
runs. A finder over a large workspace runs for seconds. Moving it to a thread
does not help: the sqlite3 module gives up the GIL around every row it
steps, and while the event loop keeps the GIL busy each row then waits for
it, so a scan of 146 ms was measured at tens of seconds. A worker process has
its own GIL. It opens its own connection, plans the refresh on its own
read-only snapshot and sends back only the plan: the records to write, which
is small when little changed. The serving process then applies the plan in a
short write transaction, as an in-process refresh would.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime

from order3_mcp.app import Caller, Order3
from order3_mcp.services.finder_refresh import PlannedRefresh, plan_kinds
from policies import Policy
from store.db import Database

logger = logging.getLogger(__name__)


def _plan_in_worker(
    url: str, policy: Policy, caller: Caller, kinds: tuple[str, ...], now: datetime, force: bool, aged_ok: frozenset[str]
) -> dict[str, PlannedRefresh]:
    """Run in a worker process: plan the refresh of `kinds` against the database at `url`."""

    async def plan() -> dict[str, PlannedRefresh]:
        database = Database(url)
        try:
            app = Order3(database, policy=policy, clock=lambda: now)
            return await plan_kinds(app, caller, kinds, now=now, force=force, aged_ok=aged_ok)
        finally:
            await database.dispose()

    return asyncio.run(plan())


# Seconds `close` waits for each terminated worker to exit.
CLOSE_JOIN_SECONDS = 5.0

# Seconds between a worker's checks that the server that started it is still running.
PARENT_CHECK_SECONDS = 1.0


def _stop_with_parent(parent: int) -> None:
    """Run in a worker process at start: exit as soon as the server process that started it is gone.

    A server stopped by SIGTERM exits without running its clean-up, and its
    workers would otherwise keep running with no one to serve.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="order3-parent-watch", daemon=True).start()


def _warm_up() -> None:
    """Run in a worker process at start, so the first real plan does not pay for importing this module."""


class ScanWorkers:
    """A pool of worker processes (spawned, not forked) that plan finder runs for one database.

    A pool whose worker died (killed, out of memory) is replaced by a new one
    on the next plan. If the new pool fails too, that plan runs in the server
    process, so finder calls still succeed.
    """

    def __init__(self, database: Database, *, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"A scan worker pool needs at least 1 worker, not {workers}.")
        self.url = database.url
        self.workers = workers
        self._pool = self._new_pool()
        self._warming: list[Future[None]] = []

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_stop_with_parent,
            initargs=(os.getpid(),),
        )

    def start(self) -> None:
        """Start the workers now rather than at the first plan."""
        self._warming = [self._pool.submit(_warm_up) for _ in range(self.workers)]

    async def ready(self, *, timeout: float) -> bool:
        """Wait until the workers started by `start` have imported the planning code; return False past `timeout` seconds.

        A worker that is not ready in time is not an error: the first plans
        then wait for it, or run in the server process if it failed.
        """
        warming = [asyncio.wrap_future(future) for future in self._warming]
        if not warming:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*warming), timeout)
        except (TimeoutError, BrokenProcessPool) as exc:
            logger.warning(
                "scan workers of %s did not start within %.0f s (%s); serving anyway", self.url, timeout, exc or "timed out"
            )
            return False
        return True

    async def plan(
        self,
        app: Order3,
        caller: Caller,
        kinds: tuple[str, ...],
        *,
        now: datetime,
        force: bool = False,
        aged_ok: frozenset[str] = frozenset(),
    ) -> dict[str, PlannedRefresh]:
        """Plan the refresh of the due kinds among `kinds` in a worker; see `finder_refresh.plan_kinds`."""
        for attempt in (1, 2):
            try:
                future = self._pool.submit(_plan_in_worker, self.url, app.policy, caller, kinds, now, force, aged_ok)
                return await asyncio.wrap_future(future)
            except BrokenProcessPool as exc:
                logger.error("scan worker pool of %s stopped (%s); starting a new one (attempt %d)", self.url, exc, attempt)
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
        logger.error("scan workers failed twice; planning %s in the server process", ", ".join(kinds))
        return await plan_kinds(app, caller, kinds, now=now, force=force, aged_ok=aged_ok)

    def close(self) -> None:
        """Stop the workers at once; a plan still running is dropped."""
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(CLOSE_JOIN_SECONDS)
        # Joining the pool's manager thread closes its queues, whose semaphores the
        # resource tracker would otherwise report as leaked when the server exits.
        self._pool.shutdown(wait=True)

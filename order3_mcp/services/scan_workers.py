"""Worker processes that plan whole-workspace finder runs, so a long scan never blocks the serving event loop.

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
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime

from order3_mcp.app import Caller, Order3
from order3_mcp.services.finder_refresh import PlannedRefresh, plan_kinds
from policies import Policy
from store.db import Database

logger = logging.getLogger(__name__)


def _plan_in_worker(url: str, policy: Policy, caller: Caller, kind: str, now: datetime) -> PlannedRefresh:
    """Run in a worker process: plan one refresh against the database at `url`."""

    async def plan() -> PlannedRefresh:
        database = Database(url)
        try:
            app = Order3(database, policy=policy, clock=lambda: now)
            planned = await plan_kinds(app, caller, (kind,), now=now, force=True)
            return planned[kind]
        finally:
            await database.dispose()

    return asyncio.run(plan())


def _warm_up() -> None:
    """Run in a worker process at start, so the first real plan does not pay for importing this module."""


class ScanWorkers:
    """A pool of worker processes (spawned, not forked) that plan finder runs for one database."""

    def __init__(self, database: Database, *, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"A scan worker pool needs at least 1 worker, not {workers}.")
        self.url = database.url
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def start(self) -> None:
        """Start the workers now rather than at the first plan."""
        for _ in range(self.workers):
            self._pool.submit(_warm_up)

    async def plan(self, app: Order3, caller: Caller, kind: str, *, now: datetime) -> PlannedRefresh:
        """Plan a refresh of `kind` over every item in a worker; see `finder_refresh.plan_kinds`."""
        future = self._pool.submit(_plan_in_worker, self.url, app.policy, caller, kind, now)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Stop the workers; a plan still running is dropped."""
        self._pool.shutdown(wait=False, cancel_futures=True)

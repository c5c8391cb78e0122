"""Whole finder reruns that only the maximum age calls for, run beside a server's calls.

A finder reruns over every item once its last whole run is older than
`finder_refresh.FINDER_MAX_AGE`, to catch changes written outside Order3.
At 100,000 items that takes seconds, and the call that found it due would
wait for it. In a server (`order3 serve`), that call reruns only the changed
items before it returns, and the whole rerun is planned here in a worker
process and written when done. A one-shot command has no background runs and
reruns every item itself.
"""

from __future__ import annotations

import asyncio
import logging

from order3_mcp.app import Caller, Order3
from order3_mcp.services.finder_refresh import applier
from order3_mcp.services.scan_workers import ScanWorkers
from store.db import Database

logger = logging.getLogger(__name__)


class BackgroundRuns:
    """Background whole reruns of one database, at most one at a time per workspace and kind."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._workers: ScanWorkers | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: set[tuple[int, str]] = set()

    def start(self, app: Order3, caller: Caller, kinds: tuple[str, ...]) -> None:
        """Start a whole rerun of `kinds` for the caller's workspace, leaving out kinds whose rerun is still running."""
        wanted = tuple(kind for kind in kinds if (caller.workspace_id, kind) not in self._running)
        if not wanted:
            return
        keys = {(caller.workspace_id, kind) for kind in wanted}
        self._running |= keys
        task = asyncio.get_running_loop().create_task(self._run(app, caller, wanted))
        self._tasks.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            self._running -= keys

        task.add_done_callback(finished)

    async def _run(self, app: Order3, caller: Caller, kinds: tuple[str, ...]) -> None:
        try:
            if self._workers is None:
                # Started on first use: most servers stop before a whole run ages.
                self._workers = ScanWorkers(self.database, workers=1)
            now = app.clock()
            try:
                planned = await self._workers.plan(app, caller, kinds, now=now, force=True)
            finally:
                if not self._tasks - {asyncio.current_task()}:
                    # A plan over every item leaves a large heap in its worker. The
                    # worker stops when no other rerun needs it, which returns that memory.
                    self._workers.close()
                    self._workers = None
            settled = await app.database.run_write(applier(caller, planned, now)) if planned else set()
            logger.info(
                "background whole rerun of %s for workspace %d: %s settled",
                ", ".join(kinds), caller.workspace_id, ", ".join(sorted(settled)) or "none",
            )
        except Exception:
            # The claim on the run lapses, so a later call starts it again.
            logger.exception("background whole rerun of %s for workspace %d failed", ", ".join(kinds), caller.workspace_id)

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

"""The inline SQLite connection: another process's write lock is waited for off the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from order3_mcp.app import _busy_conflict
from store.db import Database, resolve_url
from store.errors import ConflictError
from tests.conftest import ON_POSTGRES

pytestmark = pytest.mark.skipif(ON_POSTGRES, reason="checks the inline SQLite driver; this run uses PostgreSQL")


async def test_lock_wait_leaves_loop_free(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    database = Database(resolve_url(path), sqlite_driver="inline")
    await database.prepare_schema()
    # Another process's writer, here a plain sqlite3 connection, holds the write lock for 0.5 s.
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    releaser = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    ticker = asyncio.create_task(tick())
    releaser.start()
    started = time.perf_counter()
    try:
        async with database.write() as session:
            await session.execute(text("CREATE TABLE waited (id INTEGER)"))
        waited = time.perf_counter() - started
    finally:
        ticker.cancel()
        releaser.join()
        holder.close()
        await database.dispose()

    assert waited >= 0.4
    # Blocked, the loop would not have ticked at all until the lock was free.
    assert ticks >= 10
    tables = {row[0] for row in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "waited" in tables


def test_lock_past_timeout_is_conflict() -> None:
    busy = _busy_conflict(sqlite3.OperationalError("database is locked"))
    other = _busy_conflict(sqlite3.OperationalError("no such table: item"))

    assert isinstance(busy, ConflictError)
    assert "stayed locked by another process" in busy.message
    assert other is None

"""An aiosqlite-shaped SQLite connection that runs each call inline, without a worker thread.

SQLAlchemy's aiosqlite dialect drives this connection through its
`async_creator` hook, so the dialect, its SQL and its type handling stay those
of aiosqlite. The difference is where the sqlite3 calls run. aiosqlite sends
every call (open a cursor, execute, fetch, close, commit) to a worker thread
and waits for the result. A tool call that runs ten statements makes about
seventy such round trips, and on a busy two-core machine they cost more than
the SQL itself. Here each coroutine runs its sqlite3 call at once and returns
without suspending, so a whole transaction runs in the calling task.

The price is that a statement blocks the event loop while SQLite works. Three
things keep that safe:

- `Database.write` lets one write transaction at a time into SQLite per
  process, with an `asyncio.Lock` taken before `BEGIN IMMEDIATE`. A writer
  therefore never waits on a lock that another task of the same loop owns,
  which that task could not release while the loop is blocked.
- Another process holding the write lock (the CLI approving while the server
  runs) makes `BEGIN IMMEDIATE` wait up to the busy timeout, as with aiosqlite,
  but that wait runs on a worker thread, so the event loop is not blocked. The
  thread tries again after sleeps of 0.2 to 5 ms, shorter than those of
  SQLite's own busy handler.
- Statements inside a transaction that holds the write lock never wait for
  another writer.

Readers in WAL mode never wait for writers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import anyio

BEGIN_IMMEDIATE = "BEGIN IMMEDIATE"
# Sleeps between attempts to take a write lock that another process holds: the first, doubling up to the longest.
FIRST_RETRY_SECONDS = 0.0002
LONGEST_RETRY_SECONDS = 0.005


def is_busy(error: BaseException) -> bool:
    """Return True for SQLite's "database is locked" or "database is busy" error."""
    text = str(error).lower()
    return isinstance(error, sqlite3.OperationalError) and ("database is locked" in text or "database is busy" in text)


class InlineCursor:
    """A cursor whose coroutine methods run the sqlite3 call before returning.

    The one exception is `BEGIN IMMEDIATE` while another process owns the write
    lock: the wait for the lock runs on a worker thread, so the event loop keeps
    serving other requests (pings, reads) in the meantime.
    """

    __slots__ = ("_busy_timeout_ms", "_cursor")

    def __init__(self, cursor: sqlite3.Cursor, *, busy_timeout_ms: int) -> None:
        self._cursor = cursor
        self._busy_timeout_ms = busy_timeout_ms

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, operation: str, parameters: Sequence[Any] | dict[str, Any] | None = ()) -> InlineCursor:
        if operation == BEGIN_IMMEDIATE:
            await self._begin_immediate()
        else:
            self._cursor.execute(operation, parameters or ())
        return self

    async def _begin_immediate(self) -> None:
        connection = self._cursor.connection
        # First try without waiting: the lock is free almost always.
        connection.execute("PRAGMA busy_timeout = 0")
        try:
            self._cursor.execute(BEGIN_IMMEDIATE)
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
        finally:
            connection.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        stop = threading.Event()
        waiting = asyncio.ensure_future(asyncio.to_thread(self._begin_polling, stop))
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            # The thread stops at its next attempt; it may still take the lock first,
            # so let it finish, then give the lock back. Until it has finished the
            # connection must not be touched from this thread: two threads in one
            # sqlite3 connection crash the process. anyio cancel scopes cancel again
            # at every await, so the wait is shielded from them and repeated after a
            # plain asyncio cancel.
            stop.set()
            with anyio.CancelScope(shield=True):
                while not waiting.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait([waiting])
            if not waiting.cancelled():
                waiting.exception()  # retrieved, so asyncio does not log it as never retrieved
            if connection.in_transaction:
                connection.rollback()
            raise

    def _begin_polling(self, stop: threading.Event) -> None:
        """Take the write lock on a worker thread, trying again after short sleeps until the busy timeout or `stop`.

        SQLite's own busy handler sleeps 1, 2, 5, 10 ... up to 100 ms between
        attempts. When other processes each hold the lock for one short
        transaction, most of that sleep is spent after the lock came free, so
        these sleeps start at 0.2 ms and double up to 5 ms. A cancelled call sets
        `stop`, so its deadline or its client's cancellation ends the wait.
        """
        connection = self._cursor.connection
        connection.execute("PRAGMA busy_timeout = 0")
        try:
            deadline = time.monotonic() + self._busy_timeout_ms / 1000
            delay = FIRST_RETRY_SECONDS
            while True:
                try:
                    self._cursor.execute(BEGIN_IMMEDIATE)
                    return
                except sqlite3.OperationalError as exc:
                    if not is_busy(exc) or time.monotonic() >= deadline or stop.is_set():
                        raise
                stop.wait(delay)
                delay = min(delay * 2, LONGEST_RETRY_SECONDS)
        finally:
            connection.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")

    async def executemany(self, operation: str, parameters: Any) -> InlineCursor:
        self._cursor.executemany(operation, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def setinputsizes(self, *_sizes: Any) -> None:
        return None

    async def nextset(self) -> None:
        return None


class InlineConnection:
    """The part of `aiosqlite.Connection` that SQLAlchemy's aiosqlite dialect uses."""

    def __init__(self, connection: sqlite3.Connection, *, busy_timeout_ms: int) -> None:
        # The dialect checks `_connection` before COMMIT and ROLLBACK, as it does for aiosqlite.
        self._connection: sqlite3.Connection | None = connection
        self._busy_timeout_ms = busy_timeout_ms

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor(), busy_timeout_ms=self._busy_timeout_ms)

    async def execute(self, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> InlineCursor:
        cursor = self.cursor()
        await cursor.execute(sql, parameters)
        return cursor

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, name: str, num_params: int, func: Any, *, deterministic: bool = False) -> None:
        self._conn.create_function(name, num_params, func, deterministic=deterministic)

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def stop(self) -> None:
        """Close at once; SQLAlchemy calls this when it discards a connection outside the event loop."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def inline_connector(path: Path, *, busy_timeout_seconds: float):
    """Return an `async_creator` for SQLAlchemy that opens `path` as an `InlineConnection`.

    The connection leaves transaction control to SQLAlchemy (`isolation_level=None`):
    the engine's "begin" event issues BEGIN or BEGIN IMMEDIATE itself.
    """

    async def connect() -> InlineConnection:
        connection = sqlite3.connect(
            str(path),
            timeout=busy_timeout_seconds,
            isolation_level=None,
            check_same_thread=False,
        )
        return InlineConnection(connection, busy_timeout_ms=int(busy_timeout_seconds * 1000))

    return connect

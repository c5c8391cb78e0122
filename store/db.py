"""Database engine and transactions: SQLite (aiosqlite dialect, WAL) by default, PostgreSQL optional."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlmodel import SQLModel

import store.models  # noqa: F401  (registers every table on SQLModel.metadata)
from store.errors import ConflictError
from store.sqlite_inline import inline_connector

logger = logging.getLogger(__name__)

# How long a SQLite writer waits for another writer's lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000

# SQLite drivers: "inline" runs each sqlite3 call in the calling task (store/sqlite_inline.py);
# "threaded" is stock aiosqlite, one worker thread per connection.
SQLITE_DRIVERS = ("inline", "threaded")

# Tables that every Order3 database has. A database without both belongs to another application.
ORDER3_MARKER_TABLES = frozenset({"workspace", "activity_event"})


def default_db_path() -> Path:
    """Return the default SQLite file in the user data directory."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "order3" / "order3.db"


def resolve_url(db: str | os.PathLike[str] | None = None) -> str:
    """Turn a `--db` value, `ORDER3_DB`, or the default into a SQLAlchemy async URL.

    A value containing "://" is taken as a URL (`postgresql+asyncpg://...`);
    anything else is a SQLite file path.
    """
    value = str(db) if db is not None else os.environ.get("ORDER3_DB") or str(default_db_path())
    if "://" in value:
        url = make_url(value)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+asyncpg")
        if url.drivername == "sqlite":
            url = url.set(drivername="sqlite+aiosqlite")
        return url.render_as_string(hide_password=False)
    path = Path(value).expanduser().resolve()
    return f"sqlite+aiosqlite:///{path}"


def read_sqlite_tables(path: Path) -> set[str]:
    """Return the names of the tables in a SQLite file, opened read-only so the file itself is never changed.

    A file of zero bytes has no tables.

    NOTE: for a file in WAL mode with no -wal file beside it, SQLite creates empty
    -wal and -shm files next to it and cannot remove them from a read-only
    connection. The database file itself stays byte-for-byte the same.

    Raises:
        sqlite3.DatabaseError: If the file is not a SQLite database or cannot be read.
    """
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetchall()
    finally:
        connection.close()
    return {name for (name,) in rows}


class Database:
    """One database: an engine for reads and one whose transactions take the write lock first.

    On SQLite, write transactions start with BEGIN IMMEDIATE so two writers can
    never both read a value and then both write from it; the second waits for the
    first to commit. On PostgreSQL, writes use conditional updates on version
    columns and row locks.
    """

    def __init__(self, url: str, *, echo: bool = False, sqlite_driver: str | None = None) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.sqlite_driver = sqlite_driver or os.environ.get("ORDER3_SQLITE_DRIVER") or "inline"
        if self.sqlite_driver not in SQLITE_DRIVERS:
            raise ValueError(
                f"Unknown SQLite driver {self.sqlite_driver!r}; use one of {', '.join(SQLITE_DRIVERS)} "
                "(ORDER3_SQLITE_DRIVER)."
            )
        # One write transaction at a time per process and event loop; see `write`.
        self._write_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        if self.is_sqlite:
            self._prepare_sqlite_file(url)
        self.engine = self._create_engine(url, echo=echo, immediate=False)
        self.write_engine = self._create_engine(url, echo=echo, immediate=True) if self.is_sqlite else self.engine

    @staticmethod
    def _prepare_sqlite_file(url: str) -> None:
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    def _create_engine(self, url: str, *, echo: bool, immediate: bool) -> AsyncEngine:
        if not self.is_sqlite:
            return create_async_engine(url, echo=echo, pool_pre_ping=True)

        inline = self.sqlite_driver == "inline"
        if inline:
            path = Path(make_url(url).database or ":memory:")
            engine = create_async_engine(
                url, echo=echo, async_creator=inline_connector(path, busy_timeout_seconds=SQLITE_BUSY_TIMEOUT_MS / 1000)
            )
        else:
            engine = create_async_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        begin_statement = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event issue BEGIN itself instead of pysqlite's implicit one.
            # The inline connector opens its connections that way already.
            if not inline:
                dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql(begin_statement)

        return engine

    async def missing_columns(self) -> dict[str, list[str]]:
        """Return, per existing table, the columns this version's models have and the table lacks.

        Creating tables adds missing tables but never alters an existing one, so a
        database made by an older version can lack columns that queries need.
        """

        def compare(sync_connection: Any) -> dict[str, list[str]]:
            inspector = inspect(sync_connection)
            existing = set(inspector.get_table_names())
            gaps: dict[str, list[str]] = {}
            for name, table in SQLModel.metadata.tables.items():
                if name not in existing:
                    continue
                present = {column["name"] for column in inspector.get_columns(name)}
                missing = [column.name for column in table.columns if column.name not in present]
                if missing:
                    gaps[name] = missing
            return gaps

        async with self.engine.connect() as connection:
            return await connection.run_sync(compare)

    async def create_all(self) -> None:
        """Create every table that does not exist yet."""
        async with self.write_engine.begin() as connection:
            await connection.run_sync(SQLModel.metadata.create_all)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """Open a read session; nothing it does is committed."""
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """Open a write transaction that commits on success and rolls back on any error.

        On SQLite, transactions of one process take turns before `BEGIN IMMEDIATE`.
        With the inline driver a statement blocks the event loop, so a second
        writer of the same loop must not reach SQLite's lock while the first
        still holds it: it could wait there for a commit that cannot run.

        Raises:
            ConflictError: If another write transaction of this process held the
                turn for longer than the busy timeout.
        """
        if not self.is_sqlite:
            async with AsyncSession(self.write_engine, expire_on_commit=False) as session:
                async with session.begin():
                    yield session
            return
        lock = self._write_lock()
        try:
            await asyncio.wait_for(lock.acquire(), timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        except TimeoutError:
            raise ConflictError(
                f"The database was busy with another write for over {SQLITE_BUSY_TIMEOUT_MS // 1000} s; retry the call."
            ) from None
        try:
            async with AsyncSession(self.write_engine, expire_on_commit=False) as session:
                async with session.begin():
                    yield session
        finally:
            lock.release()

    def _write_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._write_locks.get(loop)
        if lock is None:
            # Drop the locks of loops that have closed (each CLI command runs its own loop).
            self._write_locks = {known: held for known, held in self._write_locks.items() if not known.is_closed()}
            lock = self._write_locks[loop] = asyncio.Lock()
        return lock

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()

    async def ping(self) -> None:
        """Run a trivial query, raising if the database cannot be reached."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))


async def open_database(db: str | os.PathLike[str] | None = None, *, create: bool = True) -> Database:
    """Open the database named by `db` (or `ORDER3_DB`, or the default file), creating tables."""
    database = Database(resolve_url(db))
    if create:
        await database.create_all()
    return database

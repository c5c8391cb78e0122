"""Database engine and transactions: SQLite (aiosqlite dialect, WAL) by default, PostgreSQL optional."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

import store.models  # noqa: F401  (registers every table on SQLModel.metadata)
from store import schema
from store.errors import ConflictError, InvalidInputError
from store.sqlite_inline import inline_connector

T = TypeVar("T")

logger = logging.getLogger(__name__)

# How long a SQLite writer waits for another writer's lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000

# SQLite drivers: "inline" runs each sqlite3 call in the calling task (store/sqlite_inline.py);
# "threaded" is stock aiosqlite, one worker thread per connection.
SQLITE_DRIVERS = ("inline", "threaded")

# PostgreSQL connection pool of each engine (SQLAlchemy's QueuePool): connections
# kept open, extra ones opened under load, and how long a request waits for one.
# ORDER3_PG_POOL_SIZE and ORDER3_PG_MAX_OVERFLOW override the first two.
POSTGRES_POOL_SIZE = 5
POSTGRES_MAX_OVERFLOW = 10
POSTGRES_POOL_TIMEOUT_SECONDS = 30

# A PostgreSQL write transaction that fails with one of these SQLSTATEs did
# nothing and may simply run again: serialization_failure and deadlock_detected.
RETRYABLE_SQLSTATES = {"40001": "a serialization failure", "40P01": "a deadlock"}
WRITE_ATTEMPTS = 3
# First retry waits about this long, the next twice as long, each with ±50 % jitter.
RETRY_BASE_DELAY_SECONDS = 0.02

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
        """Create the engines for `url`; nothing connects until the first query.

        Raises:
            InvalidInputError: If the URL names PostgreSQL and asyncpg is not installed,
                or names an unknown SQLite driver.
        """
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.sqlite_driver = sqlite_driver or os.environ.get("ORDER3_SQLITE_DRIVER") or "inline"
        if self.sqlite_driver not in SQLITE_DRIVERS:
            raise InvalidInputError(
                f"Unknown SQLite driver {self.sqlite_driver!r}; use one of {', '.join(SQLITE_DRIVERS)} "
                "(ORDER3_SQLITE_DRIVER)."
            )
        # One write transaction at a time per process and event loop; see `write`.
        self._write_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        if self.is_sqlite:
            self._prepare_sqlite_file(url)
        self.engine = self._create_engine(url, echo=echo, immediate=False)
        self.write_engine = self._create_engine(url, echo=echo, immediate=True) if self.is_sqlite else self.engine
        self.read_only_engine = (
            self._create_engine(url, echo=echo, immediate=False, query_only=True)
            if self.is_sqlite
            else self.engine.execution_options(postgresql_readonly=True)
        )

    @staticmethod
    def _prepare_sqlite_file(url: str) -> None:
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    def _create_engine(self, url: str, *, echo: bool, immediate: bool, query_only: bool = False) -> AsyncEngine:
        if not self.is_sqlite:
            return self._create_postgres_engine(url, echo=echo)

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
            if query_only:
                cursor.execute("PRAGMA query_only=ON")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql(begin_statement)

        return engine

    @staticmethod
    def _create_postgres_engine(url: str, *, echo: bool) -> AsyncEngine:
        try:
            import asyncpg  # noqa: F401
        except ImportError as exc:
            raise InvalidInputError(
                "A PostgreSQL database needs the asyncpg driver, which is not installed; "
                "install it with: pip install 'order3-mcp[postgres]'."
            ) from exc
        return create_async_engine(
            url,
            echo=echo,
            pool_pre_ping=True,
            pool_size=_env_int("ORDER3_PG_POOL_SIZE", POSTGRES_POOL_SIZE),
            max_overflow=_env_int("ORDER3_PG_MAX_OVERFLOW", POSTGRES_MAX_OVERFLOW),
            pool_timeout=POSTGRES_POOL_TIMEOUT_SECONDS,
        )

    async def prepare_schema(self, *, create: bool = True) -> schema.SchemaState:
        """Check that the schema is at the head revision, creating it first in an empty database if `create`.

        Raises:
            SchemaBehindError: If the database was made by an older version; `order3 db upgrade` migrates it.
            InvalidInputError: If a newer version of Order3 made the database.
        """

        def prepare(connection: Any) -> schema.SchemaState:
            state = schema.read_state(connection)
            if state.is_empty:
                if create:
                    schema.create_at_head(connection)
                    return schema.read_state(connection)
                return state
            schema.check_current(state)
            return state

        async with self.write_engine.begin() as connection:
            return await connection.run_sync(prepare)

    async def upgrade_schema(self) -> tuple[str | None, str]:
        """Migrate the database to the head revision; return the revisions before and after."""
        async with self.write_engine.begin() as connection:
            return await connection.run_sync(schema.upgrade_to_head)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """Open a read session; nothing it does is committed."""
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            yield session

    @asynccontextmanager
    async def read_only(self) -> AsyncIterator[AsyncSession]:
        """Open a read transaction that refuses every write, so a read can never change data by mistake.

        On SQLite its connections have `PRAGMA query_only` set, and the
        transaction reads one WAL snapshot without taking the write lock. On
        PostgreSQL the transaction is READ ONLY.
        """
        async with AsyncSession(self.read_only_engine, expire_on_commit=False) as session:
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

    async def run_write(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run `work` in a write transaction, running it again after a PostgreSQL serialization failure or deadlock.

        Such a failure rolls the whole transaction back, so running `work` again
        from the start is safe. `work` must not have effects outside the session.
        Other errors are raised at once.

        Raises:
            ConflictError: If every one of the `WRITE_ATTEMPTS` attempts failed that way.
        """
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                async with self.write() as session:
                    return await work(session)
            except DBAPIError as exc:
                reason = retryable_reason(exc)
                if reason is None:
                    raise
                if attempt == WRITE_ATTEMPTS:
                    logger.warning("write transaction failed with %s on all %d attempts", reason, attempt)
                    raise ConflictError(
                        f"The database reported {reason} on {attempt} attempts in a row, because other requests were "
                        "changing the same records; nothing was written. Retry the request."
                    ) from exc
                delay = RETRY_BASE_DELAY_SECONDS * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                logger.info("write transaction failed with %s; retrying in %.0f ms (attempt %d of %d)",
                            reason, delay * 1000, attempt + 1, WRITE_ATTEMPTS)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

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
        if self.is_sqlite:
            await self.read_only_engine.dispose()

    async def ping(self) -> None:
        """Run a trivial query, raising if the database cannot be reached."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))


def retryable_reason(error: BaseException) -> str | None:
    """Return what went wrong if `error` is a PostgreSQL failure that running the transaction again may cure."""
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None)
    if sqlstate in RETRYABLE_SQLSTATES:
        return f"{RETRYABLE_SQLSTATES[sqlstate]} (SQLSTATE {sqlstate})"
    return None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise InvalidInputError(f"{name}={value!r} is not a whole number of connections; unset it or give a number such as {default}.")
    return number


async def open_database(db: str | os.PathLike[str] | None = None, *, create: bool = True) -> Database:
    """Open the database named by `db` (or `ORDER3_DB`, or the default file) and check its schema revision.

    An empty database gets every table at the head revision when `create` is set.

    Raises:
        SchemaBehindError: If the database was made by an older version; `order3 db upgrade` migrates it.
    """
    database = Database(resolve_url(db))
    try:
        await database.prepare_schema(create=create)
    except BaseException:
        await database.dispose()
        raise
    return database

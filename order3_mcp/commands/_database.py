"""Opening the --db database for a command: read-only checks that it is Order3's, and driver errors as messages."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, InvalidRequestError, SQLAlchemyError

from store.db import (
    ORDER3_MARKER_TABLES,
    Database,
    default_db_path,
    read_sqlite_tables,
    resolve_url,
)
from store.errors import ConflictError, InvalidInputError, NotFoundError
from store.schema import VERSION_TABLE
from store.sqlite_inline import is_busy

SUPPORTED_BACKENDS = ("sqlite", "postgresql")
URL_HINT = "Use a SQLite file path or a postgresql://user@host/db URL."
# The "user:password@" part of a URL. Messages show the password as ***.
PASSWORD_IN_URL = re.compile(r"(://[^:/@]*:)[^@]*@")
# Table names listed in a message about another application's database.
LISTED_TABLES = 5


def mask_db_value(db: str | None) -> str:
    """Return the --db value, ORDER3_DB or the default path as the user gave it, with any password masked."""
    value = db if db is not None else os.environ.get("ORDER3_DB") or str(default_db_path())
    return PASSWORD_IN_URL.sub(r"\1***@", value)


def sqlite_path(url: str) -> Path | None:
    """Return the file behind a SQLite URL, or None for another backend or an in-memory database."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def checked_location(db: str | None, *, create: bool) -> tuple[str, str, Path | None]:
    """Return the URL of --db, its form safe to print, and its SQLite file (None for a server).

    A SQLite file is checked with the sqlite3 module before any engine connects,
    because the engine's connect hook switches the file to WAL mode, which is a write.

    Raises:
        NotFoundError: If the SQLite file does not exist and `create` is false.
        InvalidInputError: If the value is not a supported database URL or the file is not Order3's.
    """
    masked_db = mask_db_value(db)
    try:
        url = resolve_url(db)
    except ArgumentError as exc:
        raise InvalidInputError(f"Cannot open database {masked_db!r}: it is not a valid database URL. {URL_HINT}") from exc
    backend = make_url(url).get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise InvalidInputError(f"Cannot open database {masked_db!r}: unknown database URL scheme {backend!r}. {URL_HINT}")
    path = sqlite_path(url)
    if path is not None:
        check_sqlite_file(path, masked_db=masked_db, create=create)
    return url, masked_db, path


async def connect(db: str | None, *, create: bool = False) -> Database:
    """Open the database named by --db, ORDER3_DB or the default file, and check its schema revision.

    Every check that decides whether the database is Order3's only reads, so a
    mistyped path or another application's database is left as it was.

    Args:
        db: The --db value, or None for ORDER3_DB or the default file.
        create: True for `order3 init`, which may also start a new file or fill an empty database.

    Raises:
        NotFoundError: If the SQLite file does not exist and `create` is false, the
            database has no Order3 tables yet, or the database server cannot be reached.
        InvalidInputError: If the value is not a database URL that Order3 supports, the
            file is not a SQLite database, or the database contains another application's tables.
    """
    url, masked_db, path = checked_location(db, create=create)
    database = open_engine(url, masked_db=masked_db)
    try:
        await prepare_tables(database, masked_db=masked_db, create=create, checked=path is not None)
    except BaseException:
        await database.dispose()
        raise
    return database


async def connect_for_migration(db: str | None, *, create: bool) -> Database:
    """Open the database for `order3 db`: the same checks as `connect`, but any schema revision is accepted.

    With `create`, a SQLite file that does not exist yet is started, as `order3 init` does.

    Raises:
        NotFoundError: If the SQLite file does not exist or the server cannot be reached.
        InvalidInputError: If the value is not a supported database URL or the database is another application's.
    """
    url, masked_db, _path = checked_location(db, create=create)
    database = open_engine(url, masked_db=masked_db)
    try:
        async with database.engine.connect() as connection:
            tables = set(await connection.run_sync(lambda sync_connection: inspect(sync_connection).get_table_names()))
        # An empty database is accepted: `order3 db upgrade` creates the schema in it.
        check_tables(tables - {VERSION_TABLE}, masked_db=masked_db, create=True)
    except OSError as exc:
        await database.dispose()
        raise NotFoundError(f"Cannot open database {masked_db!r}: the server cannot be reached ({exc}).") from exc
    except BaseException:
        await database.dispose()
        raise
    return database


def check_sqlite_file(path: Path, *, masked_db: str, create: bool) -> None:
    """Check, reading only, that a SQLite file may be opened as an Order3 database.

    Raises:
        NotFoundError: If the file does not exist and `create` is false.
        InvalidInputError: If the path is a directory, the file is not a SQLite
            database, or it contains another application's tables.
    """
    if path.is_dir():
        raise InvalidInputError(f"Cannot open database {masked_db!r}: it is a directory. Pass a file path such as {path / 'order3.db'}.")
    if not path.exists():
        if create:
            return
        raise NotFoundError(
            f"No Order3 database at {path}; create one with `order3 init`, or point --db or ORDER3_DB at an existing one."
        )

    try:
        tables = read_sqlite_tables(path)
    except sqlite3.DatabaseError as exc:
        raise InvalidInputError(
            f"Cannot open database {masked_db!r}: SQLite reports '{exc}'. Point --db or ORDER3_DB at an Order3 database file."
        ) from exc
    check_tables(tables - {VERSION_TABLE}, masked_db=masked_db, create=create)


def check_tables(tables: set[str], *, masked_db: str, create: bool) -> None:
    """Check that a database with these tables is Order3's, or that `order3 init` may fill it.

    Raises:
        NotFoundError: If the database has no tables and `create` is false.
        InvalidInputError: If it has tables but not Order3's workspace and activity_event tables.
    """
    if ORDER3_MARKER_TABLES <= tables:
        return
    if not tables:
        if create:
            return
        raise NotFoundError(f"Database {masked_db!r} has no Order3 tables. Create them and a workspace with `order3 init`.")

    listed = ", ".join(sorted(tables)[:LISTED_TABLES]) + (", …" if len(tables) > LISTED_TABLES else "")
    if create:
        raise InvalidInputError(
            f"Database {masked_db!r} contains another application's tables ({listed}), so `order3 init` leaves it unchanged. "
            "Pass --db a new file path or an empty database."
        )
    raise InvalidInputError(
        f"Database {masked_db!r} is not an Order3 database: it has tables ({listed}) but no workspace and activity_event "
        "tables. Nothing was written to it. Point --db or ORDER3_DB at an Order3 database."
    )


def open_engine(url: str, *, masked_db: str) -> Database:
    """Create the engines for a URL, which loads the driver but connects to nothing yet.

    Raises:
        InvalidInputError: If the driver is not installed or the URL names one SQLAlchemy cannot load.
    """
    try:
        return Database(url)
    except ImportError as exc:
        raise InvalidInputError(
            f"Cannot open database {masked_db!r}: its driver is not installed ({exc}). "
            "For PostgreSQL, install the postgres extra: pip install 'order3-mcp[postgres]'."
        ) from exc
    except (ArgumentError, InvalidRequestError) as exc:
        raise InvalidInputError(f"Cannot open database {masked_db!r}: {exc}. {URL_HINT}") from exc
    except OSError as exc:
        # Database() creates the directory of a new SQLite file.
        raise InvalidInputError(f"Cannot create database {masked_db!r}: {exc.strerror} ({exc.filename}).") from exc


async def prepare_tables(database: Database, *, masked_db: str, create: bool, checked: bool) -> None:
    """Check a server database's tables unless `checked`, then its schema revision, creating the schema if empty.

    Raises:
        NotFoundError: If the database server cannot be reached, or has no Order3 tables and `create` is false.
        InvalidInputError: If the database contains another application's tables, rejects the connection, or
            has a schema older or newer than this version (SchemaBehindError names `order3 db upgrade`).
    """
    try:
        if not checked:
            async with database.engine.connect() as connection:
                tables = set(await connection.run_sync(lambda sync_connection: inspect(sync_connection).get_table_names()))
            check_tables(tables - {VERSION_TABLE}, masked_db=masked_db, create=create)
        await database.prepare_schema(create=create)
    except InvalidInputError as exc:
        exc.message = f"Cannot open database {masked_db!r}. {exc.message}"
        exc.args = (exc.message,)
        raise
    except OSError as exc:
        # asyncpg raises OSError (connection refused, unknown host, timeout) without a SQLAlchemy wrapper.
        raise NotFoundError(
            f"Cannot open database {masked_db!r}: the server cannot be reached ({exc}). "
            "Check that it is running and that the host and port in the URL are right."
        ) from exc
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        if is_busy(getattr(exc, "orig", None) or exc):
            raise ConflictError(
                f"Database {masked_db!r} stayed locked by another process, so it could not be opened; retry when that "
                "process (an import, another order3 command) has finished."
            ) from exc
        raise InvalidInputError(f"Cannot open database {masked_db!r}: {reason}. Check the URL, the user and the database name.") from exc

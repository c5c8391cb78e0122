"""Shared fixtures: a fresh database per test, on SQLite or, with ORDER3_TEST_BACKEND=postgresql, on PostgreSQL.

ORDER3_TEST_BACKEND picks the backend of the whole run. On `postgresql`, the
`database` fixture and every database location a test asks for with
`new_database_location` are new PostgreSQL databases (tests/postgres_databases.py),
dropped when the test ends. Tests marked `sqlite_only` are skipped with their reason.
ORDER3_TEST_POSTGRES names the server (an admin URL to its `postgres` database).
"""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from store.db import Database, open_database
from tests.postgres_databases import (
    POSTGRES_ADMIN_URL,
    POSTGRES_DATABASES,
    run_admin,
    run_postgres,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
# The InvenTree demo export lives beside the repository; ORDER3_INVENTREE_DEMO names another copy.
INVENTREE_DEMO = Path(
    os.environ.get("ORDER3_INVENTREE_DEMO") or REPO_ROOT.parent / "shared" / "data" / "inventree-demo.json"
)

TEST_BACKENDS = ("sqlite", "postgresql")
TEST_BACKEND = os.environ.get("ORDER3_TEST_BACKEND") or "sqlite"
if TEST_BACKEND not in TEST_BACKENDS:
    raise pytest.UsageError(f"ORDER3_TEST_BACKEND={TEST_BACKEND!r} is not a test backend; use one of {', '.join(TEST_BACKENDS)}.")
ON_POSTGRES = TEST_BACKEND == "postgresql"

# Marks a test that checks SQLite itself (files, locks, the inline driver); the PostgreSQL run skips it.
sqlite_only = pytest.mark.skipif(ON_POSTGRES, reason="works on a SQLite file directly (files, locking); this run uses PostgreSQL")


def run_sql(location: str | Path, sql: str) -> list[tuple[Any, ...]]:
    """Run one SQL statement on a test database, a SQLite file or a PostgreSQL URL, and return its rows.

    The statement commits at once. Tests use it to look at or tamper with
    stored rows behind Order3's back.
    """
    if "://" in str(location):
        return run_postgres(str(location), [sql])
    with sqlite3.connect(location) as connection:
        rows = connection.execute(sql).fetchall()
    connection.close()
    return rows


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    POSTGRES_DATABASES.drop_all()


def new_database_location(
    directory: Path, name: str = "order3.db", *, with_schema: bool = False, outlives_test: bool = False
) -> str:
    """Return where a test's new database goes: a SQLite file in `directory`, or a new PostgreSQL database's URL.

    The PostgreSQL database is empty unless `with_schema` is set, like a SQLite
    file that does not exist yet, so `order3 init` creates its tables. It is
    dropped when the test ends, or with `outlives_test` (for a module-scoped
    fixture) when the caller drops it or the run ends.
    """
    if ON_POSTGRES:
        location = POSTGRES_DATABASES.new(with_schema=with_schema)
        if not outlives_test:
            POSTGRES_DATABASES.test_scoped.append(location)
        return location
    return str(directory / name)


@pytest.fixture(autouse=True)
def _drop_test_databases() -> Iterator[None]:
    """Drop the PostgreSQL databases that `new_database_location` made for this test."""
    yield
    while POSTGRES_DATABASES.test_scoped:
        POSTGRES_DATABASES.drop(POSTGRES_DATABASES.test_scoped.pop())


def copy_database(source: str | Path, directory: Path) -> str:
    """Copy a test database nothing has open: a SQLite file (with its WAL files) into `directory`, or a PostgreSQL database.

    Drop a PostgreSQL copy with `drop_database` when the test ends.
    """
    if "://" in str(source):
        return POSTGRES_DATABASES.copy(str(source))
    target = directory / "order3.db"
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{source}{suffix}")
        if part.exists():
            shutil.copyfile(part, Path(f"{target}{suffix}"))
    return str(target)


def drop_database(location: str | Path) -> None:
    """Drop a PostgreSQL test database now instead of at the end of the run; a SQLite file goes with its tmp_path."""
    if "://" in str(location):
        POSTGRES_DATABASES.drop(str(location))


@pytest.fixture
def db_location_factory(tmp_path: Path) -> Callable[..., str]:
    """Make new database locations for one test (`new_database_location` in the test's tmp_path)."""
    return functools.partial(new_database_location, tmp_path)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database with every table created: a SQLite file, or a new PostgreSQL database on that run."""
    db = await open_database(new_database_location(tmp_path, with_schema=True))
    try:
        yield db
    finally:
        await db.dispose()


async def _postgres_admin() -> AsyncEngine | None:
    engine = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (OSError, SQLAlchemyError):
        await engine.dispose()
        return None
    return engine


def postgres_reachable() -> bool:
    """Return True if the test server accepts connections."""
    try:
        run_admin(["SELECT 1"])
    except Exception:  # noqa: BLE001  (OSError when refused, asyncpg's own errors for a rejected login)
        return False
    return True


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database on each backend: a SQLite file, and a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        if ON_POSTGRES:
            pytest.skip("the SQLite case runs in the SQLite run")
        db = await open_database(tmp_path / "order3.db")
        try:
            yield db
        finally:
            await db.dispose()
        return

    admin = await _postgres_admin()
    if admin is None:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
    await admin.dispose()
    location = POSTGRES_DATABASES.new(with_schema=True)
    db = await open_database(location)
    try:
        yield db
    finally:
        await db.dispose()
        POSTGRES_DATABASES.drop(location)

"""PostgreSQL as a backend: the driver hint, retried write transactions and the demo on a server."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from store.db import WRITE_ATTEMPTS, Database
from store.errors import ConflictError, InvalidInputError
from tests.conftest import INVENTREE_DEMO, ON_POSTGRES, POSTGRES_ADMIN_URL, REPO_ROOT, run_sql

# A server-side error with a chosen SQLSTATE, as PostgreSQL raises it for a real conflict.
RAISE_SQLSTATE = "DO $$ BEGIN RAISE EXCEPTION 'simulated conflict' USING ERRCODE = '{code}'; END $$"


def test_postgresql_url_without_asyncpg_names_the_extra() -> None:
    # asyncpg is installed here; a None entry in sys.modules makes importing it fail as if it were not.
    code = (
        "import sys\n"
        "sys.modules['asyncpg'] = None\n"
        "from order3_mcp.cli import main\n"
        "sys.argv = ['order3', '--db', 'postgresql://postgres@127.0.0.1/none', '--token', 'o3_x', 'drafts', 'list']\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )

    assert result.returncode == 2
    message = " ".join(result.stderr.split())
    assert "needs the asyncpg driver, which is not installed" in message
    assert "pip install 'order3-mcp[postgres]'" in message
    assert "Traceback" not in result.stderr


@pytest.fixture
async def postgres(any_database: Database) -> Database:
    if any_database.is_sqlite:
        pytest.skip("retries are for PostgreSQL's serialization failures and deadlocks")
    return any_database


async def add_probe_row(database: Database) -> None:
    async with database.write() as session:
        await session.execute(text("CREATE TABLE retry_probe (attempt integer)"))


@pytest.mark.parametrize("code", ["40001", "40P01"])
async def test_write_retried_after_conflict_sqlstate(postgres: Database, code: str) -> None:
    await add_probe_row(postgres)
    attempts = 0

    async def work(session) -> str:
        nonlocal attempts
        attempts += 1
        await session.execute(text("INSERT INTO retry_probe VALUES (:attempt)"), {"attempt": attempts})
        if attempts < WRITE_ATTEMPTS:
            await session.execute(text(RAISE_SQLSTATE.format(code=code)))
        return "done"

    result = await postgres.run_write(work)

    assert result == "done"
    assert attempts == WRITE_ATTEMPTS
    async with postgres.read() as session:
        stored = (await session.execute(text("SELECT attempt FROM retry_probe"))).scalars().all()
    assert stored == [WRITE_ATTEMPTS]


async def test_write_reports_conflict_after_last_attempt(postgres: Database) -> None:
    await add_probe_row(postgres)
    attempts = 0

    async def work(session) -> None:
        nonlocal attempts
        attempts += 1
        await session.execute(text("INSERT INTO retry_probe VALUES (:attempt)"), {"attempt": attempts})
        await session.execute(text(RAISE_SQLSTATE.format(code="40P01")))

    with pytest.raises(ConflictError) as raised:
        await postgres.run_write(work)

    assert attempts == WRITE_ATTEMPTS
    assert f"a deadlock (SQLSTATE 40P01) on {WRITE_ATTEMPTS} attempts in a row" in raised.value.message
    assert "nothing was written. Retry the request." in raised.value.message
    async with postgres.read() as session:
        assert (await session.execute(text("SELECT COUNT(*) FROM retry_probe"))).scalar_one() == 0


async def test_other_database_errors_are_not_retried(postgres: Database) -> None:
    attempts = 0

    async def work(session) -> None:
        nonlocal attempts
        attempts += 1
        await session.execute(text(RAISE_SQLSTATE.format(code="23505")))

    with pytest.raises(DBAPIError, match="simulated conflict"):
        await postgres.run_write(work)

    assert attempts == 1


def demo_databases() -> set[str]:
    return {name for (name,) in run_sql(POSTGRES_ADMIN_URL, "SELECT datname FROM pg_database WHERE datname LIKE 'order3_demo_%'")}


@pytest.mark.skipif(not ON_POSTGRES, reason="runs in the PostgreSQL run (ORDER3_TEST_BACKEND=postgresql)")
@pytest.mark.skipif(not INVENTREE_DEMO.exists(), reason="the InvenTree demo export is not next to the repository")
def test_demo_runs_on_postgresql_and_drops_its_database() -> None:
    from tests.test_demo import run_demo

    before = demo_databases()

    result = run_demo("--postgres", POSTGRES_ADMIN_URL)

    assert result.returncode == 0, result.stderr
    assert "Draft 1 executed: issued purchase order PO-000001." in result.stdout
    assert "first broken seq: none" in result.stdout
    assert "Mismatches: 0." in result.stdout
    assert demo_databases() == before


def test_demo_rejects_non_postgresql_server() -> None:
    from tests.test_demo import run_demo

    result = run_demo("--postgres", "/tmp/order3.db")

    assert result.returncode == 2
    assert "'/tmp/order3.db' is not a PostgreSQL URL" in " ".join(result.stderr.split())


def test_pool_size_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER3_PG_POOL_SIZE", "2")

    database = Database(POSTGRES_ADMIN_URL)

    assert database.engine.sync_engine.pool.size() == 2


@pytest.mark.parametrize("value", ["-1", "five"])
def test_invalid_pool_size_is_rejected(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ORDER3_PG_MAX_OVERFLOW", value)

    with pytest.raises(InvalidInputError) as raised:
        Database(POSTGRES_ADMIN_URL)

    assert f"ORDER3_PG_MAX_OVERFLOW={value!r} is not a whole number of connections" in raised.value.message

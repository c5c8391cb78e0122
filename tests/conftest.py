"""Shared fixtures: a fresh SQLite file per test, or a fresh database on each backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from store.db import Database, open_database

REPO_ROOT = Path(__file__).resolve().parent.parent
# The InvenTree demo export lives beside the repository; ORDER3_INVENTREE_DEMO names another copy.
INVENTREE_DEMO = Path(
    os.environ.get("ORDER3_INVENTREE_DEMO") or REPO_ROOT.parent / "shared" / "data" / "inventree-demo.json"
)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh SQLite database file with every table created."""
    db = await open_database(tmp_path / "order3.db")
    try:
        yield db
    finally:
        await db.dispose()


POSTGRES_ADMIN_URL = os.environ.get("ORDER3_TEST_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")


async def _postgres_admin() -> AsyncEngine | None:
    engine = create_async_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (OSError, SQLAlchemyError):
        await engine.dispose()
        return None
    return engine


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database on each backend: a SQLite file, and a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        db = await open_database(tmp_path / "order3.db")
        try:
            yield db
        finally:
            await db.dispose()
        return

    admin = await _postgres_admin()
    if admin is None:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
    name = f"order3_test_{uuid.uuid4().hex[:12]}"
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    db = await open_database(make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False))
    try:
        yield db
    finally:
        await db.dispose()
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()

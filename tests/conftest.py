"""Shared fixtures: a fresh SQLite file per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from store.db import Database, open_database

REPO_ROOT = Path(__file__).resolve().parent.parent
INVENTREE_DEMO = REPO_ROOT.parent / "shared" / "data" / "inventree-demo.json"


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh SQLite database file with every table created."""
    db = await open_database(tmp_path / "order3.db")
    try:
        yield db
    finally:
        await db.dispose()

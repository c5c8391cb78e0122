"""Schema migrations: the migrated schema equals the models, old databases are refused and upgraded."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel
from typer.testing import CliRunner

from order3_mcp.cli import app as cli
from store import schema
from store.db import Database, open_database, resolve_url
from store.errors import InvalidInputError
from store.schema import SchemaBehindError
from tests.conftest import (
    ON_POSTGRES,
    POSTGRES_DATABASES,
    REPO_ROOT,
    postgres_reachable,
    run_sql,
)

runner = CliRunner()


def order3(location: str, *args: str) -> Any:
    return runner.invoke(cli, ["--db", location, *args], env={"ORDER3_TOKEN": None, "ORDER3_DB": None, "COLUMNS": "200"})


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_location(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A location for a new, empty database on each backend."""
    if request.param == "sqlite":
        if ON_POSTGRES:
            pytest.skip("the SQLite case runs in the SQLite run")
        yield str(tmp_path / "order3.db")
        return
    if not postgres_reachable():
        pytest.skip("PostgreSQL is not reachable")
    location = POSTGRES_DATABASES.new(with_schema=False)
    yield location
    POSTGRES_DATABASES.drop(location)


async def schema_differences(database: Database) -> list[Any]:
    def compare(connection: Any) -> list[Any]:
        return compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), SQLModel.metadata)

    async with database.engine.connect() as connection:
        return await connection.run_sync(compare)


async def run_alembic(database: Database, operation: Callable[..., Any], *arguments: str) -> None:
    def run(connection: Any) -> None:
        config = schema.alembic_config()
        config.attributes["connection"] = connection
        operation(config, *arguments)

    async with database.write_engine.begin() as connection:
        await connection.run_sync(run)


async def test_migrations_build_the_models_schema(empty_location: str) -> None:
    database = Database(resolve_url(empty_location))
    try:
        await run_alembic(database, command.upgrade, "head")

        assert await schema_differences(database) == []
        assert (await schema.schema_state(database)).revision == schema.head_revision()
    finally:
        await database.dispose()


async def test_new_database_matches_migrated_schema(empty_location: str) -> None:
    database = await open_database(empty_location)
    try:
        assert await schema_differences(database) == []
        assert (await schema.schema_state(database)).revision == schema.head_revision()
    finally:
        await database.dispose()


async def test_migrations_downgrade_to_empty(empty_location: str) -> None:
    database = Database(resolve_url(empty_location))
    try:
        await run_alembic(database, command.upgrade, "head")
        await run_alembic(database, command.downgrade, "base")

        state = await schema.schema_state(database)
        assert state.is_empty
    finally:
        await database.dispose()


def create_then_drop_revision_table(location: str) -> None:
    assert order3(location, "init").exit_code == 0
    run_sql(location, "DROP TABLE alembic_version")


def test_database_without_revision_refused_then_upgraded(empty_location: str) -> None:
    create_then_drop_revision_table(empty_location)

    refused = order3(empty_location, "--token", "o3_anything", "token", "list")
    upgraded = order3(empty_location, "db", "upgrade")
    current = order3(empty_location, "db", "current")

    message = " ".join(refused.stderr.split())
    assert refused.exit_code == 2
    assert "no schema revision" in message
    assert f"this version needs revision {schema.head_revision()}" in message
    assert "Run `order3 db upgrade`" in message
    assert upgraded.exit_code == 0, upgraded.output
    assert f"from revision (none) to {schema.head_revision()} (head)" in upgraded.stdout
    assert current.stdout.strip() == f"{schema.head_revision()} (head)"


def test_open_database_names_current_and_head(empty_location: str) -> None:
    create_then_drop_revision_table(empty_location)

    with pytest.raises(SchemaBehindError) as raised:
        asyncio.run(open_database(empty_location))

    assert raised.value.current is None
    assert raised.value.head == schema.head_revision()


def test_database_from_newer_version_refused(empty_location: str) -> None:
    assert order3(empty_location, "init").exit_code == 0
    run_sql(empty_location, "UPDATE alembic_version SET version_num = '9999'")

    with pytest.raises(InvalidInputError) as raised:
        asyncio.run(open_database(empty_location))

    assert "schema revision 9999, which this version of Order3 does not know" in raised.value.message
    assert "Upgrade Order3 to open it." in raised.value.message


async def test_upgrade_migrates_first_revision_without_record(empty_location: str) -> None:
    # A database made by the first release to have revisions, before the table recording them existed.
    database = Database(resolve_url(empty_location))
    try:
        await run_alembic(database, command.upgrade, "0001")
        async with database.write() as session:
            await session.execute(text("DROP TABLE alembic_version"))
            # Rows that later revisions must fill in, such as the NOT NULL columns of an event.
            await session.execute(text(
                "INSERT INTO workspace (id, name, base_currency, timezone, created_at, activity_seq, activity_head, "
                "next_po_number, version) VALUES (1, 'main', 'USD', 'UTC', '2026-01-01 00:00:00', 1, 'h', 1, 1)"
            ))
            await session.execute(text(
                "INSERT INTO activity_event (workspace_id, seq, occurred_at, actor_kind, actor, channel, action, outcome, "
                "affected, request_id, idempotency_key, arguments, summary, prev_hash, hash) VALUES "
                "(1, 1, '2026-01-01 00:00:00', 'user', 'root', 'cli', 'init', 'ok', '[]', '', '', '{}', '', '', 'h')"
            ))
    finally:
        await database.dispose()

    upgraded = await asyncio.to_thread(order3, empty_location, "db", "upgrade")

    assert upgraded.exit_code == 0, upgraded.output
    assert f"from revision (none) to {schema.head_revision()} (head)" in upgraded.stdout
    database = Database(resolve_url(empty_location))
    try:
        assert await schema_differences(database) == []
        async with database.read() as session:
            events = (await session.execute(text("SELECT seq, actor, client_name, on_behalf_of FROM activity_event"))).all()
        assert [tuple(event) for event in events] == [(1, "root", "", "")]
    finally:
        await database.dispose()


def test_upgrade_refuses_database_lacking_baseline_columns(empty_location: str) -> None:
    create_then_drop_revision_table(empty_location)
    run_sql(empty_location, "ALTER TABLE outbox_message DROP COLUMN queued_by")

    result = order3(empty_location, "db", "upgrade")

    message = " ".join(result.stderr.split())
    assert result.exit_code == 2
    assert "older than the first schema revision (outbox_message lacks queued_by)" in message
    assert "Nothing was changed." in message


def test_upgrade_of_empty_database_creates_schema(empty_location: str) -> None:
    upgraded = order3(empty_location, "db", "upgrade")
    init = order3(empty_location, "init")

    assert upgraded.exit_code == 0, upgraded.output
    assert f"from revision (none) to {schema.head_revision()} (head)" in upgraded.stdout
    assert init.exit_code == 0, init.output


def test_history_lists_head() -> None:
    result = runner.invoke(cli, ["db", "history"])

    assert result.exit_code == 0
    assert f"(base) -> 0001{' (head)' if schema.head_revision() == '0001' else ''}: " in result.stdout


def autogenerate(tmp_path: Path, *, setup: str) -> subprocess.CompletedProcess[str]:
    """Run the documented autogenerate command in a fresh interpreter after `setup` changed the models."""
    versions = tmp_path / "versions"
    versions.mkdir()
    code = (
        "import sys\n"
        "import sqlalchemy as sa\n"
        "import store.models\n"
        "from sqlmodel import SQLModel\n"
        f"{setup}\n"
        "from store.migrations.autogenerate import main\n"
        f"sys.exit(main(['Add the probe column', '--versions-dir', {str(versions)!r}]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def test_autogenerate_writes_nothing_without_changes(tmp_path: Path) -> None:
    result = autogenerate(tmp_path, setup="")

    assert result.returncode == 1, result.stderr
    assert "no migration was written" in result.stderr
    assert list((tmp_path / "versions").iterdir()) == []


def test_autogenerate_writes_added_column(tmp_path: Path) -> None:
    result = autogenerate(
        tmp_path, setup="SQLModel.metadata.tables['token'].append_column(sa.Column('probe_expiry', sa.Integer(), nullable=True))"
    )

    assert result.returncode == 0, result.stderr
    [written] = list((tmp_path / "versions").glob("*.py"))
    body = written.read_text()
    next_id = f"{int(schema.head_revision()) + 1:04d}"
    assert written.name.startswith(f"{next_id}_add_the_probe_column")
    assert f'revision: str = "{next_id}"' in body or f"revision: str = '{next_id}'" in body
    assert schema.head_revision() in body
    assert "add_column(sa.Column('probe_expiry', sa.Integer(), nullable=True))" in body

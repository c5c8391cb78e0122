"""Schema revisions: create new databases at the head revision, migrate old ones, refuse those behind."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from store.errors import InvalidInputError

if TYPE_CHECKING:
    from store.db import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"


def alembic_config(url: str | None = None) -> Config:
    """Return an Alembic configuration for the migrations in this package, without an alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # Config values go through configparser interpolation, which treats % specially.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@functools.cache
def script_directory() -> ScriptDirectory:
    """Return the migration scripts, read once per process."""
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """Return the newest revision, the one this version's models match."""
    head = script_directory().get_current_head()
    if head is None:
        raise RuntimeError(f"No migrations found in {MIGRATIONS_DIR}.")
    return head


@dataclass(frozen=True)
class SchemaState:
    """Table names of a database and the revision recorded in it (None if none is)."""

    tables: frozenset[str]
    revision: str | None

    @property
    def is_empty(self) -> bool:
        return not (self.tables - {VERSION_TABLE})


class SchemaBehindError(InvalidInputError):
    """The database's schema is older than this version's models; `order3 db upgrade` migrates it."""

    def __init__(self, message: str, *, current: str | None, head: str) -> None:
        super().__init__(message)
        self.current = current
        self.head = head


def read_state(connection: Connection) -> SchemaState:
    """Read the tables and the recorded revision over a synchronous connection."""
    tables = frozenset(inspect(connection).get_table_names())
    revision = None
    if VERSION_TABLE in tables:
        revision = MigrationContext.configure(connection).get_current_revision()
    return SchemaState(tables=tables, revision=revision)


async def schema_state(database: Database) -> SchemaState:
    """Return the tables and the recorded revision of `database`."""
    async with database.engine.connect() as connection:
        return await connection.run_sync(read_state)


def check_current(state: SchemaState) -> None:
    """Check that a database with Order3 tables is at the head revision.

    Raises:
        SchemaBehindError: If no revision is recorded or the recorded one is older than head.
        InvalidInputError: If the recorded revision is unknown to this version (a newer Order3 made it).
    """
    head = head_revision()
    if state.revision == head:
        return
    if state.revision is None:
        raise SchemaBehindError(
            f"The database has Order3 tables but no schema revision (it was made before migrations existed), and this "
            f"version needs revision {head}. Run `order3 db upgrade` to migrate it.",
            current=None,
            head=head,
        )
    try:
        script_directory().get_revision(state.revision)
    except Exception as exc:  # alembic raises several types for an unknown id
        raise InvalidInputError(
            f"The database is at schema revision {state.revision}, which this version of Order3 does not know "
            f"(its newest is {head}); a newer version of Order3 made it. Upgrade Order3 to open it."
        ) from exc
    raise SchemaBehindError(
        f"The database is at schema revision {state.revision} but this version of Order3 needs {head}. "
        "Run `order3 db upgrade` to migrate it.",
        current=state.revision,
        head=head,
    )


def _run(connection: Connection, operation: Any, *arguments: Any) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    operation(config, *arguments)


def create_at_head(connection: Connection) -> None:
    """Create every table of the models in an empty database and record the head revision.

    This gives the same schema as running every migration, which the suite checks
    on both backends, and costs a fraction of it.
    """
    SQLModel.metadata.create_all(connection)
    _run(connection, command.stamp, "head")


def upgrade_to_head(connection: Connection) -> tuple[str | None, str]:
    """Migrate the database to the head revision and return (revision before, revision after).

    An empty database gets every migration run in turn. A database made before
    revisions were recorded is first recorded at the newest revision whose
    columns it all has, then migrated from there.

    Raises:
        InvalidInputError: If a database without a recorded revision lacks
            columns of the baseline, so no revision describes it.
    """
    state = read_state(connection)
    if state.is_empty:
        _run(connection, command.upgrade, "head")
        return None, head_revision()

    before = state.revision
    if before is None:
        # NOTE: the match is by column names only. Constraint names of such a database
        # are those its backend chose, not the naming convention, which matters only
        # to a later migration that drops or renames a constraint.
        matched, baseline_gaps = _matching_revision(connection)
        if matched is None:
            listed = "; ".join(f"{table} lacks {', '.join(columns)}" for table, columns in sorted(baseline_gaps.items()))
            raise InvalidInputError(
                f"The database was created by a version of Order3 older than the first schema revision ({listed}), so it "
                "cannot be migrated. Create a new one with `order3 init` and import the data again. Nothing was changed."
            )
        _run(connection, command.stamp, matched)
    _run(connection, command.upgrade, "head")
    return before, head_revision()


def _matching_revision(connection: Connection) -> tuple[str | None, dict[str, list[str]]]:
    """Return the newest revision whose every column the database has, or None with the baseline's missing columns."""
    gaps: dict[str, list[str]] = {}
    for script in script_directory().walk_revisions():
        gaps = _column_gaps(connection, _columns_at(script.revision))
        if not gaps:
            return script.revision, {}
    return None, gaps


def _column_gaps(connection: Connection, expected: dict[str, list[str]]) -> dict[str, list[str]]:
    inspector = inspect(connection)
    existing = set(inspector.get_table_names())
    gaps: dict[str, list[str]] = {}
    for table, columns in expected.items():
        present = {column["name"] for column in inspector.get_columns(table)} if table in existing else set()
        missing = [column for column in columns if column not in present]
        if missing:
            gaps[table] = missing
    return gaps


def _columns_at(revision: str) -> dict[str, list[str]]:
    """Return the columns of every table at `revision`, read from a scratch in-memory database."""
    engine = create_engine("sqlite://")
    try:
        with engine.begin() as scratch:
            _run(scratch, command.upgrade, revision)
            inspector = inspect(scratch)
            return {
                table: [column["name"] for column in inspector.get_columns(table)]
                for table in inspector.get_table_names()
                if table != VERSION_TABLE
            }
    finally:
        engine.dispose()


def history() -> list[tuple[str, str | None, str]]:
    """Return (revision, down revision, message) for every migration, newest first."""
    rows = []
    for script in script_directory().walk_revisions():
        down = script.down_revision if isinstance(script.down_revision, str | None) else ",".join(script.down_revision)
        rows.append((script.revision, down, script.doc or ""))
    return rows

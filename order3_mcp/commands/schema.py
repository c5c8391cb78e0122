"""`order3 db`: show and migrate the schema revision of the --db database."""

from __future__ import annotations

import typer

from order3_mcp.commands._database import connect_for_migration, mask_db_value
from order3_mcp.commands._runtime import execute, say, settings_of
from store import schema

db_app = typer.Typer(help="Show and migrate the database schema (Alembic revisions).", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Migrate the database to the newest schema revision; an empty database gets every table."""
    settings = settings_of(ctx)

    async def step() -> tuple[str | None, str]:
        database = await connect_for_migration(settings.db, create=True)
        try:
            return await database.upgrade_schema()
        finally:
            await database.dispose()

    before, after = execute(step)
    masked = mask_db_value(settings.db)
    if before == after:
        say(f"Database {masked!r} is already at revision {after} (head); nothing was changed.")
    else:
        say(f"Migrated database {masked!r} from revision {before or '(none)'} to {after} (head).")


@db_app.command("current")
def current(ctx: typer.Context) -> None:
    """Print the database's schema revision and whether it is the newest one."""
    settings = settings_of(ctx)

    async def step() -> schema.SchemaState:
        database = await connect_for_migration(settings.db, create=False)
        try:
            return await schema.schema_state(database)
        finally:
            await database.dispose()

    state = execute(step)
    head = schema.head_revision()
    if state.is_empty:
        say(f"The database has no Order3 tables yet; `order3 init` or `order3 db upgrade` creates them at revision {head}.")
    elif state.revision == head:
        say(f"{head} (head)")
    else:
        say(f"{state.revision or '(none)'} (behind head {head}; run `order3 db upgrade`)")


@db_app.command("history")
def history() -> None:
    """List the schema revisions this version ships, newest first."""
    head = schema.head_revision()
    for revision, down_revision, message in schema.history():
        marker = " (head)" if revision == head else ""
        say(f"{down_revision or '(base)'} -> {revision}{marker}: {message.strip().splitlines()[0] if message else ''}")

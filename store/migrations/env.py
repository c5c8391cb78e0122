"""Alembic environment: migrate the connection store/schema.py passes in, or the URL in the config."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import store.models  # noqa: F401  (registers every table on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


def configure(connection: Connection) -> None:
    """Point Alembic at `connection`, with batch mode on SQLite, whose ALTER TABLE cannot change columns."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_on(connection: Connection) -> None:
    configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_on_url(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_on)
    finally:
        await engine.dispose()


def main() -> None:
    if context.is_offline_mode():
        raise SystemExit("Order3 migrations run against a database; offline SQL generation is not supported.")
    # store/schema.py passes the connection of its own engine, so the migration
    # runs inside the caller's transaction and with its SQLite settings.
    connection: Any = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    asyncio.run(run_on_url(config.get_main_option("sqlalchemy.url")))


main()

"""Create and drop a throwaway PostgreSQL database on a server, for the demo and other one-off runs."""

from __future__ import annotations

import secrets

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from store.db import resolve_url
from store.errors import InvalidInputError


def server_url(url: str) -> str:
    """Return the async URL of a PostgreSQL server given as any URL on it (its database part is ignored).

    Raises:
        InvalidInputError: If `url` is not a PostgreSQL URL.
    """
    try:
        parsed = make_url(resolve_url(url)) if "://" in url else None
    except ArgumentError:
        parsed = None
    if parsed is None or parsed.get_backend_name() != "postgresql":
        raise InvalidInputError(
            f"{url!r} is not a PostgreSQL URL; give one such as postgresql://postgres@127.0.0.1:5432/postgres."
        )
    return parsed.render_as_string(hide_password=False)


async def create_scratch_database(url: str, *, prefix: str) -> str:
    """Create a new, empty database named `prefix` plus a random suffix on the server of `url`; return its URL.

    The connection goes to the database named in `url` (usually `postgres`) to
    run CREATE DATABASE, which cannot run inside a transaction.
    """
    from sqlalchemy.ext.asyncio import create_async_engine

    admin_url = server_url(url)
    name = f"{prefix}_{secrets.token_hex(4)}"
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def drop_scratch_database(url: str, *, admin_database: str) -> None:
    """Drop the database of `url`, ending any session still connected to it, over a connection to `admin_database`."""
    from sqlalchemy.ext.asyncio import create_async_engine

    parsed = make_url(url)
    engine = create_async_engine(parsed.set(database=admin_database), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    finally:
        await engine.dispose()

"""Copy a generated SQLite benchmark database into a new PostgreSQL database, row for row.

The generator writes SQLite with the sqlite3 module for speed. To time the same
workspace on PostgreSQL, the product creates the tables there at the head
schema revision, and asyncpg's COPY copies every row. Booleans (stored as 0/1
in SQLite) and times and dates (stored as text) are converted on the way.
"""

from __future__ import annotations

import sqlite3
from datetime import date, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import JSON, Boolean, Date, DateTime
from sqlalchemy.engine import make_url
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel

from store.db import open_database
from store.pg_scratch import create_scratch_database

# Name prefix of the database a benchmark run creates on the server.
BENCH_PG_PREFIX = "order3_bench"


def _converter(column: Any) -> Any:
    kind = column.type.impl if isinstance(column.type, TypeDecorator) else column.type
    if isinstance(kind, Boolean):
        return lambda value: None if value is None else bool(value)
    if isinstance(kind, DateTime):
        return lambda value: None if value is None else datetime.fromisoformat(value).replace(tzinfo=None)
    if isinstance(kind, Date):
        return lambda value: None if value is None else date.fromisoformat(value)
    if isinstance(kind, JSON):
        return lambda value: value
    return None


async def copy_to_postgres(sqlite_path: Path, server: str) -> str:
    """Create a new database on `server`, copy every Order3 table of `sqlite_path` into it, and return its URL."""
    url = await create_scratch_database(server, prefix=BENCH_PG_PREFIX)
    database = await open_database(url)
    await database.dispose()

    source = sqlite3.connect(sqlite_path)
    target = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        for table in SQLModel.metadata.sorted_tables:
            names = [column.name for column in table.columns]
            converters = [_converter(column) for column in table.columns]
            cursor = source.execute(f"SELECT {', '.join(names)} FROM {table.name}")
            while rows := cursor.fetchmany(20_000):
                records = [
                    tuple(value if convert is None else convert(value) for value, convert in zip(row, converters, strict=True))
                    for row in rows
                ]
                await target.copy_records_to_table(table.name, records=records, columns=names)
            if "id" in names and table.c.id.autoincrement is not False and table.c.id.primary_key:
                await target.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {table.name}"
                )
        await target.execute("ANALYZE")
    finally:
        source.close()
        await target.close()
    return url

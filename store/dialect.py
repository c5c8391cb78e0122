"""SQL that differs between SQLite and PostgreSQL, kept in one place.

Everything else in the store is written once for both backends, following
these rules:

- Casts to floating point use DOUBLE PRECISION, an 8-byte float on both
  backends (REAL is 4 bytes on PostgreSQL).
- Row locks use SQLAlchemy's `with_for_update`, which SQLite ignores because
  its write transactions start with BEGIN IMMEDIATE and so never interleave.
- Quantities and money are integer millionths and times are naive UTC
  (store/types.py), so sums and comparisons agree exactly.
- JSON path access goes through SQLAlchemy's JSON type (`column["key"]`), which
  compiles to json_extract on SQLite and to ->> on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

SQLITE = "sqlite"
POSTGRESQL = "postgresql"


def dialect_of(session: AsyncSession) -> str:
    """Return the backend of the session's connection: "sqlite" or "postgresql"."""
    return session.get_bind().dialect.name


def upsert_insert(dialect: str, table: Table) -> Any:
    """Return an INSERT for `table` that supports ON CONFLICT on `dialect`."""
    return (postgresql_insert if dialect == POSTGRESQL else sqlite_insert)(table)


def insert_ignoring_conflict(session: AsyncSession, table: Table, *, index_elements: Sequence[str]) -> Any:
    """Return an INSERT into `table` that does nothing if a row with the same `index_elements` exists.

    On PostgreSQL, a conflicting row inserted by a transaction still in progress
    makes the statement wait for that transaction, so after it returns the row
    is committed and visible to a locking read.
    """
    return upsert_insert(dialect_of(session), table).on_conflict_do_nothing(index_elements=list(index_elements))


def needs_row_locks(session: AsyncSession) -> bool:
    """Return True if concurrent write transactions can interleave, so reads that decide a write must lock rows.

    SQLite's BEGIN IMMEDIATE lets one writer in at a time. PostgreSQL runs them
    side by side at READ COMMITTED.
    """
    return dialect_of(session) != SQLITE


def in_ids_sql(dialect: str, column: str, parameter: str) -> str:
    """Return a condition that `column` is one of the ids bound as `:parameter` (see `ids_parameter`).

    A single bound value carries any number of ids, so tens of thousands stay
    within SQLite's limit on bound parameters. SQLite reads a JSON array with
    json_each and PostgreSQL an array with ANY. Both probe an index on `column`
    once per id.
    """
    if dialect == POSTGRESQL:
        return f"{column} = ANY(CAST(:{parameter} AS BIGINT[]))"
    return f"{column} IN (SELECT value FROM json_each(:{parameter}))"


def ids_parameter(dialect: str, ids: Sequence[int]) -> Any:
    """Return the value to bind for an `in_ids_sql` condition: a list on PostgreSQL, JSON array text on SQLite."""
    if dialect == POSTGRESQL:
        return list(ids)
    return json.dumps(list(ids))


# One row per line of an open purchase_order draft. The payload is
# {"supplier_code": ..., "lines": [{"sku", "item_id", "quantity": "40", "location_code"}]}
# with quantities as strings so they stay exact.
_SQLITE_DRAFT_LINES = """
SELECT d.id AS draft_id,
       json_extract(line.value, '$.item_id') AS item_id,
       json_extract(line.value, '$.sku') AS sku,
       json_extract(line.value, '$.location_code') AS location_code,
       json_extract(line.value, '$.quantity') AS quantity
FROM draft AS d, json_each(d.payload, '$.lines') AS line
WHERE d.workspace_id = :workspace_id
  AND d.kind = 'purchase_order'
  AND d.status IN :statuses
  AND line.type = 'object'
"""

# The same on PostgreSQL, where the payload column is `json` and json_each
# expands objects only, so json_array_elements unpacks the lines.
_POSTGRES_DRAFT_LINES = """
SELECT d.id AS draft_id,
       line.value ->> 'item_id' AS item_id,
       line.value ->> 'sku' AS sku,
       line.value ->> 'location_code' AS location_code,
       line.value ->> 'quantity' AS quantity
FROM draft AS d
CROSS JOIN LATERAL json_array_elements(
    CASE WHEN json_typeof(d.payload -> 'lines') = 'array' THEN d.payload -> 'lines' ELSE '[]'::json END
) AS line(value)
WHERE d.workspace_id = :workspace_id
  AND d.kind = 'purchase_order'
  AND d.status IN :statuses
  AND json_typeof(line.value) = 'object'
"""


def draft_lines_sql(dialect: str) -> str:
    """Return the statement that unpacks the lines of open purchase-order drafts (params: workspace_id, statuses)."""
    return _POSTGRES_DRAFT_LINES if dialect == POSTGRESQL else _SQLITE_DRAFT_LINES


# The span of UTC times whose offsets are written into SQLite statements. A
# receipt outside it takes the offset at the nearest end, which matters only for
# receipts dated before 1970 or after 2069.
_SPAN_START = datetime(1970, 1, 1, tzinfo=UTC)
_SPAN_END = datetime(2070, 1, 1, tzinfo=UTC)


def _offset_at(zone: ZoneInfo, second: int) -> int:
    offset = datetime.fromtimestamp(second, zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


@lru_cache(maxsize=32)
def _offset_spans(timezone: str) -> tuple[tuple[int, int], ...]:
    """Return (first UTC second, UTC offset in seconds) for each span of constant offset from 1970 to 2069.

    The zone is sampled once a day and each change is narrowed to the second.
    NOTE: two changes within one day that cancel each other out are missed.
    Takes about 30 ms per zone, once per process.
    """
    # Callers check the name first (delays._zone); an unknown one raises ZoneInfoNotFoundError here.
    zone = ZoneInfo(timezone)
    second = int(_SPAN_START.timestamp())
    end = int(_SPAN_END.timestamp())
    spans = [(second, _offset_at(zone, second))]
    while second < end:
        following = second + 86_400
        if _offset_at(zone, following) != spans[-1][1]:
            before, after = second, following
            while after - before > 1:
                middle = (before + after) // 2
                if _offset_at(zone, middle) == spans[-1][1]:
                    before = middle
                else:
                    after = middle
            spans.append((after, _offset_at(zone, after)))
        second = following
    return tuple(spans)


def _sqlite_offset_case(column: str, spans: Sequence[tuple[int, int]]) -> str:
    """Return a CASE expression giving the date() modifier for `column`'s UTC offset, as a binary search over spans."""
    if len(spans) == 1:
        return f"'{spans[0][1]:+d} seconds'"
    middle = len(spans) // 2
    # Stored times are naive UTC text with microseconds, so they compare as text.
    boundary = datetime.fromtimestamp(spans[middle][0], UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return (
        f"CASE WHEN {column} < '{boundary}' THEN {_sqlite_offset_case(column, spans[:middle])} "
        f"ELSE {_sqlite_offset_case(column, spans[middle:])} END"
    )


@lru_cache(maxsize=32)
def local_date_sql(dialect: str, column: str, timezone: str) -> str:
    """Return SQL for the date in `timezone` of the naive-UTC timestamp `column`.

    PostgreSQL converts with its own timezone database and needs the bound
    parameter :timezone. SQLite has no IANA timezones, so the offsets Python's
    zoneinfo gives are written into the statement as a binary search over the
    spans of constant offset.
    """
    if dialect == POSTGRESQL:
        return f"CAST(({column} AT TIME ZONE 'UTC') AT TIME ZONE :timezone AS DATE)"
    return f"date({column}, {_sqlite_offset_case(column, _offset_spans(timezone))})"

"""Prefix lookups for argument completion: SKUs, draft ids and location codes.

Each lookup is two set-based queries, the first `limit` matches and their total
count, so a workspace with many items never loads its rows into Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, String, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Draft, Item, Location
from store.workspaces import sku_key

# Longest prefix worth a query; a SKU or a location code is never longer.
MAX_PREFIX_LENGTH = 100


@dataclass(frozen=True)
class PrefixMatches:
    """The first matches of a prefix, in completion order, and how many match in all."""

    values: list[str]
    total: int


NO_MATCHES = PrefixMatches(values=[], total=0)


def _starts_with(column: Any, prefix: str) -> ColumnElement[bool]:
    # % and _ in the prefix are taken literally.
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(f"{escaped}%", escape="\\")


def _usable(prefix: str) -> bool:
    # SQLite ends a LIKE pattern at a NUL byte, so control characters could match every row.
    return len(prefix) <= MAX_PREFIX_LENGTH and not any(ord(char) < 32 for char in prefix)


async def _first_and_total(
    session: AsyncSession, *, value: Any, order: Any, conditions: list[ColumnElement[bool]], limit: int
) -> PrefixMatches:
    rows = await session.execute(select(value).where(*conditions).order_by(order).limit(limit))
    total = await session.execute(select(func.count()).select_from(value.class_).where(*conditions))
    return PrefixMatches(values=[str(row) for row in rows.scalars()], total=total.scalar_one())


async def complete_skus(session: AsyncSession, *, workspace_id: int, prefix: str, limit: int) -> PrefixMatches:
    """Return SKUs that start with `prefix`, trimmed and case-insensitive, in SKU order."""
    if not _usable(prefix):
        return NO_MATCHES
    conditions = [Item.workspace_id == workspace_id, _starts_with(Item.sku_key, sku_key(prefix))]
    return await _first_and_total(session, value=Item.sku, order=Item.sku_key, conditions=conditions, limit=limit)


async def complete_draft_ids(session: AsyncSession, *, workspace_id: int, prefix: str, limit: int) -> PrefixMatches:
    """Return draft ids whose decimal form starts with `prefix`, newest first.

    A prefix with anything but digits matches nothing.
    """
    prefix = prefix.strip()
    if not _usable(prefix) or (prefix and not (prefix.isascii() and prefix.isdigit())):
        return NO_MATCHES
    conditions = [Draft.workspace_id == workspace_id]
    if prefix:
        conditions.append(_starts_with(cast(Draft.id, String), prefix))
    return await _first_and_total(session, value=Draft.id, order=Draft.id.desc(), conditions=conditions, limit=limit)


async def complete_location_codes(session: AsyncSession, *, workspace_id: int, prefix: str, limit: int) -> PrefixMatches:
    """Return location codes that start with `prefix`, trimmed and case-insensitive, in code order."""
    prefix = prefix.strip()
    if not _usable(prefix):
        return NO_MATCHES
    lowered = func.lower(Location.code)
    conditions = [Location.workspace_id == workspace_id, _starts_with(lowered, prefix.lower())]
    return await _first_and_total(session, value=Location.code, order=lowered, conditions=conditions, limit=limit)

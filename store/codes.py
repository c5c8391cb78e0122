"""Lookups of records by a code that people type: trimmed, ignoring case, with no wildcards."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.errors import InvalidInputError


async def find_by_code(session: AsyncSession, model: Any, column: Any, code: str, *conditions: Any) -> Any | None:
    """Return the row of `model` whose `column` equals `code`, trimmed and ignoring case, or None.

    An exact match wins. "%" and "_" are plain characters, unlike in LIKE.

    NOTE: on SQLite, lower() folds ASCII letters only, so "öko" does not find
    "ÖKO" there; PostgreSQL folds every letter.

    Raises:
        InvalidInputError: If two rows differ only in case and neither matches exactly.
    """
    requested = code.strip()
    rows = (
        await session.execute(
            select(model).where(*conditions, or_(column == requested, func.lower(column) == requested.lower())).limit(10)
        )
    ).scalars().all()
    exact = [row for row in rows if getattr(row, column.key) == requested]
    if exact:
        return exact[0]
    folded = [row for row in rows if getattr(row, column.key).casefold() == requested.casefold()]
    if len(folded) > 1:
        names = ", ".join(repr(getattr(row, column.key)) for row in folded)
        raise InvalidInputError(f"Code {requested[:60]!r} matches {names}, which differ only in case; give the exact code.")
    return folded[0] if folded else None

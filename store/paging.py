"""Keyset pagination shared by the store's list queries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute


async def keyset_page(
    session: AsyncSession, statement: Select[Any], id_column: InstrumentedAttribute[Any], *, after_id: int | None, limit: int
) -> list[Any]:
    """Run `statement` for the rows after `after_id` in id order, at most `limit` of them.

    Rows inserted during a walk get larger ids than every row already returned,
    so a walk neither repeats nor skips rows.
    """
    if after_id is not None:
        statement = statement.where(id_column > after_id)
    return list((await session.execute(statement.order_by(id_column).limit(limit))).scalars().all())

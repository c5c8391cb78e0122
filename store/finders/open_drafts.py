"""Quantities already proposed in open purchase-order drafts, per item and location.

Reorder suggestions count these so a buyer who has not approved yesterday's
draft yet is not offered the same purchase again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from store.dialect import dialect_of, draft_lines_sql
from store.models import OPEN_DRAFT_STATUSES, Item, Location
from store.workspaces import sku_key

logger = logging.getLogger(__name__)


@dataclass
class DraftQuantity:
    """The quantity of one item proposed in open drafts, and which drafts propose it."""

    quantity: Decimal = Decimal(0)
    draft_ids: set[int] = field(default_factory=set)

    def add(self, *, quantity: Decimal, draft_id: int) -> None:
        self.quantity += quantity
        self.draft_ids.add(draft_id)


@dataclass(frozen=True)
class OpenDraftQuantities:
    """Open purchase-order draft quantities, by (item, location) and by item across the workspace.

    A draft line without a location code counts only in the workspace-wide total,
    as a PO line without a destination does for on order.
    """

    by_location: dict[tuple[int, int], DraftQuantity]
    by_item: dict[int, DraftQuantity]

    def at(self, *, item_id: int, location_id: int | None) -> DraftQuantity:
        """Return the open-draft quantity for an item at a location, or workspace-wide for None."""
        if location_id is None:
            return self.by_item.get(item_id, DraftQuantity())
        return self.by_location.get((item_id, location_id), DraftQuantity())


def _parse_item_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _parse_quantity(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        # str() first: SQLite returns JSON numbers as int or float, and a float's
        # shortest repr is the number that was written.
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


async def open_draft_quantities(session: AsyncSession, *, workspace_id: int) -> OpenDraftQuantities:
    """Sum the line quantities of purchase_order drafts that are pending approval or approved.

    The lines are unpacked in SQL (json_each on SQLite, json_array_elements on
    PostgreSQL) and summed here as Decimals, because SQLite has no exact decimal
    arithmetic for the string quantities. A line names its item by `item_id`, or
    by `sku` when the id is missing. Lines whose item or quantity cannot be read
    are skipped and logged.
    """
    sql = draft_lines_sql(dialect_of(session))
    statement = text(sql).bindparams(bindparam("statuses", expanding=True))
    rows = (
        await session.execute(statement, {"workspace_id": workspace_id, "statuses": list(OPEN_DRAFT_STATUSES)})
    ).all()
    if not rows:
        return OpenDraftQuantities(by_location={}, by_item={})

    codes = {row.location_code for row in rows if row.location_code}
    location_ids: dict[str, int] = {}
    if codes:
        located = await session.execute(
            select(Location.code, Location.id).where(Location.workspace_id == workspace_id, Location.code.in_(codes))
        )
        location_ids = {code: location_id for code, location_id in located.all()}

    keys = {sku_key(str(row.sku)) for row in rows if _parse_item_id(row.item_id) is None and row.sku}
    item_ids_by_key: dict[str, int] = {}
    if keys:
        matched = await session.execute(
            select(Item.sku_key, Item.id).where(Item.workspace_id == workspace_id, Item.sku_key.in_(keys))
        )
        item_ids_by_key = {key: item_id for key, item_id in matched.all()}

    by_location: dict[tuple[int, int], DraftQuantity] = defaultdict(DraftQuantity)
    by_item: dict[int, DraftQuantity] = defaultdict(DraftQuantity)
    for row in rows:
        item_id = _parse_item_id(row.item_id)
        if item_id is None and row.sku:
            item_id = item_ids_by_key.get(sku_key(str(row.sku)))
        line_quantity = _parse_quantity(row.quantity)
        if item_id is None or line_quantity is None:
            logger.warning("Skipping a line of draft %s: item or quantity unreadable", row.draft_id)
            continue
        by_item[item_id].add(quantity=line_quantity, draft_id=row.draft_id)
        location_id = location_ids.get(row.location_code) if row.location_code else None
        if location_id is not None:
            by_location[(item_id, location_id)].add(quantity=line_quantity, draft_id=row.draft_id)
    return OpenDraftQuantities(by_location=dict(by_location), by_item=dict(by_item))


async def draft_item_ids(session: AsyncSession, *, workspace_id: int, payload: Any) -> set[int]:
    """Return the items whose open-draft quantity a purchase_order draft with `payload` counts toward.

    Lines are read as `open_draft_quantities` reads them: `item_id` first, then
    `sku`. A line whose item cannot be resolved is left out, as that function
    skips it.
    """
    lines = payload.get("lines") if isinstance(payload, dict) else None
    if not isinstance(lines, list):
        return set()
    item_ids: set[int] = set()
    keys: set[str] = set()
    for line in lines:
        if not isinstance(line, dict):
            continue
        item_id = _parse_item_id(line.get("item_id"))
        if item_id is not None:
            item_ids.add(item_id)
        elif line.get("sku"):
            keys.add(sku_key(str(line["sku"])))
    if keys:
        matched = await session.execute(
            select(Item.id).where(Item.workspace_id == workspace_id, Item.sku_key.in_(keys))
        )
        item_ids.update(matched.scalars().all())
    return item_ids

"""Lookups and searches over items, locations, bins and suppliers."""

from __future__ import annotations

from sqlalchemy import ColumnElement, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from store.errors import InvalidInputError, NotFoundError
from store.models import Bin, Item, Location, Supplier, SupplierItem, SupplierPriceBreak
from store.paging import keyset_page
from store.workspaces import sku_key


def _like_pattern(text: str) -> str:
    # SQLite ends a LIKE pattern at a NUL byte, so "\x00zzz" would match every row.
    if any(ord(char) < 32 for char in text):
        raise InvalidInputError(
            f"Search text {text[:40]!r} contains control characters; search with printable text only."
        )
    return f"%{_escape_like(text)}%"


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _same_code(column: InstrumentedAttribute[str], code: str) -> ColumnElement[bool]:
    """Match `column` to `code` trimmed and case-insensitively, with % and _ taken literally."""
    return column.ilike(_escape_like(code.strip()), escape="\\")


# Statements of the per-call read paths, built once so a call skips rebuilding them.
_ITEM_BY_SKU = select(Item).where(Item.workspace_id == bindparam("workspace_id"), Item.sku_key == bindparam("sku_key"))
_OFFERS_FOR_ITEM = (
    select(SupplierItem, Supplier)
    .join(Supplier, Supplier.id == SupplierItem.supplier_id)
    .where(SupplierItem.workspace_id == bindparam("workspace_id"), SupplierItem.item_id == bindparam("item_id"))
    .order_by(SupplierItem.preferred.desc(), SupplierItem.id)
)
# Codes compare case-insensitively, with both sides lowered by the database, and
# without LIKE, so a code containing % or _ matches only itself.
_LOCATION_BY_CODE = select(Location).where(
    Location.workspace_id == bindparam("workspace_id"), func.lower(Location.code) == func.lower(bindparam("code"))
)
_SUPPLIER_BY_CODE = select(Supplier).where(
    Supplier.workspace_id == bindparam("workspace_id"), func.lower(Supplier.code) == func.lower(bindparam("code"))
)
_PRICE_BREAKS = (
    select(SupplierPriceBreak)
    .where(SupplierPriceBreak.supplier_item_id == bindparam("supplier_item_id"))
    .order_by(SupplierPriceBreak.quantity)
)


async def get_item_by_sku(session: AsyncSession, *, workspace_id: int, sku: str) -> Item:
    """Return the item whose SKU matches `sku` (trimmed, case-insensitive).

    Raises:
        NotFoundError: If no item matches.
    """
    item = (await session.execute(_ITEM_BY_SKU, {"workspace_id": workspace_id, "sku_key": sku_key(sku)})).scalar_one_or_none()
    if item is None:
        raise NotFoundError(f"Item {sku!r} does not exist in this workspace; search items to find the SKU.")
    return item


async def get_item(session: AsyncSession, *, workspace_id: int, item_id: int) -> Item:
    """Return an item by id.

    Raises:
        NotFoundError: If it is not in this workspace.
    """
    item = (
        await session.execute(select(Item).where(Item.workspace_id == workspace_id, Item.id == item_id))
    ).scalar_one_or_none()
    if item is None:
        raise NotFoundError(f"Item id {item_id} does not exist in this workspace.")
    return item


async def search_items(
    session: AsyncSession,
    *,
    workspace_id: int,
    query: str = "",
    active_only: bool = False,
    after_id: int | None = None,
    limit: int = 50,
) -> list[Item]:
    """Return items whose SKU, name, category or description contains `query`, ordered by id."""
    statement = select(Item).where(Item.workspace_id == workspace_id)
    if query.strip():
        pattern = _like_pattern(query.strip())
        statement = statement.where(
            or_(
                Item.sku.ilike(pattern, escape="\\"),
                Item.name.ilike(pattern, escape="\\"),
                Item.category.ilike(pattern, escape="\\"),
                Item.description.ilike(pattern, escape="\\"),
            )
        )
    if active_only:
        statement = statement.where(Item.active.is_(True))
    return await keyset_page(session, statement, Item.id, after_id=after_id, limit=limit)


async def get_location_by_code(session: AsyncSession, *, workspace_id: int, code: str) -> Location:
    """Return the location with `code` (case-insensitive).

    Raises:
        NotFoundError: If no location has that code.
    """
    location = (
        await session.execute(_LOCATION_BY_CODE, {"workspace_id": workspace_id, "code": code.strip()})
    ).scalar_one_or_none()
    if location is None:
        raise NotFoundError(f"Location {code!r} does not exist in this workspace; list locations to see their codes.")
    return location


async def get_bin_by_code(session: AsyncSession, *, location: Location, code: str) -> Bin:
    """Return the bin of `location` with `code` (case-insensitive).

    Raises:
        NotFoundError: If the location has no bin with that code.
    """
    found = (
        await session.execute(select(Bin).where(Bin.location_id == location.id, _same_code(Bin.code, code)))
    ).scalar_one_or_none()
    if found is None:
        raise NotFoundError(
            f"Bin {code!r} does not exist in location {location.code}; list locations to see its bins, "
            "or pass an empty bin for stock held at the location itself."
        )
    return found


async def list_locations(
    session: AsyncSession, *, workspace_id: int, after_id: int | None = None, limit: int = 50
) -> list[tuple[Location, list[Bin]]]:
    """Return locations ordered by id, each with its bins."""
    statement = select(Location).where(Location.workspace_id == workspace_id)
    if after_id is not None:
        statement = statement.where(Location.id > after_id)
    locations = list((await session.execute(statement.order_by(Location.id).limit(limit))).scalars().all())
    if not locations:
        return []
    bins = (
        await session.execute(
            select(Bin).where(Bin.location_id.in_([location.id for location in locations])).order_by(Bin.code)
        )
    ).scalars().all()
    by_location: dict[int, list[Bin]] = {location.id: [] for location in locations}  # type: ignore[misc]
    for bin_row in bins:
        by_location[bin_row.location_id].append(bin_row)
    return [(location, by_location[location.id]) for location in locations]  # type: ignore[index]


async def get_supplier_by_code(session: AsyncSession, *, workspace_id: int, code: str) -> Supplier:
    """Return the supplier with `code` (case-insensitive).

    Raises:
        NotFoundError: If no supplier has that code.
    """
    supplier = (
        await session.execute(_SUPPLIER_BY_CODE, {"workspace_id": workspace_id, "code": code.strip()})
    ).scalar_one_or_none()
    if supplier is None:
        raise NotFoundError(f"Supplier {code!r} does not exist in this workspace; list suppliers to see their codes.")
    return supplier


async def list_suppliers(
    session: AsyncSession, *, workspace_id: int, query: str = "", after_id: int | None = None, limit: int = 50
) -> list[Supplier]:
    """Return suppliers whose code or name contains `query`, ordered by id."""
    statement = select(Supplier).where(Supplier.workspace_id == workspace_id)
    if query.strip():
        pattern = _like_pattern(query.strip())
        statement = statement.where(or_(Supplier.code.ilike(pattern, escape="\\"), Supplier.name.ilike(pattern, escape="\\")))
    return await keyset_page(session, statement, Supplier.id, after_id=after_id, limit=limit)


async def supplier_items_for_item(
    session: AsyncSession, *, workspace_id: int, item_id: int
) -> list[tuple[SupplierItem, Supplier]]:
    """Return every supplier offer for an item with its supplier, preferred first."""
    rows = (await session.execute(_OFFERS_FOR_ITEM, {"workspace_id": workspace_id, "item_id": item_id})).all()
    return [(row[0], row[1]) for row in rows]


async def price_breaks(session: AsyncSession, *, supplier_item_id: int) -> list[SupplierPriceBreak]:
    """Return a supplier item's price breaks by ascending quantity."""
    return list((await session.execute(_PRICE_BREAKS, {"supplier_item_id": supplier_item_id})).scalars().all())

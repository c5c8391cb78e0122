"""Workspace creation and lookup."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.currencies import check_currency_code
from store.errors import ConflictError, InvalidInputError, NotFoundError
from store.models import Workspace


def check_timezone(name: str) -> str:
    """Return `name` if it is an IANA timezone, else raise InvalidInputError."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInputError(
            f"Timezone {name!r} is not an IANA timezone name; use one like 'UTC', 'Europe/Berlin' or 'Pacific/Auckland'."
        ) from exc
    return name


def check_currency(code: str) -> str:
    """Return the upper-cased ISO 4217 code, or raise InvalidInputError for an unknown one."""
    return check_currency_code(code, field="Currency")


async def create_workspace(
    session: AsyncSession, *, name: str, base_currency: str = "USD", timezone: str = "UTC"
) -> Workspace:
    """Create a workspace.

    Raises:
        InvalidInputError: For an empty name, unknown timezone or malformed currency.
        ConflictError: If a workspace of that name exists.
    """
    clean = name.strip()
    if not clean:
        raise InvalidInputError("Workspace name is empty; pass a name such as 'main'.")
    workspace = Workspace(name=clean, base_currency=check_currency(base_currency), timezone=check_timezone(timezone))
    if await find_workspace(session, clean) is not None:
        raise ConflictError(f"Workspace {clean!r} already exists; pick another name or use it as it is.")
    session.add(workspace)
    await session.flush()
    return workspace


async def find_workspace(session: AsyncSession, name: str) -> Workspace | None:
    """Return the workspace called `name`, or None."""
    return (await session.execute(select(Workspace).where(Workspace.name == name.strip()))).scalar_one_or_none()


async def get_workspace(session: AsyncSession, name: str) -> Workspace:
    """Return the workspace called `name`.

    Raises:
        NotFoundError: If there is none.
    """
    workspace = await find_workspace(session, name)
    if workspace is None:
        raise NotFoundError(f"Workspace {name!r} does not exist; create it with `order3 init --workspace {name}`.")
    return workspace


def sku_key(sku: str) -> str:
    """Return the matching key of a SKU: trimmed and case-folded."""
    return sku.strip().casefold()

"""Helpers shared by the stock drafts (transfers and adjustments): places, quantities and valuation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Outcome
from order3_mcp.services import policy_routing
from order3_mcp.services.drafts import _policy_fields, approval_owner, draft_detail
from policies import DraftFacts
from store import catalog, drafts
from store.errors import InvalidInputError, NotFoundError
from store.models import Bin, Item, Location
from store.rates import RateInUse, to_base
from store.stock import Place

if TYPE_CHECKING:
    from order3_mcp.app import Caller, Order3


@dataclass(frozen=True)
class ResolvedPlace:
    """A location, and optionally one of its bins, named in a draft."""

    location: Location
    bin: Bin | None

    @property
    def place(self) -> Place:
        return Place(self.location.id, self.bin.id if self.bin else None)  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        """The place as LOCATION or LOCATION/BIN, as list_movements shows it."""
        return f"{self.location.code}/{self.bin.code}" if self.bin else self.location.code


def place_label(payload: dict[str, Any], prefix: str) -> str:
    """Return the LOCATION or LOCATION/BIN label stored in a draft payload under `prefix`."""
    location = payload[f"{prefix}location_code"]
    bin_code = payload[f"{prefix}bin_code"]
    return f"{location}/{bin_code}" if bin_code else location


def checked_quantity(field: str, value: Decimal, parse: Callable[[Any], Decimal]) -> Decimal:
    """Run an input parser over a quantity that reached the service without passing through a tool's schema.

    Raises:
        InvalidInputError: Naming `field` and the accepted form.
    """
    try:
        return parse(value)
    except ValueError as exc:
        raise InvalidInputError(f"{field}: {exc}.") from exc


async def find_item(session: AsyncSession, *, workspace_id: int, sku: str) -> Item:
    """Return the item with `sku`.

    Raises:
        NotFoundError: Naming the sku field.
    """
    try:
        return await catalog.get_item_by_sku(session, workspace_id=workspace_id, sku=sku)
    except NotFoundError as exc:
        raise NotFoundError(f"sku: {exc.message}") from exc


async def resolve_place(
    session: AsyncSession, *, workspace_id: int, location_code: str, bin_code: str, field_prefix: str = ""
) -> ResolvedPlace:
    """Look up the location and optional bin a draft names.

    Transit locations are refused: their stock belongs to shipped transfers and
    leaves them only when a transfer is received.

    Raises:
        NotFoundError: If the location or bin does not exist, naming the field.
        InvalidInputError: If the location code is empty or names a transit location.
    """
    location_field, bin_field = f"{field_prefix}location", f"{field_prefix}bin"
    if not location_code.strip():
        raise InvalidInputError(f"{location_field} is empty; pass a location code, as list_locations shows them.")
    try:
        location = await catalog.get_location_by_code(session, workspace_id=workspace_id, code=location_code)
    except NotFoundError as exc:
        raise NotFoundError(f"{location_field}: {exc.message}") from exc
    if location.kind == "transit":
        raise InvalidInputError(
            f"{location_field}: location {location.code} is a transit location for shipped transfers, and its stock "
            "changes only when a transfer is received with `order3 transfer receive`. Name a warehouse or store location."
        )

    found_bin = None
    if bin_code.strip():
        try:
            found_bin = await catalog.get_bin_by_code(session, location=location, code=bin_code)
        except NotFoundError as exc:
            raise NotFoundError(f"{bin_field}: {exc.message}") from exc
    return ResolvedPlace(location, found_bin)


def unit_value(item: Item, base_currency: str, rates: dict[str, RateInUse]) -> tuple[Decimal | None, str]:
    """Return the item's unit cost in the base currency, or None, and where it came from.

    A cost in another currency is converted with the workspace's rate in use for it.
    """
    if item.unit_cost <= 0:
        return None, "the item has no unit cost"
    if item.currency == base_currency:
        return item.unit_cost, "item unit cost"
    used = rates.get(item.currency)
    if used is None:
        return None, (
            f"the item's unit cost is in {item.currency} and the workspace has no exchange rate for it "
            f"(an admin sets one with `order3 rates set {item.currency} RATE`)"
        )
    converted, _ = to_base(item.unit_cost, item.currency, base_currency=base_currency, rates=rates, what=f"{item.sku}'s unit cost")
    return converted, f"item unit cost {item.unit_cost} {item.currency} at {used.describe(base_currency)}"


async def save_stock_draft(
    session: AsyncSession,
    app: Order3,
    caller: Caller,
    *,
    kind: str,
    title: str,
    rationale: str,
    payload: dict[str, Any],
    affected: list[dict[str, Any]],
    estimated_value: Decimal,
    idempotency_key: str | None,
    exception_ids: list[int],
    facts: DraftFacts,
    description: str,
) -> Outcome:
    """Route a draft by the workspace's active policy, insert it pending, and return its detail with the summary.

    `description` is what the draft does; the activity summary puts it after "Drafted KIND draft ID: ".
    """
    route = await policy_routing.route_draft(app, session, caller, facts)
    draft = await drafts.create_draft(
        session,
        workspace_id=caller.workspace_id,
        kind=kind,
        title=title,
        rationale=rationale,
        payload=payload,
        affected=affected,
        created_by_kind=caller.principal_kind,
        created_by=caller.principal,
        created_by_token_id=caller.token_id,
        on_behalf_of=caller.on_behalf_of,
        estimated_value=estimated_value,
        currency=caller.base_currency,
        idempotency_key=idempotency_key,
        exception_ids=exception_ids,
        **_policy_fields(app, route.rule, caller, policy=route.policy),
    )
    await policy_routing.record_route(session, draft=draft, route=route, now=app.clock())
    summary = f"Drafted {kind} draft {draft.id}: {description}; {approval_owner(draft)}."
    records = [{"kind": "draft", "id": draft.id}] + [{"kind": "exception", "id": e} for e in exception_ids] + draft.affected
    return Outcome(await draft_detail(session, draft, new_links=exception_ids), summary, affected=records, draft_id=draft.id)

"""Transfer drafts: prepared by agents, executed by shipping the stock into transit."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Outcome
from order3_mcp.inputs import parse_quantity
from order3_mcp.schemas import DraftDetail
from order3_mcp.services.drafts import _check_rationale, _live_exceptions, stored_value
from order3_mcp.services.kinds import KindExecutor, Performed
from order3_mcp.services.kinds._common import (
    checked_quantity,
    find_item,
    place_label,
    resolve_place,
    save_stock_draft,
    unit_value,
)
from order3_mcp.services import policy_routing
from policies import DraftFacts
from store.changes import item_scoped
from store.errors import InvalidInputError
from store.idempotency import decimal_text
from store.rates import rates_in_use
from store.inventory import PlaceAvailability, availability_at
from store.models import Draft, Item, Location
from store.stock import Place
from store.transfers import ship_transfer

if TYPE_CHECKING:
    from order3_mcp.app import Caller, Order3


def _shortage(sku: str, where: str, location_code: str, in_bin: bool, stock: PlaceAvailability, quantity: Decimal) -> str:
    """Describe why `quantity` cannot leave a place, with the numbers behind its availability."""
    numbers = [f"{stock.on_hand} on hand there"]
    if in_bin:
        numbers.append(f"{stock.reserved_here} reserved in that bin")
    numbers.append(f"{stock.location_reserved} of the {stock.location_on_hand} on hand at {location_code} reserved")
    return (
        f"Item {sku} has {max(stock.available, Decimal(0))} available at {where} ({', '.join(numbers)}); "
        f"a transfer of {quantity} would take stock that is reserved or not there"
    )


async def draft_transfer(
    app: Order3,
    caller: Caller,
    *,
    sku: str,
    quantity: Decimal,
    from_location: str,
    from_bin: str,
    to_location: str,
    to_bin: str,
    rationale: str,
    title: str,
    exception_ids: list[int],
    idempotency_key: str | None,
    request_id: str = "",
) -> DraftDetail:
    """Prepare a transfer draft for approval; no stock moves until a person approves and executes it."""

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        clean_rationale = _check_rationale(rationale)
        moved = checked_quantity("quantity", quantity, parse_quantity)
        item = await find_item(session, workspace_id=caller.workspace_id, sku=sku)
        if not item.active:
            raise InvalidInputError(f"sku: item {item.sku} is inactive and cannot be transferred; reactivate it first.")
        source = await resolve_place(
            session, workspace_id=caller.workspace_id, location_code=from_location, bin_code=from_bin, field_prefix="from_"
        )
        destination = await resolve_place(
            session, workspace_id=caller.workspace_id, location_code=to_location, bin_code=to_bin, field_prefix="to_"
        )
        if source.place == destination.place:
            raise InvalidInputError(
                f"to_location: the source and destination are both {source.label}; a transfer must move stock to "
                "another location, or to another bin of the same location."
            )

        stock = await availability_at(
            session,
            workspace_id=caller.workspace_id,
            item_id=item.id,  # type: ignore[arg-type]
            location_id=source.location.id,  # type: ignore[arg-type]
            bin_id=source.place.bin_id,
        )
        if moved > stock.available:
            advice = f"transfer at most {stock.available}" if stock.available > 0 else "choose another source"
            raise InvalidInputError(
                f"quantity: {_shortage(item.sku, source.label, source.location.code, source.bin is not None, stock, moved)}; "
                f"{advice}."
            )
        linked = await _live_exceptions(
            session, caller, exception_ids, item_ids={item.id}, supplier_id=None, verb="transfer"  # type: ignore[arg-type]
        )

        unit_cost, value_source = unit_value(
            item, caller.base_currency, await rates_in_use(session, workspace_id=caller.workspace_id)
        )
        moved_value = stored_value(moved * unit_cost) if unit_cost is not None else None
        # A transfer changes where stock is, not what it is worth, so rules match
        # on a value change of 0; the moved value is shown for the approver.
        facts = DraftFacts(
            kind="transfer",
            value=Decimal(0),
            location_codes=(source.location.code, destination.location.code),
            # The share that max_quantity_share limits is what leaves the source.
            quantity_changes=await policy_routing.quantity_changes(
                session,
                workspace_id=caller.workspace_id,
                changes=[(item.sku, item.id, source.location.code, source.location.id, -moved)],  # type: ignore[list-item]
            ),
        )
        payload = {
            "sku": item.sku,
            "item_id": item.id,
            "unit": item.unit,
            "quantity": str(moved),
            "from_location_code": source.location.code,
            "from_location_id": source.location.id,
            "from_bin_code": source.bin.code if source.bin else "",
            "from_bin_id": source.place.bin_id,
            "to_location_code": destination.location.code,
            "to_location_id": destination.location.id,
            "to_bin_code": destination.bin.code if destination.bin else "",
            "to_bin_id": destination.place.bin_id,
            "available_at_draft": str(stock.available),
            "unit_cost": str(unit_cost) if unit_cost is not None else "",
            "value_source": value_source,
            "moved_value": str(moved_value) if moved_value is not None else "",
            "value_change": "0",
            "currency": caller.base_currency,
        }
        worth = f"{moved_value} {caller.base_currency}" if moved_value is not None else f"unknown: {value_source}"
        return await save_stock_draft(
            session,
            app,
            caller,
            kind="transfer",
            title=title.strip() or f"Transfer {moved} {item.sku} from {source.label} to {destination.label}",
            rationale=clean_rationale,
            payload=payload,
            affected=[
                {"kind": "item", "id": item.id},
                {"kind": "location", "id": source.location.id},
                {"kind": "location", "id": destination.location.id},
            ],
            estimated_value=moved_value if moved_value is not None else Decimal(0),
            idempotency_key=idempotency_key,
            exception_ids=linked,
            facts=facts,
            description=f"{moved} {item.sku} from {source.label} to {destination.label} (moved value {worth})",
        )

    arguments = {
        "sku": sku,
        "quantity": decimal_text(quantity),
        "from_location": from_location,
        "from_bin": from_bin,
        "to_location": to_location,
        "to_bin": to_bin,
        "rationale": rationale,
        "title": title,
        "exception_ids": exception_ids,
    }
    return await app.run(
        caller,
        "draft_transfer",
        arguments,
        work,
        result_type=DraftDetail,
        idempotency_key=idempotency_key,
        request_id=request_id,
    )


async def revalidate(session: AsyncSession, draft: Draft) -> str:
    """Return why the transfer can no longer be shipped: item inactive, or the source stock no longer available."""
    payload = draft.payload
    item = (await session.execute(select(Item).where(Item.id == payload["item_id"]))).scalar_one_or_none()
    if item is None or not item.active:
        return f"Item {payload['sku']} is no longer active, so it cannot be transferred."

    quantity = Decimal(payload["quantity"])
    stock = await availability_at(
        session,
        workspace_id=draft.workspace_id,
        item_id=item.id,  # type: ignore[arg-type]
        location_id=payload["from_location_id"],
        bin_id=payload["from_bin_id"],
        lock=True,
    )
    if quantity > stock.available:
        where = place_label(payload, "from_")
        shortage = _shortage(item.sku, where, payload["from_location_code"], payload["from_bin_id"] is not None, stock, quantity)
        return f"{shortage}; it can no longer be shipped."
    return ""


async def perform(session: AsyncSession, app: Order3, caller: Caller, draft: Draft) -> Performed:
    """Ship the transfer: move its quantity from the source into the transit location."""
    payload = draft.payload
    item = (await session.execute(select(Item).where(Item.id == payload["item_id"]))).scalar_one()
    transfer = await ship_transfer(
        session,
        workspace_id=draft.workspace_id,
        item_id=item.id,  # type: ignore[arg-type]
        quantity=Decimal(payload["quantity"]),
        source=Place(payload["from_location_id"], payload["from_bin_id"]),
        destination=Place(payload["to_location_id"], payload["to_bin_id"]),
        unit_cost=item.unit_cost if item.unit_cost > 0 else None,
        actor=caller.principal,
        draft_id=draft.id,
        shipped_at=app.clock(),
        item_label=item.sku,
    )
    transit_code = (await session.execute(select(Location.code).where(Location.id == transfer.transit_location_id))).scalar_one()
    result = {"transfer": transfer.number, "transit_location": transit_code, "destination": place_label(payload, "to_")}
    affected = [{"kind": "transfer", "id": transfer.id}, {"kind": "movement", "id": transfer.ship_movement_id}]
    return result, affected


EXECUTOR = KindExecutor(revalidate=revalidate, perform=perform)

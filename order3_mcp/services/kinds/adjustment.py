"""Adjustment drafts: a signed stock change with a reason code, executed as one adjustment movement."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Outcome
from order3_mcp.inputs import parse_quantity_change
from order3_mcp.schemas import DraftDetail
from order3_mcp.services import policy_routing
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
from policies import DraftFacts
from store.adjustments import check_reason, post_adjustment
from store.changes import item_scoped
from store.errors import InvalidInputError
from store.idempotency import decimal_text
from store.inventory import on_hand_at
from store.models import Draft, Item
from store.rates import rates_in_use
from store.stock import Place

if TYPE_CHECKING:
    from order3_mcp.app import Caller, Order3


def _below_zero(sku: str, where: str, on_hand: Decimal, quantity: Decimal) -> str:
    return f"Item {sku} has {on_hand} on hand at {where}; removing {-quantity} would make stock negative"


async def draft_adjustment(
    app: Order3,
    caller: Caller,
    *,
    sku: str,
    location: str,
    bin_code: str,
    quantity: Decimal,
    reason_code: str,
    rationale: str,
    title: str,
    exception_ids: list[int],
    idempotency_key: str | None,
    request_id: str = "",
) -> DraftDetail:
    """Prepare a stock adjustment draft; on hand changes only when a person approves it.

    Inactive items may be adjusted, so leftover stock of a discontinued item can
    still be written off.
    """

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        clean_rationale = _check_rationale(rationale)
        change = checked_quantity("quantity", quantity, parse_quantity_change)
        try:
            code = check_reason(reason_code, change)
        except InvalidInputError as exc:
            raise InvalidInputError(f"reason_code: {exc.message}") from exc
        item = await find_item(session, workspace_id=caller.workspace_id, sku=sku)
        target = await resolve_place(session, workspace_id=caller.workspace_id, location_code=location, bin_code=bin_code)

        on_hand = await on_hand_at(
            session,
            workspace_id=caller.workspace_id,
            item_id=item.id,  # type: ignore[arg-type]
            location_id=target.location.id,  # type: ignore[arg-type]
            bin_id=target.place.bin_id,
        )
        if on_hand + change < 0:
            raise InvalidInputError(
                f"quantity: {_below_zero(item.sku, target.label, on_hand, change)}; remove at most {max(on_hand, Decimal(0))}."
            )
        unit_cost, value_source = unit_value(
            item, caller.base_currency, await rates_in_use(session, workspace_id=caller.workspace_id)
        )
        if unit_cost is None:
            # The approval rules match on the value change, so an adjustment that
            # cannot be valued could slip under a threshold.
            raise InvalidInputError(
                f"sku: item {item.sku} cannot be valued for the approval rules because {value_source}; "
                "record its unit cost first."
            )
        value_change = stored_value(change * unit_cost) if unit_cost is not None else Decimal(0)
        linked = await _live_exceptions(
            session, caller, exception_ids, item_ids={item.id}, supplier_id=None, verb="adjust"  # type: ignore[arg-type]
        )

        facts = DraftFacts(
            kind="adjustment",
            value=abs(value_change),
            location_codes=(target.location.code,),
            quantity_changes=await policy_routing.quantity_changes(
                session,
                workspace_id=caller.workspace_id,
                changes=[(item.sku, item.id, target.location.code, target.location.id, change)],  # type: ignore[list-item]
            ),
        )
        payload = {
            "sku": item.sku,
            "item_id": item.id,
            "unit": item.unit,
            "location_code": target.location.code,
            "location_id": target.location.id,
            "bin_code": target.bin.code if target.bin else "",
            "bin_id": target.place.bin_id,
            "quantity": str(change),
            "reason_code": code,
            "on_hand_at_draft": str(on_hand),
            "unit_cost": str(unit_cost) if unit_cost is not None else "",
            "value_source": value_source,
            "value_change": str(value_change),
            "currency": caller.base_currency,
        }
        signed = f"+{change}" if change > 0 else str(change)
        return await save_stock_draft(
            session,
            app,
            caller,
            kind="adjustment",
            title=title.strip() or f"Adjust {item.sku} at {target.label} by {signed} ({code})",
            rationale=clean_rationale,
            payload=payload,
            affected=[{"kind": "item", "id": item.id}, {"kind": "location", "id": target.location.id}],
            estimated_value=value_change,
            idempotency_key=idempotency_key,
            exception_ids=linked,
            facts=facts,
            description=f"{signed} {item.sku} at {target.label} ({code}), value change {value_change} {caller.base_currency}",
        )

    arguments = {
        "sku": sku,
        "location": location,
        "bin": bin_code,
        "quantity": decimal_text(quantity),
        "reason_code": reason_code,
        "rationale": rationale,
        "title": title,
        "exception_ids": exception_ids,
    }
    return await app.run(
        caller,
        "draft_adjustment",
        arguments,
        work,
        result_type=DraftDetail,
        idempotency_key=idempotency_key,
        request_id=request_id,
    )


async def revalidate(session: AsyncSession, draft: Draft) -> str:
    """Return why the adjustment can no longer be posted: a removal that would now take on hand below zero."""
    payload = draft.payload
    change = Decimal(payload["quantity"])
    if change > 0:
        return ""
    on_hand = await on_hand_at(
        session,
        workspace_id=draft.workspace_id,
        item_id=payload["item_id"],
        location_id=payload["location_id"],
        bin_id=payload["bin_id"],
        lock=True,
    )
    if on_hand + change < 0:
        return f"{_below_zero(payload['sku'], place_label(payload, ''), on_hand, change)}; the adjustment can no longer be posted."
    return ""


async def perform(session: AsyncSession, app: Order3, caller: Caller, draft: Draft) -> Performed:
    """Post the adjustment movement the draft describes."""
    payload = draft.payload
    item = (await session.execute(select(Item).where(Item.id == payload["item_id"]))).scalar_one()
    place = Place(payload["location_id"], payload["bin_id"])
    movement = await post_adjustment(
        session,
        workspace_id=draft.workspace_id,
        item_id=item.id,  # type: ignore[arg-type]
        place=place,
        quantity=Decimal(payload["quantity"]),
        reason_code=payload["reason_code"],
        unit_cost=item.unit_cost if item.unit_cost > 0 else None,
        actor=caller.principal,
        draft_id=draft.id,
        occurred_at=app.clock(),
        item_label=item.sku,
    )
    on_hand = await on_hand_at(
        session, workspace_id=draft.workspace_id, item_id=item.id, location_id=place.location_id, bin_id=place.bin_id  # type: ignore[arg-type]
    )
    result = {"movement": movement.id, "sku": item.sku, "place": place_label(payload, ""), "on_hand_after": str(on_hand)}
    return result, [{"kind": "movement", "id": movement.id}]


EXECUTOR = KindExecutor(revalidate=revalidate, perform=perform)

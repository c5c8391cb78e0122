"""Purchase order drafts: executed by issuing the purchase order."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.services.kinds import KindExecutor, Performed
from store.models import Draft, Item, Supplier, SupplierItem
from store.purchasing import NewLine, issue_purchase_order

if TYPE_CHECKING:
    from order3_mcp.app import Caller, Order3


async def revalidate(session: AsyncSession, draft: Draft) -> str:
    """Return why the order can no longer be issued: supplier, item or offer gone."""
    supplier = (await session.execute(select(Supplier).where(Supplier.id == draft.payload["supplier_id"]))).scalar_one_or_none()
    if supplier is None or not supplier.active:
        return f"Supplier {draft.payload['supplier_code']} is no longer active."
    for line in draft.payload["lines"]:
        item = (await session.execute(select(Item).where(Item.id == line["item_id"]))).scalar_one_or_none()
        if item is None or not item.active:
            return f"Item {line['sku']} is no longer active."
        offer = (
            await session.execute(select(SupplierItem.id).where(SupplierItem.id == line["supplier_item_id"]))
        ).scalar_one_or_none()
        if offer is None:
            return f"Supplier {supplier.code} no longer offers {line['sku']}."
    return ""


async def perform(session: AsyncSession, app: Order3, caller: Caller, draft: Draft) -> Performed:
    """Issue the purchase order the draft describes."""
    supplier = (await session.execute(select(Supplier).where(Supplier.id == draft.payload["supplier_id"]))).scalar_one()
    offer_ids = [line["supplier_item_id"] for line in draft.payload["lines"]]
    offers = {
        offer.id: offer
        for offer in (await session.execute(select(SupplierItem).where(SupplierItem.id.in_(offer_ids)))).scalars().all()
    }
    # Expected dates are business dates in the workspace timezone.
    today = app.clock().astimezone(ZoneInfo(caller.timezone)).date()
    lines: list[NewLine] = []
    for line in draft.payload["lines"]:
        offer = offers[line["supplier_item_id"]]
        lead = offer.lead_time_days if offer.lead_time_days is not None else supplier.lead_time_days
        lines.append(
            NewLine(
                item_id=line["item_id"],
                supplier_item_id=offer.id,
                quantity=Decimal(line["quantity"]),
                unit_price=Decimal(line["unit_price"]),
                destination_location_id=line.get("location_id"),
                expected_date=today + timedelta(days=lead),
            )
        )
    order, _ = await issue_purchase_order(
        session,
        workspace_id=caller.workspace_id,
        supplier_id=supplier.id,  # type: ignore[arg-type]
        currency=draft.payload["currency"],
        lines=lines,
        expected_date=max(line.expected_date for line in lines if line.expected_date is not None),
        owner=supplier.owner,
        description=f"{draft.title} (Order3 draft {draft.id})",
        draft_id=draft.id,
    )
    return {"purchase_order": order.number}, [{"kind": "purchase_order", "id": order.id}]


EXECUTOR = KindExecutor(revalidate=revalidate, perform=perform)

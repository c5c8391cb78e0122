"""Direct database reads for a replay: the activity events a step wrote, and the records a state check names."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.commands.drafts import parse_result
from store.db import Database
from store.errors import InvalidInputError
from store.models import (
    ActivityEvent,
    Bin,
    Draft,
    ExceptionRecord,
    Item,
    Location,
    Movement,
    OutboxMessage,
    PurchaseOrder,
    PurchaseOrderLine,
    Reservation,
    StockLevel,
    Supplier,
    Workspace,
)
from store.workspaces import sku_key

STATE_TARGETS = ("stock", "draft", "purchase_order", "exceptions", "outbox", "movements", "item", "supplier", "activity")


def plain(value: Decimal | None) -> str | None:
    """Return a decimal as a string without exponent or trailing zeros, the form scenarios compare against."""
    if value is None:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


async def last_event_id(database: Database) -> int:
    """Return the id of the newest activity event in any workspace, 0 when there is none."""
    async with database.read() as session:
        return (await session.execute(select(func.coalesce(func.max(ActivityEvent.id), 0)))).scalar_one()


async def events_after(database: Database, event_id: int, *, token_names: dict[int, str]) -> list[dict[str, Any]]:
    """Return the activity events written after `event_id`, oldest first, as the fields scenarios check."""
    async with database.read() as session:
        rows = (
            await session.execute(
                select(ActivityEvent, Workspace.name)
                .join(Workspace, Workspace.id == ActivityEvent.workspace_id)
                .where(ActivityEvent.id > event_id)
                .order_by(ActivityEvent.id)
            )
        ).all()
    return [
        {
            "workspace": workspace,
            "seq": event.seq,
            "action": event.action,
            "outcome": event.outcome,
            "actor": event.actor,
            "actor_kind": event.actor_kind,
            "channel": event.channel,
            "token": token_names.get(event.token_id or 0, ""),
            "draft_id": event.draft_id,
            "idempotency_key": event.idempotency_key,
            "arguments": event.arguments,
            "summary": event.summary,
        }
        for event, workspace in rows
    ]


async def _stock(session: AsyncSession, workspace_id: int, target: dict[str, Any]) -> dict[str, Any]:
    item = (await session.execute(select(Item).where(Item.workspace_id == workspace_id, Item.sku_key == sku_key(target["sku"])))).scalar_one_or_none()
    location = (await session.execute(select(Location).where(Location.workspace_id == workspace_id, Location.code == target["location"]))).scalar_one_or_none()
    if item is None or location is None:
        missing = f"item {target['sku']!r}" if item is None else f"location {target['location']!r}"
        raise InvalidInputError(f"The workspace has no {missing}.")
    level_filter = [StockLevel.item_id == item.id, StockLevel.location_id == location.id]
    reservation_filter = [Reservation.item_id == item.id, Reservation.location_id == location.id, Reservation.status == "active"]
    if target.get("bin"):
        found_bin = (await session.execute(select(Bin).where(Bin.location_id == location.id, Bin.code == target["bin"]))).scalar_one_or_none()
        if found_bin is None:
            raise InvalidInputError(f"Location {location.code!r} has no bin {target['bin']!r}.")
        level_filter.append(StockLevel.bin_id == found_bin.id)
        reservation_filter.append(Reservation.bin_id == found_bin.id)
    on_hand = (await session.execute(select(func.coalesce(func.sum(StockLevel.on_hand), 0)).where(*level_filter))).scalar_one()
    reserved = (await session.execute(select(func.coalesce(func.sum(Reservation.quantity), 0)).where(*reservation_filter))).scalar_one()
    on_hand, reserved = Decimal(str(on_hand)), Decimal(str(reserved))
    return {"on_hand": plain(on_hand), "reserved": plain(reserved), "available": plain(on_hand - reserved)}


async def _draft(session: AsyncSession, workspace_id: int, target: Any) -> dict[str, Any]:
    draft = (await session.execute(select(Draft).where(Draft.workspace_id == workspace_id, Draft.id == target))).scalar_one_or_none()
    if draft is None:
        raise InvalidInputError(f"The workspace has no draft {target!r}.")
    return {
        "kind": draft.kind,
        "status": draft.status,
        "created_by": draft.created_by,
        "policy_rule": draft.policy_rule,
        "approvals_required": draft.approvals_required,
        "payload": draft.payload,
        "payload_hash": draft.payload_hash,
        "result": parse_result(", ".join(f"{key}={value}" for key, value in sorted(draft.result.items()))),
        "failure_reason": draft.failure_reason,
    }


async def _purchase_order(session: AsyncSession, workspace_id: int, target: dict[str, Any]) -> dict[str, Any]:
    statement = select(PurchaseOrder).where(PurchaseOrder.workspace_id == workspace_id)
    if "number" in target:
        statement = statement.where(PurchaseOrder.number == target["number"])
    else:
        statement = statement.where(PurchaseOrder.draft_id == target["draft"])
    order = (await session.execute(statement)).scalars().first()
    if order is None:
        raise InvalidInputError(f"The workspace has no purchase order for {target!r}.")
    supplier = (await session.execute(select(Supplier.code).where(Supplier.id == order.supplier_id))).scalar_one()
    lines = (
        await session.execute(
            select(PurchaseOrderLine, Item.sku)
            .join(Item, Item.id == PurchaseOrderLine.item_id)
            .where(PurchaseOrderLine.purchase_order_id == order.id)
            .order_by(PurchaseOrderLine.line_no)
        )
    ).all()
    return {
        "number": order.number,
        "supplier": supplier,
        "status": order.status,
        "currency": order.currency,
        "expected_date": order.expected_date.isoformat() if order.expected_date else None,
        "lines": [
            {"sku": sku, "ordered": plain(line.quantity_ordered), "received": plain(line.quantity_received), "unit_price": plain(line.unit_price)}
            for line, sku in lines
        ],
    }


async def _exceptions(session: AsyncSession, workspace_id: int, target: dict[str, Any]) -> dict[str, Any]:
    statement = select(ExceptionRecord).where(ExceptionRecord.workspace_id == workspace_id)
    for field, column in (("kind", ExceptionRecord.kind), ("status", ExceptionRecord.status), ("location", ExceptionRecord.location_code)):
        if field in target:
            statement = statement.where(column == target[field])
    rows = (await session.execute(statement.order_by(ExceptionRecord.id))).scalars().all()
    if "sku" in target:
        rows = [row for row in rows if sku_key(row.sku) == sku_key(target["sku"])]
    listed = [{"id": row.id, "kind": row.kind, "status": row.status, "sku": row.sku, "location": row.location_code, "reason": row.reason} for row in rows]
    return {"count": len(listed), "exceptions": listed}


async def _outbox(session: AsyncSession, workspace_id: int, target: dict[str, Any]) -> dict[str, Any]:
    statement = (
        select(OutboxMessage, Supplier.code)
        .join(Supplier, Supplier.id == OutboxMessage.supplier_id)
        .where(OutboxMessage.workspace_id == workspace_id)
    )
    if "supplier" in target:
        statement = statement.where(Supplier.code == target["supplier"])
    if "status" in target:
        statement = statement.where(OutboxMessage.status == target["status"])
    rows = (await session.execute(statement.order_by(OutboxMessage.id))).all()
    listed = [
        {"supplier": code, "recipient": message.recipient, "subject": message.subject, "body": message.body, "status": message.status}
        for message, code in rows
    ]
    return {"count": len(listed), "messages": listed}


async def _movements(session: AsyncSession, workspace_id: int, target: dict[str, Any]) -> dict[str, Any]:
    statement = select(Movement, Item.sku).join(Item, Item.id == Movement.item_id).where(Movement.workspace_id == workspace_id)
    if "kind" in target:
        statement = statement.where(Movement.kind == target["kind"])
    if "sku" in target:
        statement = statement.where(Item.sku_key == sku_key(target["sku"]))
    rows = (await session.execute(statement.order_by(Movement.id))).all()
    listed = [{"sku": sku, "kind": movement.kind, "quantity": plain(movement.quantity)} for movement, sku in rows]
    return {"count": len(listed), "movements": listed}


async def _item(session: AsyncSession, workspace_id: int, target: str) -> dict[str, Any]:
    item = (await session.execute(select(Item).where(Item.workspace_id == workspace_id, Item.sku_key == sku_key(target)))).scalar_one_or_none()
    if item is None:
        raise InvalidInputError(f"The workspace has no item {target!r}.")
    return {
        "sku": item.sku, "name": item.name, "description": item.description, "unit": item.unit, "unit_cost": plain(item.unit_cost),
        "currency": item.currency, "owner": item.owner, "active": item.active, "version": item.version,
    }


async def _supplier(session: AsyncSession, workspace_id: int, target: str) -> dict[str, Any]:
    supplier = (await session.execute(select(Supplier).where(Supplier.workspace_id == workspace_id, Supplier.code == target))).scalar_one_or_none()
    if supplier is None:
        raise InvalidInputError(f"The workspace has no supplier {target!r}.")
    return {
        "code": supplier.code, "name": supplier.name, "contact_email": supplier.contact_email, "currency": supplier.currency,
        "lead_time_days": supplier.lead_time_days, "owner": supplier.owner, "active": supplier.active, "version": supplier.version,
    }


async def _activity(session: AsyncSession, workspace_id: int, target: dict[str, Any]) -> dict[str, Any]:
    statement = select(ActivityEvent).where(ActivityEvent.workspace_id == workspace_id)
    for field, column in (("action", ActivityEvent.action), ("outcome", ActivityEvent.outcome), ("actor", ActivityEvent.actor)):
        if field in target:
            statement = statement.where(column == target[field])
    rows = (await session.execute(statement.order_by(ActivityEvent.seq))).scalars().all()
    return {"count": len(rows), "events": [{"action": row.action, "outcome": row.outcome, "actor": row.actor} for row in rows]}


READERS = {
    "stock": _stock,
    "draft": _draft,
    "purchase_order": _purchase_order,
    "exceptions": _exceptions,
    "outbox": _outbox,
    "movements": _movements,
    "item": _item,
    "supplier": _supplier,
    "activity": _activity,
}


async def read_state(database: Database, *, workspace_id: int, target: str, selector: Any) -> dict[str, Any]:
    """Return the fields of the record a state check names, in the scenario's workspace.

    Raises:
        InvalidInputError: If the named record does not exist.
    """
    async with database.read() as session:
        return await READERS[target](session, workspace_id, selector)

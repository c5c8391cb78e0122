"""Purchase orders: lookups and the issue flow."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.changes import touch_items
from store.errors import ConflictError, NotFoundError
from store.models import (
    Item,
    PurchaseOrder,
    PurchaseOrderLine,
    ReceivingEvent,
    Supplier,
    Workspace,
)
from store.types import utc_now


@dataclass(frozen=True)
class NewLine:
    """One line of a purchase order about to be issued."""

    item_id: int
    supplier_item_id: int | None
    quantity: Decimal
    unit_price: Decimal | None
    destination_location_id: int | None
    expected_date: date | None


async def issue_purchase_order(
    session: AsyncSession,
    *,
    workspace_id: int,
    supplier_id: int,
    currency: str,
    lines: list[NewLine],
    expected_date: date | None,
    owner: str,
    description: str,
    draft_id: int | None = None,
) -> tuple[PurchaseOrder, list[PurchaseOrderLine]]:
    """Number, create and issue a purchase order in the caller's transaction.

    Raises:
        ConflictError: If another writer took the same purchase order number.
    """
    workspace = (await session.execute(select(Workspace).where(Workspace.id == workspace_id))).scalar_one()
    number_value = workspace.next_po_number
    taken = await session.execute(
        update(Workspace)
        .where(Workspace.id == workspace_id, Workspace.next_po_number == number_value)
        .values(next_po_number=number_value + 1)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:
        raise ConflictError("Another purchase order was numbered at the same time; retry the request.")

    now = utc_now()
    order = PurchaseOrder(
        workspace_id=workspace_id,
        number=f"PO-{number_value:06d}",
        supplier_id=supplier_id,
        status="issued",
        currency=currency,
        expected_date=expected_date,
        owner=owner,
        description=description,
        draft_id=draft_id,
        created_at=now,
        issued_at=now,
    )
    session.add(order)
    await session.flush()
    created: list[PurchaseOrderLine] = []
    for line_no, line in enumerate(lines, start=1):
        row = PurchaseOrderLine(
            workspace_id=workspace_id,
            purchase_order_id=order.id,  # type: ignore[arg-type]
            line_no=line_no,
            item_id=line.item_id,
            supplier_item_id=line.supplier_item_id,
            quantity_ordered=line.quantity,
            quantity_received=Decimal(0),
            unit_price=line.unit_price,
            expected_date=line.expected_date or expected_date,
            destination_location_id=line.destination_location_id,
        )
        session.add(row)
        created.append(row)
    await session.flush()
    touch_items(session, (line.item_id for line in lines))
    return order, created


async def get_purchase_order_by_number(
    session: AsyncSession, *, workspace_id: int, number: str, for_update: bool = False
) -> PurchaseOrder:
    """Return the purchase order numbered `number` (case-insensitive).

    With `for_update`, the order row is locked until the transaction ends (FOR NO
    KEY UPDATE on PostgreSQL), so a concurrent receipt on the order waits and then
    reads what this one committed. SQLite ignores the lock.

    Raises:
        NotFoundError: If there is none.
    """
    statement = select(PurchaseOrder).where(PurchaseOrder.workspace_id == workspace_id, PurchaseOrder.number.ilike(number.strip()))
    if for_update:
        statement = statement.with_for_update(key_share=True).execution_options(populate_existing=True)
    order = (await session.execute(statement)).scalar_one_or_none()
    if order is None:
        raise NotFoundError(f"Purchase order {number!r} does not exist in this workspace; list purchase orders to find its number.")
    return order


async def purchase_order_lines(
    session: AsyncSession, *, purchase_order_id: int
) -> list[tuple[PurchaseOrderLine, Item]]:
    """Return a purchase order's lines with their items, in line order."""
    rows = (
        await session.execute(
            select(PurchaseOrderLine, Item)
            .join(Item, Item.id == PurchaseOrderLine.item_id)
            .where(PurchaseOrderLine.purchase_order_id == purchase_order_id)
            .order_by(PurchaseOrderLine.line_no, PurchaseOrderLine.id)
        )
    ).all()
    return [(row[0], row[1]) for row in rows]


async def list_purchase_orders(
    session: AsyncSession,
    *,
    workspace_id: int,
    status: str | None = None,
    supplier_id: int | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> list[tuple[PurchaseOrder, Supplier]]:
    """Return purchase orders with their suppliers, ordered by id."""
    statement = (
        select(PurchaseOrder, Supplier)
        .join(Supplier, Supplier.id == PurchaseOrder.supplier_id)
        .where(PurchaseOrder.workspace_id == workspace_id)
    )
    if status is not None:
        statement = statement.where(PurchaseOrder.status == status)
    if supplier_id is not None:
        statement = statement.where(PurchaseOrder.supplier_id == supplier_id)
    if after_id is not None:
        statement = statement.where(PurchaseOrder.id > after_id)
    rows = (await session.execute(statement.order_by(PurchaseOrder.id).limit(limit))).all()
    return [(row[0], row[1]) for row in rows]


async def list_receiving_events(
    session: AsyncSession,
    *,
    workspace_id: int,
    purchase_order_id: int | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> list[tuple[ReceivingEvent, PurchaseOrderLine, PurchaseOrder]]:
    """Return receiving events with their line and order, ordered by id."""
    statement = (
        select(ReceivingEvent, PurchaseOrderLine, PurchaseOrder)
        .join(PurchaseOrderLine, PurchaseOrderLine.id == ReceivingEvent.purchase_order_line_id)
        .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
        .where(ReceivingEvent.workspace_id == workspace_id)
    )
    if purchase_order_id is not None:
        statement = statement.where(PurchaseOrder.id == purchase_order_id)
    if after_id is not None:
        statement = statement.where(ReceivingEvent.id > after_id)
    rows = (await session.execute(statement.order_by(ReceivingEvent.id).limit(limit))).all()
    return [(row[0], row[1], row[2]) for row in rows]

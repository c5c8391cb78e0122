"""Suppliers, supplier items, purchase orders and receiving events."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.models._base import decimal_field, exact_field, time_field, workspace_fk

PO_STATUSES = ("draft", "issued", "partially_received", "received", "closed", "cancelled")
OPEN_PO_STATUSES = ("issued", "partially_received")


class Supplier(SQLModel, table=True):
    """A company the workspace buys from."""

    __table_args__ = (UniqueConstraint("workspace_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    code: str = Field(max_length=60)
    name: str = Field(max_length=250)
    contact_email: str = Field(default="", max_length=250)
    currency: str = Field(default="USD", max_length=3)
    lead_time_days: int = Field(default=14)
    owner: str = Field(default="", max_length=120)
    active: bool = Field(default=True)
    external_ref: str | None = Field(default=None, max_length=120, index=True)
    version: int = Field(default=1)
    created_at: datetime = time_field()


class SupplierItem(SQLModel, table=True):
    """What one supplier sells for one item, with its ordering constraints.

    `pack_size` is the number of stock units in one supplier pack, kept at full
    precision; a missing pack size stays NULL rather than silently becoming 1.
    """

    __tablename__ = "supplier_item"
    __table_args__ = (
        UniqueConstraint("workspace_id", "external_ref"),
        Index("ix_supplier_item_item", "workspace_id", "item_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    supplier_id: int = Field(foreign_key="supplier.id", index=True)
    item_id: int = Field(foreign_key="item.id")
    supplier_sku: str = Field(default="", max_length=120)
    unit_price: Decimal | None = decimal_field(default=None, nullable=True)
    currency: str = Field(default="USD", max_length=3)
    min_order_qty: Decimal = decimal_field(default=Decimal(1))
    pack_size: Decimal | None = exact_field()
    lead_time_days: int | None = Field(default=None)
    preferred: bool = Field(default=False)
    external_ref: str | None = Field(default=None, max_length=120)
    created_at: datetime = time_field()


class SupplierPriceBreak(SQLModel, table=True):
    """Unit price that applies from `quantity` stock units upward."""

    __tablename__ = "supplier_price_break"
    __table_args__ = (UniqueConstraint("workspace_id", "external_ref"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    supplier_item_id: int = Field(foreign_key="supplier_item.id", index=True)
    quantity: Decimal = decimal_field()
    unit_price: Decimal = decimal_field()
    currency: str = Field(default="USD", max_length=3)
    external_ref: str | None = Field(default=None, max_length=120)


class PurchaseOrder(SQLModel, table=True):
    """A purchase order; on order = ordered − received over its open lines."""

    __tablename__ = "purchase_order"
    __table_args__ = (UniqueConstraint("workspace_id", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    number: str = Field(max_length=60)
    supplier_id: int = Field(foreign_key="supplier.id", index=True)
    status: str = Field(default="draft", max_length=30)
    currency: str = Field(default="USD", max_length=3)
    expected_date: date | None = Field(default=None)
    owner: str = Field(default="", max_length=120)
    description: str = Field(default="", max_length=1000)
    draft_id: int | None = Field(default=None, foreign_key="draft.id")
    external_ref: str | None = Field(default=None, max_length=120, index=True)
    created_at: datetime = time_field()
    issued_at: datetime | None = time_field(nullable=True, now=False)
    completed_at: datetime | None = time_field(nullable=True, now=False)
    version: int = Field(default=1)


class PurchaseOrderLine(SQLModel, table=True):
    """One item on a purchase order, with ordered and received quantities."""

    __tablename__ = "purchase_order_line"
    __table_args__ = (
        UniqueConstraint("workspace_id", "external_ref"),
        Index("ix_po_line_item", "workspace_id", "item_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    purchase_order_id: int = Field(foreign_key="purchase_order.id", index=True)
    line_no: int = Field(default=1)
    item_id: int = Field(foreign_key="item.id")
    supplier_item_id: int | None = Field(default=None, foreign_key="supplier_item.id")
    quantity_ordered: Decimal = decimal_field()
    quantity_received: Decimal = decimal_field()
    unit_price: Decimal | None = decimal_field(default=None, nullable=True)
    expected_date: date | None = Field(default=None)
    destination_location_id: int | None = Field(default=None, foreign_key="location.id")
    external_ref: str | None = Field(default=None, max_length=120)
    version: int = Field(default=1)


class ReceivingEvent(SQLModel, table=True):
    """Goods received against a purchase order line; each creates a receipt movement."""

    __tablename__ = "receiving_event"
    __table_args__ = (UniqueConstraint("workspace_id", "external_ref"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    purchase_order_line_id: int = Field(foreign_key="purchase_order_line.id", index=True)
    quantity: Decimal = decimal_field()
    location_id: int | None = Field(default=None, foreign_key="location.id")
    bin_id: int | None = Field(default=None, foreign_key="bin.id")
    movement_id: int | None = Field(default=None, foreign_key="movement.id")
    actor: str = Field(default="", max_length=120)
    received_at: datetime = time_field()
    # A delivery's own reference (delivery note, import id); a second receipt of it writes nothing.
    external_ref: str | None = Field(default=None, max_length=120)

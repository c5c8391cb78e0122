"""Stock levels, the movement ledger and reservations."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.models._base import decimal_field, time_field, workspace_fk

MOVEMENT_KINDS = (
    "receipt",
    "transfer",
    "adjustment",
    "count_correction",
    "shipment",
    "opening_balance",
)
RESERVATION_STATUSES = ("active", "released", "fulfilled")


class StockLevel(SQLModel, table=True):
    """On hand per (item, location, bin), kept equal to the ledger sum in the same transaction.

    `bin_key` is the bin id, or 0 for stock held at the location itself; it exists
    so the unique constraint works on backends where NULLs never collide.
    """

    __tablename__ = "stock_level"
    __table_args__ = (
        UniqueConstraint("item_id", "location_id", "bin_key"),
        Index("ix_stock_level_ws_location", "workspace_id", "location_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    item_id: int = Field(foreign_key="item.id", index=True)
    location_id: int = Field(foreign_key="location.id")
    bin_id: int | None = Field(default=None, foreign_key="bin.id")
    bin_key: int = Field(default=0)
    on_hand: Decimal = decimal_field()
    version: int = Field(default=1)
    updated_at: datetime = time_field()


class Movement(SQLModel, table=True):
    """One append-only ledger entry moving a positive quantity from one place to another.

    A receipt or opening balance has no source; a shipment has no destination.
    Adjustments and count corrections use the side that matches their sign.
    """

    __table_args__ = (
        CheckConstraint("quantity > 0", name="movement_quantity_positive"),
        Index("ix_movement_ws_item", "workspace_id", "item_id", "id"),
        UniqueConstraint("workspace_id", "external_ref"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    item_id: int = Field(foreign_key="item.id")
    kind: str = Field(max_length=20)
    quantity: Decimal = decimal_field()
    from_location_id: int | None = Field(default=None, foreign_key="location.id")
    from_bin_id: int | None = Field(default=None, foreign_key="bin.id")
    to_location_id: int | None = Field(default=None, foreign_key="location.id")
    to_bin_id: int | None = Field(default=None, foreign_key="bin.id")
    unit_cost: Decimal | None = decimal_field(default=None, nullable=True)
    reference_kind: str = Field(default="", max_length=30)
    reference_id: int | None = Field(default=None)
    reference: str = Field(default="", max_length=200)
    actor: str = Field(default="", max_length=120)
    occurred_at: datetime = time_field()
    recorded_at: datetime = time_field()
    external_ref: str | None = Field(default=None, max_length=120)


class Reservation(SQLModel, table=True):
    """Stock promised to a sales or channel order; active ones reduce available."""

    __table_args__ = (
        Index("ix_reservation_ws_item", "workspace_id", "item_id", "status"),
        UniqueConstraint("workspace_id", "external_ref"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    item_id: int = Field(foreign_key="item.id")
    location_id: int = Field(foreign_key="location.id")
    bin_id: int | None = Field(default=None, foreign_key="bin.id")
    quantity: Decimal = decimal_field()
    reference: str = Field(default="", max_length=200)
    status: str = Field(default="active", max_length=20)
    external_ref: str | None = Field(default=None, max_length=120)
    created_at: datetime = time_field()
    version: int = Field(default=1)

"""Transfers of stock between places, shipped through a transit location."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.models._base import decimal_field, time_field, workspace_fk

TRANSFER_STATUSES = ("in_transit", "received")


class Transfer(SQLModel, table=True):
    """One item moving from a source place to a destination place.

    Shipping moves the quantity from the source into the transit location, and
    receiving moves it from there to the destination. Each step is one transfer
    movement in the ledger. `version` guards the in_transit → received change, so
    a transfer is received once.
    """

    __table_args__ = (
        UniqueConstraint("workspace_id", "number"),
        CheckConstraint("quantity > 0", name="transfer_quantity_positive"),
        Index("ix_transfer_ws_status", "workspace_id", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    number: str = Field(max_length=30)
    item_id: int = Field(foreign_key="item.id")
    quantity: Decimal = decimal_field()
    from_location_id: int = Field(foreign_key="location.id")
    from_bin_id: int | None = Field(default=None, foreign_key="bin.id")
    to_location_id: int = Field(foreign_key="location.id")
    to_bin_id: int | None = Field(default=None, foreign_key="bin.id")
    transit_location_id: int = Field(foreign_key="location.id")
    status: str = Field(default="in_transit", max_length=20)
    #: Item unit cost in the item's currency when shipped; None when the item has no cost.
    unit_cost: Decimal | None = decimal_field(default=None, nullable=True)
    draft_id: int | None = Field(default=None, foreign_key="draft.id")
    shipped_by: str = Field(default="", max_length=120)
    shipped_at: datetime = time_field()
    ship_movement_id: int | None = Field(default=None, foreign_key="movement.id")
    received_by: str = Field(default="", max_length=120)
    received_at: datetime | None = time_field(nullable=True, now=False)
    receive_movement_id: int | None = Field(default=None, foreign_key="movement.id")
    version: int = Field(default=1)

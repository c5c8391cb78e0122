"""Items, locations and bins."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from store.models._base import decimal_field, time_field, workspace_fk

LOCATION_KINDS = ("warehouse", "store", "transit", "virtual")


class Item(SQLModel, table=True):
    """A stock-keeping unit. `sku_key` is the trimmed, case-folded SKU used for matching."""

    __table_args__ = (UniqueConstraint("workspace_id", "sku_key"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    sku: str = Field(max_length=100)
    sku_key: str = Field(max_length=100)
    name: str = Field(max_length=250)
    description: str = Field(default="", max_length=2000)
    unit: str = Field(default="each", max_length=40)
    unit_cost: Decimal = decimal_field()
    currency: str = Field(default="USD", max_length=3)
    category: str = Field(default="", max_length=250)
    owner: str = Field(default="", max_length=120)
    active: bool = Field(default=True)
    external_ref: str | None = Field(default=None, max_length=120, index=True)
    version: int = Field(default=1)
    created_at: datetime = time_field()
    updated_at: datetime = time_field()


class Location(SQLModel, table=True):
    """A place that holds stock: warehouse, store, transit or virtual."""

    __table_args__ = (UniqueConstraint("workspace_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    code: str = Field(max_length=60)
    name: str = Field(max_length=250)
    kind: str = Field(default="warehouse", max_length=20)
    owner: str = Field(default="", max_length=120)
    external_ref: str | None = Field(default=None, max_length=120, index=True)
    version: int = Field(default=1)
    created_at: datetime = time_field()


class Bin(SQLModel, table=True):
    """A bin inside a location; `code` is unique within its location."""

    __table_args__ = (UniqueConstraint("location_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    location_id: int = Field(foreign_key="location.id", index=True)
    code: str = Field(max_length=120)
    name: str = Field(default="", max_length=250)
    external_ref: str | None = Field(default=None, max_length=120, index=True)
    created_at: datetime = time_field()

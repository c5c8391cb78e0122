"""Count tasks and count results."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.models._base import decimal_field, time_field, workspace_fk

COUNT_TASK_STATUSES = ("open", "counted", "cancelled")


class CountTask(SQLModel, table=True):
    """A request to count one item at a location or bin by a due date."""

    __tablename__ = "count_task"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    item_id: int = Field(foreign_key="item.id", index=True)
    location_id: int = Field(foreign_key="location.id")
    bin_id: int | None = Field(default=None, foreign_key="bin.id")
    due_date: date | None = Field(default=None)
    assignee: str = Field(default="", max_length=120)
    status: str = Field(default="open", max_length=20)
    draft_id: int | None = Field(default=None, foreign_key="draft.id")
    created_at: datetime = time_field()


class CountResult(SQLModel, table=True):
    """A counted quantity beside the system quantity at count time.

    `system_quantity` is the snapshot the variance is measured against; applying
    the result adjusts stock by counted − snapshot, so movements after the count
    are kept. `location_id` is NULL for a workspace-wide stocktake total.
    """

    __tablename__ = "count_result"
    __table_args__ = (
        UniqueConstraint("workspace_id", "external_ref"),
        Index("ix_count_result_item", "workspace_id", "item_id", "counted_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    task_id: int | None = Field(default=None, foreign_key="count_task.id")
    item_id: int = Field(foreign_key="item.id")
    location_id: int | None = Field(default=None, foreign_key="location.id")
    bin_id: int | None = Field(default=None, foreign_key="bin.id")
    counted_quantity: Decimal = decimal_field()
    system_quantity: Decimal | None = decimal_field(default=None, nullable=True)
    variance: Decimal | None = decimal_field(default=None, nullable=True)
    source: str = Field(default="count", max_length=40)
    note: str = Field(default="", max_length=1000)
    actor: str = Field(default="", max_length=120)
    counted_at: datetime = time_field()
    applied_movement_id: int | None = Field(default=None, foreign_key="movement.id")
    external_ref: str | None = Field(default=None, max_length=120)


class ReorderRule(SQLModel, table=True):
    """Reorder settings per item and location; `location_key` 0 means workspace-wide."""

    __tablename__ = "reorder_rule"
    __table_args__ = (UniqueConstraint("item_id", "location_key"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    item_id: int = Field(foreign_key="item.id", index=True)
    location_id: int | None = Field(default=None, foreign_key="location.id")
    location_key: int = Field(default=0)
    reorder_point: Decimal = decimal_field()
    reorder_quantity: Decimal | None = decimal_field(default=None, nullable=True)
    max_level: Decimal | None = decimal_field(default=None, nullable=True)
    safety_stock: Decimal = decimal_field()
    preferred_supplier_id: int | None = Field(default=None, foreign_key="supplier.id")
    source: str = Field(default="", max_length=120)
    updated_at: datetime = time_field()

"""Count tasks created by executed count_task drafts: one sheet per task, one line per item and bin.

The older `count_task` table has one item per row and has no snapshot column,
so these tasks live in tables of their own and the older table stays as it was.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.models._base import decimal_field, time_field, workspace_fk

COUNT_SHEET_STATUSES = ("open", "applied")


class CountSheet(SQLModel, table=True):
    """A count task: the items to count at one location, its assignee, due date and status.

    Status is open until the counts are submitted, and applied once the count
    results and their corrections are written. Submitting applies in the same
    transaction.
    """

    __tablename__ = "count_sheet"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    location_id: int = Field(foreign_key="location.id")
    title: str = Field(default="", max_length=200)
    status: str = Field(default="open", max_length=20)
    due_date: date | None = Field(default=None)
    assignee: str = Field(default="", max_length=120)
    draft_id: int | None = Field(default=None, foreign_key="draft.id", index=True)
    created_by: str = Field(default="", max_length=120)
    created_at: datetime = time_field()
    submitted_by: str = Field(default="", max_length=120)
    submitted_at: datetime | None = time_field(nullable=True, now=False)
    version: int = Field(default=1)


class CountSheetLine(SQLModel, table=True):
    """One item and bin to count, with the on hand snapshot taken when the task was created.

    The variance of a submitted line is counted − snapshot, never counted − the
    on hand at submission, so movements recorded after the task was created are
    kept on top of the count.
    """

    __tablename__ = "count_sheet_line"
    __table_args__ = (
        UniqueConstraint("sheet_id", "item_id", "bin_key"),
        Index("ix_count_sheet_line_sheet", "sheet_id", "line_no"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    sheet_id: int = Field(foreign_key="count_sheet.id")
    line_no: int = Field(default=1)
    item_id: int = Field(foreign_key="item.id")
    location_id: int = Field(foreign_key="location.id")
    bin_id: int | None = Field(default=None, foreign_key="bin.id")
    #: The bin id, or 0 for stock held at the location itself, as in stock_level.
    bin_key: int = Field(default=0)
    snapshot_quantity: Decimal = decimal_field()
    counted_quantity: Decimal | None = decimal_field(default=None, nullable=True)
    count_result_id: int | None = Field(default=None, foreign_key="count_result.id")

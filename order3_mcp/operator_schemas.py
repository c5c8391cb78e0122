"""Results of the operator flows, counting and receiving, as the CLI and the activity log see them.

Quantities are decimal strings so no precision is lost in JSON.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class CountTaskLineOut(BaseModel):
    """One item and bin of a count task."""

    line_no: int = Field(description="Line number within the task, from 1.")
    sku: str = Field(description="SKU of the item to count.")
    bin: str = Field(description="Bin code, empty for stock held at the location itself.")
    expected: str | None = Field(
        description="On hand when the task was created; null when expected quantities are hidden for a blind count."
    )
    counted: str | None = Field(description="Counted quantity; null until the counts are submitted.")
    variance: str | None = Field(
        description="counted − expected; null until submitted, or when expected quantities are hidden."
    )
    count_result_id: int | None = Field(description="Count result written on submission.")
    movement_id: int | None = Field(description="Count-correction movement posted for a non-zero variance.")


class CountTaskOut(BaseModel):
    """A count task with its lines."""

    task_id: int = Field(description="Count task id.")
    status: str = Field(description="open until the counts are submitted, then applied.")
    location: str = Field(description="Location code where the items are counted.")
    title: str = Field(description="Short title from the draft.")
    assignee: str = Field(description="Person asked to count, empty when unassigned.")
    due_date: str | None = Field(description="Date the count is due (ISO 8601), if set.")
    draft_id: int | None = Field(description="The count_task draft whose execution created this task.")
    created_by: str = Field(description="Person whose approval or execution created the task.")
    created_at: str = Field(description="When the task and its snapshot were created (ISO 8601, UTC).")
    submitted_by: str = Field(description="Who submitted the counts, empty while open.")
    submitted_at: str | None = Field(description="When the counts were submitted (ISO 8601, UTC).")
    expected_shown: bool = Field(description="False when expected quantities and variances are hidden.")
    lines: list[CountTaskLineOut] = Field(description="Lines in line order.")


class CountTaskSummary(BaseModel):
    """One count task in a list."""

    task_id: int = Field(description="Count task id.")
    status: str = Field(description="open or applied.")
    location: str = Field(description="Location code.")
    title: str = Field(description="Short title.")
    assignee: str = Field(description="Person asked to count.")
    due_date: str | None = Field(description="Due date (ISO 8601), if set.")
    lines: int = Field(description="Number of lines.")
    created_at: str = Field(description="When the task was created (ISO 8601, UTC).")


class CountTaskPage(BaseModel):
    """A page of count tasks."""

    tasks: list[CountTaskSummary] = Field(description="Count tasks on this page, oldest first.")
    next_cursor: str | None = Field(description="Cursor for the next page; null on the last page.")


class ReceiptOut(BaseModel):
    """One receipt against a purchase order line."""

    receiving_event_id: int = Field(description="Receiving event written for this receipt.")
    movement_id: int = Field(description="Receipt movement that added the stock.")
    purchase_order: str = Field(description="Purchase order number.")
    line_no: int = Field(description="Line number on the purchase order.")
    sku: str = Field(description="SKU received.")
    quantity: str = Field(description="Quantity received by this receipt.")
    location: str = Field(description="Location code the goods were put away at.")
    bin: str = Field(description="Bin code, empty for the location itself.")
    delivery: str = Field(description="Delivery reference given with the receipt, empty when none.")
    ordered: str = Field(description="Ordered quantity of the line.")
    received_total: str = Field(description="Received quantity of the line after this receipt.")
    outstanding: str = Field(description="Ordered − received after this receipt; 0 when fully or over received.")
    purchase_order_status: str = Field(description="partially_received or received after this receipt.")
    on_hand: str = Field(description="On hand of the item at the receiving place after this receipt.")

"""Persisted exceptions found by the finders, and external snapshots from integrations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from store.models._base import json_field, time_field, workspace_fk

EXCEPTION_KINDS = (
    "low_stock",
    "count_drift",
    "short_receiving",
    "supplier_delay",
    "mismatch",
    "sync_conflict",
)
EXCEPTION_STATUSES = ("open", "drafted", "resolved", "dismissed")
LIVE_EXCEPTION_STATUSES = ("open", "drafted")


class ExceptionRecord(SQLModel, table=True):
    """A problem that needs a next action, identified by a stable fingerprint.

    At most one live (open or drafted) record exists per fingerprint; a problem
    that recurs after it was resolved opens a new record.
    """

    __tablename__ = "exception_record"
    __table_args__ = (
        Index("ix_exception_fingerprint", "workspace_id", "fingerprint", "status"),
        Index("ix_exception_kind", "workspace_id", "kind", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    kind: str = Field(max_length=30)
    fingerprint: str = Field(max_length=200)
    status: str = Field(default="open", max_length=20)
    item_id: int | None = Field(default=None, foreign_key="item.id")
    sku: str = Field(default="", max_length=100)
    location_id: int | None = Field(default=None, foreign_key="location.id")
    location_code: str = Field(default="", max_length=60)
    supplier_id: int | None = Field(default=None, foreign_key="supplier.id")
    supplier_code: str = Field(default="", max_length=60)
    purchase_order_id: int | None = Field(default=None, foreign_key="purchase_order.id")
    purchase_order_number: str = Field(default="", max_length=60)
    purchase_order_line_id: int | None = Field(default=None, foreign_key="purchase_order_line.id")
    owner: str = Field(default="", max_length=120)
    reason: str = Field(max_length=1000)
    evidence: dict[str, Any] = json_field()
    suggested_draft_kind: str = Field(default="", max_length=30)
    first_seen: datetime = time_field()
    last_seen: datetime = time_field()
    resolved_at: datetime | None = time_field(nullable=True, now=False)
    dismissed_reason: str = Field(default="", max_length=2000)
    version: int = Field(default=1)


class ExternalSnapshot(SQLModel, table=True):
    """A record received from a channel or accounting integration, with its outcome."""

    __tablename__ = "external_snapshot"
    __table_args__ = (Index("ix_snapshot_record", "workspace_id", "source", "record_kind", "external_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    batch_id: str = Field(max_length=120)
    source: str = Field(max_length=60)
    external_id: str = Field(max_length=200)
    record_kind: str = Field(max_length=30)
    payload: dict[str, Any] = json_field()
    outcome: str = Field(max_length=20)
    detail: str = Field(default="", max_length=2000)
    received_at: datetime = time_field()

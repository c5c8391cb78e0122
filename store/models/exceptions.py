"""Persisted exceptions found by the finders, external snapshots from integrations, and sync state."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.models._base import decimal_field, json_field, time_field, workspace_fk

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
        # A rerun over a few items or suppliers reads and writes only their records.
        Index("ix_exception_item", "workspace_id", "item_id", "kind"),
        Index("ix_exception_supplier", "workspace_id", "supplier_id", "kind"),
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
    # True on a dismissed record until a finder no longer finds its problem. While
    # it is True the same fingerprint opens no new record, so a dismissal lasts
    # as long as the problem it dismissed rather than until the next refresh.
    suppressing: bool = Field(default=False)
    version: int = Field(default=1)


SNAPSHOT_OUTCOMES = ("agreed", "mismatch", "conflict", "applied", "stale", "invalid")


class ExternalSnapshot(SQLModel, table=True):
    """One record received from a channel or accounting integration, with its outcome.

    `payload` is the record as received: untrusted data, never instructions.
    The typed columns hold what could be read from it. Quantity and value
    records that were compared (outcome agreed or mismatch) set `is_current` on
    the newest row per (source, record_kind, item, location), so the mismatch
    finder reads one row per pair instead of the whole history.
    `location_key` is the location id, or 0 for a workspace-wide figure.
    """

    __tablename__ = "external_snapshot"
    __table_args__ = (
        Index("ix_snapshot_record", "workspace_id", "source", "record_kind", "external_id", "id"),
        Index("ix_snapshot_current", "workspace_id", "is_current", "record_kind", "source", "item_id", "location_key"),
        Index("ix_snapshot_batch", "workspace_id", "source", "batch_id"),
        # Serves mismatch runs scoped to a few items.
        Index("ix_snapshot_item", "workspace_id", "item_id", "is_current"),
    )

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
    item_id: int | None = Field(default=None, foreign_key="item.id")
    location_id: int | None = Field(default=None, foreign_key="location.id")
    location_key: int = Field(default=0)
    quantity: Decimal | None = decimal_field(default=None, nullable=True)
    value: Decimal | None = decimal_field(default=None, nullable=True)
    currency: str = Field(default="", max_length=3)
    #: The integration's key of a changed record: SKU, location code, supplier code or PO number.
    key: str = Field(default="", max_length=120)
    #: The integration's version of a changed record, as sent.
    version: str = Field(default="", max_length=60)
    record_id: int | None = Field(default=None)
    is_current: bool = Field(default=False)
    exception_id: int | None = Field(default=None, foreign_key="exception_record.id")


class SyncState(SQLModel, table=True):
    """The versions of one record on both sides when a source and Order3 last agreed on it.

    `key` is Order3's code for the record (SKU, location code, supplier code or
    PO number) and `record_id` its id. A later change is applied only when
    `our_version` still matches the record. When both sides moved on, the sync
    opens a conflict instead of picking a winner.
    """

    __tablename__ = "sync_state"
    __table_args__ = (UniqueConstraint("workspace_id", "source", "record_kind", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    source: str = Field(max_length=60)
    record_kind: str = Field(max_length=30)
    key: str = Field(max_length=120)
    record_id: int
    our_version: int
    their_version: str = Field(max_length=60)
    agreed_at: datetime = time_field()
    batch_id: str = Field(default="", max_length=120)

"""Drafts prepared by agents or people, their approvals, and the supplier outbox."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.models._base import decimal_field, json_field, time_field, workspace_fk

DRAFT_KINDS = (
    "purchase_order",
    "transfer",
    "count_task",
    "supplier_note",
    "reconciliation",
    "adjustment",
)
DRAFT_STATUSES = (
    "pending_approval",
    "approved",
    "executed",
    "rejected",
    "withdrawn",
    "expired",
    "failed",
)
OPEN_DRAFT_STATUSES = ("pending_approval", "approved")


class Draft(SQLModel, table=True):
    """Proposed work waiting for approval; `payload_hash` binds approvals to what was seen."""

    __table_args__ = (
        Index("ix_draft_ws_status", "workspace_id", "status", "id"),
        # A supplier's spend per business day sums the purchase-order drafts created that day.
        Index("ix_draft_ws_kind_created", "workspace_id", "kind", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    kind: str = Field(max_length=30)
    title: str = Field(max_length=200)
    rationale: str = Field(max_length=4000)
    payload: dict[str, Any] = json_field()
    payload_hash: str = Field(max_length=64)
    affected: list[dict[str, Any]] = json_field(default_factory=list)
    status: str = Field(default="pending_approval", max_length=30)
    created_by_kind: str = Field(max_length=20)
    created_by: str = Field(max_length=120)
    created_by_token_id: int | None = Field(default=None, foreign_key="token.id")
    on_behalf_of: str = Field(default="", max_length=120)
    approval_role: str = Field(default="", max_length=60)
    approvals_required: int = Field(default=1)
    policy_rule: str = Field(default="", max_length=120)
    policy_version: str = Field(default="", max_length=120)
    auto_execute: bool = Field(default=False)
    expires_at: datetime | None = time_field(nullable=True, now=False)
    estimated_value: Decimal = decimal_field()
    currency: str = Field(default="USD", max_length=3)
    idempotency_key: str | None = Field(default=None, max_length=200)
    result: dict[str, Any] = json_field()
    failure_reason: str = Field(default="", max_length=2000)
    version: int = Field(default=1)
    created_at: datetime = time_field()
    updated_at: datetime = time_field()
    decided_at: datetime | None = time_field(nullable=True, now=False)
    executed_at: datetime | None = time_field(nullable=True, now=False)


class DraftException(SQLModel, table=True):
    """Link between a draft and an exception it answers."""

    __tablename__ = "draft_exception"

    draft_id: int = Field(foreign_key="draft.id", primary_key=True)
    exception_id: int = Field(foreign_key="exception_record.id", primary_key=True)


class Approval(SQLModel, table=True):
    """One person's decision on a draft, bound to the payload hash they saw."""

    __table_args__ = (UniqueConstraint("draft_id", "approver", "decision", "payload_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    draft_id: int = Field(foreign_key="draft.id", index=True)
    approver: str = Field(max_length=120)
    token_id: int | None = Field(default=None, foreign_key="token.id")
    role: str = Field(default="", max_length=60)
    decision: str = Field(max_length=20)
    payload_hash: str = Field(max_length=64)
    reason: str = Field(default="", max_length=2000)
    created_at: datetime = time_field()


OUTBOX_STATUSES = ("queued", "sent", "failed")


class OutboxMessage(SQLModel, table=True):
    """A supplier message waiting to be sent by the mail integration.

    Order3 only queues messages; an integration picks up queued ones and sends
    them. The unique draft id means an executed draft queues its note once.
    `subject` and `body` are text an agent wrote, stored verbatim.
    """

    __tablename__ = "outbox_message"
    __table_args__ = (
        UniqueConstraint("workspace_id", "draft_id"),
        Index("ix_outbox_ws_status", "workspace_id", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    supplier_id: int = Field(foreign_key="supplier.id")
    recipient: str = Field(default="", max_length=250)
    subject: str = Field(max_length=250)
    body: str = Field(max_length=8000)
    draft_id: int | None = Field(default=None, foreign_key="draft.id")
    purchase_order_id: int | None = Field(default=None, foreign_key="purchase_order.id")
    status: str = Field(default="queued", max_length=20)
    queued_by: str = Field(default="", max_length=120)
    created_at: datetime = time_field()

"""The hash-chained activity history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.models._base import json_field, time_field, workspace_fk

# "replayed": an idempotency key repeated with the same arguments returned the stored result and wrote nothing else.
# "cancelled": the client cancelled a tool call, or disconnected, before it finished.
OUTCOMES = ("ok", "replayed", "denied", "invalid", "conflict", "error", "cancelled")
CHANNELS = ("mcp", "cli", "sync")


class ActivityEvent(SQLModel, table=True):
    """One tool call, CLI action, approval, execution or sync; append-only.

    `hash` is SHA-256 over `prev_hash` and the canonical JSON of the other fields,
    so editing or deleting any event breaks every link after it.
    """

    __tablename__ = "activity_event"
    __table_args__ = (
        UniqueConstraint("workspace_id", "seq"),
        Index("ix_activity_draft", "workspace_id", "draft_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    seq: int
    occurred_at: datetime = time_field()
    actor_kind: str = Field(max_length=20)
    actor: str = Field(max_length=120)
    token_id: int | None = Field(default=None)
    #: The person an agent or integration token acts for; empty for user tokens.
    on_behalf_of: str = Field(default="", max_length=120)
    #: `clientInfo.name` from the MCP initialize handshake. The client chooses it
    #: freely, so it identifies nothing; empty for CLI actions.
    client_name: str = Field(default="", max_length=120)
    channel: str = Field(max_length=10)
    action: str = Field(max_length=60)
    outcome: str = Field(max_length=10)
    affected: list[dict[str, Any]] = json_field(default_factory=list)
    draft_id: int | None = Field(default=None)
    request_id: str = Field(default="", max_length=120)
    idempotency_key: str = Field(default="", max_length=200)
    arguments: dict[str, Any] = json_field()
    summary: str = Field(default="", max_length=2000)
    prev_hash: str = Field(default="", max_length=64)
    hash: str = Field(max_length=64)

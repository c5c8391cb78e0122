"""API tokens and idempotency records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from store.models._base import json_field, time_field, workspace_fk

PRINCIPAL_KINDS = ("user", "agent", "integration")


class Token(SQLModel, table=True):
    """A bearer token; only the SHA-256 of the secret is stored."""

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    secret_hash: str = Field(max_length=64, unique=True, index=True)
    prefix: str = Field(max_length=16)
    principal_kind: str = Field(max_length=20)
    principal: str = Field(max_length=120)
    role: str = Field(max_length=60)
    scopes: list[str] = json_field(default_factory=list)
    # For an agent token: the person the agent acts for. Separation of duties covers them too.
    on_behalf_of: str = Field(default="", max_length=120)
    label: str = Field(default="", max_length=200)
    created_at: datetime = time_field()
    revoked_at: datetime | None = time_field(nullable=True, now=False)
    expires_at: datetime | None = time_field(nullable=True, now=False)
    last_used_at: datetime | None = time_field(nullable=True, now=False)
    # The token that `order3 token rotate` issued in place of this one; a token is rotated at most once.
    replaced_by: int | None = Field(default=None, foreign_key="token.id")


class IdempotencyRecord(SQLModel, table=True):
    """The stored outcome of a write, replayed when the same principal sends the same key and arguments."""

    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("workspace_id", "principal", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    key: str = Field(max_length=200)
    action: str = Field(max_length=60)
    principal: str = Field(max_length=120)
    request_hash: str = Field(max_length=64)
    response: dict[str, Any] = json_field()
    created_at: datetime = time_field()

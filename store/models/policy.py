"""Policy files loaded into a workspace, and the facts each draft was routed on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from store.models._base import json_field, time_field, workspace_fk


class PolicyVersion(SQLModel, table=True):
    """One policy text loaded into a workspace; the newest row is the workspace's active policy.

    A version label is used once per workspace, so a version always names one text.
    """

    __tablename__ = "policy_version"
    __table_args__ = (UniqueConstraint("workspace_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    name: str = Field(max_length=60)
    version: str = Field(max_length=40)
    #: SHA-256 of the UTF-8 text, in hex.
    sha256: str = Field(max_length=64)
    text: str = Field(sa_type=Text)
    #: File name the text was loaded from, for people reading the history.
    source: str = Field(default="", max_length=250)
    rule_count: int = Field(default=0)
    loaded_by: str = Field(max_length=120)
    token_id: int | None = Field(default=None, foreign_key="token.id")
    loaded_at: datetime = time_field()


class DraftPolicyFacts(SQLModel, table=True):
    """The facts a draft was routed on when it was prepared, so a later policy is judged on the same facts."""

    __tablename__ = "draft_policy_facts"

    draft_id: int = Field(foreign_key="draft.id", primary_key=True)
    workspace_id: int = workspace_fk()
    facts: dict[str, Any] = json_field()
    recorded_at: datetime = time_field()

"""Finder freshness records: a per-workspace change counter, and the last run of each exception kind."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from store.models._base import time_field, workspace_fk


class ChangeCounter(SQLModel, table=True):
    """A number that goes up with every write action in a workspace (reads leave it alone)."""

    __tablename__ = "change_counter"

    workspace_id: int = Field(foreign_key="workspace.id", primary_key=True)
    version: int = Field(default=0)


class FinderRun(SQLModel, table=True):
    """The last refresh of one exception kind: the change counter, business date and time it saw."""

    __tablename__ = "finder_run"
    __table_args__ = (UniqueConstraint("workspace_id", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    kind: str = Field(max_length=30)
    change_version: int
    business_date: date
    #: The policy fingerprint whose tolerances the run used; another policy reruns the kind.
    policy_fingerprint: str = Field(default="", max_length=120)
    refreshed_at: datetime = time_field()

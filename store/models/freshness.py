"""Finder freshness records: a per-workspace change counter, the items each change touched, and the last run of each exception kind."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from store.models._base import json_field, time_field, workspace_fk


class ChangeCounter(SQLModel, table=True):
    """A number that goes up with every write action in a workspace (reads leave it alone)."""

    __tablename__ = "change_counter"

    workspace_id: int = Field(foreign_key="workspace.id", primary_key=True)
    version: int = Field(default=0)


class ChangeLogEntry(SQLModel, table=True):
    """The items whose finder inputs one write changed, keyed by the change counter value that write produced."""

    __tablename__ = "change_log"

    workspace_id: int = Field(foreign_key="workspace.id", primary_key=True)
    version: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    #: Item ids in ascending order; empty when the write changed no finder input.
    item_ids: list[int] = json_field(default_factory=list)
    #: Per finder kind, further item ids in ascending order whose inputs to that finder alone changed.
    kind_item_ids: dict[str, list[int]] = json_field(default_factory=dict)
    #: True when the write may change the findings of any item, in which case the item ids are incomplete.
    everything: bool = Field(default=False)


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
    #: When the kind last ran, over every item or over the items changed since.
    refreshed_at: datetime = time_field()
    #: When the kind last ran over every item; the maximum age counts from here.
    whole_refreshed_at: datetime | None = time_field(nullable=True, now=False)
    #: Until when one server process has claimed the next run over every item, so the others wait for it.
    whole_claimed_until: datetime | None = time_field(nullable=True, now=False)

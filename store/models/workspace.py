"""Workspaces: the tenant boundary every other record belongs to."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from store.models._base import time_field


class Workspace(SQLModel, table=True):
    """An inventory workspace with its base currency and business timezone."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=120)
    base_currency: str = Field(default="USD", max_length=3)
    timezone: str = Field(default="UTC", max_length=64)
    created_at: datetime = time_field()
    # Head of the activity hash chain, advanced in the same transaction as each event.
    activity_seq: int = Field(default=0)
    activity_head: str = Field(default="", max_length=64)
    # Next number for purchase orders issued by this product (PO-000001, ...).
    next_po_number: int = Field(default=1)
    version: int = Field(default=1)

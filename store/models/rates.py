"""Exchange rates a workspace converts foreign-currency amounts with."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from store.models._base import exact_field, time_field, workspace_fk


class ExchangeRate(SQLModel, table=True):
    """How much one unit of `currency` is worth in the workspace base currency, from `as_of`.

    Rows are never changed: setting a rate again adds a row, and the newest
    row per currency is the one in use, so a draft can name the rate it used.
    """

    __tablename__ = "exchange_rate"
    __table_args__ = (Index("ix_exchange_rate_currency", "workspace_id", "currency", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = workspace_fk()
    currency: str = Field(max_length=3)
    rate: Decimal = exact_field(nullable=False)
    as_of: date
    set_by: str = Field(max_length=120)
    set_at: datetime = time_field()

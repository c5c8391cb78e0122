"""Shared column helpers for the SQLModel tables."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import JSON
from sqlmodel import Field

from store.types import ExactDecimal, Fixed6, UTCDateTime, utc_now


def decimal_field(*, default: Decimal | None = Decimal(0), nullable: bool = False, **kwargs: Any) -> Any:
    """Return a Field for an exact quantity or amount stored in millionths."""
    return Field(default=default, sa_type=Fixed6, nullable=nullable, **kwargs)


def exact_field(*, default: Decimal | None = None, nullable: bool = True, **kwargs: Any) -> Any:
    """Return a Field for a Decimal kept at full precision as text."""
    return Field(default=default, sa_type=ExactDecimal, nullable=nullable, **kwargs)


def time_field(*, nullable: bool = False, now: bool = True, **kwargs: Any) -> Any:
    """Return a Field for an aware UTC timestamp, defaulting to the current time."""
    if now:
        return Field(default_factory=utc_now, sa_type=UTCDateTime, nullable=nullable, **kwargs)
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, **kwargs)


def json_field(*, default_factory: Any = dict, **kwargs: Any) -> Any:
    """Return a Field for a JSON document."""
    return Field(default_factory=default_factory, sa_type=JSON, nullable=False, **kwargs)


def workspace_fk() -> Any:
    """Return the workspace foreign key every record carries."""
    return Field(foreign_key="workspace.id", index=True, nullable=False)

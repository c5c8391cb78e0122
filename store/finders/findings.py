"""The `Finding` every exception finder returns, and helpers the finders share."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from store.errors import InvalidInputError
from store.types import from_scaled


@dataclass(frozen=True)
class Finding:
    """One current problem found by a finder, before it is persisted as an exception record.

    `fingerprint` names the underlying problem (an item at a location, a PO line),
    so the same problem found again maps to the same live record. `evidence`
    contains JSON-ready values only, with Decimals and times as strings.
    """

    kind: str
    fingerprint: str
    reason: str
    suggested_draft_kind: str
    evidence: dict[str, Any] = field(default_factory=dict, hash=False)
    item_id: int | None = None
    sku: str = ""
    location_id: int | None = None
    location_code: str = ""
    supplier_id: int | None = None
    supplier_code: str = ""
    purchase_order_id: int | None = None
    purchase_order_number: str = ""
    purchase_order_line_id: int | None = None
    owner: str = ""


def pick_owner(*candidates: str | None) -> str:
    """Return the first non-blank owner, or "" when no candidate names one."""
    for candidate in candidates:
        if candidate and candidate.strip():
            return candidate.strip()
    return ""


def quantity(raw: int | None) -> Decimal:
    """Convert a millionths column value read through raw SQL to a Decimal; NULL counts as 0."""
    return from_scaled(int(raw)) if raw is not None else Decimal(0)


def optional_quantity(raw: int | None) -> Decimal | None:
    """Convert a nullable millionths column value read through raw SQL to a Decimal or None."""
    return from_scaled(int(raw)) if raw is not None else None


def text_or_none(value: Decimal | date | datetime | None) -> str | None:
    """Render a Decimal or a time for evidence: Decimals as plain strings, times as ISO 8601."""
    if value is None:
        return None
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def check_aware(now: datetime) -> datetime:
    """Return `now` if it carries a timezone.

    Raises:
        InvalidInputError: For a naive datetime, whose business date would be a guess.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise InvalidInputError(
            f"Time {now.isoformat()} has no timezone; pass an aware datetime such as datetime.now(UTC)."
        )
    return now


def check_tolerance(name: str, value: Decimal | None, *, optional: bool = False) -> None:
    """Check that a tolerance is a finite, non-negative Decimal (or None when `optional`).

    Raises:
        InvalidInputError: For a missing, negative, non-finite or non-Decimal tolerance.
    """
    if value is None and optional:
        return
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise InvalidInputError(f"Tolerance {name}={value!r} is invalid; pass a Decimal of 0 or more, such as Decimal('5').")

"""The `Finding` every exception finder returns, and helpers the finders share."""

from __future__ import annotations

import gc
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from store.errors import InvalidInputError
from store.types import SCALE, SCALE_DIGITS


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


_ZERO = Decimal(0)

_FINDING_FIELDS = frozenset(spec.name for spec in fields(Finding))


def build_finding(values: dict[str, Any]) -> Finding:
    """Build a `Finding` whose instance dict is `values`, which must name every field.

    The frozen dataclass __init__ sets each field through object.__setattr__,
    about 3 µs per finding on CPython 3.11. A finder that returns tens of
    thousands of findings hands over a ready dict instead (under 1 µs).

    Raises:
        ValueError: If `values` misses a field or names one that Finding lacks.
    """
    if values.keys() != _FINDING_FIELDS:
        raise ValueError(f"Finding fields differ: {sorted(values.keys() ^ _FINDING_FIELDS)}")
    finding = object.__new__(Finding)
    object.__setattr__(finding, "__dict__", values)
    return finding


@contextmanager
def collection_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a finder builds its findings.

    Findings hold no reference cycles, yet each one allocates several dicts and
    lists. At 13,000 low-stock findings the collector's repeated passes over
    them added about 40 % to the build time. The collector is enabled again on
    exit only if it was enabled on entry.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def pick_owner(*candidates: str | None) -> str:
    """Return the first non-blank owner, or "" when no candidate names one."""
    for candidate in candidates:
        if candidate:
            stripped = candidate.strip()
            if stripped:
                return stripped
    return ""


def scaled_text(raw: int) -> str:
    """Render integer millionths exactly as `str(from_scaled(raw))` does, without building a Decimal."""
    if not raw % SCALE:
        return str(raw // SCALE)
    whole, fraction = divmod(abs(raw), SCALE)
    sign = "-" if raw < 0 else ""
    return f"{sign}{whole}.{fraction:06d}".rstrip("0")


def quantity(raw: int | None) -> Decimal:
    """Convert a millionths column value read through raw SQL to a Decimal; NULL counts as 0.

    The result equals `from_scaled(raw)` digit for digit and exponent for
    exponent, so its str() and the str() of sums built from it do not change.
    Whole quantities, the common case, skip the normalisation.
    """
    if raw is None:
        return _ZERO
    raw = int(raw)
    if raw % SCALE:
        return Decimal(raw).scaleb(-SCALE_DIGITS).normalize()
    return Decimal(raw // SCALE)


class QuantityMemo(dict[int, Decimal]):
    """Decimals for raw millionths, each distinct value converted once, so `memo[raw]` equals `quantity(raw)`.

    Quantities repeat across rows (order sizes, reorder points, zero), so a
    finder keeps one memo for the rows of one run. Raw values must not be NULL.
    """

    def __missing__(self, raw: int) -> Decimal:
        value = self[raw] = quantity(raw)
        return value


def optional_quantity(raw: int | None) -> Decimal | None:
    """Convert a nullable millionths column value read through raw SQL to a Decimal or None."""
    return None if raw is None else quantity(raw)


def utc_time(value: datetime | str) -> datetime:
    """Return a stored UTC time read without a column type as an aware datetime.

    SQLite returns the text SQLAlchemy stored ('2026-03-02 09:00:00.000000'),
    and PostgreSQL a naive datetime. Both are UTC. Parsing here skips
    SQLAlchemy's per-value type-decorator calls.
    """
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)


def utc_text(value: datetime | str) -> str:
    """Return a stored UTC time read without a column type in ISO 8601 with +00:00, as `isoformat()` writes it.

    SQLAlchemy stores SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff', which is
    rewritten by slicing; anything else is parsed first.
    """
    if isinstance(value, str) and len(value) == 26 and value[10] == " " and value[19] == ".":
        if value.endswith(".000000"):
            return f"{value[:10]}T{value[11:19]}+00:00"
        return f"{value[:10]}T{value[11:]}+00:00"
    return utc_time(value).isoformat()


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


_MIN_ID = -(2**63)
_MAX_ID = 2**63 - 1


def check_scope(name: str, ids: Collection[int] | None) -> list[int] | None:
    """Return a finder's scope as sorted distinct ids, or None for an unscoped run.

    Raises:
        InvalidInputError: If `ids` is a string or mapping, or contains anything but 64-bit integers.
    """
    if ids is None:
        return None
    if isinstance(ids, str | bytes | dict) or not isinstance(ids, Collection):
        raise InvalidInputError(f"Scope {name}={ids!r} is invalid; pass a list or set of ids, or None for every record.")
    for value in ids:
        # Ids are 64-bit integers on both backends, and PostgreSQL rejects a larger value in the array.
        if isinstance(value, bool) or not isinstance(value, int) or not _MIN_ID <= value <= _MAX_ID:
            raise InvalidInputError(f"Scope {name} contains {value!r}, which is not an integer id; pass integer ids such as [12, 40].")
    return sorted(set(ids))

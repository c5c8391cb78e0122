"""Column types that keep quantities, money and times exact across SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import BigInteger, String
from sqlalchemy.types import DateTime, TypeDecorator

# Quantities and money are stored as integers in millionths. SQLite has no
# decimal type (SQLAlchemy's Numeric goes through float there), and integer
# storage keeps SUM() exact in set-based SQL on both backends.
SCALE_DIGITS = 6
SCALE = 10**SCALE_DIGITS
# Largest magnitude that fits a signed 64-bit column at this scale.
MAX_FIXED = Decimal(2**63 - 1) / SCALE


def to_scaled(value: Decimal) -> int:
    """Convert a Decimal to integer millionths, refusing precision that would be lost.

    Raises:
        ValueError: If the value has more than six decimal places or is out of range.
    """
    if not value.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    scaled = value * SCALE
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {SCALE_DIGITS} decimal places")
    if abs(value) > MAX_FIXED:
        raise ValueError(f"{value} is out of range (at most {MAX_FIXED:.0f})")
    return int(scaled)


def from_scaled(raw: int) -> Decimal:
    """Convert integer millionths back to a normalised Decimal."""
    return _plain(Decimal(raw).scaleb(-SCALE_DIGITS))


def _plain(value: Decimal) -> Decimal:
    # normalize() turns 100 into 1E+2; quantize back so str() never shows an exponent.
    normal = value.normalize()
    if normal == normal.to_integral_value():
        return normal.quantize(Decimal(1))
    return normal


class Fixed6(TypeDecorator[Decimal]):
    """A Decimal stored exactly as a 64-bit integer count of millionths."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
            raise TypeError(f"Fixed6 column needs a Decimal, got {type(value).__name__}")
        return to_scaled(Decimal(value))

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        if value is None:
            return None
        return from_scaled(int(value))


class ExactDecimal(TypeDecorator[Decimal]):
    """A Decimal stored as text at full precision (conversion factors, pack sizes)."""

    impl = String(64)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        try:
            number = Decimal(value)
        except (InvalidOperation, TypeError) as exc:
            raise ValueError(f"{value!r} is not a decimal number") from exc
        if not number.is_finite():
            raise ValueError(f"{value!r} is not a finite number")
        return str(number)

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        if value is None:
            return None
        return Decimal(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime; SQLite keeps no offset, so naive UTC is stored."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"datetime {value.isoformat()} has no timezone; pass an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)

"""Exchange rates: set them, read the ones in use, and convert amounts into the base currency."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.currencies import check_currency_code
from store.changes import touch_everything
from store.errors import InvalidInputError
from store.models import ExchangeRate

# Digits kept in a rate: enough for any published rate, bounded so a typo cannot store a huge number.
MAX_RATE_DIGITS = 18


@dataclass(frozen=True)
class RateInUse:
    """The rate a conversion used: 1 `currency` = `rate` base currency, as of a date."""

    currency: str
    rate: Decimal
    as_of: date

    def describe(self, base_currency: str) -> str:
        """Return text such as "1 CAD = 0.73 USD (as of 2026-12-01)"."""
        return f"1 {self.currency} = {self.rate} {base_currency} (as of {self.as_of.isoformat()})"

    def as_json(self) -> dict[str, str]:
        """Return the rate as a JSON object for a draft payload."""
        return {"rate": str(self.rate), "as_of": self.as_of.isoformat()}


def parse_currency(value: str, *, field: str = "currency") -> str:
    """Return the upper-cased ISO 4217 code.

    Raises:
        InvalidInputError: If `value` is not a known ISO 4217 code.
    """
    return check_currency_code(value, field=field)


def parse_rate(value: str) -> Decimal:
    """Return a positive exchange rate from its text.

    Raises:
        InvalidInputError: If `value` is not a positive decimal number of at most MAX_RATE_DIGITS digits.
    """
    try:
        rate = Decimal(value.strip())
    except InvalidOperation:
        raise InvalidInputError(f"Rate {value!r} is not a number; write it as a decimal such as 0.73.") from None
    if not rate.is_finite() or rate <= 0:
        raise InvalidInputError(f"Rate {value!r} must be a positive number: what 1 unit of the currency is worth in the base currency.")
    if len(rate.as_tuple().digits) > MAX_RATE_DIGITS or "e" in value.lower():
        raise InvalidInputError(f"Rate {value!r} has too many digits; write a plain decimal with at most {MAX_RATE_DIGITS} digits.")
    return rate


async def set_rate(
    session: AsyncSession,
    *,
    workspace_id: int,
    base_currency: str,
    currency: str,
    rate: Decimal,
    as_of: date,
    actor: str,
    now: datetime,
) -> ExchangeRate:
    """Add the rate now in use for `currency`; earlier rates stay on record.

    Raises:
        InvalidInputError: For the base currency itself.
    """
    if currency == base_currency:
        raise InvalidInputError(f"{currency} is the workspace base currency; its rate is always 1.")
    record = ExchangeRate(workspace_id=workspace_id, currency=currency, rate=rate, as_of=as_of, set_by=actor, set_at=now)
    session.add(record)
    await session.flush()
    # Rates convert accounting values for the mismatch finder, whatever the item.
    touch_everything(session)
    return record


async def rates_in_use(session: AsyncSession, *, workspace_id: int) -> dict[str, RateInUse]:
    """Return the newest rate of each currency the workspace has a rate for."""
    newest = (
        select(func.max(ExchangeRate.id))
        .where(ExchangeRate.workspace_id == workspace_id)
        .group_by(ExchangeRate.currency)
    )
    rows = (await session.execute(select(ExchangeRate).where(ExchangeRate.id.in_(newest)))).scalars().all()
    return {row.currency: RateInUse(row.currency, row.rate, row.as_of) for row in rows}


async def rate_history(session: AsyncSession, *, workspace_id: int) -> list[ExchangeRate]:
    """Return every rate ever set in the workspace, oldest first."""
    rows = await session.execute(
        select(ExchangeRate).where(ExchangeRate.workspace_id == workspace_id).order_by(ExchangeRate.currency, ExchangeRate.id)
    )
    return list(rows.scalars().all())


def to_base(
    amount: Decimal, currency: str, *, base_currency: str, rates: dict[str, RateInUse], what: str
) -> tuple[Decimal, RateInUse | None]:
    """Convert `amount` in `currency` into the base currency, rounded half up to six decimal places.

    Returns the converted amount and the rate used (None for the base currency).

    Raises:
        InvalidInputError: If the workspace has no rate for `currency`; the message names `what` and the fix.
    """
    if currency == base_currency:
        return amount, None
    used = rates.get(currency)
    if used is None:
        raise InvalidInputError(
            f"{what} is in {currency} and the workspace has no exchange rate for {currency}; an admin sets one with "
            f"`order3 rates set {currency} RATE` (what 1 {currency} is worth in {base_currency})."
        )
    return (amount * used.rate).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP), used

"""Exchange rate services: admins set the rates drafts convert with; anyone who reads can list them."""

from __future__ import annotations

from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from order3_mcp.schemas import ExchangeRateList, ExchangeRateOut
from store import rates as store_rates
from store.errors import InvalidInputError
from store.finders import business_date
from store.idempotency import decimal_or_raw
from store.models import ExchangeRate


def _rate_out(record: ExchangeRate, *, in_use: bool) -> ExchangeRateOut:
    return ExchangeRateOut(
        currency=record.currency,
        rate=str(record.rate),
        as_of=record.as_of.isoformat(),
        set_by=record.set_by,
        set_at=record.set_at.isoformat(),
        in_use=in_use,
    )


async def set_rate(
    app: Order3, caller: Caller, *, currency: str, rate: str, as_of: str = "", idempotency_key: str | None = None
) -> ExchangeRateOut:
    """Set what 1 unit of `currency` is worth in the base currency; drafts prepared from now on use it."""

    async def work(session: AsyncSession) -> Outcome:
        code = store_rates.parse_currency(currency)
        value = store_rates.parse_rate(rate)
        now = app.clock()
        if as_of.strip():
            try:
                day = date.fromisoformat(as_of.strip())
            except ValueError:
                raise InvalidInputError(f"as_of {as_of!r} is not a date; write it as YYYY-MM-DD.") from None
        else:
            day = business_date(now, timezone=caller.timezone)
        today = business_date(now, timezone=caller.timezone)
        if day > today:
            # Drafts use the newest rate at once, so a rate dated ahead would apply before its date.
            raise InvalidInputError(
                f"as_of {day.isoformat()} is after today ({today.isoformat()}); set a rate on or after the day it applies."
            )
        record = await store_rates.set_rate(
            session,
            workspace_id=caller.workspace_id,
            base_currency=caller.base_currency,
            currency=code,
            rate=value,
            as_of=day,
            actor=caller.principal,
            now=now,
        )
        used = store_rates.RateInUse(record.currency, record.rate, record.as_of)
        return Outcome(
            _rate_out(record, in_use=True),
            f"Set the exchange rate {used.describe(caller.base_currency)}.",
            affected=[{"kind": "exchange_rate", "id": record.id}],
        )

    arguments = {"currency": currency, "rate": decimal_or_raw(rate, store_rates.parse_rate), "as_of": as_of}
    return await app.run(
        caller, "rates_set", arguments, work, result_type=ExchangeRateOut, idempotency_key=idempotency_key
    )


async def list_rates(app: Order3, caller: Caller, *, history: bool = False) -> ExchangeRateList:
    """List the rates in use, or every rate ever set with `history`."""

    async def work(session: AsyncSession) -> Outcome:
        records = await store_rates.rate_history(session, workspace_id=caller.workspace_id)
        newest = {record.currency: record.id for record in records}
        shown = records if history else [record for record in records if newest[record.currency] == record.id]
        listed = [_rate_out(record, in_use=newest[record.currency] == record.id) for record in shown]
        return Outcome(
            ExchangeRateList(base_currency=caller.base_currency, rates=listed), f"Listed {len(listed)} exchange rates."
        )

    return await app.run(caller, "rates_list", {"history": history}, work, result_type=ExchangeRateList)

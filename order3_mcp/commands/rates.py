"""The `rates` commands: the exchange rates drafts use to value foreign-currency amounts in the base currency."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from order3_mcp.commands._runtime import (
    IdempotencyKeyOption,
    execute,
    keyed,
    out,
    say,
    say_replayed,
    settings_of,
    signed_in,
)
from order3_mcp.schemas import ExchangeRateList, ExchangeRateOut
from order3_mcp.services import rates

rates_app = typer.Typer(
    help="Exchange rates into the base currency. Order3 fetches no rates: an admin sets each one.",
    no_args_is_help=True,
)


@rates_app.command("set")
def set_(
    ctx: typer.Context,
    currency: Annotated[str, typer.Argument(help="Three-letter currency code, e.g. CAD.")],
    rate: Annotated[str, typer.Argument(help="What 1 unit of the currency is worth in the base currency, e.g. 0.73.")],
    as_of: Annotated[str, typer.Option(help="Date the rate applies from, YYYY-MM-DD; today in the workspace timezone if omitted.")] = "",
    idempotency_key: IdempotencyKeyOption = None,
) -> None:
    """Set the rate new drafts use for a currency; earlier rates stay on record."""
    settings = settings_of(ctx)

    async def step() -> tuple[ExchangeRateOut, str | None]:
        async with signed_in(settings) as (app, caller):
            return await keyed(
                rates.set_rate(app, caller, currency=currency, rate=rate, as_of=as_of, idempotency_key=idempotency_key)
            )

    saved, replayed = execute(step)
    say_replayed(replayed, "exchange rate")
    say(f"1 {saved.currency} = {saved.rate} in the base currency, as of {saved.as_of}; new drafts use it.")


@rates_app.command("list")
def list_(
    ctx: typer.Context,
    history: Annotated[bool, typer.Option("--history", help="Also list rates that were replaced.")] = False,
) -> None:
    """List the exchange rates in use."""
    settings = settings_of(ctx)

    async def step() -> ExchangeRateList:
        async with signed_in(settings) as (app, caller):
            return await rates.list_rates(app, caller, history=history)

    listing = execute(step)
    table = Table(title=f"Exchange rates into {listing.base_currency}")
    for column in ("currency", "rate", "as of", "set by", "set at", "in use"):
        table.add_column(column)
    for rate in listing.rates:
        table.add_row(rate.currency, rate.rate, rate.as_of, rate.set_by, rate.set_at, "yes" if rate.in_use else "no")
    out().print(table)
    if not listing.rates:
        say("No rates set: drafts can value only amounts in the base currency.")

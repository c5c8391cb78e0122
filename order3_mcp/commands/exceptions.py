"""The `exceptions` commands: the problems the finders report, as a table."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

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
from order3_mcp.commands._untrusted import visible
from order3_mcp.schemas import ExceptionOut, ExceptionPage

exceptions_app = typer.Typer(help="List, inspect and dismiss exceptions that need a next action.", no_args_is_help=True)


@exceptions_app.command("list")
def list_(
    ctx: typer.Context,
    kind: Annotated[str, typer.Option(help="Only this kind: low_stock, count_drift, short_receiving, supplier_delay, mismatch, sync_conflict.")] = "",
    status: Annotated[str, typer.Option(help="Only this status: open, drafted, resolved or dismissed; empty for open and drafted.")] = "",
    location: Annotated[str, typer.Option(help="Only exceptions at this location code.")] = "",
    supplier: Annotated[str, typer.Option(help="Only exceptions for this supplier code.")] = "",
    owner: Annotated[str, typer.Option(help="Only exceptions owned by this person.")] = "",
    limit: Annotated[int, typer.Option(help="Exceptions per page, 1 to 100.")] = 50,
    cursor: Annotated[str, typer.Option(help="Cursor printed at the end of the previous page.")] = "",
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Rerun the finders even if nothing was written since their last run.")
    ] = False,
) -> None:
    """List exceptions with the reason for each, rerunning the finders whose data changed."""
    from order3_mcp.services import exceptions

    settings = settings_of(ctx)

    async def step() -> ExceptionPage:
        async with signed_in(settings) as (app, caller):
            return await exceptions.find_exceptions(
                app, caller, kind=kind, status=status, location=location, supplier=supplier, owner=owner, cursor=cursor,
                limit=limit, refresh=refresh,
            )

    listing = execute(step)
    table = Table(title=f"{len(listing.exceptions)} exceptions")
    # The id is what `show` and `dismiss` take, so it is never shortened.
    widest_id = max((len(str(found.exception_id)) for found in listing.exceptions), default=2)
    table.add_column("id", no_wrap=True, min_width=widest_id)
    for column in ("kind", "status", "sku", "location", "supplier", "PO", "owner"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason", ratio=1, min_width=30)
    for found in listing.exceptions:
        table.add_row(
            str(found.exception_id),
            found.kind,
            found.status,
            found.sku,
            found.location,
            found.supplier,
            found.purchase_order,
            found.owner,
            found.reason,
        )
    out().print(table)
    if listing.refreshed_at:
        runs = ", ".join(f"{kind} {moment}" for kind, moment in listing.refreshed_at.items())
        say(f"Finders last ran: {runs}.")
    if listing.next_cursor:
        say(f"More exceptions: --cursor {listing.next_cursor}")


def print_exception(found: ExceptionOut) -> None:
    """Print one exception with its evidence."""
    say(f"Exception {found.exception_id}: {found.kind}, {found.status}")
    say(f"Reason: {visible(found.reason)}")
    for label, value in (
        ("SKU", found.sku),
        ("Location", found.location),
        ("Supplier", found.supplier),
        ("Purchase order", found.purchase_order),
        ("Owner", found.owner),
        ("Suggested draft", found.suggested_draft),
        ("First seen", found.detected_at),
        ("Last seen", found.last_seen),
    ):
        if value:
            say(f"{label}: {value}")
    table = Table(title="Evidence")
    table.add_column("field", no_wrap=True)
    table.add_column("value", ratio=1)
    # Evidence quotes integration text (external ids, the source's field values), so it is escaped.
    for name, value in found.evidence.items():
        table.add_row(Text(visible(name)), Text(visible(value)))
    out().print(table)


@exceptions_app.command("show")
def show(ctx: typer.Context, exception_id: Annotated[int, typer.Argument(help="Exception id, as listed.")]) -> None:
    """Show one exception with the evidence behind its reason."""
    from order3_mcp.services import exceptions

    settings = settings_of(ctx)

    async def step() -> ExceptionOut:
        async with signed_in(settings) as (app, caller):
            return await exceptions.get_exception(app, caller, exception_id=exception_id)

    print_exception(execute(step))


@exceptions_app.command("dismiss")
def dismiss(
    ctx: typer.Context,
    exception_id: Annotated[int, typer.Argument(help="Exception id, as listed.")],
    reason: Annotated[str, typer.Option(help="Why no action is needed; recorded in the activity history.")] = "",
    idempotency_key: IdempotencyKeyOption = None,
) -> None:
    """Dismiss an open or drafted exception with a reason (approve scope; never agents)."""
    from order3_mcp.services import exceptions

    settings = settings_of(ctx)

    async def step() -> tuple[ExceptionOut, str | None]:
        async with signed_in(settings) as (app, caller):
            return await keyed(
                exceptions.dismiss_exception(
                    app, caller, exception_id=exception_id, reason=reason, idempotency_key=idempotency_key
                )
            )

    found, replayed = execute(step)
    say_replayed(replayed, "dismissal")
    say(f"Dismissed exception {found.exception_id} ({found.kind} {found.sku or found.purchase_order}).")

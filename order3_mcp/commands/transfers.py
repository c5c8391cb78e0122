"""The `transfer` commands: list shipped transfers and receive them at their destination."""

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
from order3_mcp.schemas import TransferOut, TransferPage
from order3_mcp.services import transfers

transfer_app = typer.Typer(help="Follow transfers shipped from approved drafts and receive them.", no_args_is_help=True)


@transfer_app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[str, typer.Option(help="Only transfers in this status: in_transit or received.")] = "",
    limit: Annotated[int, typer.Option(help="Transfers per page, 1 to 100.")] = 50,
    cursor: Annotated[str, typer.Option(help="Cursor printed at the end of the previous page.")] = "",
) -> None:
    """List transfers with their status, oldest first."""
    settings = settings_of(ctx)

    async def step() -> TransferPage:
        async with signed_in(settings) as (app, caller):
            return await transfers.list_transfers(app, caller, status=status, cursor=cursor, limit=limit)

    listing = execute(step)
    table = Table(title=f"{len(listing.transfers)} transfers")
    for column in ("number", "sku", "quantity", "from", "to", "status", "draft", "shipped", "received"):
        table.add_column(column)
    for row in listing.transfers:
        table.add_row(
            row.number,
            row.sku,
            row.quantity,
            row.from_place,
            row.to_place,
            row.status,
            str(row.draft_id or ""),
            f"{row.shipped_at} by {row.shipped_by}",
            f"{row.received_at} by {row.received_by}" if row.received_at else "",
        )
    out().print(table)
    if listing.next_cursor:
        say(f"More transfers: --cursor {listing.next_cursor}")


@transfer_app.command("receive")
def receive(
    ctx: typer.Context,
    transfer: Annotated[str, typer.Argument(help="Transfer number, such as TR-000001, from `transfer list`.")],
    idempotency_key: IdempotencyKeyOption = None,
) -> None:
    """Receive a transfer at its destination: its stock leaves transit and is added there. A transfer is received once."""
    settings = settings_of(ctx)

    async def step() -> tuple[TransferOut, str | None]:
        async with signed_in(settings) as (app, caller):
            return await keyed(transfers.receive_transfer(app, caller, transfer=transfer, idempotency_key=idempotency_key))

    received, replayed = execute(step)
    say_replayed(replayed, "transfer receipt")
    say(
        f"Received transfer {received.number}: {received.quantity} {received.sku} moved from "
        f"{received.transit_place} into {received.to_place}.",
        style="green",
    )

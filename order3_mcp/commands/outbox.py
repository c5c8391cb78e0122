"""The `outbox` commands: see the supplier notes that executed drafts queued for the mail integration."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from order3_mcp.commands._runtime import execute, out, say, settings_of, signed_in
from order3_mcp.commands._untrusted import quoted_block, visible
from order3_mcp.schemas import OutboxMessageDetail, OutboxPage
from order3_mcp.services import outbox

outbox_app = typer.Typer(
    help="See supplier notes queued for sending. Order3 sends nothing itself: a mail integration picks them up.",
    no_args_is_help=True,
)


@outbox_app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[str, typer.Option(help="Only messages in this status: queued, sent or failed.")] = "",
    supplier: Annotated[str, typer.Option(help="Only messages to this supplier code.")] = "",
    limit: Annotated[int, typer.Option(help="Messages per page, 1 to 100.")] = 50,
    cursor: Annotated[str, typer.Option(help="Cursor printed at the end of the previous page.")] = "",
) -> None:
    """List queued supplier notes, oldest first."""
    settings = settings_of(ctx)

    async def step() -> OutboxPage:
        async with signed_in(settings) as (app, caller):
            return await outbox.list_outbox(app, caller, status=status, supplier=supplier, cursor=cursor, limit=limit)

    listing = execute(step)
    table = Table(title=f"{len(listing.messages)} outbox messages")
    for column in ("id", "status", "supplier", "recipient", "po", "subject", "draft", "queued"):
        table.add_column(column)
    for message in listing.messages:
        # Text cells, because rich would read markup such as "[red]" in a plain string.
        table.add_row(
            str(message.message_id),
            message.status,
            message.supplier,
            Text(visible(message.recipient)),
            message.purchase_order,
            Text(visible(message.subject)),
            str(message.draft_id or ""),
            message.created_at,
        )
    out().print(table)
    if listing.next_cursor:
        say(f"More messages: --cursor {listing.next_cursor}")


@outbox_app.command("show")
def show(
    ctx: typer.Context,
    message_id: Annotated[int, typer.Argument(help="Outbox message id, from `outbox list`.")],
) -> None:
    """Show one queued supplier note with its body, the drafter's text escaped."""
    settings = settings_of(ctx)

    async def step() -> OutboxMessageDetail:
        async with signed_in(settings) as (app, caller):
            return await outbox.get_outbox_message(app, caller, message_id=message_id)

    message = execute(step)
    say(f"Outbox message {message.message_id}: {message.status}", style="bold")
    about = f", about purchase order {message.purchase_order}" if message.purchase_order else ""
    say(f"To: {message.supplier} <{visible(message.recipient)}>{about}")
    say(f"Queued: {message.created_at} by {visible(message.queued_by)}, from draft {message.draft_id}")
    say(f"Subject (untrusted text from the drafter): \"{visible(message.subject)}\"")
    quoted_block("Body", message.body, origin="the drafter")

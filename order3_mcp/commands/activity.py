"""The `activity` commands: the timeline, one event in full, chain verification and export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from order3_mcp.app import Caller, Order3
from order3_mcp.commands._runtime import (
    CHECK_FAILED_EXIT,
    execute,
    fail,
    out,
    say,
    settings_of,
    signed_in,
)
from order3_mcp.pagination import MAX_PAGE_SIZE, encode_cursor
from order3_mcp.schemas import ActivityOut, ActivityPage
from order3_mcp.services import admin, history
from order3_mcp.services.admin import (
    ActivityDetail,
    ActivityExport,
    ActivityWindow,
    ChainCheck,
)
from store.errors import InvalidInputError

activity_app = typer.Typer(help="Inspect, verify and export the activity history.", no_args_is_help=True)


async def read_timeline(
    app: Order3,
    caller: Caller,
    *,
    draft_id: int | None,
    action: str,
    outcome: str,
    limit: int,
    cursor: str | None = None,
) -> ActivityPage:
    """Return up to `limit` events in sequence order from `cursor` on, one `list_activity` page at a time.

    The returned cursor continues after the last event returned, and is null when no later event matches.
    """
    events: list[ActivityOut] = []
    while True:
        page = await history.list_activity(
            app,
            caller,
            draft_id=draft_id,
            action=action,
            outcome=outcome,
            cursor=cursor,
            limit=min(MAX_PAGE_SIZE, limit - len(events)),
        )
        events.extend(page.events)
        cursor = page.next_cursor
        if cursor is None or len(events) >= limit:
            return ActivityPage(events=events, next_cursor=cursor)


# Below this console width the timeline prints one event per line, because seven
# table columns would leave the summary no room.
TABLE_MIN_WIDTH = 120
OUTCOME_STYLES = {"ok": "green", "denied": "red", "invalid": "yellow", "conflict": "yellow", "error": "red"}


def print_timeline(console: Console, events: list[ActivityOut], *, title: str) -> None:
    """Print the events as a timeline: seq, time, actor, channel, action, outcome, summary."""
    if console.width < TABLE_MIN_WIDTH:
        console.print(Text(title, style="bold"))
        for event in events:
            line = Text(f"{event.seq:>4} {event.occurred_at[11:19]} {event.actor} {event.channel} {event.action} ")
            line.append(event.outcome, style=OUTCOME_STYLES.get(event.outcome, ""))
            line.append(f" · {event.summary}")
            console.print(line, soft_wrap=True)
        return

    table = Table(title=title, box=box.SIMPLE_HEAD)
    for column in ("seq", "time (UTC)", "actor", "channel", "action", "outcome"):
        table.add_column(column, no_wrap=True)
    table.add_column("summary", overflow="fold")
    for event in events:
        table.add_row(
            str(event.seq),
            event.occurred_at[11:19],
            event.actor,
            event.channel,
            event.action,
            Text(event.outcome, style=OUTCOME_STYLES.get(event.outcome, "")),
            Text(event.summary),
        )
    console.print(table)


@activity_app.command("list")
def list_(
    ctx: typer.Context,
    draft: Annotated[int | None, typer.Option(help="Only events about this draft id.")] = None,
    action: Annotated[str, typer.Option(help="Only events of this tool or command name, e.g. approve_draft.")] = "",
    outcome: Annotated[str, typer.Option(help="Only events with this outcome: ok, denied, invalid, conflict or error.")] = "",
    limit: Annotated[int, typer.Option(help="Maximum number of events to show.", min=1, max=100_000)] = 100,
    start: Annotated[
        int | None,
        typer.Option("--from", help="List forward from this sequence number instead of showing the newest events.", min=1),
    ] = None,
    cursor: Annotated[
        str, typer.Option(help="List forward from where a previous listing stopped, as printed after 'More events:'.")
    ] = "",
) -> None:
    """Show the activity timeline in sequence order.

    Without --from or --cursor it shows the newest --limit events, the most recent last.
    """
    settings = settings_of(ctx)
    if start is not None and cursor:
        raise fail("Pass either --from or --cursor, not both, because each sets where the listing starts.", exit_code=InvalidInputError.exit_code)

    async def step() -> tuple[ActivityPage, ActivityWindow | None]:
        async with signed_in(settings) as (app, caller):
            window = None
            after = cursor or None
            count = limit
            if start is not None:
                after = encode_cursor("list_activity", start - 1)
            elif not cursor:
                window = await admin.find_newest_activity(
                    app, caller, draft_id=draft, action=action, outcome=outcome, newest=limit
                )
                after = None if window.start_after is None else encode_cursor("list_activity", window.start_after)
                # Capped at the count so the listing ends where the window was taken,
                # before the event that find_newest_activity itself recorded.
                count = min(limit, window.matching)
                if count == 0:
                    return ActivityPage(events=[], next_cursor=None), window
            listing = await read_timeline(
                app, caller, draft_id=draft, action=action, outcome=outcome, limit=count, cursor=after
            )
            return listing, window

    listing, window = execute(step)
    events = listing.events
    if window is not None and window.start_after is not None:
        print_timeline(out(), events, title=f"Newest {len(events)} of {window.matching} activity events")
        say(f"{window.matching - len(events)} older events are not shown. List them from the first with --from 1.")
        return

    print_timeline(out(), events, title=f"{len(events)} activity events")
    # A listing of the newest events gives no cursor, because the only later events
    # are this command's own reads and whatever ran at the same moment.
    if window is None and listing.next_cursor:
        say(f"More events: --cursor {listing.next_cursor}")


@activity_app.command("show")
def show(ctx: typer.Context, seq: Annotated[int, typer.Argument(help="Sequence number of the event.")]) -> None:
    """Show every stored field of one event, including its arguments and hashes."""
    settings = settings_of(ctx)

    async def step() -> ActivityDetail:
        async with signed_in(settings) as (app, caller):
            return await admin.get_activity_event(app, caller, seq=seq)

    event = execute(step)
    for name, value in event.model_dump().items():
        shown = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
        say(f"{name}: {shown}")


@activity_app.command("verify")
def verify(ctx: typer.Context) -> None:
    """Recompute the hash chain and name the first event that was changed, removed or reordered."""
    settings = settings_of(ctx)

    async def step() -> ChainCheck:
        async with signed_in(settings) as (app, caller):
            return await admin.check_activity_chain(app, caller)

    report = execute(step)
    if report.first_broken_seq is not None:
        raise fail(
            f"Activity chain broken at seq {report.first_broken_seq}: {report.problem}. "
            f"{report.events_checked} events before it verified.",
            exit_code=CHECK_FAILED_EXIT,
        )
    say(f"Activity chain intact: {report.events_checked} events verified.", style="green")


@activity_app.command("export")
def export(
    ctx: typer.Context,
    output: Annotated[Path | None, typer.Option(help="File to write the JSON lines to; stdout when left out.")] = None,
) -> None:
    """Export every event as JSON lines, oldest first (needs the export scope)."""
    settings = settings_of(ctx)

    async def step() -> ActivityExport:
        async with signed_in(settings) as (app, caller):
            return await admin.export_activity(app, caller)

    exported = execute(step)
    lines = [admin.export_line(event) + "\n" for event in exported.events]
    if output is None:
        typer.echo("".join(lines), nl=False)
        return
    output.write_text("".join(lines), encoding="utf-8")
    say(f"Wrote {len(lines)} events to {output}.")

"""The `activity` commands: the timeline, one event in full, chain verification, checkpoints and export."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from order3_mcp.app import Caller, Order3
from order3_mcp.commands._runtime import (
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
    ActivityCheckpoint,
    ActivityDetail,
    ActivityExport,
    ChainCheck,
)
from order3_mcp.services.history import ActivityQuery
from store.activity import BREAK_REWRITTEN, BREAK_TRUNCATED
from store.activity_checkpoint import parse_checkpoint
from store.errors import ChainBrokenError, InvalidInputError

activity_app = typer.Typer(help="Inspect, verify and export the activity history.", no_args_is_help=True)


async def read_timeline(
    app: Order3,
    caller: Caller,
    *,
    query: ActivityQuery,
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
            query=query,
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
OUTCOME_STYLES = {"ok": "green", "replayed": "cyan", "denied": "red", "invalid": "yellow", "conflict": "yellow", "error": "red"}


def _actor_label(event: ActivityOut) -> str:
    return f"{event.actor} for {event.on_behalf_of}" if event.on_behalf_of else event.actor


def _client_label(event: ActivityOut) -> str:
    # The client name is whatever the MCP client sent, so it is never printed without this mark.
    return f"{event.client_name_unverified} (unverified)" if event.client_name_unverified else ""


def print_timeline(console: Console, events: list[ActivityOut], *, title: str) -> None:
    """Print the events as a timeline: seq, time, actor, client, channel, action, outcome, summary.

    The client column appears only when an event on the page has a client name.
    """
    if console.width < TABLE_MIN_WIDTH:
        console.print(Text(title, style="bold"))
        for event in events:
            line = Text(f"{event.seq:>4} {event.occurred_at[11:19]} {_actor_label(event)} ")
            if event.client_name_unverified:
                line.append(f"via {_client_label(event)} ")
            line.append(f"{event.channel} {event.action} ")
            line.append(event.outcome, style=OUTCOME_STYLES.get(event.outcome, ""))
            line.append(f" · {event.summary}")
            console.print(line, soft_wrap=True)
        return

    with_client = any(event.client_name_unverified for event in events)
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for column in ("seq", "time (UTC)", "actor"):
        table.add_column(column, no_wrap=True)
    if with_client:
        table.add_column("client", overflow="fold")
    for column in ("channel", "action", "outcome"):
        table.add_column(column, no_wrap=True)
    table.add_column("summary", overflow="fold")
    for event in events:
        cells: list[str | Text] = [str(event.seq), event.occurred_at[11:19], Text(_actor_label(event))]
        if with_client:
            cells.append(Text(_client_label(event)))
        cells += [
            event.channel,
            event.action,
            Text(event.outcome, style=OUTCOME_STYLES.get(event.outcome, "")),
            Text(event.summary),
        ]
        table.add_row(*cells)
    console.print(table)


ActorOption = Annotated[str, typer.Option(help="Only events by this principal: a name, or KIND:NAME such as agent:buyer-bot.")]
ActionOption = Annotated[str, typer.Option(help="Only events of this tool or command name, e.g. approve_draft.")]
OutcomeOption = Annotated[str, typer.Option(help="Only events with this outcome: ok, replayed, denied, invalid, conflict, error or cancelled.")]
DraftOption = Annotated[int | None, typer.Option(help="Only events about this draft id.")]
RecordOption = Annotated[
    str,
    typer.Option(
        help="Only events that affected this record, as KIND:ID, e.g. draft:3, purchase_order:7 or item:WIDGET-1 "
        "(items take a SKU, locations and suppliers a code)."
    ),
]
SinceOption = Annotated[
    str, typer.Option(help="Only events at or after this ISO 8601 time with a UTC offset, e.g. 2026-03-01T09:00:00+01:00.")
]
UntilOption = Annotated[str, typer.Option(help="Only events before this ISO 8601 time with a UTC offset, e.g. 2026-03-02T00:00:00Z.")]


def activity_query(
    *, actor: str, action: str, outcome: str, draft: int | None, record: str, since: str, until: str
) -> ActivityQuery:
    """Return the filters of the `activity` options, splitting --record KIND:ID.

    Raises:
        typer.Exit: With the invalid-input code when --record has no colon.
    """
    record_kind, record_id = "", ""
    if record.strip():
        record_kind, separator, record_id = record.strip().partition(":")
        if not separator or not record_kind or not record_id:
            raise fail(
                f"--record {record!r} is not KIND:ID; write it like draft:3 or item:WIDGET-1.",
                exit_code=InvalidInputError.exit_code,
            )
    return ActivityQuery(
        actor=actor,
        action=action,
        outcome=outcome,
        draft_id=draft,
        record_kind=record_kind,
        record_id=record_id,
        since=since,
        until=until,
    )


@activity_app.command("list")
def list_(
    ctx: typer.Context,
    actor: ActorOption = "",
    action: ActionOption = "",
    outcome: OutcomeOption = "",
    draft: DraftOption = None,
    record: RecordOption = "",
    since: SinceOption = "",
    until: UntilOption = "",
    limit: Annotated[int, typer.Option(help="Maximum number of events to show.", min=1, max=100_000)] = 100,
    start: Annotated[
        int | None,
        typer.Option("--from", help="List forward from this sequence number instead of showing the newest events.", min=1),
    ] = None,
    cursor: Annotated[
        str, typer.Option(help="List forward from where a previous listing stopped, as printed after 'More events:'.")
    ] = "",
) -> None:
    """Show the activity timeline in sequence order; all filters combine.

    Without --from or --cursor it shows the newest --limit events, the most recent last.
    """
    settings = settings_of(ctx)
    if start is not None and cursor:
        raise fail("Pass either --from or --cursor, not both, because each sets where the listing starts.", exit_code=InvalidInputError.exit_code)
    query = activity_query(actor=actor, action=action, outcome=outcome, draft=draft, record=record, since=since, until=until)

    async def step() -> history.ActivityTimeline:
        async with signed_in(settings) as (app, caller):
            after = encode_cursor("list_activity", start - 1) if start is not None else cursor or None
            newest = start is None and not cursor
            return await history.read_activity_timeline(app, caller, query=query, limit=limit, cursor=after, newest=newest)

    timeline = execute(step)
    events = timeline.events
    if timeline.matching is not None and timeline.older:
        print_timeline(out(), events, title=f"Newest {len(events)} of {timeline.matching} activity events")
        say(f"{timeline.older} older events are not shown. List them from the first with --from 1.")
        return

    print_timeline(out(), events, title=f"{len(events)} activity events")
    if timeline.next_cursor:
        say(f"More events: --cursor {timeline.next_cursor}")


@activity_app.command("show")
def show(ctx: typer.Context, seq: Annotated[int, typer.Argument(help="Sequence number of the event.")]) -> None:
    """Show every stored field of one event, including its arguments and hashes."""
    settings = settings_of(ctx)

    async def step() -> ActivityDetail:
        async with signed_in(settings) as (app, caller):
            return await admin.get_activity_event(app, caller, seq=seq)

    event = execute(step)
    for name, value in event.model_dump().items():
        if name == "client_name_unverified":
            say(f"client_name (unverified): {value}" if value else "client_name (unverified):")
            continue
        shown = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
        say(f"{name}: {shown}")


@activity_app.command("verify")
def verify(
    ctx: typer.Context,
    checkpoint: Annotated[
        str,
        typer.Option(
            help="Also check the chain against a checkpoint from `order3 activity checkpoint`: its string, or the "
            "file written with --output. This detects a truncated or fully rehashed log."
        ),
    ] = "",
) -> None:
    """Recompute the hash chain and name the first event that was changed, removed or reordered.

    Exits 0 when the chain (and the checkpoint, if given) verifies, and 7 when it is broken.
    """
    settings = settings_of(ctx)

    async def step() -> ChainCheck:
        async with signed_in(settings) as (app, caller):
            return await admin.check_activity_chain(app, caller, checkpoint=checkpoint)

    report = execute(step)
    if report.first_broken_seq is not None:
        message = f"Activity chain broken at seq {report.first_broken_seq} ({report.kind}): {report.problem}."
        if report.kind not in (BREAK_TRUNCATED, BREAK_REWRITTEN):
            message += f" {report.events_checked} events before it verified."
        raise fail(message, exit_code=ChainBrokenError.exit_code)
    if report.checkpoint:
        seq = parse_checkpoint(report.checkpoint).seq
        say(
            f"Activity chain intact: {report.events_checked} events verified, and event {seq} still has the checkpoint's hash.",
            style="green",
        )
        return
    say(f"Activity chain intact: {report.events_checked} events verified.", style="green")


@activity_app.command("checkpoint")
def checkpoint_(
    ctx: typer.Context,
    output: Annotated[Path | None, typer.Option(help="Also write the checkpoint to this file as JSON.")] = None,
) -> None:
    """Verify the chain and print its head as a checkpoint to keep outside the database.

    Store the checkpoint string where people who can write the database cannot
    change it (a ticket, another system), and later pass it to
    `order3 activity verify --checkpoint`.
    """
    settings = settings_of(ctx)

    async def step() -> ActivityCheckpoint:
        async with signed_in(settings) as (app, caller):
            return await admin.take_activity_checkpoint(app, caller)

    head = execute(step)
    say(f"Workspace:  {head.workspace}")
    say(f"Last seq:   {head.seq}")
    say(f"Head hash:  {head.hash}")
    say(f"Taken at:   {head.taken_at}")
    say(f"Checkpoint: {head.checkpoint}")
    if output is not None:
        try:
            output.write_text(json.dumps(head.model_dump(), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise fail(
                f"Could not write the checkpoint to {str(output)!r}: {exc.strerror}. The checkpoint is printed above.",
                exit_code=InvalidInputError.exit_code,
            ) from None
        say(f"Wrote the checkpoint to {output}.")
    say("Keep it outside this database; check it later with `order3 activity verify --checkpoint`.")


@activity_app.command("export")
def export(
    ctx: typer.Context,
    output: Annotated[Path | None, typer.Option(help="File to write the JSON lines to; stdout when left out.")] = None,
    actor: ActorOption = "",
    action: ActionOption = "",
    outcome: OutcomeOption = "",
    draft: DraftOption = None,
    record: RecordOption = "",
    since: SinceOption = "",
    until: UntilOption = "",
) -> None:
    """Export the events that match the filters (every event without any) as JSON lines, oldest first.

    Needs the export scope. Each line contains every stored field, hashes included.
    """
    settings = settings_of(ctx)
    query = activity_query(actor=actor, action=action, outcome=outcome, draft=draft, record=record, since=since, until=until)
    if output is not None:
        check_output_file(output)

    async def step() -> ActivityExport:
        async with signed_in(settings) as (app, caller):
            return await admin.export_activity(app, caller, query=query)

    exported = execute(step)
    lines = [admin.export_line(event) + "\n" for event in exported.events]
    if output is None:
        typer.echo("".join(lines), nl=False)
        return
    try:
        output.write_text("".join(lines), encoding="utf-8")
    except OSError as exc:
        raise fail(f"Could not write the export to {str(output)!r}: {exc.strerror}.", exit_code=InvalidInputError.exit_code) from None
    say(f"Wrote {len(lines)} events to {output}.")


def check_output_file(output: Path) -> None:
    """Check that `output` can be created or replaced, before anything is read or recorded.

    Raises:
        typer.Exit: With the invalid-input code when `output` is a directory, or
            its parent directory is missing or not writable.
    """
    parent = output.parent if str(output.parent) else Path(".")
    if output.is_dir():
        raise fail(f"--output {str(output)!r} is a directory; name a file inside it, such as {str(output / 'activity.jsonl')!r}.", exit_code=InvalidInputError.exit_code)
    if not parent.is_dir():
        raise fail(f"--output {str(output)!r}: directory {str(parent)!r} does not exist; create it first or choose another path.", exit_code=InvalidInputError.exit_code)
    if not os.access(parent, os.W_OK | os.X_OK) or (output.exists() and not os.access(output, os.W_OK)):
        raise fail(f"--output {str(output)!r} is not writable by this user; choose another path.", exit_code=InvalidInputError.exit_code)

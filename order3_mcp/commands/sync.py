"""The `sync` commands: feed an integration's batch file through the same path as the MCP tool."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from order3_mcp.commands._runtime import (
    execute,
    keyed,
    out,
    say,
    say_replayed,
    settings_of,
    signed_in,
)

sync_app = typer.Typer(help="Ingest channel and accounting snapshots from integrations.", no_args_is_help=True)


@sync_app.command("ingest")
def ingest(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="JSON batch file: {source, batch_id, records: [...]}; see docs/sync.md.")],
) -> None:
    """Compare each record with Order3 and record its outcome; disagreements open exceptions (sync scope)."""
    from order3_mcp.services import sync

    settings = settings_of(ctx)

    async def step() -> tuple[sync.IngestResult, str | None]:
        async with signed_in(settings) as (app, caller):
            return await keyed(sync.ingest_file(app, caller, path=path))

    result, replayed = execute(step)
    say_replayed(replayed, "batch")
    say(
        f"Batch {result.batch_id!r} from {result.source}: {result.received} records, {result.agreed} agreed, "
        f"{result.mismatch} mismatch, {result.conflict} conflict, {result.applied} applied, "
        f"{result.stale} stale, {result.invalid} invalid."
    )
    table = Table()
    for column in ("external id", "kind", "outcome", "exception"):
        table.add_column(column, no_wrap=True)
    table.add_column("detail", ratio=1)
    for record in result.records:
        table.add_row(
            record.external_id, record.kind, record.outcome, str(record.exception_id or ""), record.detail
        )
    out().print(table)
    if result.records_omitted:
        say(f"{result.records_omitted} agreed records are not shown; every record is stored with its outcome.")

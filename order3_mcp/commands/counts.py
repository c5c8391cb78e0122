"""The `count` commands: list and show count tasks, and submit what was counted.

Counting is blind by default: neither `show` nor `submit` prints the expected
quantities or variances unless `--show-expected` is given.
"""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

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
from order3_mcp.operator_schemas import CountTaskOut, CountTaskPage
from order3_mcp.services import count_tasks
from order3_mcp.services.count_tasks import CountEntry
from store.errors import InvalidInputError

count_app = typer.Typer(help="Count tasks: list them, show one, and submit the counted quantities.", no_args_is_help=True)

TaskId = Annotated[int, typer.Argument(help="Count task id, from `count list` or the executed draft's result.")]
ShowExpected = Annotated[
    bool,
    typer.Option("--show-expected", help="Print the on hand snapshot and the variances; by default the count is blind."),
]
# Most count rows read from one --file; a count task has at most 100 lines.
MAX_FILE_ROWS = 1000


def _split_key(key: str) -> tuple[str, str]:
    """Split "SKU" or "SKU@BIN" at the last "@"."""
    sku, at, bin_code = key.rpartition("@")
    return (sku, bin_code) if at else (key, "")


def entries_from_options(lines: list[str]) -> list[CountEntry]:
    """Turn `--line SKU=QTY` and `--line SKU@BIN=QTY` values into count entries.

    Raises:
        InvalidInputError: For a value without "=" or without a SKU.
    """
    entries = []
    for value in lines:
        key, equals, counted = value.rpartition("=")
        sku, bin_code = _split_key(key.strip())
        if not equals or not sku.strip():
            raise InvalidInputError(f"--line {value!r} is not SKU=QTY; write for example --line WIDGET-1=12 or --line WIDGET-1@A1=12.")
        entries.append(CountEntry(sku=sku.strip(), bin=bin_code.strip(), counted=counted.strip(), source=f"--line {value!r}"))
    return entries


def _counted_text(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InvalidInputError(f"{where}: counted {value!r} is not a number; write it as 12 or \"12.5\".")
    return str(value)


def entries_from_file(path: Path) -> list[CountEntry]:
    """Read count entries from a JSON or CSV file, chosen by the .json suffix.

    JSON is a list of {"sku", "bin", "counted"} objects, or an object mapping
    "SKU" or "SKU@BIN" to the counted quantity. CSV has a header row with the
    columns sku and counted, and optionally bin.

    Raises:
        InvalidInputError: If the file cannot be read or does not have that shape.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"Cannot read counts file {str(path)!r}: {exc}; pass a UTF-8 CSV or JSON file.") from None
    if path.suffix.lower() == ".json":
        return _entries_from_json(text, path.name)
    return _entries_from_csv(text, path.name)


def _entries_from_json(text: str, name: str) -> list[CountEntry]:
    try:
        document = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{name} is not valid JSON ({exc}); see `order3 count submit --help` for the format.") from None
    entries: list[CountEntry] = []
    if isinstance(document, dict):
        for key, value in document.items():
            sku, bin_code = _split_key(str(key).strip())
            where = f"{name} key {key!r}"
            entries.append(CountEntry(sku=sku, bin=bin_code, counted=_counted_text(value, where), source=where))
    elif isinstance(document, list):
        for index, row in enumerate(document):
            where = f"{name} item {index}"
            if not isinstance(row, dict) or "sku" not in row or "counted" not in row:
                raise InvalidInputError(f"{where} is not an object with sku and counted; write {{\"sku\": \"WIDGET-1\", \"counted\": 12}}.")
            entries.append(
                CountEntry(
                    sku=str(row["sku"]).strip(),
                    bin=str(row.get("bin") or "").strip(),
                    counted=_counted_text(row["counted"], where),
                    source=where,
                )
            )
    else:
        raise InvalidInputError(f"{name} must contain a JSON list or object of counts, not {type(document).__name__}.")
    if len(entries) > MAX_FILE_ROWS:
        raise InvalidInputError(f"{name} has {len(entries)} counts; a file may hold at most {MAX_FILE_ROWS}.")
    return entries


def _entries_from_csv(text: str, name: str) -> list[CountEntry]:
    reader = csv.DictReader(text.splitlines())
    columns = {(column or "").strip().lower() for column in reader.fieldnames or []}
    if not {"sku", "counted"} <= columns:
        raise InvalidInputError(
            f"{name} needs a header row with the columns sku and counted (and optionally bin); it has "
            f"{', '.join(sorted(c for c in columns if c)) or 'no header'}."
        )
    entries: list[CountEntry] = []
    for row_no, row in enumerate(reader, start=2):
        if row_no - 1 > MAX_FILE_ROWS:
            raise InvalidInputError(f"{name} has more than {MAX_FILE_ROWS} rows; a count task has at most 100 lines.")
        clean = {(key or "").strip().lower(): (value or "").strip() for key, value in row.items() if isinstance(value, str)}
        if not any(clean.values()):
            continue
        entries.append(
            CountEntry(sku=clean.get("sku", ""), bin=clean.get("bin", ""), counted=clean.get("counted", ""), source=f"{name} row {row_no}")
        )
    return entries


def print_task(task: CountTaskOut) -> None:
    """Print a count task's lines; expected quantities and variances only when the task carries them."""
    table = Table(title=f"Count task {task.task_id} at {task.location} ({task.status})")
    columns = ["line", "sku", "bin"] + (["expected"] if task.expected_shown else []) + ["counted"]
    columns += (["variance"] if task.expected_shown else []) + ["correction movement"]
    for column in columns:
        table.add_column(column)
    for line in task.lines:
        row = [str(line.line_no), line.sku, line.bin]
        if task.expected_shown:
            row.append(line.expected or "")
        row.append(line.counted if line.counted is not None else "")
        if task.expected_shown:
            row.append(line.variance if line.variance is not None else "")
        row.append(str(line.movement_id) if line.movement_id is not None else "")
        table.add_row(*row)
    out().print(table)
    if not task.expected_shown:
        say("Expected quantities are hidden for a blind count; pass --show-expected to see them.")


@count_app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[str, typer.Option(help="Only tasks in this status: open or applied.")] = "",
    limit: Annotated[int, typer.Option(help="Tasks per page, 1 to 100.")] = 50,
    cursor: Annotated[str, typer.Option(help="Cursor printed at the end of the previous page.")] = "",
) -> None:
    """List count tasks with their status, location and number of lines."""
    settings = settings_of(ctx)

    async def step() -> CountTaskPage:
        async with signed_in(settings) as (app, caller):
            return await count_tasks.list_count_tasks(app, caller, status=status, cursor=cursor, limit=limit)

    listing = execute(step)
    table = Table(title=f"{len(listing.tasks)} count tasks")
    for column in ("id", "status", "location", "lines", "assignee", "due", "title"):
        table.add_column(column)
    for task in listing.tasks:
        table.add_row(
            str(task.task_id), task.status, task.location, str(task.lines), Text(visible(task.assignee)), task.due_date or "",
            Text(visible(task.title)),
        )
    out().print(table)
    if listing.next_cursor:
        say(f"More count tasks: --cursor {listing.next_cursor}")


@count_app.command("show")
def show(ctx: typer.Context, task_id: TaskId, show_expected: ShowExpected = False) -> None:
    """Show a count task and its lines, without expected quantities unless --show-expected is given."""
    settings = settings_of(ctx)

    async def step() -> CountTaskOut:
        async with signed_in(settings) as (app, caller):
            return await count_tasks.get_count_task(app, caller, task_id=task_id, show_expected=show_expected)

    task = execute(step)
    # The title and assignee come from the drafter, often an agent, so they are printed escaped.
    say(f"Count task {task.task_id}: {visible(task.title)}", style="bold")
    say(f"Status: {task.status}    Location: {task.location}    Created by {task.created_by} at {task.created_at}")
    if task.assignee or task.due_date:
        say(f"Assignee: {visible(task.assignee) or '-'}    Due: {task.due_date or '-'}")
    if task.submitted_at:
        say(f"Submitted by {task.submitted_by} at {task.submitted_at}")
    print_task(task)


@count_app.command("submit")
def submit(
    ctx: typer.Context,
    task_id: TaskId,
    line: Annotated[
        list[str] | None,
        typer.Option("--line", help="A counted quantity as SKU=QTY, or SKU@BIN=QTY when the task counts the item in several bins. Repeat for each line."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Counts from a CSV file with columns sku, counted and optional bin, or a JSON file (list of {sku, bin, counted}, or {\"SKU\": QTY})."),
    ] = None,
    show_expected: ShowExpected = False,
    idempotency_key: IdempotencyKeyOption = None,
) -> None:
    """Submit the counted quantity of every line of an open count task and apply it.

    Each variance is counted − the on hand snapshot taken when the task was
    created, and is posted at once as a count-correction movement. A task is
    submitted once; a second submission is refused as a conflict.
    """
    settings = settings_of(ctx)

    async def step() -> tuple[CountTaskOut, str | None]:
        entries = entries_from_options(line or [])
        if file is not None:
            entries += entries_from_file(file)
        async with signed_in(settings) as (app, caller):
            return await keyed(
                count_tasks.submit_counts(
                    app, caller, task_id=task_id, entries=entries, show_expected=show_expected, idempotency_key=idempotency_key
                )
            )

    task, replayed = execute(step)
    say_replayed(replayed, "count submission")
    corrected = sum(1 for counted in task.lines if counted.movement_id is not None)
    say(
        f"Submitted count task {task.task_id} at {task.location}: {len(task.lines)} line(s) counted, "
        f"{corrected} corrected by a count-correction movement.",
        style="green",
    )
    print_task(task)

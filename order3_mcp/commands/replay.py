"""The `replay` commands: run scenario files against fresh databases, and record a session's activity as a scenario."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import click
import typer
import yaml
from typer.core import TyperGroup

from order3_mcp.commands._database import connect
from order3_mcp.commands._runtime import err, execute, fail, say, settings_of
from order3_mcp.replay.clock import parse_moment
from order3_mcp.replay.format import (
    Scenario,
    ScenarioFileError,
    collect_paths,
    load_scenario,
)
from order3_mcp.replay.report import text_report, write_junit
from order3_mcp.replay.runner import ScenarioReport, run_scenario
from order3_mcp.replay.sessions import TRANSPORTS
from store.errors import Order3Error
from store.pg_scratch import server_url

# Exit codes: 0 when every scenario passes or is skipped, 1 when one fails, 2 for an invalid scenario file.
FAILED_EXIT = 1
INVALID_EXIT = 2


class _RunByDefault(TyperGroup):
    """A group whose arguments go to `run` unless they start with a subcommand name, so `order3 replay PATH` works."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


replay_app = typer.Typer(
    cls=_RunByDefault,
    help="Replay fixture scenarios on fresh databases (`order3 replay PATH...`), or record a session as a scenario.",
    no_args_is_help=True,
)


async def _run_all(
    scenarios: list[Scenario], *, transport: str, show_progress: bool, postgres: str | None
) -> list[ScenarioReport]:
    reports = []
    if not show_progress:
        for scenario in scenarios:
            reports.append(await run_scenario(scenario, transport=transport, postgres=postgres))
        return reports

    from rich.progress import Progress

    with Progress(transient=True) as progress:
        task = progress.add_task("Replaying", total=len(scenarios))
        for scenario in scenarios:
            progress.update(task, description=scenario.name[:40])
            reports.append(await run_scenario(scenario, transport=transport, postgres=postgres))
            progress.advance(task)
    return reports


@replay_app.command("run")
def run(
    paths: Annotated[list[Path], typer.Argument(help="Scenario files, or directories searched for .yaml, .yml and .json scenarios.")],
    transport: Annotated[str, typer.Option(help=f"How steps reach the MCP server: {' or '.join(TRANSPORTS)} (an `order3 serve` subprocess per token).")] = "memory",
    junit: Annotated[Path | None, typer.Option(help="Also write a JUnit XML report to this file.")] = None,
    timings: Annotated[bool, typer.Option("--timings", help="Show how long each scenario took; the report then differs between runs.")] = False,
    postgres: Annotated[
        str | None,
        typer.Option(help="Run each scenario on a new database on this PostgreSQL server (any URL on it), dropped afterwards."),
    ] = None,
) -> None:
    """Run scenarios, each on a fresh temporary SQLite database (or PostgreSQL database), and print a pass/fail report.

    Exit code 0 when all pass (or are skipped), 1 when any fails, 2 when a scenario file is invalid.
    """
    if transport not in TRANSPORTS:
        raise fail(f"Transport {transport!r} is unknown; use {' or '.join(TRANSPORTS)}.", exit_code=INVALID_EXIT)
    # Refusals the scenarios provoke are logged at INFO; configuring logging first keeps
    # the in-memory servers from installing their own INFO handler on stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        # Every file is validated before any runs, so a typo never leaves half a suite run.
        if postgres is not None:
            server_url(postgres)
        scenarios = [load_scenario(path) for path in collect_paths(paths)]
        show_progress = len(scenarios) > 1 and sys.stdout.isatty()
        reports = anyio.run(lambda: _run_all(scenarios, transport=transport, show_progress=show_progress, postgres=postgres))
    except ScenarioFileError as exc:
        raise fail(f"Invalid scenario:\n{exc.message}", exit_code=INVALID_EXIT) from None
    except Order3Error as exc:
        raise fail(exc.message, exit_code=exc.exit_code) from None

    sys.stdout.write(text_report(reports, timings=timings))
    sys.stdout.flush()
    if junit is not None:
        write_junit(junit, reports, timings=timings)
    if any(report.status == "failed" for report in reports):
        raise typer.Exit(code=FAILED_EXIT)


def _moment(value: str | None, option: str) -> Any:
    if value is None:
        return None
    return parse_moment(value, what=option)


@replay_app.command("record")
def record(
    ctx: typer.Context,
    workspace: Annotated[str, typer.Option(help="Workspace whose activity is recorded.")],
    dataset: Annotated[str, typer.Option(help="Dataset file the session started from, written into the scenario as given (relative to the output file).")],
    output: Annotated[Path, typer.Option(help="Scenario file to write (.yaml or .json); an existing file is replaced.")],
    since: Annotated[str | None, typer.Option("--from", help="Earliest event time to record, ISO 8601 with an offset.")] = None,
    until: Annotated[str | None, typer.Option("--to", help="Latest event time to record, ISO 8601 with an offset.")] = None,
    token: Annotated[int | None, typer.Option("--token", help="Only events made with this token id (`order3 token list` shows ids).")] = None,
    name: Annotated[str, typer.Option(help="Scenario name; default: 'recorded session of workspace NAME'.")] = "",
) -> None:
    """Turn a session's activity history into a replay scenario.

    Reads the --db database directly; setup actions (init, import, tokens,
    policies) are left to the dataset and the scenario's tokens.
    """
    from order3_mcp.replay.recorder import record_session

    settings = settings_of(ctx)

    async def step() -> Any:
        start, end = _moment(since, "--from"), _moment(until, "--to")
        database = await connect(settings.db)
        try:
            return await record_session(database, workspace=workspace, dataset=dataset, start=start, end=end, token_id=token, name=name)
        finally:
            await database.dispose()

    recording = execute(step)
    if output.suffix == ".json":
        text = json.dumps(recording.document, indent=2, ensure_ascii=False) + "\n"
    else:
        text = yaml.safe_dump(recording.document, sort_keys=False, allow_unicode=True, width=120)
    output.write_text(text, encoding="utf-8")
    for reason in recording.skipped:
        err().print(f"Left out {reason}.", soft_wrap=True, markup=False)
    say(f"Wrote {len(recording.document['steps'])} steps to {output}.")

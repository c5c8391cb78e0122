"""Commands that set a workspace up and check it: init, import inventree, verify."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from order3_mcp.commands._runtime import (
    CHECK_FAILED_EXIT,
    connect,
    execute,
    fail,
    say,
    settings_of,
    signed_in,
)
from order3_mcp.services import admin
from order3_mcp.services.admin import InitResult, LedgerCheck, ReportLines

import_app = typer.Typer(help="Import records from another inventory system.", no_args_is_help=True)


def init(
    ctx: typer.Context,
    workspace: Annotated[str, typer.Option(help="Name of the workspace to create.")] = "main",
    currency: Annotated[str, typer.Option(help="Base currency (ISO 4217) for spend and value thresholds.")] = "USD",
    timezone: Annotated[str, typer.Option(help="IANA timezone for business dates such as 'today' and due dates.")] = "UTC",
    admin_name: Annotated[str, typer.Option("--admin", help="Name of the first admin user, who gets the printed token.")] = "admin",
) -> None:
    """Create the database tables, a workspace and its first admin token."""
    settings = settings_of(ctx)

    async def step() -> InitResult:
        database = await connect(settings.db, create=True)
        try:
            return await admin.init_workspace(
                database, workspace=workspace, base_currency=currency, timezone=timezone, admin=admin_name
            )
        finally:
            await database.dispose()

    result = execute(step)
    say(f"Created workspace {result.workspace!r} ({result.base_currency}, {result.timezone}).")
    say(f"Admin token for {result.admin!r} (token id {result.token_id}):")
    say(result.secret, style="bold")
    say("Store this token now: it is not shown again. Use it with ORDER3_TOKEN=<token> or --token.", style="yellow")


@import_app.command("inventree")
def import_inventree(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="InvenTree fixture export (a Django JSON dump).")],
) -> None:
    """Import an InvenTree export in one transaction and print what was imported and skipped."""
    settings = settings_of(ctx)

    async def step() -> ReportLines:
        async with signed_in(settings) as (app, caller):
            return await admin.import_inventree_file(app, caller, path=file)

    for line in execute(step).lines:
        say(line)


def verify(ctx: typer.Context) -> None:
    """Check that every stock level equals the sum of its movements, and that stored exceptions match a recomputation."""
    settings = settings_of(ctx)

    async def step() -> LedgerCheck:
        async with signed_in(settings) as (app, caller):
            return await admin.check_stock_ledger(app, caller)

    report = execute(step)
    say(f"Stock levels checked: {report.levels_checked}")
    say(f"Mismatches: {len(report.mismatches)}")
    for line in report.mismatches:
        say(f"  {line}", style="red")
    compared = ", ".join(f"{kind} ({count} found)" for kind, count in report.findings_checked.items()) or "none"
    say(f"Stored exceptions compared with a recomputation: {compared}")
    if report.findings_skipped:
        say(
            f"Not compared, because they are due for a rerun (never run, or written to, a new business date or "
            f"another policy since): {', '.join(report.findings_skipped)}. `order3 exceptions list` reruns them."
        )
    say(f"Differences: {len(report.findings_differences)}")
    for line in report.findings_differences:
        say(f"  {line}", style="red")
    if report.mismatches:
        raise fail("The stock ledger does not match the stock levels; see the mismatches above.", exit_code=CHECK_FAILED_EXIT)
    if report.findings_differences:
        raise fail(
            "The stored exceptions differ from what the finders find now; see the differences above. "
            "Rerun the finders over every item with `order3 exceptions list --refresh`, and report the differences "
            "if they persist.",
            exit_code=CHECK_FAILED_EXIT,
        )

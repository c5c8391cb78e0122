"""The `order3` command-line tool: one typer app over the same services as the MCP tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from order3_mcp.commands._runtime import CliSettings, execute
from order3_mcp.commands.activity import activity_app
from order3_mcp.commands.counts import count_app
from order3_mcp.commands.drafts import drafts_app
from order3_mcp.commands.exceptions import exceptions_app
from order3_mcp.commands.receiving import receive
from order3_mcp.commands.schema import db_app
from order3_mcp.commands.policy import policy_app
from order3_mcp.commands.rates import rates_app
from order3_mcp.commands.replay import replay_app
from order3_mcp.commands.outbox import outbox_app
from order3_mcp.commands.serve import serve
from order3_mcp.commands.setup import import_app, init, verify
from order3_mcp.commands.sync import sync_app
from order3_mcp.commands.tokens import token_app
from order3_mcp.commands.transfers import transfer_app

app = typer.Typer(
    name="order3",
    help="Order3: inventory tools for MCP agents, with approvals by people.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(help="SQLite file or database URL (postgresql://...). Default: order3/order3.db in the user data directory.", envvar="ORDER3_DB", show_envvar=True),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help="Token secret that identifies you, as printed by `order3 init` or `order3 token create`.", envvar="ORDER3_TOKEN", show_envvar=True, show_default=False),
    ] = None,
) -> None:
    """Keep the global options for the subcommands."""
    ctx.obj = CliSettings(db=db, token=token)


def demo(
    keep: Annotated[
        Path | None, typer.Option(help="Directory to keep the demo database in; by default it is deleted afterwards.")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="InvenTree export to import; default: the InvenTree demo dataset next to the repository.")
    ] = None,
    postgres: Annotated[
        str | None,
        typer.Option(help="PostgreSQL server URL (postgresql://user@host/postgres): run on a new database there, dropped afterwards unless --keep is given."),
    ] = None,
) -> None:
    """Run the end-to-end demo on a fresh database (never the --db one): import, an agent drafts over MCP, a buyer approves."""
    from order3_mcp.demo import run_demo

    execute(lambda: run_demo(keep=keep, data=data, postgres=postgres))


app.command("init")(init)
app.command("serve")(serve)
app.command("verify")(verify)
app.command("demo")(demo)
app.command("receive")(receive)
app.add_typer(import_app, name="import")
app.add_typer(token_app, name="token")
app.add_typer(drafts_app, name="drafts")
app.add_typer(exceptions_app, name="exceptions")
app.add_typer(activity_app, name="activity")
app.add_typer(sync_app, name="sync")
app.add_typer(count_app, name="count")
app.add_typer(policy_app, name="policy")
app.add_typer(rates_app, name="rates")
app.add_typer(transfer_app, name="transfer")
app.add_typer(outbox_app, name="outbox")
app.add_typer(replay_app, name="replay")
app.add_typer(db_app, name="db")


def main() -> None:
    """Run the `order3` command."""
    app()


if __name__ == "__main__":
    main()

"""The `token` commands: create, list and revoke bearer tokens (admin scope)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from order3_mcp.commands._runtime import execute, out, say, settings_of, signed_in
from order3_mcp.services import admin
from order3_mcp.services.admin import TokenCreated, TokenList, TokenOut
from policies import PRINCIPAL_KINDS, ROLES

token_app = typer.Typer(help="Create, list and revoke tokens (needs an admin token).", no_args_is_help=True)


def indefinite_article(word: str) -> str:
    """Return "an" before a word that starts with a vowel (agent, integration) and "a" otherwise."""
    return "an" if word[:1].lower() in ("a", "e", "i", "o", "u") else "a"


@token_app.command("create")
def create(
    ctx: typer.Context,
    principal: Annotated[str, typer.Option(help="Name of the person, agent or integration the token belongs to.")],
    role: Annotated[str, typer.Option(help=f"Role that sets the scopes: {', '.join(ROLES)}.")],
    kind: Annotated[str, typer.Option(help=f"Principal kind: {', '.join(PRINCIPAL_KINDS)}.")] = "user",
    for_person: Annotated[
        str, typer.Option("--for", help="For an agent or integration token: the person it acts for, who then may not approve its drafts.")
    ] = "",
    label: Annotated[str, typer.Option(help="Free-text label shown by `token list`.")] = "",
) -> None:
    """Create a token and print its secret once."""
    settings = settings_of(ctx)

    async def step() -> TokenCreated:
        async with signed_in(settings) as (app, caller):
            return await admin.create_token(
                app, caller, principal=principal, kind=kind, role=role, on_behalf_of=for_person, label=label
            )

    token = execute(step)
    say(f"Created {token.kind} token {token.token_id} for {token.principal!r} with role {token.role}.")
    say(f"Scopes: {', '.join(token.scopes) or 'none'}")
    if token.on_behalf_of:
        say(f"Acts for: {token.on_behalf_of}")
    if token.withheld:
        say(
            f"Withheld: {', '.join(token.withheld)}. {indefinite_article(token.kind).capitalize()} {token.kind} token "
            "never gets approve, execute or admin, whatever its role. A person approves its drafts.",
            style="yellow",
        )
    say(token.secret, style="bold")
    say("Store this token now: it is not shown again.", style="yellow")


@token_app.command("list")
def list_(ctx: typer.Context) -> None:
    """List the workspace's tokens; secrets are never shown, only their first characters."""
    settings = settings_of(ctx)

    async def step() -> TokenList:
        async with signed_in(settings) as (app, caller):
            return await admin.list_workspace_tokens(app, caller)

    tokens = execute(step).tokens
    # The identity columns never wrap, so an 80-column terminal still shows whose
    # each token is. Scopes fold onto more lines, and dates are shown as days.
    table = Table(title=f"{len(tokens)} tokens", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for column in ("id", "prefix", "principal", "kind", "role"):
        table.add_column(column, no_wrap=True)
    table.add_column("scopes", overflow="fold")
    table.add_column("created", width=len("YYYY-MM-DD"))
    for token in tokens:
        principal = token.principal + (f"\nfor {token.on_behalf_of}" if token.on_behalf_of else "")
        dates = token.created_at[:10] + (f"\nrevoked {token.revoked_at[:10]}" if token.revoked_at else "")
        table.add_row(
            str(token.token_id),
            token.prefix + "…",
            principal,
            token.kind,
            token.role,
            ", ".join(token.scopes),
            dates,
        )
    out().print(table)


@token_app.command("revoke")
def revoke(ctx: typer.Context, token_id: Annotated[int, typer.Argument(help="Id of the token, from `token list`.")]) -> None:
    """Revoke a token so it authenticates nothing from now on."""
    settings = settings_of(ctx)

    async def step() -> TokenOut:
        async with signed_in(settings) as (app, caller):
            return await admin.revoke_workspace_token(app, caller, token_id=token_id)

    token = execute(step)
    say(f"Revoked token {token.token_id} ({token.prefix}…) of {token.principal!r} at {token.revoked_at}.")

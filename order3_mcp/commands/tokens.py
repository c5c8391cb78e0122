"""The `token` commands: create, list, rotate and revoke bearer tokens (admin scope)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from order3_mcp.commands._runtime import execute, out, say, settings_of, signed_in
from order3_mcp.services import tokens as token_services
from order3_mcp.services.tokens import TokenCreated, TokenList, TokenOut, TokenRotated
from policies import PRINCIPAL_KINDS, ROLES

token_app = typer.Typer(help="Create, list, rotate and revoke tokens (needs an admin token).", no_args_is_help=True)

EXPIRES_IN_HELP = "Lifetime from now: a whole number of days, hours or minutes, such as 30d, 12h or 90m."
EXPIRES_AT_HELP = "Expiry time in ISO 8601 with a UTC offset, such as 2027-01-31T18:00:00+00:00."


def indefinite_article(word: str) -> str:
    """Return "an" before a word that starts with a vowel (agent, integration) and "a" otherwise."""
    return "an" if word[:1].lower() in ("a", "e", "i", "o", "u") else "a"


def format_minute(stamp: str) -> str:
    """Return an ISO 8601 UTC time cut to the minute, such as "2026-12-05 10:30"."""
    return stamp[:16].replace("T", " ")


def print_secret(token: TokenCreated) -> None:
    """Print what a new token carries, then its secret once."""
    say(f"Scopes: {', '.join(token.scopes) or 'none'}")
    if token.on_behalf_of:
        say(f"Acts for: {token.on_behalf_of}")
    say(f"Expires: {format_minute(token.expires_at)} UTC" if token.expires_at else "Expires: never")
    if token.withheld:
        say(
            f"Withheld: {', '.join(token.withheld)}. {indefinite_article(token.kind).capitalize()} {token.kind} token "
            "never gets approve, execute or admin, whatever its role. A person approves its drafts.",
            style="yellow",
        )
    say(token.secret, style="bold")
    say("Store this token now: it is not shown again.", style="yellow")


@token_app.command("create")
def create(
    ctx: typer.Context,
    principal: Annotated[str, typer.Option(help="Name of the person, agent or integration the token belongs to.")],
    role: Annotated[str, typer.Option(help=f"Role that sets the scopes: {', '.join(ROLES)}.")],
    kind: Annotated[str, typer.Option(help=f"Principal kind: {', '.join(PRINCIPAL_KINDS)}.")] = "user",
    for_person: Annotated[
        str,
        typer.Option(
            "--for",
            help="For an agent or integration token: the user it acts for, who then may not approve its drafts. "
            "That user must already have a token in this workspace.",
        ),
    ] = "",
    label: Annotated[str, typer.Option(help="Free-text label shown by `token list`.")] = "",
    expires_in: Annotated[str, typer.Option(help=EXPIRES_IN_HELP)] = "",
    expires_at: Annotated[str, typer.Option(help=EXPIRES_AT_HELP)] = "",
) -> None:
    """Create a token and print its secret once. Without --expires-in or --expires-at it never expires."""
    settings = settings_of(ctx)

    async def step() -> TokenCreated:
        async with signed_in(settings) as (app, caller):
            return await token_services.create_token(
                app,
                caller,
                principal=principal,
                kind=kind,
                role=role,
                on_behalf_of=for_person,
                label=label,
                expires_in=expires_in,
                expires_at=expires_at,
            )

    token = execute(step)
    say(f"Created {token.kind} token {token.token_id} for {token.principal!r} with role {token.role}.")
    print_secret(token)


def _dates(token: TokenOut) -> Text:
    """Return the created, expires, last used and revoked lines of a listed token; an expired one is marked."""
    lines = Text(f"created {format_minute(token.created_at)}")
    if token.expires_at:
        word = "EXPIRED" if token.status == "expired" else "expires"
        lines.append(f"\n{word} {format_minute(token.expires_at)}", style="bold red" if token.status == "expired" else "")
    used = f"used {format_minute(token.last_used_at)}" if token.last_used_at else "never used"
    lines.append(f"\n{used}")
    if token.revoked_at:
        lines.append(f"\nrevoked {format_minute(token.revoked_at)}")
    return lines


@token_app.command("list")
def list_(ctx: typer.Context) -> None:
    """List the workspace's tokens; secrets are never shown, only their first characters. Times are UTC."""
    settings = settings_of(ctx)

    async def step() -> TokenList:
        async with signed_in(settings) as (app, caller):
            return await token_services.list_workspace_tokens(app, caller)

    tokens = execute(step).tokens
    # The identity columns never wrap, so an 80-column terminal still shows whose
    # each token is. Each scope and each time has a line of its own.
    expired = sum(token.status == "expired" for token in tokens)
    title = f"{len(tokens)} tokens" + (f", {expired} expired" if expired else "") + " (times in UTC)"
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for column in ("id", "prefix", "principal", "kind"):
        table.add_column(column, no_wrap=True)
    # The scopes go under the role, one per line, so no scope name is ever split
    # and the column is never narrower than the longest name.
    table.add_column("role, scopes", no_wrap=True)
    table.add_column("times", no_wrap=True)
    for token in tokens:
        principal = token.principal + (f"\nfor {token.on_behalf_of}" if token.on_behalf_of else "")
        table.add_row(
            str(token.token_id),
            token.prefix + "…",
            principal,
            token.kind,
            "\n".join([token.role, *(f" {scope}" for scope in token.scopes)]),
            _dates(token),
        )
    out().print(table)


@token_app.command("rotate")
def rotate(
    ctx: typer.Context,
    token_id: Annotated[int, typer.Argument(help="Id of the token to replace, from `token list`.")],
    expires_in: Annotated[str, typer.Option(help=EXPIRES_IN_HELP + " Default: the old token's lifetime, from now.")] = "",
    expires_at: Annotated[str, typer.Option(help=EXPIRES_AT_HELP)] = "",
    grace: Annotated[
        str,
        typer.Option(help="Keep the old token working this long (30d, 12h, 90m) instead of revoking it now."),
    ] = "",
) -> None:
    """Replace a token with a new one for the same principal, role, person acted for and label, and retire the old one."""
    settings = settings_of(ctx)

    async def step() -> TokenRotated:
        async with signed_in(settings) as (app, caller):
            return await token_services.rotate_workspace_token(
                app, caller, token_id=token_id, expires_in=expires_in, expires_at=expires_at, grace=grace
            )

    rotated = execute(step)
    new, old = rotated.new, rotated.old
    say(f"Created {new.kind} token {new.token_id} for {new.principal!r} with role {new.role}, replacing token {old.token_id}.")
    if old.revoked_at:
        say(f"Token {old.token_id} ({old.prefix}…) was revoked at {format_minute(old.revoked_at)} UTC.")
    elif old.status == "expired":
        say(f"Token {old.token_id} ({old.prefix}…) had already expired at {format_minute(old.expires_at or '')} UTC.")
    else:
        say(f"Token {old.token_id} ({old.prefix}…) keeps working until {format_minute(old.expires_at or '')} UTC.")
    print_secret(new)


@token_app.command("revoke")
def revoke(ctx: typer.Context, token_id: Annotated[int, typer.Argument(help="Id of the token, from `token list`.")]) -> None:
    """Revoke a token so it authenticates nothing from now on."""
    settings = settings_of(ctx)

    async def step() -> TokenOut:
        async with signed_in(settings) as (app, caller):
            return await token_services.revoke_workspace_token(app, caller, token_id=token_id)

    token = execute(step)
    say(f"Revoked token {token.token_id} ({token.prefix}…) of {token.principal!r} at {token.revoked_at}.")

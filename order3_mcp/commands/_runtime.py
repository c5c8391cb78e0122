"""Shared command plumbing: global options, consoles, database and token handling, and error exits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Annotated, TypeVar

import anyio
import typer
from rich.console import Console
from rich.text import Text

from order3_mcp.app import Caller, Order3, replayed_key
from order3_mcp.commands._database import connect
from order3_mcp.replay.clock import environment_clock
from store.errors import Order3Error, PermissionDeniedError

T = TypeVar("T")

IdempotencyKeyOption = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key",
        help="Unique key for this request, such as a UUID. Repeating the command with the same key and arguments "
        "prints the stored result and writes nothing new; the same key with other arguments is rejected.",
    ),
]

# Exit code of `verify` and `activity verify` when they find a problem; 2 to 6 are the error classes' codes.
CHECK_FAILED_EXIT = 1


@dataclass(frozen=True)
class CliSettings:
    """Options given before the command name: the database and the token."""

    db: str | None
    token: str | None
    #: The running command as typed after `order3`, such as "drafts approve"; the action of a dead token's refusal.
    command: str = "authenticate"


def settings_of(ctx: typer.Context) -> CliSettings:
    """Return the global options stored on the root context, with the name of the running command."""
    settings = ctx.find_root().obj
    if not isinstance(settings, CliSettings):
        settings = CliSettings(db=None, token=None)
    command = " ".join(ctx.command_path.split()[1:])
    return replace(settings, command=command or "authenticate")


def out() -> Console:
    """Return a console on stdout. It is made per call so tests that set COLUMNS get that width."""
    return Console(highlight=False)


def err() -> Console:
    """Return a console on stderr."""
    return Console(stderr=True, highlight=False)


def say(message: str, *, style: str = "") -> None:
    """Print one line on stdout without wrapping it or reading markup in it."""
    out().print(Text(message, style=style), soft_wrap=True)


def fail(message: str, *, exit_code: int) -> typer.Exit:
    """Print an error in red on stderr and return the Exit to raise."""
    err().print(Text(message, style="red"), soft_wrap=True)
    return typer.Exit(code=exit_code)


def execute(step: Callable[[], Awaitable[T]]) -> T:
    """Run an async step, turning an expected failure into its message on stderr and its exit code."""
    try:
        return anyio.run(step)
    except Order3Error as exc:
        raise fail(exc.message, exit_code=exc.exit_code) from None


@asynccontextmanager
async def signed_in(settings: CliSettings) -> AsyncIterator[tuple[Order3, Caller]]:
    """Open the database and authenticate the token as a CLI caller.

    Raises:
        PermissionDeniedError: If no token is given, or it is unknown or revoked.
        NotFoundError, InvalidInputError: If the database cannot be opened as an Order3 database; see `connect`.
    """
    secret = (settings.token or "").strip()
    if not secret:
        raise PermissionDeniedError(
            "No token given: set ORDER3_TOKEN or pass --token before the command name. "
            "`order3 init` prints the first admin token; an admin creates more with `order3 token create`."
        )
    clock = environment_clock()
    database = await connect(settings.db)
    try:
        app = Order3(database, clock=clock)
        caller = await app.authenticate(secret, channel="cli", action=settings.command)
        yield app, caller
    finally:
        await database.dispose()


def parse_payload(payload_json: str) -> dict[str, object]:
    """Return a draft's payload as a dict, or an empty one when it is not a JSON object."""
    try:
        payload = json.loads(payload_json)
    except json.JSONDecodeError:
        return {}
    return payload if isinstance(payload, dict) else {}


async def keyed(call: Awaitable[T]) -> tuple[T, str | None]:
    """Await a service call; return its result and the idempotency key it replayed, or None when it ran anew."""
    result = await call
    return result, replayed_key.get()


def say_replayed(key: str | None, request: str) -> None:
    """Print, for a replayed call, that the result below is the stored one of an earlier `request`."""
    if key is None:
        return
    say(
        f"Replayed: idempotency key {key!r} was already used for this {request} with the same arguments, so "
        "nothing new was written. The stored result of the first call follows.",
        style="yellow",
    )

"""Connections that carry replay steps to Order3: MCP client sessions per token (in memory or over stdio) and the real CLI app."""

from __future__ import annotations

import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from order3_mcp.app import Caller, Order3
from order3_mcp.replay.clock import CLOCK_VARIABLE, FixedClock
from order3_mcp.server import build_server
from store.db import Database

TRANSPORTS = ("memory", "stdio")
# Seconds to wait for one MCP response before the step fails.
CALL_TIMEOUT_SECONDS = 60.0
# The SDK puts this before the message of a tool error.
TOOL_ERROR_PREFIX = "Error executing tool "
# Terminal width for CLI output, fixed so that wrapped lines are the same on every machine.
CLI_COLUMNS = "200"


@dataclass(frozen=True)
class TokenHandle:
    """A scenario token: its secret and the caller it authenticates as."""

    secret: str
    caller: Caller


@dataclass(frozen=True)
class ToolCall:
    """The outcome of an MCP tool call: a structured result, or an error message."""

    result: dict[str, Any] | None
    error: str | None


def _error_text(content: list[Any], tool: str) -> str:
    text = " ".join(getattr(block, "text", "") for block in content).strip()
    prefix = f"{TOOL_ERROR_PREFIX}{tool}: "
    return text.removeprefix(prefix)


class ToolSessions:
    """One MCP client session per token, opened on first use and closed by `close`.

    In memory, each session talks JSON-RPC to an in-process server that shares
    the scenario's clock object. Over stdio, each session is an `order3 serve`
    subprocess that reads the time from ORDER3_CLOCK, so moving the clock closes
    the sessions and the next call opens new ones at the new time.
    """

    def __init__(self, *, transport: str, database: Database, db_path: str, clock: FixedClock, tokens: dict[str, TokenHandle]) -> None:
        self.transport = transport
        self.database = database
        self.db_path = db_path
        self.clock = clock
        self.tokens = tokens
        self._open: dict[str, tuple[AsyncExitStack, Client]] = {}

    async def _client(self, token: str) -> Client:
        if token in self._open:
            return self._open[token][1]
        handle = self.tokens[token]
        if self.transport == "stdio":
            server = StdioServerParameters(
                command=sys.executable,
                args=["-m", "order3_mcp.cli", "serve"],
                env={"ORDER3_DB": str(self.db_path), "ORDER3_TOKEN": handle.secret, CLOCK_VARIABLE: self.clock.environment_value()},
            )
            client = Client(server, read_timeout_seconds=CALL_TIMEOUT_SECONDS)
        else:
            client = Client(build_server(Order3(self.database, clock=self.clock), handle.caller), mode="legacy")
        stack = AsyncExitStack()
        await stack.enter_async_context(client)
        self._open[token] = (stack, client)
        return client

    async def call(self, token: str, tool: str, arguments: dict[str, Any]) -> ToolCall:
        """Call a tool as `token` and return its structured result or its error message."""
        client = await self._client(token)
        try:
            result = await client.call_tool(tool, arguments)
        except MCPError as exc:
            return ToolCall(result=None, error=str(exc))
        if result.is_error:
            return ToolCall(result=None, error=_error_text(result.content, tool))
        structured = result.structured_content if isinstance(result.structured_content, dict) else {}
        return ToolCall(result=structured, error=None)

    async def clock_moved(self) -> None:
        """Close stdio sessions so that the next call starts a server at the new time."""
        if self.transport == "stdio":
            await self.close()

    async def close(self) -> None:
        """Close every open session, newest first."""
        while self._open:
            _, (stack, _client) = self._open.popitem()
            await stack.aclose()


@dataclass(frozen=True)
class CliRun:
    """The output and exit code of a CLI step."""

    exit_code: int
    output: str
    stderr: str


def _invoke(argv: list[str], *, db_path: str, secret: str, clock: FixedClock) -> CliRun:
    # Imported here: the CLI app imports every command module, which the runner needs only for CLI steps.
    from typer.testing import CliRunner

    from order3_mcp.cli import app

    runner = CliRunner()
    env = {CLOCK_VARIABLE: clock.environment_value(), "COLUMNS": CLI_COLUMNS, "ORDER3_DB": None, "ORDER3_TOKEN": None, "NO_COLOR": "1"}
    result = runner.invoke(app, ["--db", str(db_path), "--token", secret, *argv], env=env, catch_exceptions=True)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += f"{type(result.exception).__name__}: {result.exception}"
    return CliRun(exit_code=result.exit_code, output=result.stdout, stderr=stderr)


async def run_cli(argv: list[str], *, db_path: str, secret: str, clock: FixedClock) -> CliRun:
    """Run the `order3` typer app in a worker thread, because each command starts its own event loop."""
    return await anyio.to_thread.run_sync(lambda: _invoke(argv, db_path=db_path, secret=secret, clock=clock))

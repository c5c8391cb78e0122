"""The `serve` command: the MCP server for one token, over stdio or Streamable HTTP on loopback."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import sys
from typing import Annotated

import typer

from order3_mcp.app import Order3
from order3_mcp.commands._runtime import connect, execute, settings_of
from order3_mcp.server import build_server
from store.errors import InvalidInputError, PermissionDeniedError

logger = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error")


def check_loopback(host: str) -> str:
    """Return `host` if it is a loopback name or address.

    Raises:
        InvalidInputError: For any other host, because the HTTP transport has no
            authentication of its own: every client acts with the serve token.
    """
    if host == "localhost":
        return host
    try:
        address = ipaddress.ip_address(host)
    except ValueError as exc:
        raise InvalidInputError(f"Host {host!r} is not an IP address; use 127.0.0.1, ::1 or localhost.") from exc
    if not address.is_loopback:
        raise InvalidInputError(
            f"Host {host!r} is not a loopback address. Order3 serves HTTP on loopback only (127.0.0.1, ::1 or "
            "localhost), because every HTTP client acts with the token of this process."
        )
    return host


def serve(
    ctx: typer.Context,
    http: Annotated[bool, typer.Option("--http", help="Serve Streamable HTTP instead of stdio.")] = False,
    host: Annotated[str, typer.Option(help="Loopback address to listen on with --http.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on with --http.", min=1, max=65535)] = 8000,
    log_level: Annotated[str, typer.Option(help=f"Lowest level logged to stderr: {', '.join(LOG_LEVELS)}.")] = "warning",
) -> None:
    """Run the MCP server for the ORDER3_TOKEN principal; it lists only the tools that token's scopes allow.

    Logs go to stderr; on stdio, stdout carries only the protocol.
    """
    settings = settings_of(ctx)
    if log_level.lower() not in LOG_LEVELS:
        raise typer.BadParameter(f"log level {log_level!r} is unknown; use one of {', '.join(LOG_LEVELS)}.")
    # Anything written to stdout before or during the run would corrupt the stdio stream.
    logging.basicConfig(stream=sys.stderr, level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def step() -> None:
        if http:
            check_loopback(host)
        secret = (settings.token or "").strip()
        if not secret:
            raise PermissionDeniedError(
                "No token given: set ORDER3_TOKEN (or pass --token) to the token of the agent or person this server acts for."
            )
        database = await connect(settings.db)
        try:
            app = Order3(database)
            caller = await app.authenticate(secret, channel="mcp")
            server = build_server(app, caller)
            logger.info("serving workspace %s as %s over %s", caller.workspace, caller.describe(), "http" if http else "stdio")
            if http:
                # uvicorn points its access log at sys.stdout when it configures logging;
                # redirecting stdout while it starts sends those lines to stderr too.
                with contextlib.redirect_stdout(sys.stderr):
                    await server.run_streamable_http_async(host=host, port=port)
            else:
                await server.run_stdio_async()
        finally:
            await database.dispose()
            logger.info("server stopped")

    try:
        execute(step)
    except KeyboardInterrupt:
        logger.info("interrupted")

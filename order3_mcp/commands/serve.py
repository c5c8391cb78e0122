"""The `serve` command: the MCP server over stdio for one token, or over Streamable HTTP on loopback for many."""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import logging
import os
import sys
from types import FrameType
from typing import Annotated

import typer
import uvicorn

from order3_mcp.app import Order3
from order3_mcp.commands._runtime import connect, execute, settings_of
from order3_mcp.http_server.app import HttpTransport
from order3_mcp.http_server.rate_limit import DEFAULT_BURST, DEFAULT_RATE
from order3_mcp.replay.clock import environment_clock
from order3_mcp.server import DEFAULT_TOOL_TIMEOUT, build_server
from order3_mcp.services.background_runs import BackgroundRuns
from order3_mcp.services.scan_workers import ScanWorkers
from store.db import Database
from store.errors import InvalidInputError, PermissionDeniedError

logger = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error")


def settle_heap() -> None:
    """Take the objects made while the server started out of the cyclic garbage collector's passes.

    The imports alone (modules, ORM mappers, JSON schemas) make about
    180,000 objects that live until the server stops. A full collection
    walked them all, 89 ms measured on a 2-core Xeon, and the event loop that
    serves every call waited meanwhile. In an HTTP server under load the
    passes took 100 to 310 ms. A frozen object is still freed when its last
    reference goes, and only a reference cycle among frozen objects would
    stay. The garbage of the start is collected before the freeze.
    """
    gc.collect()
    gc.freeze()


def check_loopback(host: str) -> str:
    """Return `host` if it is a loopback name or address.

    Raises:
        InvalidInputError: For any other host, because the HTTP transport has no
            TLS: bearer tokens would cross the network in clear text.
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
            "localhost), because it has no TLS and every request carries a bearer token. To reach it from another "
            "machine, put a TLS-terminating reverse proxy on this machine in front of it; see docs/http.md."
        )
    return host


class _StoppingServer(uvicorn.Server):
    """uvicorn's server, except that SIGTERM or SIGINT makes `serve` return after the graceful shutdown.

    uvicorn raises the signal again once it has shut down, which ends the
    process before the caller's clean-up runs: the scan workers would be left
    to notice on their own, and the resource tracker reports their pool's
    semaphores as leaked.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn keeps the signals it will raise again in this list (uvicorn/server.py, capture_signals).
        self._captured_signals.clear()


def _detach_stdout() -> None:
    """Point stdout at the null device, so flushing it at exit does not fail again on the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


# How long `serve --http` waits for its scan workers to start before it listens anyway.
SCAN_WORKER_START_SECONDS = 30.0
# Seconds a stopping stdio server waits for activity events still being written. The MCP
# Python SDK's stdio client terminates its server 2 s after closing stdin.
STOP_GRACE_SECONDS = 1.5


def _start_scan_workers(database: Database, workers: int) -> ScanWorkers | None:
    if workers == 0:
        return None
    pool = ScanWorkers(database, workers=workers)
    pool.start()
    return pool


def serve(
    ctx: typer.Context,
    http: Annotated[bool, typer.Option("--http", help="Serve Streamable HTTP instead of stdio; each request sends its own bearer token.")] = False,
    host: Annotated[str, typer.Option(help="Loopback address to listen on with --http.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on with --http.", min=1, max=65535)] = 8000,
    rate_limit: Annotated[
        float, typer.Option(help="With --http: requests per second allowed per token, on average.", min=0.001)
    ] = DEFAULT_RATE,
    rate_burst: Annotated[
        int, typer.Option(help="With --http: requests per token allowed at once above the average rate.", min=1)
    ] = DEFAULT_BURST,
    log_level: Annotated[str, typer.Option(help=f"Lowest level logged to stderr: {', '.join(LOG_LEVELS)}.")] = "warning",
    tool_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds a tool call may run; a slower call is stopped, rolled back and answered with an error.",
            min=0.001,
            max=3600,
        ),
    ] = DEFAULT_TOOL_TIMEOUT,
    scan_workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes that run whole-workspace finder scans off the serving process "
            "(default 1 with --http, 0 over stdio, where 0 runs them in the server process).",
            min=0,
            max=8,
        ),
    ] = None,
) -> None:
    """Run the MCP server; it lists only the tools the caller's token scopes allow.

    Over stdio the server acts for the ORDER3_TOKEN principal. Over HTTP no token
    is needed at start: every request sends 'Authorization: Bearer <token>'.
    Logs go to stderr; on stdio, stdout carries only the protocol.
    """
    settings = settings_of(ctx)
    if log_level.lower() not in LOG_LEVELS:
        raise typer.BadParameter(f"log level {log_level!r} is unknown; use one of {', '.join(LOG_LEVELS)}.")
    # Anything written to stdout before or during the run would corrupt the stdio stream.
    logging.basicConfig(stream=sys.stderr, level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def serve_http() -> None:
        check_loopback(host)
        if (settings.token or "").strip():
            logger.warning("ORDER3_TOKEN is ignored with --http: every request authenticates with its own bearer token")
        clock = environment_clock()
        database = await connect(settings.db)
        app = Order3(database, clock=clock)
        app.scan_workers = _start_scan_workers(database, 1 if scan_workers is None else scan_workers)
        app.background_runs = BackgroundRuns(database)
        try:
            if app.scan_workers is not None:
                # Listening only once the workers can plan keeps their start-up out of the first finder calls.
                await app.scan_workers.ready(timeout=SCAN_WORKER_START_SECONDS)
            transport = HttpTransport(
                app, host=host, port=port, rate=rate_limit, burst=rate_burst, tool_timeout=tool_timeout,
            )
            settle_heap()
            # uvicorn's access log prints the query string, which may carry a secret;
            # HttpTransport logs each request line without it.
            config = uvicorn.Config(
                transport, host=host, port=port, log_level=log_level.lower(), lifespan="on", server_header=False, access_log=False
            )
            logger.info("serving Streamable HTTP at %s", transport.endpoint)
            # uvicorn points its access log at sys.stdout when it configures logging;
            # redirecting stdout while it starts sends those lines to stderr too.
            with contextlib.redirect_stdout(sys.stderr):
                await _StoppingServer(config).serve()
        finally:
            app.background_runs.close()
            if app.scan_workers is not None:
                app.scan_workers.close()
            await database.dispose()
            logger.info("server stopped")

    async def serve_stdio() -> None:
        secret = (settings.token or "").strip()
        if not secret:
            raise PermissionDeniedError(
                "No token given: set ORDER3_TOKEN (or pass --token) to the token of the agent or person this server acts for."
            )
        clock = environment_clock()
        database = await connect(settings.db)
        app = Order3(database, clock=clock)
        app.scan_workers = _start_scan_workers(database, scan_workers or 0)
        app.background_runs = BackgroundRuns(database)
        try:
            caller = await app.authenticate(secret, channel="mcp")
            server = build_server(app, caller, tool_timeout=tool_timeout)
            settle_heap()
            logger.info("serving workspace %s as %s over stdio", caller.workspace, caller.describe())
            try:
                await server.run_stdio_async()
            except* (BrokenPipeError, ConnectionResetError) as group:
                # A client process that exits or is killed closes the pipe the reply goes to.
                # That ends the session as closing stdin does, so the server stops cleanly.
                logger.warning("client closed stdout before a reply was written (%s); stopping", group.exceptions[0])
                _detach_stdout()
            # Events of timed-out calls may still wait for another process's write lock.
            await server.finish_background(timeout=STOP_GRACE_SECONDS)
        finally:
            app.background_runs.close()
            if app.scan_workers is not None:
                app.scan_workers.close()
            await database.dispose()
            logger.info("server stopped")

    try:
        execute(serve_http if http else serve_stdio)
    except KeyboardInterrupt:
        logger.info("interrupted")

"""Run `order3 serve --http` as a subprocess on a free loopback port, and talk to it as a client would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import update
from typer.testing import CliRunner

from order3_mcp.cli import app as cli
from store.db import open_database
from store.models import Token
from tests.conftest import REPO_ROOT

runner = CliRunner()

# Seconds allowed for the server to start listening, checked every 0.05 s.
STARTUP_TIMEOUT = 30.0
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "tests", "version": "1"}},
}
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def order3(db: Path, *args: str, token: str | None = None) -> str:
    """Run an order3 command that must succeed and return its stdout."""
    options = ["--db", str(db)] + (["--token", token] if token else [])
    result = runner.invoke(cli, [*options, *args], env={"ORDER3_TOKEN": None, "ORDER3_DB": None, "COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    return result.stdout


def secret_in(output: str) -> str:
    """Return the token secret printed on a line of its own."""
    return next(line.strip() for line in output.splitlines() if line.strip().startswith("o3_"))


def token_id_in(output: str) -> int:
    """Return the id in "Created ... token N for ..." or "(token id N)"."""
    for line in output.splitlines():
        words = line.replace("(", " ").replace(")", " ").replace(":", " ").split()
        for index, word in enumerate(words[:-1]):
            if word == "token" and words[index + 1].isdigit():
                return int(words[index + 1])
            if word == "id" and words[index + 1].isdigit():
                return int(words[index + 1])
    raise AssertionError(f"no token id in {output!r}")


def create_token(db: Path, admin: str, principal: str, *, kind: str, role: str) -> tuple[int, str]:
    """Create a token with the CLI and return its id and secret."""
    output = order3(db, "token", "create", "--principal", principal, "--kind", kind, "--role", role, token=admin)
    return token_id_in(output), secret_in(output)


async def create_token_async(db: Path, admin: str, principal: str, *, kind: str, role: str) -> tuple[int, str]:
    """Run `create_token` from async code: the CLI starts an event loop of its own, so it runs in a thread."""
    return await anyio.to_thread.run_sync(lambda: create_token(db, admin, principal, kind=kind, role=role))


async def order3_async(db: Path, *args: str, token: str | None = None) -> str:
    """Run `order3` from async code, in a thread for the same reason."""
    return await anyio.to_thread.run_sync(lambda: order3(db, *args, token=token))


async def set_token_expiry(db: Path, token_id: int, expires_at: datetime) -> None:
    """Give a token an expiry time, as `order3 token create` does for a token with a lifetime."""
    database = await open_database(db, create=False)
    try:
        async with database.write() as session:
            await session.execute(update(Token).where(Token.id == token_id).values(expires_at=expires_at))
    finally:
        await database.dispose()


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RunningServer:
    """An `order3 serve --http` subprocess and its endpoint."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


@contextmanager
def serve_http(db: Path, *extra: str) -> Iterator[RunningServer]:
    """Start `order3 serve --http` on a free port with no ORDER3_TOKEN, and stop it by its pid afterwards."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("ORDER3_TOKEN", "ORDER3_DB")}
    log = db.parent / f"serve-{port}.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "order3_mcp.cli", "--db", str(db), "serve", "--http", "--port", str(port), "--log-level", "info", *extra],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_for_port(process, port, log)
        yield RunningServer(process=process, port=port, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"order3 serve --http exited with {process.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"order3 serve --http did not listen on port {port} within {STARTUP_TIMEOUT} s: {log.read_text()}")


@asynccontextmanager
async def mcp_client(url: str, secret: str | None, **options: Any) -> AsyncIterator[Client]:
    """Return an MCP client over Streamable HTTP that sends `secret` as its bearer token."""
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0)) as http,
        Client(streamable_http_client(url, http_client=http), **options) as client,
    ):
        yield client


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def initialize(http: httpx2.AsyncClient, url: str, secret: str) -> str:
    """Open a session with a raw initialize request and return its session id."""
    response = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, **bearer(secret)})
    assert response.status_code == 200, response.text
    session_id = response.headers["mcp-session-id"]
    acknowledged = await http.post(
        url,
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers={**MCP_HEADERS, **bearer(secret), "Mcp-Session-Id": session_id, "MCP-Protocol-Version": "2025-06-18"},
    )
    assert acknowledged.status_code == 202, acknowledged.text
    return session_id


async def session_request(
    http: httpx2.AsyncClient, url: str, session_id: str, secret: str | None, method: str, params: dict[str, Any] | None = None
) -> httpx2.Response:
    """Send one JSON-RPC request on a session, with `secret` as the bearer token (or none)."""
    headers = {**MCP_HEADERS, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": "2025-06-18"}
    if secret is not None:
        headers.update(bearer(secret))
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": 2, "method": method}
    if params is not None:
        message["params"] = params
    return await http.post(url, json=message, headers=headers)


def error_of(response: httpx2.Response) -> dict[str, Any]:
    """Return the JSON-RPC error object of a refusal."""
    return json.loads(response.content)["error"]

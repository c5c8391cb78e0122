"""Server limits: page size caps, per-call deadlines, client cancellation and disconnects."""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from sqlalchemy import select

from order3_mcp.app import Order3
from order3_mcp.commands.serve import settle_heap
from order3_mcp.pagination import MAX_PAGE_SIZE
from order3_mcp.server import build_server
from order3_mcp.services.background_runs import BackgroundRuns
from store.db import Database
from store.models import ActivityEvent, Draft, FinderRun
from tests.conftest import REPO_ROOT, sqlite_only
from tests.factory import last_event, make_app, row_count, small_workspace
from tests.http_support import create_token, mcp_client, order3, secret_in, serve_http
from tests.test_exception_lifecycle import add_reorder_rule
from tests.test_finder_freshness import run_of

RATIONALE = "WIDGET-1 has 5 available against a reorder point of 20."
DRAFT = {"lines": [{"sku": "WIDGET-1", "quantity": 40}], "rationale": RATIONALE}
# Pages stay under this size because Python MCP clients validate every result against
# its output schema, and larger results cost them far more to validate.
PAGE_BYTES_LIMIT = 32 * 1024


def error_text(result) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


@contextmanager
def write_lock_held(path: Path, *, seconds: float) -> Iterator[threading.Event]:
    """Hold SQLite's write lock on `path` from another connection, as a second process would.

    The lock is released after `seconds`, or earlier when the yielded event is set.
    """
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    release = threading.Event()

    def hold() -> None:
        release.wait(seconds)
        connection.rollback()
        connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        yield release
    finally:
        release.set()
        holder.join(timeout=30)


def database_path(database: Database) -> Path:
    return Path(database.engine.url.database)


async def limited_tools(client: Client) -> list[str]:
    return sorted(tool.name for tool in (await client.list_tools()).tools if "limit" in tool.input_schema.get("properties", {}))


async def test_every_list_tool_rejects_limit_above_cap(database):
    tokens = await small_workspace(database)
    checked = set()
    for caller in (tokens.agent, tokens.buyer):
        async with Client(build_server(make_app(database), caller), mode="legacy") as client:
            for name in await limited_tools(client):
                result = await client.call_tool(name, {"limit": MAX_PAGE_SIZE + 1})
                message = error_text(result)
                assert result.is_error, name
                assert str(MAX_PAGE_SIZE + 1) in message, (name, message)
                assert f"less than or equal to {MAX_PAGE_SIZE}" in message, (name, message)
                checked.add(name)
    assert {"list_activity", "search_items", "find_exceptions", "find_low_stock", "list_drafts"} <= checked


async def test_activity_page_of_largest_rows_stays_under_32_kib(database):
    tokens = await small_workspace(database)
    app = make_app(database)
    summary = "S" * 2000
    for index in range(150):
        await app.record_failure(
            tokens.agent, "draft_purchase_order", "invalid", {"rationale": "R" * 3000}, "k" * 200, "r" * 120,
            f"{index:04d}{summary}"[:2000],
        )

    seen: list[int] = []
    cursor = ""
    async with Client(build_server(app, tokens.buyer), mode="legacy") as client:
        for _ in range(20):
            result = await client.call_tool("list_activity", {"cursor": cursor, "limit": MAX_PAGE_SIZE})
            assert not result.is_error, error_text(result)
            assert len(result.content[0].text.encode()) < PAGE_BYTES_LIMIT
            page = result.structured_content
            seen += [event["seq"] for event in page["events"]]
            if page["next_cursor"] is None:
                break
            cursor = page["next_cursor"]

    assert len(seen) == len(set(seen))
    assert set(range(1, 151)) <= set(seen)


# The call is made slow by holding SQLite's write lock from a second connection.
@sqlite_only
async def test_tool_past_deadline_returns_error_and_writes_nothing(database):
    tokens = await small_workspace(database)
    server = build_server(make_app(database), tokens.agent, tool_timeout=0.2)

    async with Client(server, mode="legacy") as client:
        with write_lock_held(database_path(database), seconds=10.0) as release:
            started = time.monotonic()
            with anyio.fail_after(20):
                result = await client.call_tool("draft_purchase_order", DRAFT)
            answered = time.monotonic() - started
            release.set()
        # The event is written once the lock is free.
        event = await wait_for_outcome(database, "error")

    assert result.is_error
    # The lock was held for 10 s, so the error came at the deadline, not at the release.
    assert answered < 5
    assert "timed out after 0.2 s" in error_text(result)
    assert "--tool-timeout" in error_text(result)
    assert await row_count(database, Draft) == 0
    assert event.action == "draft_purchase_order"
    assert event.outcome == "error"
    assert "timed out" in event.summary


async def low_stock_server(database):
    """Return a workspace with one low-stock item, and an app with background runs as `order3 serve` has."""
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    app = make_app(database)
    app.background_runs = BackgroundRuns(database)
    return tokens, app


# The rerun is planned on a read-only snapshot, so only writing it waits for the held lock.
@sqlite_only
async def test_finder_rerun_outlives_call_past_deadline(database):
    tokens, app = await low_stock_server(database)
    try:
        async with Client(build_server(app, tokens.agent, tool_timeout=0.2), mode="legacy") as client:
            with write_lock_held(database_path(database), seconds=10.0) as release:
                with anyio.fail_after(20):
                    stopped = await client.call_tool("find_low_stock", {})
                release.set()
            await app.background_runs.wait()
            run = await run_of(database, "low_stock")
            with anyio.fail_after(20):
                again = await client.call_tool("find_low_stock", {})
        event = await wait_for_outcome(database, "error")
    finally:
        app.background_runs.close()

    assert stopped.is_error
    assert "rerun of the low_stock finder of workspace" in error_text(stopped)
    assert "goes on in this server and is written when done" in error_text(stopped)
    assert "goes on in this server and is written when done" in event.summary
    # The next call found the rerun written and did not run it again.
    assert [found["sku"] for found in again.structured_content["exceptions"]] == ["WIDGET-1"]
    assert again.structured_content["refreshed_at"] == {"low_stock": run.refreshed_at.isoformat()}


@sqlite_only
async def test_stopping_server_logs_unwritten_rerun(database, caplog):
    tokens, app = await low_stock_server(database)
    try:
        async with Client(build_server(app, tokens.agent, tool_timeout=0.2), mode="legacy") as client:
            with write_lock_held(database_path(database), seconds=10.0):
                with anyio.fail_after(20):
                    stopped = await client.call_tool("find_low_stock", {})
                app.background_runs.close()
                with anyio.fail_after(20):
                    await app.background_runs.wait()
    finally:
        app.background_runs.close()

    assert stopped.is_error
    [warning] = [record for record in caplog.records if "was stopped with the server" in record.getMessage()]
    assert warning.levelname == "WARNING"
    assert "kinds brought up to date before that: none" in warning.getMessage()
    assert await row_count(database, FinderRun) == 0


async def test_fast_call_unaffected_by_short_deadline(database):
    tokens = await small_workspace(database)
    server = build_server(make_app(database), tokens.agent, tool_timeout=10)

    async with Client(server, mode="legacy") as client:
        result = await client.call_tool("draft_purchase_order", DRAFT)

    assert not result.is_error, error_text(result)
    assert await row_count(database, Draft) == 1


async def wait_for_outcome(database: Database, outcome: str) -> ActivityEvent:
    with anyio.fail_after(20):
        while True:
            async with database.read() as session:
                found = (await session.execute(select(ActivityEvent).where(ActivityEvent.outcome == outcome))).scalars().all()
            if found:
                return found[-1]
            await anyio.sleep(0.05)


# The call is made slow by holding SQLite's write lock from a second connection.
@sqlite_only
async def test_cancelled_draft_writes_nothing_and_records_cancelled(database):
    tokens = await small_workspace(database)
    server = build_server(make_app(database), tokens.agent)

    async with Client(server, mode="legacy") as client:
        with write_lock_held(database_path(database), seconds=10.0) as release:
            # Leaving this scope cancels the call, and the client sends notifications/cancelled.
            with anyio.move_on_after(0.5) as waiting:
                await client.call_tool("draft_purchase_order", DRAFT)
            assert waiting.cancelled_caught
            release.set()
        event = await wait_for_outcome(database, "cancelled")

        after = await client.call_tool("get_item", {"sku": "WIDGET-1"})

    assert event.action == "draft_purchase_order"
    assert "cancelled" in event.summary
    assert await row_count(database, Draft) == 0
    assert not after.is_error


async def test_activity_filter_accepts_cancelled_outcome(database):
    tokens = await small_workspace(database)
    app: Order3 = make_app(database)
    await app.record_failure(tokens.agent, "draft_purchase_order", "cancelled", {}, "", "", "Cancelled by the client.")

    async with Client(build_server(app, tokens.buyer), mode="legacy") as client:
        result = await client.call_tool("list_activity", {"outcome": "cancelled"})

    assert not result.is_error, error_text(result)
    assert [event["outcome"] for event in result.structured_content["events"]] == ["cancelled"]


@pytest.fixture
def http_workspace(tmp_path: Path) -> tuple[Path, str]:
    db = tmp_path / "order3.db"
    admin = secret_in(order3(db, "init", "--workspace", "main", "--admin", "root"))
    _, agent = create_token(db, admin, "buyer-bot", kind="agent", role="agent")
    return db, agent


async def test_http_client_disconnect_mid_call_leaves_server_serving(http_workspace):
    db, agent = http_workspace
    draft = {"lines": [{"sku": "NOPE-1", "quantity": 1}], "rationale": RATIONALE}

    with serve_http(db, "--tool-timeout", "20") as server:
        with write_lock_held(db, seconds=10.0) as release:
            with anyio.move_on_after(0.5) as waiting:
                async with mcp_client(server.url, agent) as client:
                    await client.call_tool("draft_purchase_order", draft)
            assert waiting.cancelled_caught
            release.set()

        async with mcp_client(server.url, agent) as client:
            with anyio.fail_after(30):
                listed = await client.call_tool("list_locations", {})

        assert server.process.poll() is None
    assert not listed.is_error, error_text(listed)
    assert json.loads(listed.content[0].text)["locations"] == []


def database_location(database: Database) -> str:
    """Return what `order3 serve` takes as ORDER3_DB for this test database: a SQLite path or a PostgreSQL URL."""
    url = database.engine.url
    return url.database if url.get_backend_name() == "sqlite" else url.render_as_string(hide_password=False)


def stdio_server(db: Path | str, secret: str) -> StdioServerParameters:
    env = {key: value for key, value in os.environ.items() if key not in ("ORDER3_TOKEN", "ORDER3_DB")}
    env.update({"ORDER3_DB": str(db), "ORDER3_TOKEN": secret})
    return StdioServerParameters(command=sys.executable, args=["-m", "order3_mcp.cli", "serve"], env=env, cwd=str(REPO_ROOT))


async def test_stdio_oversized_argument_is_refused_by_name(database):
    tokens = await small_workspace(database)
    oversized = {"lines": [{"sku": "WIDGET-1", "quantity": 40}], "rationale": "R" * (2 * 1024 * 1024)}

    async with Client(stdio_server(database_location(database), tokens.agent_secret), mode="legacy") as client:
        with anyio.fail_after(60):
            refused = await client.call_tool("draft_purchase_order", oversized)
            after = await client.call_tool("get_item", {"sku": "WIDGET-1"})

    assert refused.is_error
    assert "rationale" in error_text(refused)
    assert "4000" in error_text(refused)
    assert not after.is_error, error_text(after)
    assert await row_count(database, Draft) == 0


def send(process: subprocess.Popen[bytes], message: dict) -> None:
    assert process.stdin is not None
    process.stdin.write(json.dumps(message).encode() + b"\n")
    process.stdin.flush()


def start_session(parameters: StdioServerParameters, *options: str) -> subprocess.Popen[bytes]:
    """Start a stdio server with extra `serve` options and complete its MCP handshake."""
    process = subprocess.Popen(
        [parameters.command, *parameters.args, *options], env=parameters.env, cwd=parameters.cwd,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        send(process, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "gone", "version": "1"}}})
        assert process.stdout is not None
        assert b'"id":1' in process.stdout.readline()
        send(process, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    except BaseException:
        process.kill()
        process.wait(timeout=10)
        raise
    return process


def draft_then_hang_up(parameters: StdioServerParameters, release: threading.Event, *, dies: bool = False) -> int:
    """Start a stdio server, send a draft call, close its stdin, and return its exit code.

    With `dies`, the client also closes the server's stdout, as a client process that was killed does,
    so the server's reply meets a closed pipe.
    """
    process = start_session(parameters)
    try:
        assert process.stdout is not None
        send(process, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                       "params": {"name": "draft_purchase_order", "arguments": DRAFT}})
        assert process.stdin is not None
        process.stdin.close()
        if dies:
            process.stdout.close()
        release.set()
        exit_code = process.wait(timeout=60)
        assert process.stderr is not None
        print(process.stderr.read().decode(errors="replace"))
        return exit_code
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


# The call is made slow by holding SQLite's write lock from a second connection.
@sqlite_only
@pytest.mark.parametrize("dies", [False, True], ids=["hangs up", "dies"])
async def test_stdio_hang_up_writes_nothing_partial(database, dies):
    """A stdio server whose client goes away either commits or cancels the call in progress, then exits cleanly."""
    tokens = await small_workspace(database)
    path = database_path(database)
    parameters = stdio_server(path, tokens.agent_secret)

    # The client goes away while the draft waits for the write lock.
    with write_lock_held(path, seconds=10.0) as release:
        exit_code = draft_then_hang_up(parameters, release, dies=dies)

    assert exit_code == 0
    event = await last_event(database)
    assert event.action == "draft_purchase_order"
    drafts = await row_count(database, Draft)
    assert (event.outcome, drafts) in {("ok", 1), ("cancelled", 0)}
    assert await row_count(database, ActivityEvent) == 1
    async with Client(parameters, mode="legacy") as client:
        after = await client.call_tool("get_item", {"sku": "WIDGET-1"})
    assert not after.is_error, error_text(after)


def time_out_then_hang_up(parameters: StdioServerParameters, path: Path) -> tuple[bytes, int, str]:
    """Start a stdio server with a 1 s deadline, make a draft time out on a held write lock, then close stdin.

    Returns the call's reply, the server's exit code and its log.
    """
    process = start_session(parameters, "--tool-timeout", "1")
    try:
        assert process.stdout is not None
        # The lock is taken once the server has started, so only the call waits for it.
        with write_lock_held(path, seconds=20.0):
            send(process, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                           "params": {"name": "draft_purchase_order", "arguments": DRAFT}})
            reply = process.stdout.readline()
            while b'"id":2' not in reply and reply:
                # Log notifications may come first.
                reply = process.stdout.readline()
            assert process.stdin is not None
            process.stdin.close()
            exit_code = process.wait(timeout=15)
        assert process.stderr is not None
        return reply, exit_code, process.stderr.read().decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@sqlite_only
async def test_stopped_server_logs_unrecorded_timeout(database):
    """A timed-out call's event waits for the write lock; a server stopped first logs the call instead."""
    tokens = await small_workspace(database)
    path = database_path(database)

    reply, exit_code, log = time_out_then_hang_up(stdio_server(path, tokens.agent_secret), path)

    assert b"timed out after 1 s" in reply
    assert exit_code == 0
    assert "so this call is not in the activity history: draft_purchase_order by" in log
    assert await row_count(database, Draft) == 0
    assert await row_count(database, ActivityEvent) == 0


def test_settle_heap_freezes_start_objects():
    gc.collect()
    assert gc.get_freeze_count() == 0
    try:
        settle_heap()
        frozen = gc.get_freeze_count()
        remaining = len(gc.get_objects())
    finally:
        gc.unfreeze()

    # Everything the imports made is frozen, so a full collection now walks almost nothing.
    assert frozen > 50_000
    assert remaining < 1_000

"""Finder runs planned in a worker process give the records an in-process run gives, and writes stay exact."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mcp import Client
from sqlalchemy import select

from order3_mcp.app import Order3
from order3_mcp.server import build_server
from order3_mcp.services.scan_workers import ScanWorkers
from store.models import ExceptionRecord
from tests.factory import small_workspace
from tests.http_support import order3
from tests.test_exception_lifecycle import add_reorder_rule, set_reorder_point
from tests.test_finder_freshness import Clock


async def _records(database) -> list[tuple]:
    async with database.read() as session:
        rows = await session.execute(
            select(
                ExceptionRecord.kind, ExceptionRecord.fingerprint, ExceptionRecord.status, ExceptionRecord.reason,
                ExceptionRecord.evidence, ExceptionRecord.last_seen,
            ).order_by(ExceptionRecord.id)
        )
        return [tuple(row) for row in rows.all()]


async def test_worker_plan_matches_server_records(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    app = Order3(database, clock=clock)
    workers = ScanWorkers(database, workers=1)
    app.scan_workers = workers
    try:
        async with Client(build_server(app, tokens.agent)) as client:
            first = (await client.call_tool("find_exceptions", {"refresh": True})).structured_content
            after_first = await _records(database)
            clock.now += timedelta(minutes=1)
            # Nothing changed: the worker's plan only moves last_seen.
            await client.call_tool("find_exceptions", {"refresh": True})
            unchanged = await _records(database)
            clock.now += timedelta(minutes=1)
            await set_reorder_point(database, "1")
            cleared = (await client.call_tool("find_low_stock", {"refresh": True})).structured_content
    finally:
        workers.close()

    [low] = [exception for exception in first["exceptions"] if exception["kind"] == "low_stock"]
    assert low["sku"] == "WIDGET-1"
    assert [row[:5] for row in unchanged] == [row[:5] for row in after_first]
    assert {row[5] for row in unchanged if row[2] == "open"} == {datetime(2026, 3, 2, 9, 1, tzinfo=UTC)}
    assert cleared["exceptions"] == []
    async with database.read() as session:
        record = (await session.execute(select(ExceptionRecord).where(ExceptionRecord.id == low["exception_id"]))).scalar_one()
    assert record.status == "resolved"
    assert record.resolved_at == datetime(2026, 3, 2, 9, 2, tzinfo=UTC)


async def test_in_process_and_worker_runs_agree(database, db_location_factory):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    server_app = Order3(database, clock=clock)
    async with Client(build_server(server_app, tokens.agent)) as client:
        await client.call_tool("find_exceptions", {"refresh": True})
    in_process = await _records(database)

    workers = ScanWorkers(database, workers=1)
    worker_app = Order3(database, clock=clock)
    worker_app.scan_workers = workers
    try:
        async with Client(build_server(worker_app, tokens.agent)) as client:
            await client.call_tool("find_exceptions", {"refresh": True})
    finally:
        workers.close()
    assert await _records(database) == in_process


async def test_worker_killed_is_replaced(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    app = Order3(database, clock=clock)
    workers = ScanWorkers(database, workers=1)
    app.scan_workers = workers
    try:
        async with Client(build_server(app, tokens.agent)) as client:
            first = await client.call_tool("find_low_stock", {"refresh": True})
            [worker] = workers._pool._processes.values()
            os.kill(worker.pid, signal.SIGKILL)
            worker.join(10)
            clock.now += timedelta(minutes=1)
            again = await client.call_tool("find_low_stock", {"refresh": True})
    finally:
        workers.close()

    assert not first.is_error, first.content
    assert not again.is_error, again.content
    assert [e["sku"] for e in again.structured_content["exceptions"]] == ["WIDGET-1"]
    assert again.structured_content["refreshed_at"] == {"low_stock": "2026-03-02T09:01:00+00:00"}


async def test_started_workers_report_ready(database):
    workers = ScanWorkers(database, workers=2)
    try:
        assert await workers.ready(timeout=1) is True  # nothing started yet, so nothing to wait for
        workers.start()
        ready = await workers.ready(timeout=60)
        started = [process for process in workers._pool._processes.values() if process.is_alive()]
    finally:
        workers.close()

    assert ready is True
    assert started


async def test_worker_dead_at_start_not_ready(database):
    workers = ScanWorkers(database, workers=1)
    try:
        workers.start()
        [worker] = workers._pool._processes.values()
        os.kill(worker.pid, signal.SIGKILL)
        ready = await workers.ready(timeout=60)
    finally:
        workers.close()

    assert ready is False


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads child processes from /proc")
def test_workers_stop_when_the_server_is_terminated(tmp_path):
    db = tmp_path / "order3.db"
    order3(db, "init", "--workspace", "main", "--admin", "root")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "serve.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "order3_mcp.cli", "--db", str(db), "serve", "--http", "--port", str(port), "--log-level", "info"],
        stdout=subprocess.DEVNULL, stderr=log.open("wb"),
    )
    try:
        deadline = time.monotonic() + 30
        workers: set[int] = set()
        while time.monotonic() < deadline and not workers:
            time.sleep(0.2)
            workers = _children(server.pid)
        assert workers, "the server started no worker process"
        # Stopped once it serves: before that, uvicorn has not taken over SIGTERM yet.
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        server.send_signal(signal.SIGTERM)
        exit_code = server.wait(30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers)
        # A graceful stop runs the clean-up: the workers' pool is closed, so nothing is reported leaked.
        assert exit_code == 0
        stderr = log.read_text()
        assert "server stopped" in stderr
        assert "leaked" not in stderr
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)

"""Concurrent load benchmark: several MCP clients, a person receiving and an integration syncing at once.

Usage:
    .venv/bin/python -m benchmarks.load --items 100000 --locations 5 --clients 8 --seconds 60
    .venv/bin/python -m benchmarks.load --items 2000 --clients 4 --calls 50 --transport stdio

The run generates a workspace with `benchmarks.generate`, then for each
transport measures the same mix of calls twice: by one client alone, then by
`--clients` client processes at once. Over HTTP all clients share one
`order3 serve --http` process on a free loopback port; over stdio each client
process starts its own `order3 serve` child. Client 1 is a person receiving
goods through the receiving service (the path `order3 receive` takes), client 2
an integration sending sync batches, and the others are agents that read,
run finders and draft purchase orders. The client alone runs every role in
turn. Afterwards `order3 verify` and `order3 activity verify` run, and every
write reported as successful is looked up in the database, where it must be
present exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# Share of an agent's calls per tool; the rest of the mix is one receipt or sync batch per role turn.
AGENT_MIX = (
    ("get_item", 35),
    ("get_stock", 25),
    ("find_exceptions", 10),
    ("find_low_stock", 10),
    ("draft_purchase_order", 20),
)
SYNC_BATCH_RECORDS = 20
STARTUP_SECONDS = 60.0
# The HTTP server's per-token rate limit is lifted so the benchmark measures the server, not the limiter.
UNLIMITED_RATE = ("--rate-limit", "1000000", "--rate-burst", "1000000")


@dataclass
class Principals:
    """Token secrets for the benchmark's principals."""

    agents: list[str]
    person: str
    integration: str
    admin: str


@dataclass
class ClientPlan:
    """Work of one client process: its roles, transport, bounds and seed."""

    index: int
    roles: list[str]
    transport: str
    db: str
    url: str
    secrets: dict[str, str]
    seconds: float
    calls: int
    seed: int
    items: int
    locations: int
    orderable: list[tuple[str, str, str]]
    open_lines: list[tuple[str, int]]
    tool_timeout: float
    nice: int = 0


@dataclass
class ClientReport:
    """Samples, errors and successful writes of one client process."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    drafts: list[tuple[str, int]] = field(default_factory=list)
    receipts: list[str] = field(default_factory=list)
    batches: list[tuple[str, int]] = field(default_factory=list)
    server_peak_kib: list[int] = field(default_factory=list)
    seconds: float = 0.0
    #: CPU time of the client process while its turns ran.
    client_cpu_seconds: float = 0.0
    #: CPU time of the client's stdio servers, with their workers, while its turns ran.
    server_cpu_seconds: float = 0.0


def error_kind(message: str) -> str:
    """Return the class of a failed call: "database is locked" apart, then timeouts, conflicts and the rest."""
    lowered = message.lower()
    if "database is locked" in lowered or "stayed locked" in lowered or "was busy" in lowered:
        return "database is locked"
    if "timed out" in lowered:
        return "timed out"
    if "conflict" in lowered or "idempotency key" in lowered:
        return "conflict"
    return "other: " + message[:80]


def peak_memory_kib(pid: int) -> int:
    """Return the peak resident set size (VmHWM) of a running process, in KiB, or 0 when it has gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """Return the user and system CPU time a process has used, in seconds, or 0 when it has gone.

    With `reaped_children`, the time of its children that exited and were waited for is added.
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, cutime and cstime are fields 14 to 17 of proc_pid_stat(5), and fields[0] here is field 3.
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """Return the CPU time of a server and its workers: running children, and those that exited and were waited for.

    A worker that exits between two readings moves its time from the running
    children to the server's reaped children, so the difference stays whole
    (a worker not yet waited for is missed until it is).
    """
    return cpu_seconds(pid, reaped_children=True) + sum(cpu_seconds(child) for child in child_pids(pid))


def child_pids(parent: int) -> list[int]:
    """Return the ids of the running child processes of `parent`."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.append(int(entry))
    return children


# ---------------------------------------------------------------- client process


class LoadClient:
    """One client's connections and its stream of arguments."""

    def __init__(self, plan: ClientPlan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.report = ClientReport()
        self.sessions: dict[str, Any] = {}
        self.person: tuple[Any, Any] | None = None
        self.line_turn = 0

    def sku(self) -> str:
        return f"SKU-{self.rng.randint(1, self.plan.items):06d}"

    def agent_call(self) -> tuple[str, dict[str, Any]]:
        tools, weights = zip(*AGENT_MIX, strict=True)
        tool = self.rng.choices(tools, weights)[0]
        if tool == "get_item":
            return tool, {"sku": self.sku()}
        if tool == "get_stock":
            return tool, {"sku": self.sku(), "location": f"WH{self.rng.randint(1, self.plan.locations)}"}
        if tool == "find_exceptions":
            return tool, {"limit": 20}
        if tool == "find_low_stock":
            return tool, {"location": f"WH{self.rng.randint(1, self.plan.locations)}", "limit": 20}
        sku, supplier, quantity = self.rng.choice(self.plan.orderable)
        return tool, {
            "supplier": supplier,
            "lines": [{"sku": sku, "quantity": quantity, "location": "WH1"}],
            "rationale": "Load benchmark draft: stock position is below the reorder point.",
            "idempotency_key": f"load-{uuid.uuid4().hex}",
        }

    def sync_call(self) -> dict[str, Any]:
        records = []
        for number in range(SYNC_BATCH_RECORDS):
            records.append({
                "external_id": f"q-{uuid.uuid4().hex[:12]}-{number}",
                "kind": "channel_quantity",
                "sku": self.sku(),
                "location": f"WH{self.rng.randint(1, self.plan.locations)}",
                "quantity": str(self.rng.randint(0, 500)),
            })
        return {"source": "load-feed", "batch_id": f"batch-{uuid.uuid4().hex}", "records": records}

    def record(self, tool: str, started: float, failure: str | None) -> None:
        elapsed = (time.perf_counter() - started) * 1000
        if failure is None:
            self.report.samples.setdefault(tool, []).append(elapsed)
        else:
            self.report.errors[f"{tool}: {error_kind(failure)}"] += 1

    async def call_tool(self, role: str, tool: str, arguments: dict[str, Any]) -> Any:
        started = time.perf_counter()
        try:
            result = await self.sessions[role].call_tool(tool, arguments)
        except Exception as exc:  # noqa: BLE001 - every failure kind is counted, none stops the run
            self.record(tool, started, f"{type(exc).__name__}: {exc}")
            return None
        if result.is_error:
            self.record(tool, started, " ".join(getattr(block, "text", "") for block in result.content))
            return None
        self.record(tool, started, None)
        return result.structured_content

    async def turn(self, role: str) -> None:
        if role == "agent":
            tool, arguments = self.agent_call()
            content = await self.call_tool(role, tool, arguments)
            if content is not None and tool == "draft_purchase_order":
                self.report.drafts.append((arguments["idempotency_key"], content["draft_id"]))
        elif role == "integration":
            arguments = self.sync_call()
            content = await self.call_tool(role, "ingest_external_snapshot", arguments)
            if content is not None:
                self.report.batches.append((arguments["batch_id"], content["received"]))
        else:
            await self.receive()

    async def receive(self) -> None:
        from order3_mcp.services import receiving

        assert self.person is not None
        app, person = self.person
        number, line_no = self.plan.open_lines[self.line_turn % len(self.plan.open_lines)]
        self.line_turn += 1
        delivery = f"DN-{uuid.uuid4().hex[:16]}"
        started = time.perf_counter()
        try:
            await receiving.receive(
                app, person, purchase_order=number, line_no=line_no, quantity="1", delivery=delivery,
                idempotency_key=f"load-{delivery}",
            )
        except Exception as exc:  # noqa: BLE001 - every failure kind is counted, none stops the run
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            self.record("receive", started, message)
            return
        self.record("receive", started, None)
        self.report.receipts.append(delivery)


async def run_client(plan: ClientPlan, start_together: Any = None) -> ClientReport:
    """Open the plan's connections, wait for the other clients to open theirs, run the turns until the bound, and report.

    `start_together` is a barrier shared by the clients of one run, so no
    client's calls are timed while the others are still starting their
    processes and servers.
    """
    from contextlib import AsyncExitStack

    import httpx2
    from mcp import Client, StdioServerParameters
    from mcp.client.streamable_http import streamable_http_client

    from order3_mcp.app import Order3
    from store.db import Database, resolve_url

    caller = LoadClient(plan)
    async with AsyncExitStack() as stack:
        for role in sorted(set(plan.roles)):
            secret = plan.secrets[role]
            if role == "person":
                database = Database(resolve_url(Path(plan.db)))
                stack.push_async_callback(database.dispose)
                app = Order3(database)
                caller.person = (app, await app.authenticate(secret, channel="cli"))
            elif plan.transport == "http":
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret}"}, timeout=httpx2.Timeout(600.0))
                )
                caller.sessions[role] = await stack.enter_async_context(
                    Client(streamable_http_client(plan.url, http_client=http))
                )
            else:
                environment = dict(os.environ, ORDER3_DB=plan.db, ORDER3_TOKEN=secret)
                parameters = StdioServerParameters(
                    command=sys.executable,
                    args=["-m", "order3_mcp.cli", "serve", "--tool-timeout", str(plan.tool_timeout)],
                    env=environment,
                    cwd=str(REPO_ROOT),
                )
                caller.sessions[role] = await stack.enter_async_context(
                    Client(parameters, mode="legacy", read_timeout_seconds=600)
                )

        if plan.nice:
            # Only this process: its stdio servers started above keep their priority.
            os.nice(plan.nice)
        if start_together is not None:
            try:
                await asyncio.to_thread(start_together.wait, STARTUP_SECONDS)
            except threading.BrokenBarrierError:
                # A client that failed to start reports that itself; the others run without it.
                pass
        servers = child_pids(os.getpid())
        server_cpu = sum(tree_cpu_seconds(pid) for pid in servers)
        client_cpu = time.process_time()
        started = time.perf_counter()
        deadline = started + plan.seconds
        turns = 0
        while time.perf_counter() < deadline and turns < plan.calls:
            await caller.turn(plan.roles[turns % len(plan.roles)])
            turns += 1
        caller.report.seconds = time.perf_counter() - started
        caller.report.client_cpu_seconds = time.process_time() - client_cpu
        caller.report.server_cpu_seconds = sum(tree_cpu_seconds(pid) for pid in servers) - server_cpu
        # stdio servers are this process's children; their peak memory is read before they stop.
        caller.report.server_peak_kib = [peak_memory_kib(pid) for pid in child_pids(os.getpid())]
    return caller.report


def client_main(plan: ClientPlan, results: Any, start_together: Any = None) -> None:
    """Entry point of a client process: run the plan and send its report back.

    A client that cannot start (its stdio server could not open the database,
    say) reports that as an error instead of leaving the coordinator waiting.
    """
    try:
        report = asyncio.run(run_client(plan, start_together))
    except BaseException as exc:  # noqa: BLE001 - a failed start is a figure of the run
        if start_together is not None:
            # Release the clients waiting for this one.
            start_together.abort()
        report = ClientReport()
        report.errors[f"client start: {error_kind(describe_failure(exc))}"] += 1
    results.put((plan.index, report))


def describe_failure(exc: BaseException) -> str:
    """Return the messages of an exception and of any exceptions chained inside it.

    A group (an anyio task group's, for example) is described by the
    exceptions it contains, which name the failure, not by its generic message.
    """
    inner = getattr(exc, "exceptions", ())
    parts = [describe_failure(grouped) for grouped in inner] if inner else [f"{type(exc).__name__}: {exc}"]
    if exc.__cause__ is not None:
        parts.append(describe_failure(exc.__cause__))
    return "; ".join(parts)


# ---------------------------------------------------------------- coordinator


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_http_server(db: Path, *, tool_timeout: float, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start `order3 serve --http` on a free loopback port and wait until it listens."""
    import socket

    port = free_port()
    environment = {key: value for key, value in os.environ.items() if key not in ("ORDER3_TOKEN", "ORDER3_DB")}
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "order3_mcp.cli", "--db", str(db), "serve", "--http", "--port", str(port),
             "--tool-timeout", str(tool_timeout), *UNLIMITED_RATE],
            cwd=REPO_ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"order3 serve --http exited with {process.returncode}; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, f"http://127.0.0.1:{port}/mcp"
        except OSError:
            time.sleep(0.1)
    stop(process)
    raise RuntimeError(f"order3 serve --http did not listen within {STARTUP_SECONDS:.0f} s; see {log}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server process started here, by its pid."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=20)


def create_principals(db: Path, *, agents: int) -> Principals:
    """Issue tokens for the agents, the receiving person, the integration and an admin."""
    from policies import scopes_for
    from store.db import Database, resolve_url
    from store.tokens import issue_token

    async def issue() -> Principals:
        database = Database(resolve_url(db))
        try:
            async with database.write() as session:
                async def token(kind: str, principal: str, role: str) -> str:
                    _, secret = await issue_token(
                        session, workspace_id=1, principal_kind=kind, principal=principal, role=role,
                        scopes=scopes_for(principal_kind=kind, role=role),
                    )
                    return secret

                agent_secrets = [await token("agent", f"load-agent-{number}", "agent") for number in range(1, agents + 1)]
                return Principals(
                    agents=agent_secrets,
                    person=await token("user", "load-receiver", "operator"),
                    integration=await token("integration", "load-feed", "integration"),
                    admin=await token("user", "load-admin", "admin"),
                )
        finally:
            await database.dispose()

    return asyncio.run(issue())


def open_lines(db: Path, *, limit: int = 5000) -> list[tuple[str, int]]:
    """Return (PO number, line number) of open lines with at least 1,000 units left to receive."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT po.number, line.line_no FROM purchase_order_line line "
            "JOIN purchase_order po ON po.id = line.purchase_order_id "
            "WHERE po.status IN ('issued', 'partially_received') "
            "AND line.quantity_ordered - line.quantity_received >= 1000 * 1000000 ORDER BY line.id LIMIT ?",
            (limit,),
        ).fetchall()
    if not rows:
        # Small workspaces have few large lines; a receipt of 1 needs only one unit left.
        with sqlite3.connect(db) as connection:
            rows = connection.execute(
                "SELECT po.number, line.line_no FROM purchase_order_line line "
                "JOIN purchase_order po ON po.id = line.purchase_order_id "
                "WHERE po.status IN ('issued', 'partially_received') "
                "AND line.quantity_ordered - line.quantity_received >= 100 * 1000000 ORDER BY line.id LIMIT ?",
                (limit,),
            ).fetchall()
    return [(number, line_no) for number, line_no in rows]


def run_phase(plans: list[ClientPlan]) -> tuple[list[ClientReport], float]:
    """Run one client process per plan at once and return their reports and the wall time."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start_together = context.Barrier(len(plans))
    processes = [context.Process(target=client_main, args=(plan, results, start_together)) for plan in plans]
    started = time.perf_counter()
    for process in processes:
        process.start()
    limit = time.monotonic() + max(plan.seconds for plan in plans) + 600
    reports: dict[int, ClientReport] = {}
    while len(reports) < len(processes):
        try:
            index, report = results.get(timeout=5)
        except queue.Empty:
            if time.monotonic() > limit or not any(process.is_alive() for process in processes):
                missing = len(processes) - len(reports)
                print(f"{missing} client process(es) ended without a report", file=sys.stderr)
                break
            continue
        reports[index] = report
    for process in processes:
        process.join(timeout=60)
    return [reports[index] for index in sorted(reports)], time.perf_counter() - started


def summarise(
    reports: list[ClientReport], *, server_peak_kib: int, wall_seconds: float, server_cpu_seconds: float = 0.0
) -> dict[str, Any]:
    """Merge client reports into throughput, percentiles per tool, errors by kind, CPU time and peak memory.

    `server_cpu_seconds` is the CPU time of the shared HTTP server and its scan
    workers during the run; stdio servers are counted by their clients.
    """
    samples: dict[str, list[float]] = {}
    errors: Counter[str] = Counter()
    for report in reports:
        for tool, values in report.samples.items():
            samples.setdefault(tool, []).extend(values)
        errors.update(report.errors)
    # A client that could not start made no call.
    calls = sum(len(values) for values in samples.values()) + sum(
        count for kind, count in errors.items() if not kind.startswith("client start")
    )
    measured = max((report.seconds for report in reports), default=0.0)
    busy_ms = sum(map(sum, samples.values()))
    timed = sum(map(len, samples.values()))

    def percentile(values: list[float], share: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    peaks = [kib for report in reports for kib in report.server_peak_kib]
    return {
        "clients": len(reports),
        "calls": calls,
        "seconds": round(measured, 1),
        "wall_seconds": round(wall_seconds, 1),
        "throughput": round(calls / measured, 1) if measured else 0.0,
        "tools": {
            tool: {
                "calls": len(values), "mean_ms": round(sum(values) / len(values), 1),
                "p50_ms": round(percentile(values, 0.5), 1), "p99_ms": round(percentile(values, 0.99), 1),
            }
            for tool, values in sorted(samples.items())
        },
        "mean_ms": round(busy_ms / timed, 1) if timed else 0.0,
        # The mean number of calls in progress, which falls below the clients once some have finished.
        "calls_in_progress": round(busy_ms / 1000 / measured, 2) if measured else 0.0,
        "errors": dict(sorted(errors.items())),
        "database_is_locked": sum(count for kind, count in errors.items() if kind.endswith("database is locked")),
        "server_peak_mib": round(max([server_peak_kib, *peaks]) / 1024, 1),
        "server_peak_mib_total": round((server_peak_kib + sum(peaks)) / 1024, 1),
        "cpu_seconds": {
            "servers": round(server_cpu_seconds + sum(report.server_cpu_seconds for report in reports), 1),
            "clients": round(sum(report.client_cpu_seconds for report in reports), 1),
        },
    }


def check_writes(db: Path, reports: list[ClientReport]) -> dict[str, Any]:
    """Look up every write reported as successful; each must be stored exactly once."""
    drafts = [entry for report in reports for entry in report.drafts]
    receipts = [entry for report in reports for entry in report.receipts]
    batches = [entry for report in reports for entry in report.batches]
    problems: list[str] = []
    with sqlite3.connect(db) as connection:
        for key, draft_id in drafts:
            rows = connection.execute("SELECT id FROM draft WHERE idempotency_key = ?", (key,)).fetchall()
            if rows != [(draft_id,)]:
                problems.append(f"draft with key {key} returned id {draft_id}; stored: {rows}")
        # A receipt's external reference is "delivery:line:<line id>:<delivery>"; the deliveries are unique per run.
        stored = Counter(
            ref.rsplit(":", 1)[1]
            for (ref,) in connection.execute("SELECT external_ref FROM receiving_event WHERE external_ref LIKE '%:DN-%'")
        )
        for delivery in receipts:
            if stored[delivery] != 1:
                problems.append(f"receipt {delivery} stored {stored[delivery]} times")
        for batch_id, received in batches:
            found = connection.execute(
                "SELECT count(*) FROM external_snapshot WHERE source = 'load-feed' AND batch_id = ?", (batch_id,)
            ).fetchone()[0]
            if found != received:
                problems.append(f"sync batch {batch_id} reported {received} records; stored: {found}")
    return {"drafts": len(drafts), "receipts": len(receipts), "sync_batches": len(batches), "problems": problems[:20],
            "problem_count": len(problems)}


def order3_check(db: Path, admin: str, *command: str) -> dict[str, Any]:
    """Run an `order3` check command and return its exit code and output lines (at most 20)."""
    environment = dict(os.environ, ORDER3_DB=str(db), ORDER3_TOKEN=admin)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "order3_mcp.cli", *command], check=False, cwd=REPO_ROOT, env=environment,
        capture_output=True, text=True, timeout=1800,
    )
    lines = (done.stdout.strip() or done.stderr.strip()).splitlines()
    return {"command": "order3 " + " ".join(command), "exit_code": done.returncode, "output": lines[:20],
            "seconds": round(time.perf_counter() - started, 1)}


def plans_for(
    options: argparse.Namespace, *, transport: str, db: Path, url: str, principals: Principals, workspace: Any,
    lines: list[tuple[str, int]], alone: bool,
) -> list[ClientPlan]:
    """Return the client plans of one phase: every role in one client, or one role per client."""
    roles_of = ["person", "integration"] + ["agent"] * max(0, options.clients - 2)
    if options.clients == 1:
        roles_of = ["agent"]
    common = {
        "transport": transport, "db": str(db), "url": url, "seconds": options.seconds, "items": workspace.items,
        "locations": workspace.locations, "orderable": workspace.orderable, "open_lines": lines,
        "tool_timeout": options.tool_timeout, "nice": options.client_nice,
    }
    if alone:
        secrets = {"agent": principals.agents[0], "person": principals.person, "integration": principals.integration}
        # The single client makes as many calls as the whole group, in the group's role proportions.
        return [ClientPlan(index=0, roles=roles_of, secrets=secrets, calls=options.calls * options.clients,
                           seed=options.seed, **common)]
    plans = []
    for index, role in enumerate(roles_of):
        secret = {"agent": principals.agents[index % len(principals.agents)], "person": principals.person,
                  "integration": principals.integration}[role]
        plans.append(ClientPlan(index=index, roles=[role], secrets={role: secret}, calls=options.calls,
                                seed=options.seed + 1 + index, **common))
    return plans


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages."""
    with open("/proc/loadavg") as loadavg:
        return " ".join(loadavg.read().split()[:3])


def run_transport(
    options: argparse.Namespace, *, transport: str, db: Path, principals: Principals, workspace: Any,
    lines: list[tuple[str, int]], scratch: Path,
) -> dict[str, Any]:
    """Measure the mix by one client alone, then by all clients at once, over one transport."""
    figures: dict[str, Any] = {}
    for phase, alone in (("alone", True), ("concurrent", False)):
        server = None
        url = ""
        if transport == "http":
            server, url = start_http_server(db, tool_timeout=options.tool_timeout, log=scratch / "serve-http.log")
        try:
            plans = plans_for(options, transport=transport, db=db, url=url, principals=principals, workspace=workspace,
                              lines=lines, alone=alone)
            print(f"{transport} {phase}: {len(plans)} client(s), load average {load_average()}", file=sys.stderr)
            before = load_average()
            server_cpu = tree_cpu_seconds(server.pid) if server is not None else 0.0
            reports, wall = run_phase(plans)
            server_peak = peak_memory_kib(server.pid) if server is not None else 0
            if server is not None:
                server_cpu = tree_cpu_seconds(server.pid) - server_cpu
        finally:
            if server is not None:
                stop(server)
        summary = summarise(reports, server_peak_kib=server_peak, wall_seconds=wall, server_cpu_seconds=server_cpu)
        summary["load_average_before"] = before
        summary["load_average_after"] = load_average()
        summary["writes"] = check_writes(db, reports)
        figures[phase] = summary
        print(json.dumps(summary, indent=1), file=sys.stderr)
    figures["targets"] = targets(figures["alone"], figures["concurrent"])
    return figures


def capacity(alone: dict[str, Any], concurrent: dict[str, Any]) -> dict[str, Any]:
    """Return the smallest mean slow-down that this machine's cores allow the concurrent run, beside the measured one.

    Each client calls again as soon as its call returns, so by Little's law a
    run's mean call time is the mean number of calls in progress over its
    throughput. The concurrent mean over the alone mean is therefore (calls
    in progress concurrently / alone) / (throughput ratio). The throughput
    cannot grow past the cores: with u cores busy alone and C cores in all,
    the ratio is at most C / u times the alone CPU time per call over the
    concurrent one. The CPU figures include the clients, which run on the
    same machine.
    """
    cores = len(os.sched_getaffinity(0))

    def cpu(run: dict[str, Any]) -> float:
        return run["cpu_seconds"]["servers"] + run["cpu_seconds"]["clients"]

    if not all((alone["seconds"], alone["calls"], concurrent["calls"], cpu(alone), alone["calls_in_progress"])):
        return {"cores": cores}
    busy_alone = cpu(alone) / alone["seconds"]
    cpu_growth = (cpu(concurrent) / concurrent["calls"]) / (cpu(alone) / alone["calls"])
    ceiling = cores / busy_alone / cpu_growth
    in_progress = concurrent["calls_in_progress"] / alone["calls_in_progress"]
    return {
        "cores": cores,
        "cores_busy_alone": round(busy_alone, 2),
        "cores_busy_concurrent": round(cpu(concurrent) / concurrent["seconds"], 2) if concurrent["seconds"] else None,
        "cpu_per_call_growth": round(cpu_growth, 2),
        "throughput_ratio_ceiling": round(ceiling, 2),
        "calls_in_progress_ratio": round(in_progress, 2),
        "mean_slowdown_floor": round(in_progress / ceiling, 2),
        "mean_slowdown": round(concurrent["mean_ms"] / alone["mean_ms"], 2) if alone["mean_ms"] else None,
    }


def targets(alone: dict[str, Any], concurrent: dict[str, Any]) -> dict[str, Any]:
    """Compare the concurrent run with the client alone against the targets, beside the machine's capacity bound."""
    def ratio(tool: str, key: str) -> float | None:
        solo = alone["tools"].get(tool, {}).get(key)
        shared = concurrent["tools"].get(tool, {}).get(key)
        return round(shared / solo, 2) if solo and shared is not None else None

    throughput = round(concurrent["throughput"] / alone["throughput"], 2) if alone["throughput"] else None
    finder = [value for value in (ratio("find_exceptions", "p50_ms"), ratio("find_low_stock", "p50_ms")) if value is not None]
    get_item = ratio("get_item", "p99_ms")
    return {
        "capacity": capacity(alone, concurrent),
        "database_is_locked": {"value": concurrent["database_is_locked"], "met": concurrent["database_is_locked"] == 0},
        "throughput_ratio": {"value": throughput, "met": throughput is not None and throughput >= 0.9},
        "finder_p50_ratio": {"value": max(finder) if finder else None, "met": bool(finder) and max(finder) <= 2.0},
        "get_item_p99_ratio": {"value": get_item, "met": get_item is not None and get_item <= 3.0},
    }


def main(argv: list[str] | None = None) -> None:
    """Parse the options, generate the workspace and run every phase."""
    from benchmarks.generate import generate
    from benchmarks.run import check_output_paths, machine

    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000, help="Items in the generated workspace.")
    parser.add_argument("--locations", type=int, default=5, help="Locations in the generated workspace.")
    parser.add_argument("--clients", type=int, default=8, help="Client processes in the concurrent run (1 to 64).")
    parser.add_argument("--seconds", type=float, default=60.0, help="Time limit of each run, in seconds.")
    parser.add_argument("--calls", type=int, default=100_000, help="Calls per client in the concurrent run; the client alone makes this many × --clients.")
    parser.add_argument("--transport", choices=("http", "stdio", "both"), default="both", help="Transports to measure.")
    parser.add_argument("--tool-timeout", type=float, default=30.0, help="The servers' tool deadline, in seconds.")
    parser.add_argument("--seed", type=int, default=42, help="Seed of the workspace and of the call mix.")
    parser.add_argument(
        "--client-nice", type=int, default=0,
        help="Niceness added to each client process (0 to 19), not to the servers: higher gives the servers "
        "the CPU first, as if the clients ran on other machines. The person's receipts run in its client "
        "process, so they get this niceness too.",
    )
    parser.add_argument("--keep", type=Path, help="Directory to keep the database in; by default a temporary one is deleted.")
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    options = parser.parse_args(argv)
    if not 1 <= options.clients <= 64:
        parser.error(f"--clients {options.clients} is out of range; use 1 to 64.")
    if not 1 <= options.seconds <= 3600:
        parser.error(f"--seconds {options.seconds:g} is out of range; use 1 to 3600.")
    if options.calls < 1:
        parser.error(f"--calls {options.calls} is out of range; use 1 or more.")
    if options.items < 1:
        parser.error(f"--items {options.items} is out of range; use 1 or more.")
    if options.locations < 1:
        parser.error(f"--locations {options.locations} is out of range; use 1 or more.")
    if not 0.001 <= options.tool_timeout <= 3600:
        # The range `order3 serve --tool-timeout` accepts.
        parser.error(f"--tool-timeout {options.tool_timeout:g} is out of range; use 0.001 to 3600 seconds.")
    if not 0 <= options.client_nice <= 19:
        parser.error(f"--client-nice {options.client_nice} is out of range; use 0 to 19.")
    check_output_paths(parser, keep=options.keep, json_path=options.json,
                       database_name=f"load-{options.items}x{options.locations}.db")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="order3-load-") as temporary:
        scratch = options.keep or Path(temporary)
        scratch.mkdir(parents=True, exist_ok=True)
        db = scratch / f"load-{options.items}x{options.locations}.db"
        print(f"generating {options.items} × {options.locations} in {db}", file=sys.stderr)
        workspace = generate(db, items=options.items, locations=options.locations, seed=options.seed)
        principals = create_principals(db, agents=max(1, options.clients - 2))
        lines = open_lines(db)
        figures: dict[str, Any] = {
            "machine": machine(),
            "command": "python -m benchmarks.load " + " ".join(argv if argv is not None else sys.argv[1:]),
            "items": options.items,
            "locations": options.locations,
            "rows": workspace.rows,
            "generation_seconds": round(workspace.seconds, 1),
            "load_average_start": load_average(),
        }
        # Every finder kind runs over every item once before the timed runs, so the first
        # run alone does not carry the whole runs that later runs never pay for.
        figures["finders_warmed_up"] = order3_check(db, principals.admin, "exceptions", "list", "--limit", "1")
        for transport in ("http", "stdio") if options.transport == "both" else (options.transport,):
            figures[transport] = run_transport(
                options, transport=transport, db=db, principals=principals, workspace=workspace, lines=lines, scratch=scratch
            )
        # Bring every finder kind up to date over the items the run wrote, so verify compares
        # each stored exception with a recomputation over every item.
        figures["finders_caught_up"] = order3_check(db, principals.admin, "exceptions", "list", "--limit", "1")
        figures["verify"] = order3_check(db, principals.admin, "verify")
        figures["activity_verify"] = order3_check(db, principals.admin, "activity", "verify")
        figures["total_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(figures, indent=2, default=str))
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2, default=str))
    failed_starts = sum(
        count
        for transport in ("http", "stdio") if transport in figures
        for phase in ("alone", "concurrent")
        for kind, count in figures[transport][phase]["errors"].items()
        if kind.startswith("client start")
    )
    if failed_starts:
        sys.exit(f"{failed_starts} client(s) could not start; their errors are in the figures above.")


if __name__ == "__main__":
    main()

"""Benchmark entry point: generate a workspace, time the finders against SQL floors, and time tool calls over MCP.

Usage:
    .venv/bin/python -m benchmarks.run --items 100000 --locations 5
    .venv/bin/python -m benchmarks.run --quick

Everything runs on a fresh SQLite file under a new temporary directory, which
is deleted at the end unless --keep is given. The stdio server is a child
process started with `python -m order3_mcp.cli serve` and stopped when its
client closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from sqlalchemy.engine import make_url

from benchmarks import floors, sdk_floor
from benchmarks.generate import Workspace, generate
from benchmarks.to_postgres import copy_to_postgres
from order3_mcp.app import Order3
from order3_mcp.server import build_server
from order3_mcp.services import reads
from policies import default_policy_path, load_policy
from store import finders
from store.db import Database, resolve_url
from store.finders.delays import business_date
from store.pg_scratch import drop_scratch_database, server_url
from store.stock import verify_ledger
from store.types import SCALE

REPO_ROOT = Path(__file__).resolve().parent.parent
# The tool deadline of the servers timed here. A whole rerun of every finder at
# 100,000 items took 19 to 33 s on the machines measured, and the servers'
# default deadline of 30 s would stop the slower ones. Here they are timed.
TOOL_TIMEOUT = 600.0


@dataclass
class FinderTiming:
    """One finder beside its SQL floor."""

    name: str
    finder_ms: float
    finder_rows: int
    floor_ms: float
    floor_rows: int

    @property
    def ratio(self) -> float:
        return self.finder_ms / self.floor_ms if self.floor_ms else float("inf")


@dataclass
class Latency:
    """Latency of one tool over one transport, in milliseconds."""

    transport: str
    tool: str
    samples: list[float] = field(default_factory=list)

    def percentile(self, share: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def median_ms(run: Callable[[], Any], *, repeats: int) -> tuple[float, Any]:
    """Call `run` `repeats` times and return the median wall time in ms and the last result."""
    times = []
    result = None
    for _ in range(repeats):
        # Each run starts without the previous result alive, as amedian_ms does.
        result = None
        started = time.perf_counter()
        result = run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


async def amedian_ms(run: Callable[[], Awaitable[Any]], *, repeats: int) -> tuple[float, Any]:
    """Await `run` `repeats` times and return the median wall time in ms and the last result."""
    times = []
    result = None
    for _ in range(repeats):
        # Release the previous result first. Holding 66,000 findings while the
        # next run builds as many again made that run allocate fresh memory, which
        # cost about 20 % more than the run in a service, where a refresh's
        # findings are released once they are stored.
        result = None
        started = time.perf_counter()
        result = await run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def finder_calls(database: Database, workspace: Workspace) -> dict[str, Callable[[], Awaitable[list[finders.Finding]]]]:
    """Return each finder as a call that opens its own read session, with the default policy's tolerances."""
    tolerances = load_policy(default_policy_path()).tolerances
    now = workspace.now

    async def low_stock() -> list[finders.Finding]:
        async with database.read() as session:
            return await finders.find_low_stock(session, workspace_id=1, now=now)

    async def supplier_delays() -> list[finders.Finding]:
        async with database.read() as session:
            return await finders.find_supplier_delays(session, workspace_id=1, timezone="Europe/Berlin", now=now)

    async def receiving() -> list[finders.Finding]:
        async with database.read() as session:
            return await finders.find_receiving_variances(
                session, workspace_id=1, short_pct=tolerances.receiving_short_pct, over_pct=tolerances.receiving_over_pct
            )

    async def count_drift() -> list[finders.Finding]:
        async with database.read() as session:
            return await finders.find_count_drift(
                session,
                workspace_id=1,
                abs_tol=tolerances.count_drift_abs,
                pct_tol=tolerances.count_drift_pct,
                value_tol=tolerances.count_drift_value,
                repeat=tolerances.count_drift_repeat,
            )

    calls = {
        "low stock": low_stock,
        "supplier delay": supplier_delays,
        "receiving variance": receiving,
        "count drift": count_drift,
    }
    mismatch_finder = getattr(finders, "find_mismatches", None)
    if mismatch_finder is not None:
        async def mismatches() -> list[finders.Finding]:
            async with database.read() as session:
                return await mismatch_finder(
                    session,
                    workspace_id=1,
                    qty_tol=tolerances.mismatch_qty_abs,
                    value_tol=tolerances.mismatch_value_abs,
                    now=now,
                )

        calls["mismatches"] = mismatches
    return calls


def utc_offset_modifier(moment: datetime, timezone: str) -> str:
    """Return SQLite's date() modifier for the UTC offset of `timezone` at `moment`, such as '+3600 seconds'."""
    offset = moment.astimezone(ZoneInfo(timezone)).utcoffset()
    return f"{int(offset.total_seconds()) if offset is not None else 0:+d} seconds"


def floor_statements(workspace: Workspace) -> dict[str, tuple[str, dict[str, Any]]]:
    """Return each finder's floor statement with its parameters."""
    tolerances = load_policy(default_policy_path()).tolerances
    today = business_date(workspace.now, timezone="Europe/Berlin")
    value_tol = tolerances.count_drift_value
    return {
        "low stock": (floors.LOW_STOCK, {"workspace_id": 1}),
        "mismatches": (floors.MISMATCHES, {"workspace_id": 1, "qty_tol": int(tolerances.mismatch_qty_abs * SCALE)}),
        "supplier delay": (
            floors.SUPPLIER_DELAYS,
            {"workspace_id": 1, "today": today.isoformat(), "utc_offset": utc_offset_modifier(workspace.now, "Europe/Berlin")},
        ),
        "receiving variance": (
            floors.RECEIVING_VARIANCES,
            {
                "workspace_id": 1,
                "short_pct": float(tolerances.receiving_short_pct),
                "over_pct": float(tolerances.receiving_over_pct),
            },
        ),
        "count drift": (
            floors.COUNT_DRIFT,
            {
                "workspace_id": 1,
                "abs_tol": int(tolerances.count_drift_abs * SCALE),
                "pct_tol": float(tolerances.count_drift_pct),
                "value_tol_squared": float(value_tol) * SCALE * SCALE if value_tol is not None else 1e300,
                "repeat": tolerances.count_drift_repeat,
            },
        ),
    }


async def time_finders(workspace: Workspace, *, repeats: int) -> tuple[list[FinderTiming], dict[str, float]]:
    """Time every finder and its floor (median of `repeats`), then measure the finder phase's peak memory."""
    database = Database(resolve_url(workspace.location))
    calls = finder_calls(database, workspace)
    # The floors are hand-written SQLite statements, so a PostgreSQL run has none.
    statements = {} if workspace.database_url else floor_statements(workspace)
    connection = sqlite3.connect(workspace.path)
    timings = []
    try:
        for name, call in calls.items():
            # One unmeasured run warms the page cache and the compiled-statement caches.
            await call()
            finder_ms, findings = await amedian_ms(call, repeats=repeats)
            if name in statements:
                sql, params = statements[name]
                floor_ms, floor_rows = median_ms(
                    lambda sql=sql, params=params: connection.execute(sql, params).fetchall(), repeats=repeats
                )
                timings.append(FinderTiming(name, finder_ms, len(findings), floor_ms, len(floor_rows)))
            else:
                timings.append(FinderTiming(name, finder_ms, len(findings), 0.0, -1))
            print(f"  {name}: {finder_ms:.1f} ms, {len(findings)} findings", file=sys.stderr)

        tracemalloc.start()
        for call in calls.values():
            await call()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        connection.close()
        await database.dispose()
    memory = {
        "tracemalloc_peak_mib": peak / 2**20,
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    return timings, memory


async def check_ledger(workspace: Workspace) -> None:
    """Record how many stock levels `verify_ledger` checked and how many disagree with the ledger."""
    database = Database(resolve_url(workspace.location))
    try:
        async with database.read() as session:
            checked, mismatches = await verify_ledger(session, workspace_id=1)
    finally:
        await database.dispose()
    workspace.ledger_levels_checked = checked
    workspace.ledger_mismatches = len(mismatches)


class ToolLoad:
    """The tool calls each latency run makes, with fresh arguments per call."""

    def __init__(self, workspace: Workspace, *, seed: int = 7) -> None:
        import random

        self.workspace = workspace
        self.rng = random.Random(seed)

    def get_item(self) -> dict[str, Any]:
        return {"sku": f"SKU-{self.rng.randint(1, self.workspace.items):06d}"}

    def draft_purchase_order(self) -> dict[str, Any]:
        sku, supplier, quantity = self.rng.choice(self.workspace.orderable)
        return {
            "supplier": supplier,
            "lines": [{"sku": sku, "quantity": quantity, "location": "WH1"}],
            "rationale": "Benchmark draft: stock position is below the reorder point.",
            "idempotency_key": uuid.uuid4().hex,
        }


async def measure_client(
    client: Client,
    transport: str,
    load: ToolLoad,
    *,
    calls: int,
    find_calls: int,
    find_seconds: float,
    ping: bool,
) -> list[Latency]:
    """Time ping (legacy connections only), get_item, find_exceptions and draft_purchase_order on one connection."""
    results = []

    async def timed(tool: str, count: int, call: Callable[[], Awaitable[Any]], *, max_seconds: float = 300.0) -> None:
        latency = Latency(transport, tool)
        deadline = time.perf_counter() + max_seconds
        for index in range(count):
            started = time.perf_counter()
            outcome = await call()
            latency.samples.append((time.perf_counter() - started) * 1000)
            if getattr(outcome, "is_error", False):
                raise RuntimeError(f"{tool} over {transport} failed: {outcome.content}")
            if started > deadline and index >= 2:
                break
        results.append(latency)
        print(
            f"  {transport} {tool}: n={len(latency.samples)} p50={latency.percentile(0.5):.2f} ms "
            f"p99={latency.percentile(0.99):.2f} ms",
            file=sys.stderr,
        )

    # A short warm-up so first-call costs (imports, statement compilation) stay out of the samples.
    for _ in range(20):
        await client.call_tool("get_item", load.get_item())
    if ping:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            await timed("ping", calls, client.send_ping)
    await timed("get_item", calls, lambda: client.call_tool("get_item", load.get_item()))
    await timed("draft_purchase_order", calls, lambda: client.call_tool("draft_purchase_order", load.draft_purchase_order()))
    # After the drafts above, the first of these calls reruns every finder; the rest reuse its results.
    await timed("find_exceptions", calls, lambda: client.call_tool("find_exceptions", {}), max_seconds=60.0)
    await timed(
        "find_exceptions (refresh=true)",
        find_calls,
        lambda: client.call_tool("find_exceptions", {"refresh": True}),
        max_seconds=find_seconds,
    )
    # No finder computes sync conflicts, so this call lists stored records without a refresh.
    await timed(
        "find_exceptions (kind=sync_conflict, no refresh)",
        calls,
        lambda: client.call_tool("find_exceptions", {"kind": "sync_conflict"}),
        max_seconds=60.0,
    )
    return results


async def measure_sdk_floor(workspace: Workspace, *, calls: int) -> list[Latency]:
    """Time ping and a no-op get_item that returns a real item, over stdio and in memory (JSON-RPC).

    The no-op server (`benchmarks/sdk_floor.py`) returns the stored result of a
    real get_item call, so the payload, the schemas and the validation match.
    """
    database = Database(resolve_url(workspace.location))
    try:
        app = Order3(database)
        caller = await app.authenticate(workspace.agent_secret, channel="mcp")
        result = await reads.get_item(app, caller, sku=ToolLoad(workspace).get_item()["sku"])
    finally:
        await database.dispose()

    results: list[Latency] = []
    with tempfile.TemporaryDirectory(prefix="order3-sdk-floor-") as scratch:
        stored = Path(scratch) / "item.json"
        stored.write_text(result.model_dump_json())
        parameters = StdioServerParameters(
            command=sys.executable, args=["-m", "benchmarks.sdk_floor", str(stored)], cwd=str(REPO_ROOT)
        )
        for transport, client in (
            ("stdio, no-op server", Client(parameters, mode="legacy", read_timeout_seconds=600)),
            ("memory (JSON-RPC), no-op server", Client(sdk_floor.build(result), mode="legacy")),
        ):
            async with client:
                results += await time_calls(client, transport, {"get_item": {"sku": result.sku}}, calls=calls)
    return results


async def time_calls(client: Client, transport: str, tools: dict[str, dict[str, Any]], *, calls: int) -> list[Latency]:
    """Time `calls` pings, then `calls` calls of each tool with fixed arguments, after a short warm-up."""
    for tool, arguments in tools.items():
        for _ in range(20):
            await client.call_tool(tool, arguments)
    results = []
    runs: list[tuple[str, Callable[[], Awaitable[Any]]]] = [("ping", client.send_ping)]
    runs += [(tool, lambda tool=tool, arguments=arguments: client.call_tool(tool, arguments)) for tool, arguments in tools.items()]
    for tool, call in runs:
        latency = Latency(transport, tool)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(calls):
                started = time.perf_counter()
                outcome = await call()
                latency.samples.append((time.perf_counter() - started) * 1000)
                if getattr(outcome, "is_error", False):
                    raise RuntimeError(f"{tool} over {transport} failed: {outcome.content}")
        print(
            f"  {transport} {tool}: n={len(latency.samples)} p50={latency.percentile(0.5):.2f} ms "
            f"p99={latency.percentile(0.99):.2f} ms",
            file=sys.stderr,
        )
        results.append(latency)
    return results


async def measure_latency(workspace: Workspace, *, calls: int, find_calls: int, find_seconds: float) -> list[Latency]:
    """Run the tool load over stdio (a `serve` child process) and in memory (direct and JSON-RPC)."""
    load = ToolLoad(workspace)
    results: list[Latency] = []

    environment = dict(os.environ)
    environment.update(ORDER3_DB=workspace.location, ORDER3_TOKEN=workspace.agent_secret)
    parameters = StdioServerParameters(
        command=sys.executable, args=["-m", "order3_mcp.cli", "serve", "--tool-timeout", str(TOOL_TIMEOUT)],
        env=environment, cwd=str(REPO_ROOT),
    )
    async with Client(parameters, mode="legacy", read_timeout_seconds=600) as client:
        results += await measure_client(
            client, "stdio", load, calls=calls, find_calls=find_calls, find_seconds=find_seconds, ping=True
        )

    results += await measure_sdk_floor(workspace, calls=calls)

    database = Database(resolve_url(workspace.location))
    try:
        app = Order3(database)
        caller = await app.authenticate(workspace.agent_secret, channel="mcp")
        async with Client(build_server(app, caller, tool_timeout=TOOL_TIMEOUT), mode="legacy") as client:
            results += await measure_client(
                client, "memory (JSON-RPC)", load, calls=calls, find_calls=find_calls, find_seconds=find_seconds, ping=True
            )
        async with Client(build_server(app, caller, tool_timeout=TOOL_TIMEOUT)) as client:
            results += await measure_client(
                client, "memory (direct)", load, calls=calls, find_calls=find_calls, find_seconds=find_seconds, ping=False
            )
    finally:
        await database.dispose()
    return results


def machine() -> dict[str, str]:
    """Describe the machine: CPU model, cores, RAM, Python and SQLite versions."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        total_kib = int(meminfo.readline().split()[1])
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram_gib": f"{total_kib / 2**20:.1f}",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


def report(
    workspace: Workspace,
    timings: list[FinderTiming],
    memory: dict[str, float],
    latencies: list[Latency],
    *,
    command: str,
    total_seconds: float,
) -> dict[str, Any]:
    """Return every figure as a JSON-ready dict."""
    pings = {latency.transport: latency.percentile(0.5) for latency in latencies if latency.tool == "ping"}
    ping_floor = {**pings, "memory (direct)": pings.get("memory (JSON-RPC)", 0.0)}
    return {
        "machine": machine(),
        "backend": "postgresql" if workspace.database_url else "sqlite",
        "command": command,
        "items": workspace.items,
        "locations": workspace.locations,
        "rows": workspace.rows,
        "generation_seconds": round(workspace.seconds, 2),
        "ledger": {"levels_checked": workspace.ledger_levels_checked, "mismatches": workspace.ledger_mismatches},
        "snapshot_note": workspace.snapshot_note,
        "finders": [
            {
                "finder": timing.name,
                "finder_ms": round(timing.finder_ms, 2),
                "finder_rows": timing.finder_rows,
                "floor_ms": round(timing.floor_ms, 2),
                "floor_rows": timing.floor_rows,
                "ratio": round(timing.ratio, 2),
            }
            for timing in timings
        ],
        "finder_memory": {name: round(value, 1) for name, value in memory.items()},
        "latency": [
            {
                "transport": latency.transport,
                "tool": latency.tool,
                "calls": len(latency.samples),
                "p50_ms": round(latency.percentile(0.5), 3),
                "p99_ms": round(latency.percentile(0.99), 3),
                "p50_over_ping": round(latency.percentile(0.5) / ping_floor[latency.transport], 1)
                if ping_floor.get(latency.transport)
                else None,
            }
            for latency in latencies
        ],
        "total_seconds": round(total_seconds, 1),
    }


def print_tables(figures: dict[str, Any]) -> None:
    """Print the figures as Markdown tables on stdout."""
    print(f"Machine: {figures['machine']}")
    print(f"Command: {figures['command']}")
    print(f"Generated {figures['items']} items × {figures['locations']} locations in {figures['generation_seconds']} s; "
          f"ledger: {figures['ledger']['levels_checked']} levels checked, {figures['ledger']['mismatches']} mismatches")
    if figures["snapshot_note"]:
        print(f"Snapshots: {figures['snapshot_note']}")
    print("\n| table | rows |\n|---|---:|")
    for table, count in sorted(figures["rows"].items()):
        print(f"| {table} | {count:,} |")
    print("\n| finder | finder ms | rows | floor ms | floor rows | ratio |\n|---|---:|---:|---:|---:|---:|")
    for row in figures["finders"]:
        print(f"| {row['finder']} | {row['finder_ms']} | {row['finder_rows']} | {row['floor_ms']} | {row['floor_rows']} | {row['ratio']} |")
    print(f"\nFinder phase memory: {figures['finder_memory']}")
    print("\n| transport | tool | calls | p50 ms | p99 ms | p50 / ping |\n|---|---|---:|---:|---:|---:|")
    for row in figures["latency"]:
        print(f"| {row['transport']} | {row['tool']} | {row['calls']} | {row['p50_ms']} | {row['p99_ms']} | {row['p50_over_ping']} |")
    print(f"\nTotal run time: {figures['total_seconds']} s")


def check_output_paths(
    parser: argparse.ArgumentParser, *, keep: Path | None, json_path: Path | None, database_name: str
) -> None:
    """Reject a --keep or --json path the run could not write at its end, before it generates anything."""
    if json_path is not None and json_path.is_dir():
        parser.error(f"--json {json_path} is a folder; pass the path of a file to write.")
    if json_path is not None and not json_path.parent.is_dir():
        parser.error(f"--json {json_path}: {json_path.parent} is not an existing folder; create it or choose another path.")
    if keep is None:
        return
    if keep.exists() and not keep.is_dir():
        parser.error(f"--keep {keep} is a file; pass a folder to keep the database in.")
    if (keep / database_name).exists():
        parser.error(f"--keep {keep} already holds {database_name}; remove it or pass another folder.")


def main(argv: list[str] | None = None) -> None:
    """Parse the options and run every phase."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000, help="Items in the generated workspace.")
    parser.add_argument("--locations", type=int, default=5, help="Locations in the generated workspace.")
    parser.add_argument("--quick", action="store_true", help="Smoke run: 2,000 items × 5 locations, 200 calls per tool.")
    parser.add_argument("--calls", type=int, default=1000, help="Calls per tool and transport for the latency runs.")
    parser.add_argument("--find-calls", type=int, default=1000, help="Maximum find_exceptions calls per transport.")
    parser.add_argument("--find-seconds", type=float, default=60.0, help="Time limit for the find_exceptions calls per transport, in seconds.")
    parser.add_argument("--repeats", type=int, default=5, help="Runs per finder and floor; the median is reported.")
    parser.add_argument("--seed", type=int, default=42, help="Seed of the generated workspace.")
    parser.add_argument("--keep", type=Path, help="Directory to keep the database in; by default a temporary one is deleted.")
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="PostgreSQL server URL: copy the generated workspace into a new database there and time it on PostgreSQL "
        "(the database is dropped at the end; SQLite floors are skipped).",
    )
    options = parser.parse_args(argv)
    if options.quick:
        options.items, options.locations, options.calls = 2000, 5, 200
        options.find_calls = min(options.find_calls, 200)
    check_output_paths(parser, keep=options.keep, json_path=options.json,
                       database_name=f"bench-{options.items}x{options.locations}.db")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="order3-bench-") as scratch:
        directory = options.keep or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"bench-{options.items}x{options.locations}.db"
        print(f"generating {options.items} × {options.locations} in {path}", file=sys.stderr)
        workspace = generate(path, items=options.items, locations=options.locations, seed=options.seed)
        if options.postgres:
            print(f"copying into a new database on {options.postgres}", file=sys.stderr)
            workspace.database_url = asyncio.run(copy_to_postgres(path, options.postgres))
        try:
            asyncio.run(check_ledger(workspace))
            print(f"  {workspace.seconds:.1f} s, ledger mismatches: {workspace.ledger_mismatches}", file=sys.stderr)
            print("timing finders", file=sys.stderr)
            timings, memory = asyncio.run(time_finders(workspace, repeats=options.repeats))
            print("timing tool calls", file=sys.stderr)
            latencies = asyncio.run(
                measure_latency(workspace, calls=options.calls, find_calls=options.find_calls, find_seconds=options.find_seconds)
            )
        finally:
            if workspace.database_url:
                admin_database = make_url(server_url(options.postgres)).database or "postgres"
                asyncio.run(drop_scratch_database(workspace.database_url, admin_database=admin_database))
    command = "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])
    figures = report(workspace, timings, memory, latencies, command=command, total_seconds=time.perf_counter() - started)
    print_tables(figures)
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()

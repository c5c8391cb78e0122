"""Workspace isolation: alpha's tokens cannot see, change or detect beta's records in the same database file.

Both workspaces hold the same SKUs, location and supplier codes, purchase
order and transfer numbers. Every lookup of a record that exists only in
beta must return the same result as a lookup of a value that never existed,
so nothing reveals that beta has it, and beta's rows must not change.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from order3_mcp.app import Order3
from order3_mcp.server import build_server
from store.db import Database, open_database
from tests.conftest import REPO_ROOT
from tests.test_cli import order3
from tests.two_workspaces import (
    ALPHA_OPENING,
    BETA_MARKER,
    PRINCIPALS,
    Built,
    build_two_workspaces,
    max_seq,
    workspace_rows,
)

NEVER_ID = 987654
NEVER_SKU = "NEVER-SKU-9"
NEVER_LOCATION = "NOWHERE9"
NEVER_SUPPLIER = "NOSUPP9"
NEVER_NUMBER = "PO-999999"
NEVER_TRANSFER = "TR-999999"
RATIONALE = "Testing that another workspace's records stay out of reach."

READ_TOOLS = {
    "search_items", "get_item", "list_locations", "get_stock", "list_movements", "list_counts", "list_suppliers",
    "get_supplier", "list_purchase_orders", "get_purchase_order", "list_receiving_events", "list_reservations",
    "list_drafts", "get_draft", "list_activity", "list_outbox",
    "find_low_stock", "find_count_drift", "find_short_receiving", "find_supplier_delays", "find_mismatches",
    "find_exceptions",
}
DRAFT_TOOLS = {
    "draft_purchase_order", "draft_transfer", "draft_count_task", "draft_supplier_note", "draft_reconciliation",
    "draft_adjustment", "withdraw_draft",
}
APPROVE_TOOLS = {"approve_draft", "reject_draft", "dismiss_exception"}
EXECUTE_TOOLS = {"execute_draft"}
SYNC_TOOLS = {"ingest_external_snapshot"}

# The exact tool list of each principal in tests.two_workspaces.PRINCIPALS.
TOOLS_BY_PRINCIPAL = {
    "buyer-bot": READ_TOOLS | DRAFT_TOOLS,
    "vera": READ_TOOLS,
    "otto": READ_TOOLS | DRAFT_TOOLS,
    "alice": READ_TOOLS | DRAFT_TOOLS | APPROVE_TOOLS | EXECUTE_TOOLS,
    "carol": READ_TOOLS | APPROVE_TOOLS | EXECUTE_TOOLS,
    "shopify-eu": READ_TOOLS | SYNC_TOOLS,
    "root": READ_TOOLS | DRAFT_TOOLS | APPROVE_TOOLS | EXECUTE_TOOLS | SYNC_TOOLS,
}


@dataclass
class World:
    """A fresh copy of the two-workspace database."""

    db: Path
    alpha: Built
    beta: Built


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Built, Built]:
    path = tmp_path_factory.mktemp("two-workspaces") / "template.db"

    async def build() -> tuple[Built, Built]:
        database = await open_database(path)
        try:
            return await build_two_workspaces(database)
        finally:
            await database.dispose()

    alpha, beta = anyio.run(build)
    return path, alpha, beta


@pytest.fixture
def world(template: tuple[Path, Built, Built], tmp_path: Path) -> World:
    source, alpha, beta = template
    copy = tmp_path / "order3.db"
    with sqlite3.connect(source) as original, sqlite3.connect(copy) as target:
        original.backup(target)
    return World(db=copy, alpha=alpha, beta=beta)


@dataclass(frozen=True)
class Probe:
    """One call made with beta's value and again with a value that never existed."""

    tool: str
    arguments: Callable[[Any], dict[str, Any]]
    beta_value: Any
    never_value: Any
    principal: str = "buyer-bot"

    def label(self) -> str:
        return f"{self.tool}({self.arguments('<value>')})"


def probes(world: World) -> list[Probe]:
    """Return every read, finder and draft tool call aimed at a record that only beta has."""
    beta = world.beta
    draft, exception = beta.pending_draft, beta.exception_ids[0]
    only_order = beta.purchase_orders[1]
    sku = ("ONLY-B-1", NEVER_SKU)
    location = ("WHB", NEVER_LOCATION)
    supplier = ("SUPB", NEVER_SUPPLIER)
    order = (only_order, NEVER_NUMBER)
    draft_id = (draft, NEVER_ID)
    exception_id = (exception, NEVER_ID)

    def purchase(**changes: Any) -> dict[str, Any]:
        arguments: dict[str, Any] = {"supplier": "ACME", "lines": [{"sku": "WIDGET-1", "quantity": 20}], "rationale": RATIONALE}
        return arguments | changes

    def transfer(**changes: Any) -> dict[str, Any]:
        arguments = {"sku": "WIDGET-1", "quantity": 1, "from_location": "WH1", "to_location": "WH2", "rationale": RATIONALE}
        return arguments | changes

    def count(**changes: Any) -> dict[str, Any]:
        return {"location": "WH1", "lines": [{"sku": "WIDGET-1"}], "rationale": RATIONALE} | changes

    def note(**changes: Any) -> dict[str, Any]:
        arguments = {"supplier": "ACME", "subject": "Delivery", "body": "When will it ship?", "rationale": RATIONALE}
        return arguments | changes

    def adjust(**changes: Any) -> dict[str, Any]:
        arguments = {"sku": "WIDGET-1", "location": "WH1", "quantity": "-1", "reason_code": "damaged", "rationale": RATIONALE}
        return arguments | changes

    finders = ["find_low_stock", "find_count_drift", "find_short_receiving", "find_supplier_delays", "find_mismatches", "find_exceptions"]
    return [
        # First, because every later refused call about a draft id is an event of alpha's about that id.
        Probe("list_activity", lambda v: {"draft_id": v}, *draft_id),
        Probe("get_item", lambda v: {"sku": v}, *sku),
        Probe("get_stock", lambda v: {"sku": v}, *sku),
        Probe("get_stock", lambda v: {"sku": "WIDGET-1", "location": v}, *location),
        Probe("search_items", lambda v: {"query": v}, *sku),
        Probe("list_movements", lambda v: {"sku": v}, *sku),
        Probe("list_movements", lambda v: {"location": v}, *location),
        Probe("list_counts", lambda v: {"sku": v}, *sku),
        Probe("list_counts", lambda v: {"location": v}, *location),
        Probe("list_suppliers", lambda v: {"query": v}, *supplier),
        Probe("get_supplier", lambda v: {"code": v}, *supplier),
        Probe("list_purchase_orders", lambda v: {"supplier": v}, *supplier),
        Probe("get_purchase_order", lambda v: {"number": v}, *order),
        Probe("list_receiving_events", lambda v: {"purchase_order": v}, *order),
        Probe("list_reservations", lambda v: {"sku": v}, *sku),
        Probe("get_draft", lambda v: {"draft_id": v}, *draft_id),
        Probe("list_outbox", lambda v: {"supplier": v}, *supplier),
        *[Probe(name, lambda v: {"location": v}, *location) for name in finders],
        *[Probe(name, lambda v: {"supplier": v}, *supplier) for name in finders],
        Probe("draft_purchase_order", lambda v: purchase(lines=[{"sku": v, "quantity": 20}]), *sku),
        Probe("draft_purchase_order", lambda v: purchase(supplier=v), *supplier),
        Probe("draft_purchase_order", lambda v: purchase(lines=[{"sku": "WIDGET-1", "quantity": 20, "location": v}]), *location),
        Probe("draft_purchase_order", lambda v: purchase(exception_ids=[v]), *exception_id),
        Probe("draft_transfer", lambda v: transfer(sku=v), *sku),
        Probe("draft_transfer", lambda v: transfer(from_location=v), *location),
        Probe("draft_transfer", lambda v: transfer(to_location=v), *location),
        Probe("draft_transfer", lambda v: transfer(exception_ids=[v]), *exception_id),
        Probe("draft_count_task", lambda v: count(location=v), *location),
        Probe("draft_count_task", lambda v: count(lines=[{"sku": v}]), *sku),
        Probe("draft_count_task", lambda v: count(exception_ids=[v]), *exception_id),
        Probe("draft_supplier_note", lambda v: note(supplier=v), *supplier),
        Probe("draft_supplier_note", lambda v: note(purchase_order=v), *order),
        Probe("draft_supplier_note", lambda v: note(exception_ids=[v]), *exception_id),
        Probe("draft_reconciliation", lambda v: {"exception_id": v, "action": "accept_ours", "rationale": RATIONALE}, *exception_id),
        Probe("draft_adjustment", lambda v: adjust(sku=v), *sku),
        Probe("draft_adjustment", lambda v: adjust(location=v), *location),
        Probe("draft_adjustment", lambda v: adjust(exception_ids=[v]), *exception_id),
        Probe("withdraw_draft", lambda v: {"draft_id": v, "reason": "No longer needed."}, *draft_id),
        Probe("approve_draft", lambda v: {"draft_id": v}, *draft_id, principal="alice"),
        Probe("reject_draft", lambda v: {"draft_id": v, "reason": "Not needed at all."}, *draft_id, principal="alice"),
        Probe("execute_draft", lambda v: {"draft_id": beta.approved_draft if v == draft else v}, *draft_id, principal="alice"),
        Probe("dismiss_exception", lambda v: {"exception_id": v, "reason": "No action is needed here."}, *exception_id, principal="alice"),
    ]


def normalise(text: str, value: Any) -> str:
    """Replace the probed value with a placeholder so that two results can be compared."""
    return re.sub(rf"(?<![\w-]){re.escape(str(value))}(?![\w-])", "<value>", text)


def result_text(result: Any) -> str:
    """Return a tool result as one text: the error message, or the structured content as JSON."""
    if result.is_error or result.structured_content is None:
        return "ERROR " + " ".join(block.text for block in result.content if hasattr(block, "text"))
    return json.dumps(result.structured_content, sort_keys=True)


def volatile_free(text: str) -> str:
    """Drop the run times finders report, which differ between two calls a moment apart."""
    return re.sub(r'"(ran_at|checked_at|detected_at|generated_at|as_of)": "[^"]*"', r'"\1": "<time>"', text)


async def probe_session(client_for: Callable[[str], Any], world: World, *, principals: set[str] | None = None) -> list[str]:
    """Run every probe and return the problems found: results that differ, and beta text shown to alpha."""
    problems: list[str] = []
    for probe in probes(world):
        if principals is not None and probe.principal not in principals:
            continue
        client = client_for(probe.principal)
        beta_result_text = result_text(await client.call_tool(probe.tool, probe.arguments(probe.beta_value)))
        never_result_text = result_text(await client.call_tool(probe.tool, probe.arguments(probe.never_value)))
        if BETA_MARKER in beta_result_text:
            problems.append(f"{probe.label()} showed beta's data: {beta_result_text[:300]}")
        beta_value = probe.beta_value if probe.tool != "execute_draft" else world.beta.approved_draft
        if volatile_free(normalise(beta_result_text, beta_value)) != volatile_free(normalise(never_result_text, probe.never_value)):
            problems.append(f"{probe.label()} returned a different result for beta's value:\n  beta:  {beta_result_text[:400]}\n  never: {never_result_text[:400]}")
    return problems


async def unfiltered_reads(client: Any) -> list[str]:
    """Call each read tool without filters and return any result that contains beta's text."""
    leaks = []
    for tool in sorted(READ_TOOLS):
        arguments: dict[str, Any] = {"sku": "WIDGET-1"} if tool in ("get_item", "get_stock") else {}
        if tool == "get_supplier":
            arguments = {"code": "ACME"}
        if tool == "get_purchase_order":
            arguments = {"number": "PO-000001"}
        if tool == "get_draft":
            continue
        text = result_text(await client.call_tool(tool, arguments))
        if BETA_MARKER in text:
            leaks.append(f"{tool}: {text[:300]}")
    return leaks


def test_in_memory_mcp_hides_beta(world: World) -> None:
    before = workspace_rows(world.db, world.beta.workspace_id)

    async def run() -> list[str]:
        database = await open_database(world.db)
        try:
            app = Order3(database)
            agent = await app.authenticate(world.alpha.secrets["buyer-bot"], channel="mcp")
            buyer = await app.authenticate(world.alpha.secrets["alice"], channel="mcp")
            async with Client(build_server(app, agent)) as agent_client, Client(build_server(app, buyer)) as buyer_client:
                clients = {"buyer-bot": agent_client, "alice": buyer_client}
                problems = await probe_session(clients.__getitem__, world)
                problems += await unfiltered_reads(agent_client)
            return problems
        finally:
            await database.dispose()

    problems = anyio.run(run)

    assert problems == []
    assert workspace_rows(world.db, world.beta.workspace_id) == before


def test_stdio_mcp_hides_beta(world: World) -> None:
    before = workspace_rows(world.db, world.beta.workspace_id)
    env = {key: value for key, value in os.environ.items() if key not in ("ORDER3_TOKEN", "ORDER3_DB")}
    env.update({"ORDER3_DB": str(world.db), "ORDER3_TOKEN": world.alpha.secrets["buyer-bot"]})
    server = StdioServerParameters(command=sys.executable, args=["-m", "order3_mcp.cli", "serve"], env=env, cwd=str(REPO_ROOT))

    async def run() -> list[str]:
        with anyio.fail_after(120):
            async with Client(server) as client:
                problems = await probe_session(lambda _principal: client, world, principals={"buyer-bot"})
                return problems + await unfiltered_reads(client)

    problems = anyio.run(run)

    assert problems == []
    assert workspace_rows(world.db, world.beta.workspace_id) == before


CLI_PROBES: list[tuple[str, Callable[[World], tuple[list[str], list[str]]]]] = [
    ("drafts show", lambda w: (["drafts", "show", str(w.beta.pending_draft)], ["drafts", "show", str(NEVER_ID)])),
    ("drafts approve", lambda w: (["drafts", "approve", str(w.beta.pending_draft)], ["drafts", "approve", str(NEVER_ID)])),
    ("drafts execute", lambda w: (["drafts", "execute", str(w.beta.approved_draft)], ["drafts", "execute", str(NEVER_ID)])),
    ("exceptions show", lambda w: (["exceptions", "show", str(w.beta.exception_ids[0])], ["exceptions", "show", str(NEVER_ID)])),
    (
        "exceptions dismiss",
        lambda w: (
            ["exceptions", "dismiss", str(w.beta.exception_ids[0]), "--reason", "No action is needed here."],
            ["exceptions", "dismiss", str(NEVER_ID), "--reason", "No action is needed here."],
        ),
    ),
    ("count show", lambda w: (["count", "show", str(w.beta.count_task)], ["count", "show", str(NEVER_ID)])),
    ("transfer receive", lambda w: (["transfer", "receive", w.beta.transfers[1]], ["transfer", "receive", NEVER_TRANSFER])),
    ("receive", lambda w: (["receive", w.beta.purchase_orders[1], "1", "1"], ["receive", NEVER_NUMBER, "1", "1"])),
    ("activity show", lambda w: (["activity", "show", str(max_seq(w.db, w.beta.workspace_id))], ["activity", "show", str(NEVER_ID)])),
    (
        "drafts reject",
        lambda w: (
            ["drafts", "reject", str(w.beta.pending_draft), "--reason", "Not needed at all."],
            ["drafts", "reject", str(NEVER_ID), "--reason", "Not needed at all."],
        ),
    ),
    (
        "count submit",
        lambda w: (
            ["count", "submit", str(w.beta.count_task), "--line", "GADGET-2=5"],
            ["count", "submit", str(NEVER_ID), "--line", "GADGET-2=5"],
        ),
    ),
    ("token revoke", lambda w: (["token", "revoke", str(w.beta.callers["alice"].token_id)], ["token", "revoke", str(NEVER_ID)])),
    ("token rotate", lambda w: (["token", "rotate", str(w.beta.callers["alice"].token_id)], ["token", "rotate", str(NEVER_ID)])),
]
# Token commands need the admin scope; the others run as the buyer alice.
CLI_PRINCIPALS = {"token revoke": "root", "token rotate": "root"}


@pytest.mark.parametrize(("command", "arguments"), CLI_PROBES, ids=[name for name, _ in CLI_PROBES])
def test_cli_hides_beta(world: World, command: str, arguments: Callable[[World], tuple[list[str], list[str]]]) -> None:
    beta_args, never_args = arguments(world)
    assert max_seq(world.db, world.alpha.workspace_id) + 10 < max_seq(world.db, world.beta.workspace_id)
    before = workspace_rows(world.db, world.beta.workspace_id)

    secret = world.alpha.secrets[CLI_PRINCIPALS.get(command, "alice")]
    beta_result = order3(world.db, *beta_args, token=secret)
    never_result = order3(world.db, *never_args, token=secret)

    assert beta_result.exit_code == 4, beta_result.output
    assert never_result.exit_code == 4, never_result.output
    assert beta_result.stdout == ""
    value_at = 1 if command == "receive" else 2
    assert normalise(beta_result.stderr, beta_args[value_at]) == normalise(never_result.stderr, never_args[value_at])
    assert BETA_MARKER not in beta_result.output
    assert workspace_rows(world.db, world.beta.workspace_id) == before


@pytest.mark.parametrize("principal", sorted(TOOLS_BY_PRINCIPAL))
def test_tool_list_per_role(world: World, principal: str) -> None:
    roles = {name: role for name, _kind, role in PRINCIPALS}

    async def run(database: Database) -> set[str]:
        app = Order3(database)
        caller = await app.authenticate(world.alpha.secrets[principal], channel="mcp")
        async with Client(build_server(app, caller), mode="legacy") as client:
            return {tool.name for tool in (await client.list_tools()).tools}

    async def on_file() -> set[str]:
        database = await open_database(world.db)
        try:
            return await run(database)
        finally:
            await database.dispose()

    assert roles[principal] in ("agent", "viewer", "operator", "buyer", "approver", "integration", "admin")
    assert anyio.run(on_file) == TOOLS_BY_PRINCIPAL[principal]


def test_tool_lists_cover_every_role() -> None:
    assert sorted(role for name, _kind, role in PRINCIPALS if name in TOOLS_BY_PRINCIPAL) == sorted(
        ["agent", "viewer", "operator", "buyer", "approver", "integration", "admin"]
    )


def stored_figures(db: Path, workspace_id: int, sku: str) -> dict[str, str]:
    """Return on hand, reserved and on order of an item as stored, read with SQL that filters by workspace."""
    with sqlite3.connect(db) as connection:
        item_id = connection.execute("SELECT id FROM item WHERE workspace_id = ? AND sku = ?", (workspace_id, sku)).fetchone()[0]
        on_hand = connection.execute("SELECT COALESCE(SUM(on_hand), 0) FROM stock_level WHERE item_id = ?", (item_id,)).fetchone()[0]
        reserved = connection.execute(
            "SELECT COALESCE(SUM(quantity), 0) FROM reservation WHERE item_id = ? AND status = 'active'", (item_id,)
        ).fetchone()[0]
        on_order = connection.execute(
            "SELECT COALESCE(SUM(l.quantity_ordered - l.quantity_received), 0) FROM purchase_order_line l "
            "JOIN purchase_order o ON o.id = l.purchase_order_id "
            "WHERE l.item_id = ? AND o.status IN ('issued', 'partially_received')",
            (item_id,),
        ).fetchone()[0]
    return {name: str(value // 1_000_000) for name, value in (("on_hand", on_hand), ("reserved", reserved), ("on_order", on_order))}


def test_shared_sku_shows_own_figures(world: World) -> None:
    alpha = stored_figures(world.db, world.alpha.workspace_id, "WIDGET-1")
    beta = stored_figures(world.db, world.beta.workspace_id, "WIDGET-1")

    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        database = await open_database(world.db)
        try:
            app = Order3(database)
            agent = await app.authenticate(world.alpha.secrets["buyer-bot"], channel="mcp")
            async with Client(build_server(app, agent), mode="legacy") as client:
                item = await client.call_tool("get_item", {"sku": "widget-1"})
                low = await client.call_tool("find_low_stock", {"refresh": True})
            return item.structured_content, low.structured_content
        finally:
            await database.dispose()

    item, low = anyio.run(run)
    # Opening balance, plus 10 received, minus 2 shipped to WH2, minus 2 reserved.
    available_at_wh1 = ALPHA_OPENING + 10 - 2 - 2

    assert alpha["on_hand"] != beta["on_hand"]
    assert item["on_hand"] == alpha["on_hand"]
    assert item["reserved"] == alpha["reserved"]
    assert item["on_order"] == alpha["on_order"]
    assert BETA_MARKER not in json.dumps(item)
    assert [row["reason"].split(",")[0] for row in low["exceptions"]] == [f"WIDGET-1 at WH1 has {available_at_wh1} available"]

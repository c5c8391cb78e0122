"""Resources, completion, prompts, log levels and progress against an `order3 serve` subprocess over stdio."""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, PromptReference, ResourceTemplateReference
from sqlalchemy import select

from order3_mcp.app import Order3
from order3_mcp.inputs import PurchaseLine
from order3_mcp.services import drafts
from store.db import open_database
from store.models import ActivityEvent, Item
from tests.conftest import REPO_ROOT
from tests.factory import small_workspace

ITEM_TEMPLATE = ResourceTemplateReference(uri="order3://items/{sku}")
DRAFT_TEMPLATE = ResourceTemplateReference(uri="order3://drafts/{id}")


def server_for(db: Path, token: str) -> StdioServerParameters:
    env = {key: value for key, value in os.environ.items() if key not in ("ORDER3_TOKEN", "ORDER3_DB")}
    env.update({"ORDER3_DB": str(db), "ORDER3_TOKEN": token})
    return StdioServerParameters(command=sys.executable, args=["-m", "order3_mcp.cli", "serve"], env=env, cwd=str(REPO_ROOT))


async def prepare(db: Path) -> dict[str, Any]:
    """Create workspaces main and other, 120 extra items in main, and one draft in each."""
    database = await open_database(db)
    try:
        tokens = await small_workspace(database)
        other = await small_workspace(database, name="other")
        async with database.write() as session:
            session.add_all(
                Item(workspace_id=tokens.agent.workspace_id, sku=f"BULK-{n:03d}", sku_key=f"bulk-{n:03d}", name="Bulk part", unit_cost=Decimal(1))
                for n in range(120)
            )
        app = Order3(database)
        line = [PurchaseLine(sku="WIDGET-1", quantity=Decimal(40))]
        rationale = "WIDGET-1 has 5 available against a reorder point of 20."
        ours = await drafts.draft_purchase_order(
            app, tokens.agent, supplier="ACME", lines=line, rationale=rationale, title="", exception_ids=[], idempotency_key=None
        )
        theirs = await drafts.draft_purchase_order(
            app, other.agent, supplier="ACME", lines=line, rationale=rationale, title="", exception_ids=[], idempotency_key=None
        )
    finally:
        await database.dispose()
    return {"secret": tokens.agent_secret, "workspace_id": tokens.agent.workspace_id, "ours": ours.draft_id, "theirs": theirs.draft_id}


async def surface_events(db: Path, workspace_id: int, after_id: int) -> list[tuple[str, str]]:
    database = await open_database(db)
    try:
        async with database.read() as session:
            rows = await session.execute(
                select(ActivityEvent.action, ActivityEvent.outcome)
                .where(ActivityEvent.workspace_id == workspace_id, ActivityEvent.id > after_id)
                .order_by(ActivityEvent.id)
            )
            return [(action, outcome) for action, outcome in rows.all()]
    finally:
        await database.dispose()


async def last_event_id(db: Path) -> int:
    database = await open_database(db)
    try:
        async with database.read() as session:
            return (await session.execute(select(ActivityEvent.id).order_by(ActivityEvent.id.desc()).limit(1))).scalar_one()
    finally:
        await database.dispose()


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_protocol_surface_over_stdio(tmp_path: Path) -> None:
    db = tmp_path / "order3.db"
    setup = await prepare(db)
    before = await last_event_id(db)
    logs: list[Any] = []
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_log(params: Any) -> None:
        logs.append(params)

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async with Client(server_for(db, setup["secret"]), mode="legacy", logging_callback=on_log) as client:
        templates = {template.uri_template for template in (await client.list_resource_templates()).resource_templates}
        resources = {str(resource.uri) for resource in (await client.list_resources()).resources}
        item = json.loads((await client.read_resource("order3://items/widget-1")).contents[0].text)
        draft = json.loads((await client.read_resource(f"order3://drafts/{setup['ours']}")).contents[0].text)
        policy = json.loads((await client.read_resource("order3://policies/current")).contents[0].text)
        with pytest.raises(MCPError) as unknown:
            await client.read_resource("order3://items/NOPE-9")
        with pytest.raises(MCPError) as foreign:
            await client.read_resource(f"order3://drafts/{setup['theirs']}")

        bulk = (await client.complete(ITEM_TEMPLATE, {"name": "sku", "value": "bulk"})).completion
        widget = (await client.complete(ITEM_TEMPLATE, {"name": "sku", "value": "WID"})).completion
        draft_ids = (await client.complete(DRAFT_TEMPLATE, {"name": "id", "value": ""})).completion
        prompt_sku = (await client.complete(PromptReference(name="prepare_reorder"), {"name": "sku", "value": "gad"})).completion

        prompts = {prompt.name for prompt in (await client.list_prompts()).prompts}
        reorder = (await client.get_prompt("prepare_reorder", {"sku": "WIDGET-1"})).messages[0].content.text
        with pytest.raises(MCPError) as missing:
            await client.get_prompt("prepare_reorder", {})

        await client.set_logging_level("info")
        refreshed = await client.call_tool("find_exceptions", {"refresh": True}, progress_callback=on_progress)
        logs_at_info = list(logs)
        await client.set_logging_level("warning")
        await client.call_tool("find_low_stock", {"refresh": True})
        logs_at_warning = logs[len(logs_at_info):]

    assert templates == {"order3://items/{sku}", "order3://drafts/{id}"}
    assert resources == {"order3://policies/current"}
    assert (item["sku"], item["on_hand"]) == ("WIDGET-1", "5")
    assert (draft["draft_id"], draft["status"], draft["approvals"]) == (setup["ours"], "pending_approval", [])
    assert json.loads(draft["payload_json"])["lines"][0]["sku"] == "WIDGET-1"
    assert policy["active"] is True
    assert unknown.value.error.code == INVALID_PARAMS
    assert "'NOPE-9' does not exist" in unknown.value.error.message
    assert foreign.value.error.code == INVALID_PARAMS
    assert f"Draft {setup['theirs']} does not exist" in foreign.value.error.message

    assert (len(bulk.values), bulk.total, bulk.has_more) == (100, 120, True)
    assert bulk.values[0] == "BULK-000"
    assert (widget.values, widget.total, widget.has_more) == (["WIDGET-1"], 1, False)
    assert draft_ids.values == [str(setup["ours"])]
    assert prompt_sku.values == ["GADGET-2"]

    assert prompts == {"triage_exceptions", "prepare_reorder"}
    assert "draft_purchase_order" in reorder
    assert "those decisions are for people" in reorder
    assert missing.value.error.code == INVALID_PARAMS
    assert "needs the argument sku" in missing.value.error.message

    assert not refreshed.is_error
    assert [(done, total) for done, total, _ in progress] == [(n, 5) for n in range(6)]
    assert logs_at_info
    assert {entry.level for entry in logs_at_info} == {"info"}
    assert "Reran the mismatch finder: 0 found." in [entry.data for entry in logs_at_info]
    assert [entry for entry in logs_at_warning if entry.level in ("debug", "info")] == []

    assert await surface_events(db, setup["workspace_id"], before) == [
        ("get_item", "ok"),
        ("get_draft", "ok"),
        ("policy_show", "ok"),
        ("get_item", "invalid"),
        ("get_draft", "invalid"),
        ("complete_argument", "ok"),
        ("complete_argument", "ok"),
        ("complete_argument", "ok"),
        ("complete_argument", "ok"),
        ("get_prompt", "ok"),
        ("get_prompt", "invalid"),
        ("find_exceptions", "ok"),
        ("find_low_stock", "ok"),
    ]


async def test_modern_client_reads_resources_and_progress_over_stdio(tmp_path: Path) -> None:
    db = tmp_path / "order3.db"
    setup = await prepare(db)
    progress: list[tuple[float, float | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total))

    async with Client(server_for(db, setup["secret"])) as client:
        item = json.loads((await client.read_resource("order3://items/WIDGET-1")).contents[0].text)
        await client.call_tool("find_low_stock", {"refresh": True}, progress_callback=on_progress)
        era = client.protocol_version

    assert era == "2026-07-28"
    assert item["sku"] == "WIDGET-1"
    assert progress == [(0, 1), (1, 1)]

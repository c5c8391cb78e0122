"""End to end on the InvenTree demo data: an agent over a stdio subprocess, a person through the CLI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from typer.testing import CliRunner

from order3_mcp.cli import app as cli
from tests.conftest import INVENTREE_DEMO, REPO_ROOT, new_database_location

pytestmark = pytest.mark.skipif(not INVENTREE_DEMO.exists(), reason="the InvenTree demo export is not next to the repo")

runner = CliRunner()
WITHHELD = {"approve_draft", "reject_draft", "execute_draft", "dismiss_exception"}


def order3(db: Path, *args: str, token: str | None = None):
    options = ["--db", str(db)] + (["--token", token] if token else [])
    result = runner.invoke(cli, [*options, *args], env={"ORDER3_TOKEN": None, "ORDER3_DB": None, "COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    return result


def secret_in(output: str) -> str:
    return next(line.strip() for line in output.splitlines() if line.strip().startswith("o3_"))


def server_for(db: Path, token: str) -> StdioServerParameters:
    env = {key: value for key, value in os.environ.items() if key not in ("ORDER3_TOKEN", "ORDER3_DB")}
    env.update({"ORDER3_DB": str(db), "ORDER3_TOKEN": token})
    return StdioServerParameters(command=sys.executable, args=["-m", "order3_mcp.cli", "serve"], env=env, cwd=str(REPO_ROOT))


async def apply_demo_reorder_settings(db: Path, admin: str) -> None:
    """Give two purchased components a reorder point, as the demo does."""
    from order3_mcp.app import Order3
    from order3_mcp.commands._runtime import connect
    from order3_mcp.services.admin import apply_reorder_settings

    database = await connect(str(db))
    try:
        application = Order3(database)
        caller = await application.authenticate(admin, channel="cli")
        await apply_reorder_settings(application, caller, path=REPO_ROOT / "fixtures" / "demo" / "reorder-settings.toml")
    finally:
        await database.dispose()


def test_agent_drafts_and_person_approves_over_stdio(tmp_path: Path) -> None:
    db = new_database_location(tmp_path, "order3.db")
    admin = secret_in(order3(db, "init", "--workspace", "main", "--admin", "root").stdout)
    order3(db, "import", "inventree", str(INVENTREE_DEMO), token=admin)
    alice = secret_in(order3(db, "token", "create", "--principal", "alice", "--kind", "user", "--role", "buyer", token=admin).stdout)
    agent = secret_in(
        order3(db, "token", "create", "--principal", "buyer-bot", "--kind", "agent", "--role", "agent", token=admin).stdout
    )
    anyio.run(apply_demo_reorder_settings, db, admin)
    draft_id = anyio.run(agent_drafts, db, agent)

    approved = order3(db, "drafts", "approve", str(draft_id), "--reason", "Enclosures are needed this week.", token=alice)
    assert "PO-000001" in approved.stdout

    history = anyio.run(agent_reads_order, db, agent, draft_id)
    steps = [(e["actor"], e["action"], e["outcome"]) for e in history if e["action"] != "list_activity"]
    expected = [
        ("agent:buyer-bot", "find_supplier_delays", "ok"),
        ("agent:buyer-bot", "find_low_stock", "ok"),
        ("agent:buyer-bot", "draft_purchase_order", "ok"),
        ("agent:buyer-bot", "approve_draft", "denied"),
        ("user:alice", "approve_draft", "ok"),
        ("user:alice", "execute_draft", "ok"),
        ("agent:buyer-bot", "get_purchase_order", "ok"),
    ]
    assert steps[-len(expected):] == expected
    draft_events = [e for e in history if e["draft_id"] == draft_id]
    assert [(e["actor"], e["action"], e["outcome"]) for e in draft_events] == [
        ("agent:buyer-bot", "draft_purchase_order", "ok"),
        ("agent:buyer-bot", "approve_draft", "denied"),
        ("user:alice", "approve_draft", "ok"),
        ("user:alice", "execute_draft", "ok"),
    ]
    order3(db, "activity", "verify", token=alice)


async def agent_drafts(db: Path, agent: str) -> int:
    """List tools, find exceptions, draft a purchase order and try to approve it, as the agent."""
    async with Client(server_for(db, agent), mode="legacy") as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names.isdisjoint(WITHHELD)
        assert {"find_low_stock", "find_supplier_delays", "draft_purchase_order"} <= names

        delays = (await client.call_tool("find_supplier_delays", {})).structured_content["exceptions"]
        po1 = [e for e in delays if e["purchase_order"] == "PO0001"]
        assert len(po1) == 3
        assert po1[0]["sku"] == "PART-43"
        assert po1[0]["supplier"] == "DIGIKEY"
        assert po1[0]["owner"] == "engineering"
        assert "(1000 ordered, 0 received) from DIGIKEY was expected 2021-12-10" in po1[0]["reason"]
        assert po1[0]["detected_at"]
        # PO0002 has no expected date; its partly received lines are late after the supplier's lead time.
        partial = {e["sku"]: e for e in delays if e["purchase_order"] == "PO0002"}
        assert "(100 ordered, 85 received)" in partial["PART-91"]["reason"]
        assert "(250 ordered, 200 received)" in partial["PART-93"]["reason"]
        assert partial["PART-91"]["evidence"]["expected_date_source"].startswith("issued 2021-11-26 + ")

        low = (await client.call_tool("find_low_stock", {})).structured_content["exceptions"]
        enclosure = next(e for e in low if e["sku"] == "PART-85")
        assert enclosure["supplier"] == "DIGIKEY"
        assert "15 available" in enclosure["reason"]

        drafted = await client.call_tool(
            "draft_purchase_order",
            {
                "supplier": "DIGIKEY",
                "lines": [{"sku": "PART-85", "quantity": enclosure["evidence"]["suggested_quantity"]}],
                "rationale": enclosure["reason"],
                "exception_ids": [enclosure["exception_id"]],
                "idempotency_key": "e2e-draft-1",
            },
        )
        assert not drafted.is_error, drafted.content
        draft_id = drafted.structured_content["draft_id"]

        refused = await client.call_tool("approve_draft", {"draft_id": draft_id})
        assert refused.is_error
        assert "needs the 'approve' scope" in refused.content[0].text
    return draft_id


async def agent_reads_order(db: Path, agent: str, draft_id: int) -> list[dict]:
    """Read the issued purchase order and the activity history back, as the agent."""
    async with Client(server_for(db, agent), mode="legacy") as client:
        order = (await client.call_tool("get_purchase_order", {"number": "PO-000001"})).structured_content
        assert (order["status"], order["supplier"], order["draft_id"]) == ("issued", "DIGIKEY", draft_id)
        assert order["lines"][0]["sku"] == "PART-85"
        return (await client.call_tool("list_activity", {"limit": 100})).structured_content["events"]

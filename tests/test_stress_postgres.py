"""Two `order3 serve` processes on one PostgreSQL database, with concurrent approvals, executions and receipts.

Two people, each connected to a server process of their own over stdio, race
to approve and execute the same transfer drafts while `order3 receive`
processes post receipts against one purchase order line, some of them
repeating an idempotency key. Afterwards every draft has executed at most once,
the ledger equals the stock levels (`order3 verify`), and the activity chain
verifies (`order3 activity verify`). The rounds and the time are bounded.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from sqlalchemy import func, select

from order3_mcp.server import build_server
from store.db import Database, open_database
from store.models import (
    ActivityEvent,
    Bin,
    Draft,
    Item,
    Location,
    Movement,
    PurchaseOrderLine,
    StockLevel,
)
from store.stock import Place, record_movement
from tests.conftest import POSTGRES_DATABASES, REPO_ROOT, postgres_reachable
from tests.factory import (
    Tokens,
    add_bins_and_second_location,
    make_app,
    small_workspace,
)

pytestmark = pytest.mark.skipif(not postgres_reachable(), reason="PostgreSQL is not reachable on 127.0.0.1:5432")

TRANSFER_DRAFTS = 6
TRANSFER_QUANTITY = 2
# Receipts of 5 against a line of 40: four distinct keys, each sent twice.
RECEIPT_KEYS = 4
RECEIPT_QUANTITY = 5
TIME_LIMIT_SECONDS = 300
PROCESS_TIMEOUT_SECONDS = 120


@pytest.fixture
async def shared() -> AsyncIterator[tuple[str, Database]]:
    location = POSTGRES_DATABASES.new(with_schema=True)
    database = await open_database(location)
    try:
        yield location, database
    finally:
        await database.dispose()
        POSTGRES_DATABASES.drop(location)


async def seed(database: Database) -> tuple[Tokens, list[int], str]:
    """Stock for the transfers, the transfer drafts and one issued purchase order; return the tokens, drafts and PO."""
    tokens = await small_workspace(database)
    workspace_id = tokens.agent.workspace_id
    await add_bins_and_second_location(database, workspace_id=workspace_id)
    async with database.write() as session:
        widget = (await session.execute(select(Item).where(Item.sku == "WIDGET-1"))).scalar_one()
        wh1 = (await session.execute(select(Location).where(Location.code == "WH1"))).scalar_one()
        a01 = (await session.execute(select(Bin).where(Bin.code == "A-01"))).scalar_one()
        await record_movement(
            session, workspace_id=workspace_id, item_id=widget.id, kind="opening_balance", quantity=Decimal(100),
            destination=Place(wh1.id, a01.id), actor="test",
        )

    async with Client(build_server(make_app(database), tokens.agent)) as agent:
        draft_ids = []
        for _ in range(TRANSFER_DRAFTS):
            drafted = await agent.call_tool(
                "draft_transfer",
                {
                    "sku": "WIDGET-1", "quantity": str(TRANSFER_QUANTITY), "from_location": "WH1", "from_bin": "A-01",
                    "to_location": "WH2", "to_bin": "B-02", "rationale": "WH2 has no WIDGET-1 while A-01 at WH1 holds plenty.",
                },
            )
            assert not drafted.is_error, drafted.content
            draft_ids.append(drafted.structured_content["draft_id"])
        ordered = await agent.call_tool(
            "draft_purchase_order",
            {"lines": [{"sku": "WIDGET-1", "quantity": 40}], "rationale": "WIDGET-1 has 5 against a reorder point of 20."},
        )
        assert not ordered.is_error, ordered.content
    async with Client(build_server(make_app(database), tokens.buyer)) as buyer:
        approved = await buyer.call_tool("approve_draft", {"draft_id": ordered.structured_content["draft_id"]})
        assert not approved.is_error, approved.content
    result = approved.structured_content
    assert result["status"] == "executed", result
    return tokens, draft_ids, "PO-000001"


def server(location: str, secret: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "order3_mcp.cli", "serve"],
        env={**os.environ, "ORDER3_DB": location, "ORDER3_TOKEN": secret},
        cwd=str(REPO_ROOT),
    )


def order3(location: str, secret: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "order3_mcp.cli", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "ORDER3_DB": location, "ORDER3_TOKEN": secret, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_SECONDS,
        check=False,
    )


async def decide(client: Client, draft_id: int, results: list[tuple[str, int, bool, str]]) -> None:
    """Approve, then execute, one draft; record each call's outcome."""
    for tool in ("approve_draft", "execute_draft"):
        called = await client.call_tool(tool, {"draft_id": draft_id})
        text = " ".join(getattr(block, "text", "") for block in called.content)
        results.append((tool, draft_id, called.is_error, text))


async def test_two_servers_keep_ledger_chain_and_single_execution(shared: tuple[str, Database]) -> None:
    location, database = shared
    tokens, draft_ids, purchase_order = await seed(database)
    results: list[tuple[str, int, bool, str]] = []
    receipts: list[subprocess.CompletedProcess[str]] = []

    async def receive(key: int) -> None:
        receipts.append(
            await anyio.to_thread.run_sync(
                lambda: order3(location, tokens.buyer_secret, "receive", purchase_order, "1", str(RECEIPT_QUANTITY), "--location", "WH1",
                               "--idempotency-key", f"receipt-{key}")
            )
        )

    with anyio.fail_after(TIME_LIMIT_SECONDS):
        async with (
            Client(server(location, tokens.buyer_secret)) as alice,
            Client(server(location, tokens.second_buyer_secret)) as bob,
            anyio.create_task_group() as group,
        ):
            for draft_id in draft_ids:
                group.start_soon(decide, alice, draft_id, results)
                group.start_soon(decide, bob, draft_id, results)
            for key in range(RECEIPT_KEYS):
                group.start_soon(receive, key)
                group.start_soon(receive, key)

    verified = await anyio.to_thread.run_sync(lambda: order3(location, tokens.buyer_secret, "verify"))
    chain = await anyio.to_thread.run_sync(lambda: order3(location, tokens.buyer_secret, "activity", "verify"))

    crashes = [outcome for outcome in results if outcome[2] and "Internal error" in outcome[3]]
    assert crashes == []
    assert [receipt.returncode for receipt in receipts] == [0] * (2 * RECEIPT_KEYS), [(receipt.returncode, receipt.stdout[-300:], receipt.stderr[-600:]) for receipt in receipts]
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Mismatches: 0" in verified.stdout
    assert chain.returncode == 0, chain.stdout + chain.stderr
    assert "Activity chain intact" in chain.stdout

    async with database.read() as session:
        statuses = dict((await session.execute(select(Draft.id, Draft.status).where(Draft.id.in_(draft_ids)))).all())
        executions = dict(
            (
                await session.execute(
                    select(ActivityEvent.draft_id, func.count())
                    .where(ActivityEvent.action == "execute_draft", ActivityEvent.outcome == "ok")
                    .group_by(ActivityEvent.draft_id)
                )
            ).all()
        )
        a01_on_hand = (
            await session.execute(select(StockLevel.on_hand).join(Bin, Bin.id == StockLevel.bin_id).where(Bin.code == "A-01"))
        ).scalar_one()
        received = (await session.execute(select(PurchaseOrderLine.quantity_received))).scalar_one()
        receipt_movements = (
            await session.execute(select(func.count()).select_from(Movement).where(Movement.kind == "receipt"))
        ).scalar_one()

    executed = [draft_id for draft_id, status in statuses.items() if status == "executed"]
    assert executed, statuses
    assert all(executions.get(draft_id, 0) <= 1 for draft_id in draft_ids), executions
    assert {draft_id: 1 for draft_id in executed} == {draft_id: executions[draft_id] for draft_id in executed}
    # A-01 started with 10 + 100; each executed transfer ships its quantity out exactly once.
    assert a01_on_hand == Decimal(110 - TRANSFER_QUANTITY * len(executed))
    assert received == Decimal(RECEIPT_KEYS * RECEIPT_QUANTITY)
    assert receipt_movements == RECEIPT_KEYS


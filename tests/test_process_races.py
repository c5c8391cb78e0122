"""Races between separate processes on one database: each decision takes effect once.

Each contender is its own `order3` process (or `order3 serve` for the agent),
so the race goes through the database's locks (SQLite's file lock, or
PostgreSQL's row locks on that run) rather than one event loop.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from sqlalchemy import func, select

from order3_mcp.server import build_server
from store.db import Database, open_database
from store.models import Draft, PurchaseOrder, StockLevel
from store.stock import verify_ledger
from tests.conftest import new_database_location
from tests.factory import add_bins_and_second_location, make_app, small_workspace

REPO_ROOT = Path(__file__).resolve().parent.parent
# Rounds per race: each round is a fresh draft, so a lucky ordering in one round does not hide a double execution.
ROUNDS = 3
CONFLICT_EXIT = 5


def start_cli(db: Path | str, secret: str, *args: str) -> subprocess.Popen[str]:
    environment = {**os.environ, "ORDER3_DB": str(db), "ORDER3_TOKEN": secret}
    return subprocess.Popen(
        [sys.executable, "-m", "order3_mcp.cli", *args],
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        out, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return process.returncode, out + err


async def draft_order(database: Database, agent, quantity: int = 40) -> int:
    async with Client(build_server(make_app(database), agent)) as client:
        drafted = await client.call_tool(
            "draft_purchase_order",
            {"lines": [{"sku": "WIDGET-1", "quantity": quantity}], "rationale": "WIDGET-1 has 5 against a reorder point of 20."},
        )
    assert not drafted.is_error, drafted.content
    return drafted.structured_content["draft_id"]


async def counts(database: Database) -> tuple[int, list]:
    async with database.read() as session:
        orders = (await session.execute(select(func.count()).select_from(PurchaseOrder))).scalar_one()
        _checked, mismatches = await verify_ledger(session, workspace_id=1)
    return orders, mismatches


@pytest.fixture
async def sqlite_file(tmp_path: Path):
    path = new_database_location(tmp_path, "race.db", with_schema=True)
    database = await open_database(path)
    yield path, database
    await database.dispose()


async def test_two_approvers_one_order(sqlite_file) -> None:
    path, database = sqlite_file
    tokens = await small_workspace(database)

    for round_number in range(1, ROUNDS + 1):
        draft_id = await draft_order(database, tokens.agent)
        contenders = [
            start_cli(path, secret, "drafts", "approve", str(draft_id))
            for secret in (tokens.buyer_secret, tokens.second_buyer_secret)
        ]
        outcomes = [finish(process) for process in contenders]

        codes = sorted(code for code, _ in outcomes)
        assert codes == [0, CONFLICT_EXIT], outcomes
        orders, mismatches = await counts(database)
        assert orders == round_number
        assert mismatches == []


async def test_two_executors_ship_once(sqlite_file) -> None:
    path, database = sqlite_file
    tokens = await small_workspace(database)
    await add_bins_and_second_location(database, workspace_id=tokens.agent.workspace_id)

    async with Client(build_server(make_app(database), tokens.agent)) as client:
        draft_ids = []
        for _ in range(ROUNDS):
            drafted = await client.call_tool(
                "draft_transfer",
                {
                    "sku": "WIDGET-1",
                    "quantity": "2",
                    "from_location": "WH1",
                    "from_bin": "A-01",
                    "to_location": "WH2",
                    "to_bin": "B-02",
                    "rationale": "WH2 has no WIDGET-1 while A-01 at WH1 holds 8 available.",
                },
            )
            assert not drafted.is_error, drafted.content
            draft_ids.append(drafted.structured_content["draft_id"])

    for round_number, draft_id in enumerate(draft_ids, start=1):
        # The transfer rule does not execute on approval: a person executes once the goods move.
        approved = finish(start_cli(path, tokens.buyer_secret, "drafts", "approve", str(draft_id)))
        assert approved[0] == 0, approved
        contenders = [
            start_cli(path, secret, "drafts", "execute", str(draft_id))
            for secret in (tokens.buyer_secret, tokens.second_buyer_secret)
        ]
        outcomes = [finish(process) for process in contenders]

        assert sorted(code for code, _ in outcomes) == [0, CONFLICT_EXIT], outcomes
        async with database.read() as session:
            a01 = (
                await session.execute(select(StockLevel.on_hand).where(StockLevel.bin_id.is_not(None), StockLevel.location_id == 1))
            ).scalar_one()
        # A-01 held 10; each executed round ships 2 into transit.
        assert a01 == Decimal(10 - 2 * round_number)
        _orders, mismatches = await counts(database)
        assert mismatches == []


async def test_approve_withdraw_one_outcome(sqlite_file) -> None:
    path, database = sqlite_file
    tokens = await small_workspace(database)
    agent_server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "order3_mcp.cli", "serve"],
        env={**os.environ, "ORDER3_DB": str(path), "ORDER3_TOKEN": tokens.agent_secret},
        cwd=str(REPO_ROOT),
    )

    outcomes: list[tuple[str, str]] = []
    async with Client(agent_server) as agent:
        for _ in range(ROUNDS):
            drafted = await agent.call_tool(
                "draft_purchase_order",
                {"lines": [{"sku": "WIDGET-1", "quantity": 40}], "rationale": "WIDGET-1 has 5 against a reorder point of 20."},
            )
            draft_id = drafted.structured_content["draft_id"]
            approver = start_cli(path, tokens.buyer_secret, "drafts", "approve", str(draft_id))
            withdrawn = await agent.call_tool("withdraw_draft", {"draft_id": draft_id, "reason": "Stock arrived from a return."})
            code, output = await asyncio.to_thread(finish, approver)

            async with database.read() as session:
                status = (await session.execute(select(Draft.status).where(Draft.id == draft_id))).scalar_one()
            if status == "executed":
                assert withdrawn.is_error, withdrawn.content
                assert code == 0, output
            else:
                assert status == "withdrawn"
                assert not withdrawn.is_error, withdrawn.content
                assert code == CONFLICT_EXIT, output
            outcomes.append((status, output))

    orders, mismatches = await counts(database)
    assert orders == sum(1 for status, _ in outcomes if status == "executed")
    assert mismatches == []

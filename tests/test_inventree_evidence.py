"""Exception evidence on the InvenTree demo data carries stocktake history and sales order allocations."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from mcp import Client
from sqlalchemy import select

from order3_mcp.app import Caller, Order3
from order3_mcp.server import build_server
from policies import scopes_for
from store.db import open_database
from store.importers.inventree import import_inventree
from store.models import Item, ReorderRule
from store.workspaces import create_workspace
from tests.conftest import (
    INVENTREE_DEMO,
    copy_database,
    drop_database,
    new_database_location,
)

pytestmark = pytest.mark.skipif(not INVENTREE_DEMO.exists(), reason="the InvenTree demo export is not next to the repo")


async def _import_into(location: str) -> None:
    database = await open_database(location)
    try:
        async with database.write() as session:
            workspace = await create_workspace(session, name="main")
            await import_inventree(session, workspace_id=workspace.id, path=INVENTREE_DEMO, actor="importer")
    finally:
        await database.dispose()


@pytest.fixture(scope="module")
def imported_location(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # The import takes a few seconds, so it runs once and each test works on a copy.
    location = new_database_location(tmp_path_factory.mktemp("inventree"), "demo.db", outlives_test=True)
    asyncio.run(_import_into(location))
    yield location
    drop_database(location)


@pytest.fixture
async def app(imported_location: str, tmp_path: Path):
    copy = copy_database(imported_location, tmp_path)
    database = await open_database(copy)
    try:
        yield Order3(database)
    finally:
        await database.dispose()
        drop_database(copy)


def agent_caller() -> Caller:
    return Caller(
        workspace_id=1, workspace="main", base_currency="USD", timezone="UTC", token_id=None,
        principal_kind="agent", principal="buyer-bot", role="agent", scopes=scopes_for(principal_kind="agent", role="agent"),
    )


async def test_delay_evidence_carries_stocktake_history(app: Order3) -> None:
    async with Client(build_server(app, agent_caller())) as client:
        delays = (await client.call_tool("find_supplier_delays", {})).structured_content["exceptions"]

    part_43 = next(e for e in delays if e["sku"] == "PART-43")
    history = part_43["evidence"]["recent_counts"]
    assert '"source":"inventree:stocktake"' in history
    assert '"location":"all locations"' in history


async def test_low_stock_evidence_carries_allocations(app: Order3) -> None:
    # 165 of PART-81 are on hand; raising its imported minimum stock to 200 makes it low.
    async with app.database.write() as session:
        item = (await session.execute(select(Item).where(Item.sku == "PART-81"))).scalar_one()
        rule = (await session.execute(select(ReorderRule).where(ReorderRule.item_id == item.id))).scalar_one()
        rule.reorder_point = Decimal(200)

    async with Client(build_server(app, agent_caller())) as client:
        low = (await client.call_tool("find_low_stock", {})).structured_content["exceptions"]

    part_81 = next(e for e in low if e["sku"] == "PART-81")
    assert '"reference":"SO0006"' in part_81["evidence"]["recent_reservations"]
    assert '"status":"fulfilled"' in part_81["evidence"]["recent_reservations"]

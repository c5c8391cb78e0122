"""Prefix lookups for argument completion, on each database backend."""

from __future__ import annotations

from decimal import Decimal

from store.completion import complete_draft_ids, complete_location_codes, complete_skus
from store.models import Item, Location
from store.workspaces import sku_key
from tests.factory import make_app, small_workspace


async def add_items(database, workspace_id: int, skus: list[str]) -> None:
    async with database.write() as session:
        session.add_all(
            Item(workspace_id=workspace_id, sku=sku, sku_key=sku_key(sku), name="Part", unit_cost=Decimal(1)) for sku in skus
        )


async def test_sku_prefix_takes_wildcards_literally(any_database):
    tokens = await small_workspace(any_database)
    await add_items(any_database, tokens.agent.workspace_id, ["A_B-1", "AXB-2", "A%C-3"])
    async with any_database.read() as session:
        underscore = await complete_skus(session, workspace_id=tokens.agent.workspace_id, prefix="a_", limit=10)
        percent = await complete_skus(session, workspace_id=tokens.agent.workspace_id, prefix="A%", limit=10)
        nul = await complete_skus(session, workspace_id=tokens.agent.workspace_id, prefix="\x00", limit=10)

    assert (underscore.values, underscore.total) == (["A_B-1"], 1)
    assert (percent.values, percent.total) == (["A%C-3"], 1)
    assert (nul.values, nul.total) == ([], 0)


async def test_sku_prefix_counts_past_the_limit(any_database):
    tokens = await small_workspace(any_database)
    await add_items(any_database, tokens.agent.workspace_id, [f"Part-{n:02d}" for n in range(30)])
    async with any_database.read() as session:
        found = await complete_skus(session, workspace_id=tokens.agent.workspace_id, prefix=" PART-", limit=5)

    assert found.values == ["Part-00", "Part-01", "Part-02", "Part-03", "Part-04"]
    assert found.total == 30


async def test_draft_ids_match_decimal_prefix(any_database):
    from order3_mcp.inputs import PurchaseLine
    from order3_mcp.services import drafts

    tokens = await small_workspace(any_database)
    app = make_app(any_database)
    for _ in range(12):
        await drafts.draft_purchase_order(
            app, tokens.agent, supplier="ACME", lines=[PurchaseLine(sku="WIDGET-1", quantity=Decimal(40))],
            rationale="WIDGET-1 is below its reorder point.", title="", exception_ids=[], idempotency_key=None,
        )
    async with any_database.read() as session:
        ones = await complete_draft_ids(session, workspace_id=tokens.agent.workspace_id, prefix="1", limit=2)
        signed = await complete_draft_ids(session, workspace_id=tokens.agent.workspace_id, prefix="-1", limit=10)
        arabic_indic = await complete_draft_ids(session, workspace_id=tokens.agent.workspace_id, prefix="\u0661", limit=10)

    assert (ones.values, ones.total) == (["12", "11"], 4)
    assert (signed.values, signed.total) == ([], 0)
    assert (arabic_indic.values, arabic_indic.total) == ([], 0)


async def test_location_codes_match_case_insensitively(any_database):
    tokens = await small_workspace(any_database)
    async with any_database.write() as session:
        session.add(Location(workspace_id=tokens.agent.workspace_id, code="Store-North", name="North store"))
    async with any_database.read() as session:
        found = await complete_location_codes(session, workspace_id=tokens.agent.workspace_id, prefix="sTORE", limit=10)
        every = await complete_location_codes(session, workspace_id=tokens.agent.workspace_id, prefix="", limit=10)

    assert (found.values, found.total) == (["Store-North"], 1)
    assert every.values == ["Store-North", "WH1"]

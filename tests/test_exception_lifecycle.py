"""Exception lifecycle across drafting and execution, through the MCP tools."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from mcp import Client
from sqlalchemy import select

from order3_mcp.server import build_server
from order3_mcp.services import approvals
from store import finders
from store.models import Draft, ExceptionRecord, Location, ReorderRule
from tests.factory import make_app, small_workspace


async def add_reorder_rule(database, *, reorder_point: str, max_level: str) -> None:
    async with database.write() as session:
        location = (await session.execute(select(Location).where(Location.code == "WH1"))).scalar_one()
        session.add(
            ReorderRule(
                workspace_id=location.workspace_id,
                item_id=1,
                location_id=location.id,
                location_key=location.id,
                reorder_point=Decimal(reorder_point),
                max_level=Decimal(max_level),
            )
        )


async def statuses(database) -> list[tuple[int, str]]:
    async with database.read() as session:
        rows = await session.execute(select(ExceptionRecord.id, ExceptionRecord.status).order_by(ExceptionRecord.id))
        return [(row[0], row[1]) for row in rows]


async def test_low_stock_suggests_whole_packs_from_preferred_supplier(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        page = (await client.call_tool("find_low_stock", {})).structured_content

    [exception] = page["exceptions"]
    assert (exception["kind"], exception["sku"], exception["location"]) == ("low_stock", "WIDGET-1", "WH1")
    assert exception["suggested_draft"] == "purchase_order"
    # Need 60 - 5 = 55, rounded up to whole packs of 10.
    assert exception["evidence"]["suggested_quantity"] == "60"
    assert exception["supplier"] == "ACME"
    assert exception["evidence"]["lead_time_days"] == "7"
    assert "5" in exception["reason"]
    assert exception["owner"] == "alice"


async def test_second_finder_run_creates_no_duplicate(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        first = (await client.call_tool("find_low_stock", {})).structured_content
        second = (await client.call_tool("find_low_stock", {})).structured_content

    assert [e["exception_id"] for e in first["exceptions"]] == [e["exception_id"] for e in second["exceptions"]]
    assert len(await statuses(database)) == 1


async def test_draft_holds_exception_until_execution_resolves_it(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    app = make_app(database)
    async with Client(build_server(app, tokens.agent)) as client:
        [exception] = (await client.call_tool("find_low_stock", {})).structured_content["exceptions"]
        drafted = await client.call_tool(
            "draft_purchase_order",
            {
                "lines": [{"sku": "WIDGET-1", "quantity": 60, "location": "WH1"}],
                "rationale": "WIDGET-1 has 5 available at WH1 against a reorder point of 20.",
                "exception_ids": [exception["exception_id"]],
            },
        )
        assert drafted.structured_content["exception_ids"] == [exception["exception_id"]]
        assert await statuses(database) == [(exception["exception_id"], "drafted")]

        # The open draft suppresses the finding, but the record waits for the draft.
        again = (await client.call_tool("find_low_stock", {})).structured_content
        assert again["exceptions"][0]["status"] == "drafted"
        assert await statuses(database) == [(exception["exception_id"], "drafted")]

    await approvals.approve_draft(app, tokens.buyer, draft_id=drafted.structured_content["draft_id"], expected_hash="", reason="")

    assert await statuses(database) == [(exception["exception_id"], "resolved")]


async def test_withdrawn_draft_reopens_exception(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        [exception] = (await client.call_tool("find_low_stock", {})).structured_content["exceptions"]
        drafted = await client.call_tool(
            "draft_purchase_order",
            {
                "lines": [{"sku": "WIDGET-1", "quantity": 60}],
                "rationale": "WIDGET-1 has 5 available at WH1 against a reorder point of 20.",
                "exception_ids": [exception["exception_id"]],
            },
        )
        await client.call_tool("withdraw_draft", {"draft_id": drafted.structured_content["draft_id"], "reason": "duplicate"})

    assert await statuses(database) == [(exception["exception_id"], "open")]


async def test_agent_cannot_dismiss_exception(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        [exception] = (await client.call_tool("find_low_stock", {})).structured_content["exceptions"]
        refused = await client.call_tool("dismiss_exception", {"exception_id": exception["exception_id"], "reason": "not needed at all"})
    async with Client(build_server(make_app(database), tokens.buyer)) as client:
        short = await client.call_tool("dismiss_exception", {"exception_id": exception["exception_id"], "reason": "no"})
        dismissed = await client.call_tool(
            "dismiss_exception", {"exception_id": exception["exception_id"], "reason": "Widget is being phased out this quarter."}
        )
        rerun = (await client.call_tool("find_low_stock", {})).structured_content

    assert refused.is_error
    assert "needs the 'approve' scope" in refused.content[0].text
    assert short.is_error
    assert dismissed.structured_content["status"] == "dismissed"
    # The dismissed problem is still there, so no new record opens for it.
    assert rerun["exceptions"] == []
    assert await statuses(database) == [(exception["exception_id"], "dismissed")]


async def test_dismissed_problem_that_clears_and_recurs_opens_new_record(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    app = make_app(database)
    async with Client(build_server(app, tokens.buyer)) as client:
        [exception] = (await client.call_tool("find_low_stock", {})).structured_content["exceptions"]
        await client.call_tool(
            "dismiss_exception", {"exception_id": exception["exception_id"], "reason": "Counted by hand this morning."}
        )
        # The rule changes outside Order3, so the finder is asked to rerun.
        await set_reorder_point(database, "1")
        cleared = (await client.call_tool("find_low_stock", {"refresh": True})).structured_content["exceptions"]
        await set_reorder_point(database, "20")
        recurred = (await client.call_tool("find_low_stock", {"refresh": True})).structured_content["exceptions"]

    assert cleared == []
    assert [e["exception_id"] for e in recurred] == [exception["exception_id"] + 1]
    assert await statuses(database) == [(exception["exception_id"], "dismissed"), (exception["exception_id"] + 1, "open")]


async def set_reorder_point(database, reorder_point: str) -> None:
    async with database.write() as session:
        rule = (await session.execute(select(ReorderRule))).scalar_one()
        rule.reorder_point = Decimal(reorder_point)


async def test_exception_answered_by_open_draft_cannot_be_linked_again(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        [exception] = (await client.call_tool("find_low_stock", {})).structured_content["exceptions"]
        arguments = {
            "lines": [{"sku": "WIDGET-1", "quantity": 60}],
            "rationale": "WIDGET-1 has 5 available at WH1 against a reorder point of 20.",
            "exception_ids": [exception["exception_id"]],
        }
        first = await client.call_tool("draft_purchase_order", arguments)
        second = await client.call_tool("draft_purchase_order", arguments)

    assert not first.is_error
    assert second.is_error
    assert f"already answered by open draft {first.structured_content['draft_id']}" in second.content[0].text


async def low_stock_at(database, code: str) -> list[str]:
    """Return the locations at which the low-stock finder reports WIDGET-1 now, computed afresh."""
    async with database.read() as session:
        found = await finders.find_low_stock(session, workspace_id=1, now=datetime.now(UTC))
    return [finding.location_code for finding in found if finding.sku == "WIDGET-1" and finding.location_code == code]


async def test_unplaced_line_goes_to_exception_location(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        [exception] = (await client.call_tool("find_low_stock", {})).structured_content["exceptions"]
        assert await low_stock_at(database, "WH1") == ["WH1"]
        drafted = await client.call_tool(
            "draft_purchase_order",
            {
                "lines": [{"sku": "WIDGET-1", "quantity": 60}],
                "rationale": "WIDGET-1 has 5 available at WH1 against a reorder point of 20.",
                "exception_ids": [exception["exception_id"]],
            },
        )

    assert not drafted.is_error, drafted.content[0].text
    async with database.read() as session:
        draft = (await session.execute(select(Draft))).scalar_one()
    assert [line["location_code"] for line in draft.payload["lines"]] == ["WH1"]
    # The draft's 60 units count toward WH1, so the finder no longer reports it.
    assert await low_stock_at(database, "WH1") == []


async def test_unplaced_line_low_twice_rejected(database):
    tokens = await small_workspace(database)
    await two_low_locations(database)
    found, refused = await draft_for_low_stock(
        database,
        tokens,
        [{"sku": "WIDGET-1", "quantity": 60}],
        "WIDGET-1 is low at both warehouses.",
    )

    assert sorted(exception["location"] for exception in found) == ["WH1", "WH2"]
    assert refused.is_error
    assert "Item WIDGET-1 is low at WH1, WH2 in the linked exceptions" in refused.content[0].text
    async with database.read() as session:
        assert (await session.execute(select(Draft))).first() is None
    assert [status for _id, status in await statuses(database)] == ["open", "open"]


async def two_low_locations(database) -> None:
    """Make WIDGET-1 low at WH1 (point 20) and at a new WH2 (point 5)."""
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    async with database.write() as session:
        wh1 = (await session.execute(select(Location).where(Location.code == "WH1"))).scalar_one()
        wh2 = Location(workspace_id=wh1.workspace_id, code="WH2", name="Second warehouse")
        session.add(wh2)
        await session.flush()
        session.add(
            ReorderRule(
                workspace_id=wh1.workspace_id, item_id=1, location_id=wh2.id, location_key=wh2.id,
                reorder_point=Decimal("5"), max_level=Decimal("10"),
            )
        )


async def test_unplaced_line_takes_location_left_over(database):
    tokens = await small_workspace(database)
    await two_low_locations(database)
    _found, drafted = await draft_for_low_stock(
        database,
        tokens,
        [{"sku": "WIDGET-1", "quantity": 20, "location": "WH2"}, {"sku": "WIDGET-1", "quantity": 60}],
        "WIDGET-1 is low at both warehouses.",
    )

    assert not drafted.is_error, drafted.content[0].text
    async with database.read() as session:
        draft = (await session.execute(select(Draft))).scalar_one()
    assert [line["location_code"] for line in draft.payload["lines"]] == ["WH2", "WH1"]


async def test_two_unplaced_lines_name_their_destination(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    [_exception], refused = await draft_for_low_stock(
        database,
        tokens,
        [{"sku": "WIDGET-1", "quantity": 20}, {"sku": "WIDGET-1", "quantity": 40}],
        "WIDGET-1 has 5 available at WH1 against a reorder point of 20.",
    )

    assert refused.is_error
    assert "Item WIDGET-1 appears twice for destination WH1 (taken from its linked low-stock exception)" in refused.content[0].text


async def test_unplaced_line_with_no_location_left_rejected(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    [_exception], refused = await draft_for_low_stock(
        database,
        tokens,
        [{"sku": "WIDGET-1", "quantity": 20, "location": "WH1"}, {"sku": "WIDGET-1", "quantity": 40}],
        "WIDGET-1 has 5 available at WH1 against a reorder point of 20.",
    )

    assert refused.is_error
    assert "Item WIDGET-1 is low at WH1 in the linked exceptions, which other lines already name" in refused.content[0].text
    async with database.read() as session:
        assert (await session.execute(select(Draft))).first() is None


async def test_unplaced_line_allowed_beside_workspace_wide_low(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    async with database.write() as session:
        wh1 = (await session.execute(select(Location).where(Location.code == "WH1"))).scalar_one()
        session.add(
            ReorderRule(workspace_id=wh1.workspace_id, item_id=1, location_id=None, location_key=0, reorder_point=Decimal("20"))
        )
    found, drafted = await draft_for_low_stock(
        database,
        tokens,
        [{"sku": "WIDGET-1", "quantity": 20, "location": "WH1"}, {"sku": "WIDGET-1", "quantity": 40}],
        "WIDGET-1 is low at WH1 and across the workspace.",
    )

    assert len(found) == 2
    assert not drafted.is_error, drafted.content[0].text
    async with database.read() as session:
        draft = (await session.execute(select(Draft))).scalar_one()
    # The workspace-wide exception counts the unplaced line too, so it may stay unplaced.
    assert [line["location_code"] for line in draft.payload["lines"]] == ["WH1", ""]


async def draft_for_low_stock(database, tokens, lines: list[dict], rationale: str) -> tuple[list[dict], Any]:
    """Find low stock as the agent, then draft a purchase order of `lines` linked to every exception found."""
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        found = (await client.call_tool("find_low_stock", {})).structured_content["exceptions"]
        drafted = await client.call_tool(
            "draft_purchase_order",
            {"lines": lines, "rationale": rationale, "exception_ids": [exception["exception_id"] for exception in found]},
        )
    return found, drafted

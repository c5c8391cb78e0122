"""Concurrent check-then-write on SQLite and PostgreSQL: no lost update, no oversell, one execution."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from mcp import Client
from sqlalchemy import func, select

from order3_mcp.server import build_server
from order3_mcp.services import approvals
from store.activity import verify_chain
from store.db import Database
from store.errors import ConflictError, InvalidInputError, PermissionDeniedError
from store.models import Location, Movement, PurchaseOrder, Reservation, StockLevel
from store.reservations import reserve_stock
from store.stock import Place, record_movement, verify_ledger
from tests.factory import make_app, small_workspace

EXPECTED_REFUSALS = (ConflictError, InvalidInputError, PermissionDeniedError)


async def widget_place(database: Database) -> tuple[int, int]:
    async with database.read() as session:
        location = (await session.execute(select(Location).where(Location.code == "WH1"))).scalar_one()
    return location.workspace_id, location.id


async def top_up(database: Database, *, to: Decimal) -> None:
    """Bring WIDGET-1 at WH1 from its 5 on hand up to `to`."""
    workspace_id, location_id = await widget_place(database)
    async with database.write() as session:
        await record_movement(
            session, workspace_id=workspace_id, item_id=1, kind="adjustment", quantity=to - 5,
            destination=Place(location_id), actor="test",
        )


async def remove(database: Database, quantity: Decimal) -> Movement:
    workspace_id, location_id = await widget_place(database)
    async with database.write() as session:
        return await record_movement(
            session, workspace_id=workspace_id, item_id=1, kind="shipment", quantity=quantity,
            source=Place(location_id), actor="test",
        )


async def test_two_removals_of_seven_from_ten_leave_three(any_database: Database) -> None:
    await small_workspace(any_database)
    await top_up(any_database, to=Decimal(10))

    results = await asyncio.gather(remove(any_database, Decimal(7)), remove(any_database, Decimal(7)), return_exceptions=True)

    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1
    assert isinstance(refused[0], EXPECTED_REFUSALS)
    async with any_database.read() as session:
        on_hand = (await session.execute(select(StockLevel.on_hand).where(StockLevel.item_id == 1))).scalar_one()
        checked, mismatches = await verify_ledger(session, workspace_id=1)
    assert on_hand == Decimal(3)
    assert (checked, mismatches) == (1, [])


async def reserve(database: Database, quantity: Decimal, reference: str) -> Reservation:
    workspace_id, location_id = await widget_place(database)
    async with database.write() as session:
        return await reserve_stock(
            session, workspace_id=workspace_id, item_id=1, location_id=location_id, quantity=quantity, reference=reference
        )


async def test_two_reservations_of_five_from_five_reserve_once(any_database: Database) -> None:
    await small_workspace(any_database)

    results = await asyncio.gather(
        reserve(any_database, Decimal(5), "SO-1"), reserve(any_database, Decimal(5), "SO-2"), return_exceptions=True
    )

    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1
    assert isinstance(refused[0], EXPECTED_REFUSALS)
    async with any_database.read() as session:
        reserved = (await session.execute(select(func.sum(Reservation.quantity)))).scalar_one()
    assert reserved == Decimal(5)


async def test_reservation_beyond_available_is_refused(any_database: Database) -> None:
    await small_workspace(any_database)
    await reserve(any_database, Decimal(3), "SO-1")

    try:
        await reserve(any_database, Decimal(3), "SO-2")
    except InvalidInputError as exc:
        assert "has 2 available" in exc.message
    else:
        raise AssertionError("the second reservation should have been refused")


async def test_two_approvals_of_one_draft_issue_one_order(any_database: Database) -> None:
    tokens = await small_workspace(any_database)
    app = make_app(any_database)
    async with Client(build_server(app, tokens.agent)) as client:
        drafted = await client.call_tool(
            "draft_purchase_order",
            {"lines": [{"sku": "WIDGET-1", "quantity": 40}], "rationale": "WIDGET-1 has 5 against a reorder point of 20."},
        )
    draft_id = drafted.structured_content["draft_id"]

    results = await asyncio.gather(
        approvals.approve_draft(app, tokens.buyer, draft_id=draft_id, expected_hash="", reason=""),
        approvals.approve_draft(app, tokens.second_buyer, draft_id=draft_id, expected_hash="", reason=""),
        return_exceptions=True,
    )

    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1
    assert isinstance(refused[0], EXPECTED_REFUSALS)
    async with any_database.read() as session:
        orders = (await session.execute(select(func.count()).select_from(PurchaseOrder))).scalar_one()
    assert orders == 1


async def test_parallel_tool_calls_keep_one_unbroken_chain(any_database: Database) -> None:
    tokens = await small_workspace(any_database)
    app = make_app(any_database)
    async with Client(build_server(app, tokens.agent)) as client:
        results = await asyncio.gather(*(client.call_tool("get_item", {"sku": "WIDGET-1"}) for _ in range(20)))

    assert not any(result.is_error for result in results)
    async with any_database.read() as session:
        report = await verify_chain(session, workspace_id=tokens.agent.workspace_id)
    assert report.ok
    assert report.events_checked == 20

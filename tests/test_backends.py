"""The exception finders and the ledger check give the same answers on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from mcp import Client
from sqlalchemy import select

from order3_mcp.app import Order3
from order3_mcp.server import build_server
from store.db import Database
from store.models import Location, PurchaseOrder, PurchaseOrderLine, ReorderRule
from tests.factory import small_workspace

NOW = datetime(2026, 3, 10, 11, 30, tzinfo=UTC)


async def seed_problems(database: Database) -> None:
    """A low-stock rule for WIDGET-1 at WH1 and a late, partly received order line for it."""
    async with database.write() as session:
        location = (await session.execute(select(Location).where(Location.code == "WH1"))).scalar_one()
        session.add(
            ReorderRule(
                workspace_id=location.workspace_id, item_id=1, location_id=location.id, location_key=location.id,
                reorder_point=Decimal(20), max_level=Decimal(60),
            )
        )
        order = PurchaseOrder(
            workspace_id=location.workspace_id, number="PO-LATE", supplier_id=1, status="partially_received",
            expected_date=date(2026, 3, 1), issued_at=datetime(2026, 2, 1, tzinfo=UTC),
        )
        session.add(order)
        await session.flush()
        session.add(
            PurchaseOrderLine(
                workspace_id=location.workspace_id, purchase_order_id=order.id, item_id=1, supplier_item_id=1,
                quantity_ordered=Decimal(10), quantity_received=Decimal(4), destination_location_id=location.id,
            )
        )


async def test_finders_agree_across_backends(any_database: Database) -> None:
    tokens = await small_workspace(any_database)
    await seed_problems(any_database)
    app = Order3(any_database, clock=lambda: NOW)

    async with Client(build_server(app, tokens.agent)) as client:
        found = (await client.call_tool("find_exceptions", {})).structured_content["exceptions"]
        drafted = await client.call_tool(
            "draft_purchase_order",
            {"lines": [{"sku": "WIDGET-1", "quantity": 60, "location": "WH1"}], "rationale": "WIDGET-1 is short at WH1."},
        )
        low_after_draft = (await client.call_tool("find_low_stock", {})).structured_content["exceptions"]

    by_kind = {e["kind"]: e for e in found}
    assert set(by_kind) == {"low_stock", "supplier_delay"}
    # 5 on hand + 6 still on order = 11 against a reorder point of 20; need 60 - 11 = 49, so 5 packs of 10.
    assert by_kind["low_stock"]["evidence"]["on_order"] == "6"
    assert by_kind["low_stock"]["evidence"]["suggested_quantity"] == "50"
    assert "is 9 days late" in by_kind["supplier_delay"]["reason"]
    assert not drafted.is_error
    # The open draft's 60 units now cover the need, so the finder no longer reports it.
    assert low_after_draft == []


async def test_undated_order_is_late_after_lead_time(any_database: Database) -> None:
    tokens = await small_workspace(any_database)
    async with any_database.write() as session:
        order = PurchaseOrder(
            workspace_id=1, number="PO-UNDATED", supplier_id=1, status="issued",
            issued_at=datetime(2026, 2, 1, 23, 30, tzinfo=UTC),
        )
        session.add(order)
        await session.flush()
        session.add(
            PurchaseOrderLine(
                workspace_id=1, purchase_order_id=order.id, item_id=1, supplier_item_id=1,
                quantity_ordered=Decimal(10), quantity_received=Decimal(0),
            )
        )
    app = Order3(any_database, clock=lambda: NOW)

    async with Client(build_server(app, tokens.agent)) as client:
        [late] = (await client.call_tool("find_supplier_delays", {})).structured_content["exceptions"]

    # Issued 2026-02-01 (UTC business date) + ACME's 7-day lead time = 2026-02-08; 30 days before 2026-03-10.
    assert late["evidence"]["expected_date"] == "2026-02-08"
    assert late["evidence"]["expected_date_source"] == "issued 2026-02-01 + 7-day lead time"
    assert "is 30 days late" in late["reason"]

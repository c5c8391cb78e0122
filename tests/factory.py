"""Builders for small workspaces used by the service and MCP tests."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select

from order3_mcp.app import Caller, Order3
from policies import scopes_for
from store.db import Database
from store.models import (
    ActivityEvent,
    Bin,
    Item,
    Location,
    Reservation,
    StockLevel,
    Supplier,
    SupplierItem,
    SupplierPriceBreak,
)
from store.stock import LedgerMismatch, Place, record_movement, verify_ledger
from store.tokens import issue_token
from store.workspaces import create_workspace, sku_key


@dataclass
class Tokens:
    """Secrets and callers of the principals in a small workspace."""

    agent_secret: str
    agent: Caller
    buyer_secret: str
    buyer: Caller
    second_buyer: Caller
    admin: Caller
    second_buyer_secret: str = ""


async def small_workspace(database: Database, *, timezone: str = "UTC", name: str = "main") -> Tokens:
    """Create workspace `name` with one location, two items, one supplier and four principals.

    WIDGET-1 is sold by ACME in packs of 10 with a minimum order of 20 at 2.50 USD
    (2.00 from 100 units); it has 5 on hand at WH1.
    """
    async with database.write() as session:
        workspace = await create_workspace(session, name=name, timezone=timezone)
        location = Location(workspace_id=workspace.id, code="WH1", name="Main warehouse")
        supplier = Supplier(workspace_id=workspace.id, code="ACME", name="Acme Parts", lead_time_days=7, owner="alice")
        widget = Item(workspace_id=workspace.id, sku="WIDGET-1", sku_key=sku_key("WIDGET-1"), name="Widget", unit_cost=Decimal("2.5"), owner="alice")
        gadget = Item(workspace_id=workspace.id, sku="GADGET-2", sku_key=sku_key("GADGET-2"), name="Gadget", unit_cost=Decimal("9"))
        session.add_all([location, supplier, widget, gadget])
        await session.flush()
        offer = SupplierItem(
            workspace_id=workspace.id,
            supplier_id=supplier.id,
            item_id=widget.id,
            supplier_sku="AC-W1",
            unit_price=Decimal("2.50"),
            min_order_qty=Decimal(20),
            pack_size=Decimal(10),
            preferred=True,
        )
        session.add(offer)
        await session.flush()
        session.add(SupplierPriceBreak(workspace_id=workspace.id, supplier_item_id=offer.id, quantity=Decimal(100), unit_price=Decimal("2.00")))
        await record_movement(
            session,
            workspace_id=workspace.id,
            item_id=widget.id,
            kind="opening_balance",
            quantity=Decimal(5),
            destination=Place(location.id),
            actor="test",
        )

        callers = {}
        secrets = {}
        for principal, kind, role in (
            ("buyer-bot", "agent", "agent"),
            ("alice", "user", "buyer"),
            ("bob", "user", "buyer"),
            ("root", "user", "admin"),
        ):
            scopes = scopes_for(principal_kind=kind, role=role)
            token, secret = await issue_token(
                session, workspace_id=workspace.id, principal_kind=kind, principal=principal, role=role, scopes=scopes
            )
            secrets[principal] = secret
            callers[principal] = Caller(
                workspace_id=workspace.id,
                workspace=workspace.name,
                base_currency=workspace.base_currency,
                timezone=workspace.timezone,
                token_id=token.id,
                principal_kind=kind,
                principal=principal,
                role=role,
                scopes=scopes,
                channel="mcp" if kind == "agent" else "cli",
            )
    return Tokens(
        agent_secret=secrets["buyer-bot"],
        agent=callers["buyer-bot"],
        buyer_secret=secrets["alice"],
        buyer=callers["alice"],
        second_buyer=callers["bob"],
        admin=callers["root"],
        second_buyer_secret=secrets["bob"],
    )


async def add_bins_and_second_location(database: Database, *, workspace_id: int) -> None:
    """Add bin A-01 to WH1 holding 10 WIDGET-1, 2 of them reserved, and location WH2 with an empty bin B-02.

    With small_workspace's 5 WIDGET-1 held at WH1 itself, WH1 has 15 on hand,
    and 8 of the 10 in A-01 are available to move.
    """
    async with database.write() as session:
        wh1 = (await session.execute(select(Location).where(Location.code == "WH1"))).scalar_one()
        widget = (await session.execute(select(Item).where(Item.sku == "WIDGET-1"))).scalar_one()
        wh2 = Location(workspace_id=workspace_id, code="WH2", name="Second warehouse")
        session.add(wh2)
        await session.flush()
        a01 = Bin(workspace_id=workspace_id, location_id=wh1.id, code="A-01")
        session.add_all([a01, Bin(workspace_id=workspace_id, location_id=wh2.id, code="B-02")])
        await session.flush()
        await record_movement(
            session,
            workspace_id=workspace_id,
            item_id=widget.id,
            kind="opening_balance",
            quantity=Decimal(10),
            destination=Place(wh1.id, a01.id),
            actor="test",
        )
        session.add(
            Reservation(
                workspace_id=workspace_id, item_id=widget.id, location_id=wh1.id, bin_id=a01.id,
                quantity=Decimal(2), reference="SO-1", status="active",
            )
        )


async def stock_workspace(database: Database) -> Tokens:
    """Create small_workspace with add_bins_and_second_location applied."""
    tokens = await small_workspace(database)
    await add_bins_and_second_location(database, workspace_id=tokens.agent.workspace_id)
    return tokens


async def stock_levels(database: Database) -> dict[str, Decimal]:
    """Return every stock level row as {"SKU@LOCATION[/BIN]": on hand}, zero rows included."""
    async with database.read() as session:
        rows = (
            await session.execute(
                select(Item.sku, Location.code, Bin.code, StockLevel.on_hand)
                .join(Item, Item.id == StockLevel.item_id)
                .join(Location, Location.id == StockLevel.location_id)
                .outerjoin(Bin, Bin.id == StockLevel.bin_id)
            )
        ).all()
    return {f"{sku}@{location}" + (f"/{bin_code}" if bin_code else ""): on_hand for sku, location, bin_code, on_hand in rows}


async def issue_secret(database: Database, *, workspace_id: int, principal: str, kind: str, role: str) -> str:
    """Create a token for another principal and return its secret."""
    async with database.write() as session:
        _, secret = await issue_token(
            session, workspace_id=workspace_id, principal_kind=kind, principal=principal, role=role,
            scopes=scopes_for(principal_kind=kind, role=role),
        )
    return secret


async def ledger_mismatches(database: Database, *, workspace_id: int) -> list[LedgerMismatch]:
    """Return the stock levels that differ from the sum of their movements."""
    async with database.read() as session:
        _, mismatches = await verify_ledger(session, workspace_id=workspace_id)
    return mismatches


async def row_count(database: Database, model: type) -> int:
    """Return how many rows the table of `model` has."""
    async with database.read() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def last_event(database: Database) -> ActivityEvent:
    """Return the newest activity event."""
    async with database.read() as session:
        return (await session.execute(select(ActivityEvent).order_by(ActivityEvent.seq.desc()).limit(1))).scalar_one()


def make_app(database: Database) -> Order3:
    """Return the service root over `database` with the default policy."""
    return Order3(database)

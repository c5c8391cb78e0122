"""Builders for small workspaces used by the service and MCP tests."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from order3_mcp.app import Caller, Order3
from policies import scopes_for
from store.db import Database
from store.models import Item, Location, Supplier, SupplierItem, SupplierPriceBreak
from store.stock import Place, record_movement
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


async def small_workspace(database: Database, *, timezone: str = "UTC") -> Tokens:
    """Create workspace 'main' with one location, two items, one supplier and four principals.

    WIDGET-1 is sold by ACME in packs of 10 with a minimum order of 20 at 2.50 USD
    (2.00 from 100 units); it has 5 on hand at WH1.
    """
    async with database.write() as session:
        workspace = await create_workspace(session, name="main", timezone=timezone)
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
    )


def make_app(database: Database) -> Order3:
    """Return the service root over `database` with the default policy."""
    return Order3(database)

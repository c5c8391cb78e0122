"""Two workspaces in one database file, built with the same SKUs, codes and numbers, for isolation tests.

Workspace "beta" also has records that "alpha" lacks (an item, a location, a
supplier, a purchase order, a transfer and many activity events), so a lookup
of those from alpha must answer exactly as for a value that never existed.
Every name and free-text field in beta carries BETA_MARKER, so any beta row
that reaches alpha's caller shows up in a plain text search.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from order3_mcp.app import Caller, Order3
from order3_mcp.inputs import CountLine, PurchaseLine
from order3_mcp.services import approvals, count_tasks, drafts, exceptions, receiving
from order3_mcp.services.kinds import transfer
from policies import scopes_for
from store.activity import append_event
from store.db import Database
from store.models import (
    Bin,
    Item,
    Location,
    ReorderRule,
    Reservation,
    Supplier,
    SupplierItem,
)
from store.stock import Place, record_movement
from store.tokens import issue_token
from store.workspaces import create_workspace, sku_key

BETA_MARKER = "ZZBETA"
RATIONALE = "WIDGET-1 is below its reorder point of 100 at WH1."
# Principal, kind and role of each token made in both workspaces.
PRINCIPALS = (
    ("buyer-bot", "agent", "agent"),
    ("alice", "user", "buyer"),
    ("bob", "user", "buyer"),
    ("root", "user", "admin"),
    ("vera", "user", "viewer"),
    ("otto", "user", "operator"),
    ("carol", "user", "approver"),
    ("shopify-eu", "integration", "integration"),
)
# On hand of WIDGET-1 and GADGET-2 at WH1 before any flow.
ALPHA_OPENING = Decimal(30)
BETA_OPENING = Decimal(70)
# Extra activity events in beta, so that beta has sequence numbers alpha will not reach during a test.
BETA_PADDING_EVENTS = 400


@dataclass
class Built:
    """The ids, numbers and secrets of one workspace."""

    name: str
    workspace_id: int
    secrets: dict[str, str] = field(default_factory=dict)
    callers: dict[str, Caller] = field(default_factory=dict)
    #: A purchase order draft waiting for approval.
    pending_draft: int = 0
    executed_draft: int = 0
    #: A transfer draft approved and not yet executed.
    approved_draft: int = 0
    exception_ids: list[int] = field(default_factory=list)
    count_task: int = 0
    purchase_orders: list[str] = field(default_factory=list)
    transfers: list[str] = field(default_factory=list)


async def _catalog(database: Database, name: str, marker: str) -> int:
    """Create the workspace with its locations, bins, supplier, items, stock, reservation and reorder rule."""
    async with database.write() as session:
        workspace = await create_workspace(session, name=name)
        wid: int = workspace.id  # type: ignore[assignment]
        wh1 = Location(workspace_id=wid, code="WH1", name=f"Main warehouse {marker}", owner=f"lena {marker}".strip())
        wh2 = Location(workspace_id=wid, code="WH2", name=f"Second warehouse {marker}")
        acme = Supplier(workspace_id=wid, code="ACME", name=f"Acme Parts {marker}", lead_time_days=7, owner="alice")
        widget = Item(
            workspace_id=wid, sku="WIDGET-1", sku_key=sku_key("WIDGET-1"), name=f"Widget {marker}", unit_cost=Decimal("2.5"),
            owner=f"alice {marker}".strip(),
        )
        gadget = Item(workspace_id=wid, sku="GADGET-2", sku_key=sku_key("GADGET-2"), name=f"Gadget {marker}", unit_cost=Decimal(9))
        session.add_all([wh1, wh2, acme, widget, gadget])
        await session.flush()
        session.add(Bin(workspace_id=wid, location_id=wh1.id, code="A-01"))  # type: ignore[arg-type]
        # Different quantities, so a figure summed across workspaces shows up too.
        opening = BETA_OPENING if marker else ALPHA_OPENING
        for item in (widget, gadget):
            session.add(
                SupplierItem(
                    workspace_id=wid, supplier_id=acme.id, item_id=item.id, supplier_sku=f"AC-{item.sku}",  # type: ignore[arg-type]
                    unit_price=Decimal("2.50"), min_order_qty=Decimal(20), pack_size=Decimal(10), preferred=True,
                )
            )
            await record_movement(
                session, workspace_id=wid, item_id=item.id, kind="opening_balance", quantity=opening,  # type: ignore[arg-type]
                destination=Place(wh1.id), actor="test",  # type: ignore[arg-type]
            )
        session.add(
            Reservation(workspace_id=wid, item_id=widget.id, location_id=wh1.id, quantity=Decimal(2), reference=f"SO-1 {marker}")  # type: ignore[arg-type]
        )
        session.add(
            ReorderRule(
                workspace_id=wid, item_id=widget.id, location_id=wh1.id, location_key=wh1.id,  # type: ignore[arg-type]
                reorder_point=Decimal(100), reorder_quantity=Decimal(100), preferred_supplier_id=acme.id,
            )
        )
        if marker:
            await _beta_only_catalog(session, wid, marker)
    return wid


async def _beta_only_catalog(session: Any, wid: int, marker: str) -> None:
    """Add ONLY-B-1 held at WHB and sold by SUPB."""
    whb = Location(workspace_id=wid, code="WHB", name=f"Beta warehouse {marker}")
    supb = Supplier(workspace_id=wid, code="SUPB", name=f"Beta supplies {marker}", lead_time_days=3, owner="bob")
    only = Item(workspace_id=wid, sku="ONLY-B-1", sku_key=sku_key("ONLY-B-1"), name=f"Beta item {marker}", unit_cost=Decimal(4))
    session.add_all([whb, supb, only])
    await session.flush()
    session.add(
        SupplierItem(
            workspace_id=wid, supplier_id=supb.id, item_id=only.id, supplier_sku="SB-1", unit_price=Decimal(4),
            min_order_qty=Decimal(1), pack_size=Decimal(1), preferred=True,
        )
    )
    await record_movement(
        session, workspace_id=wid, item_id=only.id, kind="opening_balance", quantity=Decimal(12),  # type: ignore[arg-type]
        destination=Place(whb.id), actor="test",  # type: ignore[arg-type]
    )


async def _tokens(database: Database, built: Built) -> None:
    async with database.write() as session:
        for principal, kind, role in PRINCIPALS:
            scopes = scopes_for(principal_kind=kind, role=role)
            _token, secret = await issue_token(
                session, workspace_id=built.workspace_id, principal_kind=kind, principal=principal, role=role, scopes=scopes,
                label=f"{principal} {BETA_MARKER if built.name == 'beta' else ''}".strip(),
            )
            built.secrets[principal] = secret
    app = Order3(database)
    for principal, _kind, _role in PRINCIPALS:
        built.callers[principal] = await app.authenticate(built.secrets[principal], channel="cli")


async def _decide(app: Order3, person: Caller, draft_id: int, *, execute: bool = True) -> str:
    """Approve a draft and, unless the policy already did, execute it; return the result text."""
    detail = await approvals.approve_draft(app, person, draft_id=draft_id, expected_hash="", reason="Checked the numbers.")
    if execute and detail.status == "approved":
        detail = await approvals.execute_draft(app, person, draft_id=draft_id)
    assert detail.status == ("executed" if execute else "approved"), detail.failure_reason
    return detail.result


def _result_value(result: str, name: str) -> str:
    parts = dict(part.split("=", 1) for part in result.split(", ") if "=" in part)
    return parts[name]


async def _flows(database: Database, built: Built, marker: str) -> None:
    """Draft, approve and execute a purchase order, a transfer and a count task; receive part of the order; find exceptions."""
    app = Order3(database)
    agent, alice = built.callers["buyer-bot"], built.callers["alice"]
    note = f"{RATIONALE} {marker}".strip()

    found = await exceptions.find_kind(
        app, agent, action="find_low_stock", kind="low_stock", location="", supplier="", cursor="", limit=100, refresh=True
    )
    built.exception_ids = [row.exception_id for row in found.exceptions]
    assert built.exception_ids, "the reorder rule should open a low stock exception"

    order = await drafts.draft_purchase_order(
        app, agent, supplier="ACME", lines=[PurchaseLine(sku="WIDGET-1", quantity=Decimal(20), location="WH1")],
        rationale=note, title=f"Widgets {marker}".strip(), exception_ids=[], idempotency_key=None,
    )
    result = await _decide(app, alice, order.draft_id)
    built.executed_draft = order.draft_id
    built.purchase_orders.append(_result_value(result, "purchase_order"))
    await receiving.receive(app, alice, purchase_order=built.purchase_orders[0], line_no=1, quantity="10", delivery=f"DN-1 {marker}".strip())

    moved = await transfer.draft_transfer(
        app, agent, sku="WIDGET-1", quantity=Decimal(2), from_location="WH1", from_bin="", to_location="WH2", to_bin="",
        rationale=note, title="", exception_ids=[], idempotency_key=None,
    )
    built.transfers.append(_result_value(await _decide(app, alice, moved.draft_id), "transfer"))

    counted = await count_tasks.draft_count_task(
        app, agent, location="WH1", lines=[CountLine(sku="GADGET-2")], rationale=note, title="", assignee="otto",
        due_date="", exception_ids=[], idempotency_key=None,
    )
    built.count_task = int(_result_value(await _decide(app, alice, counted.draft_id), "count_task"))

    approved = await transfer.draft_transfer(
        app, agent, sku="GADGET-2", quantity=Decimal(1), from_location="WH1", from_bin="", to_location="WH2", to_bin="",
        rationale=note, title="", exception_ids=[], idempotency_key=None,
    )
    await _decide(app, alice, approved.draft_id, execute=False)
    built.approved_draft = approved.draft_id
    pending = await drafts.draft_purchase_order(
        app, agent, supplier="ACME", lines=[PurchaseLine(sku="GADGET-2", quantity=Decimal(20))],
        rationale=note, title="", exception_ids=[], idempotency_key=None,
    )
    built.pending_draft = pending.draft_id

    if marker:
        await _beta_only_flows(app, built, note)


async def _beta_only_flows(app: Order3, built: Built, note: str) -> None:
    """Give beta a second purchase order and transfer, whose numbers alpha does not have."""
    agent, alice = built.callers["buyer-bot"], built.callers["alice"]
    order = await drafts.draft_purchase_order(
        app, agent, supplier="SUPB", lines=[PurchaseLine(sku="ONLY-B-1", quantity=Decimal(5), location="WHB")],
        rationale=note, title="", exception_ids=[], idempotency_key=None,
    )
    built.purchase_orders.append(_result_value(await _decide(app, alice, order.draft_id), "purchase_order"))
    moved = await transfer.draft_transfer(
        app, agent, sku="ONLY-B-1", quantity=Decimal(3), from_location="WHB", from_bin="", to_location="WH2", to_bin="",
        rationale=note, title="", exception_ids=[], idempotency_key=None,
    )
    built.transfers.append(_result_value(await _decide(app, alice, moved.draft_id), "transfer"))

    async with app.database.write() as session:
        for _ in range(BETA_PADDING_EVENTS):
            await append_event(
                session, workspace_id=built.workspace_id, actor_kind="user", actor="vera", channel="cli",
                action="list_locations", outcome="ok", summary=f"Listed locations {BETA_MARKER}.",
            )


async def build_two_workspaces(database: Database) -> tuple[Built, Built]:
    """Build "alpha" and then "beta" in one database and return what each holds."""
    built = []
    for name, marker in (("alpha", ""), ("beta", BETA_MARKER)):
        workspace_id = await _catalog(database, name, marker)
        workspace = Built(name=name, workspace_id=workspace_id)
        await _tokens(database, workspace)
        await _flows(database, workspace, marker)
        built.append(workspace)
    return built[0], built[1]


def workspace_rows(db: Path, workspace_id: int) -> dict[str, list[tuple]]:
    """Return every row that belongs to a workspace, per table: its own row, its records and its drafts' links."""
    with sqlite3.connect(db) as connection:
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        snapshot: dict[str, list[tuple]] = {}
        for table in tables:
            if table == "alembic_version":
                # The schema revision belongs to the whole database, not to a workspace.
                continue
            columns = [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]
            if "workspace_id" in columns:
                query = f'SELECT * FROM "{table}" WHERE workspace_id = ? ORDER BY rowid'
            elif table == "workspace":
                query = 'SELECT * FROM "workspace" WHERE id = ?'
            elif table == "draft_exception":
                query = 'SELECT * FROM "draft_exception" WHERE draft_id IN (SELECT id FROM draft WHERE workspace_id = ?) ORDER BY rowid'
            else:
                raise AssertionError(f"table {table} has no workspace_id; say how its rows belong to a workspace")
            snapshot[table] = connection.execute(query, (workspace_id,)).fetchall()
    return snapshot


def max_seq(db: Path, workspace_id: int) -> int:
    """Return the newest activity sequence number of a workspace."""
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT MAX(seq) FROM activity_event WHERE workspace_id = ?", (workspace_id,)).fetchone()[0]

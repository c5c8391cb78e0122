"""Exchange rates: admins set them, drafts convert foreign prices and costs with them and name the rate used."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from mcp import Client
from sqlalchemy import select, update
from typer.testing import CliRunner, Result

from order3_mcp.cli import app as cli
from order3_mcp.server import build_server
from order3_mcp.services import approvals
from store.db import Database, open_database
from store.models import (
    Draft,
    ExchangeRate,
    Item,
    PurchaseOrder,
    PurchaseOrderLine,
    Supplier,
    SupplierItem,
)
from tests.conftest import new_database_location
from tests.factory import issue_secret, make_app, small_workspace, stock_workspace

runner = CliRunner()
RATIONALE = "GADGET-2 has nothing on hand and two customer orders waiting."


def order3(db: Path, *args: str, token: str) -> Result:
    return runner.invoke(cli, ["--db", str(db), "--token", token, *args], env={"ORDER3_TOKEN": None, "ORDER3_DB": None, "COLUMNS": "200"})


async def add_cad_supplier(database: Database) -> None:
    """Add MAPLE, which sells GADGET-2 at 12.40 CAD in packs of 1."""
    async with database.write() as session:
        gadget = (await session.execute(select(Item).where(Item.sku == "GADGET-2"))).scalar_one()
        supplier = Supplier(workspace_id=gadget.workspace_id, code="MAPLE", name="Maple Supply", currency="CAD", lead_time_days=5)
        session.add(supplier)
        await session.flush()
        session.add(
            SupplierItem(
                workspace_id=gadget.workspace_id, supplier_id=supplier.id, item_id=gadget.id, supplier_sku="MP-G2",
                unit_price=Decimal("12.40"), currency="CAD", min_order_qty=Decimal(1), pack_size=Decimal(1), preferred=True,
            )
        )


@pytest.fixture
def workspace(tmp_path: Path):
    db = new_database_location(tmp_path, "rates.db")

    async def setup():
        database = await open_database(db)
        try:
            tokens = await small_workspace(database)
            await add_cad_supplier(database)
            root = await issue_secret(database, workspace_id=tokens.agent.workspace_id, principal="rita", kind="user", role="admin")
            return tokens, root
        finally:
            await database.dispose()

    tokens, root = anyio.run(setup)
    return db, tokens, root


async def draft_po(db: Path, tokens, quantity: int = 10) -> object:
    database = await open_database(db)
    try:
        async with Client(build_server(make_app(database), tokens.agent)) as client:
            return await client.call_tool(
                "draft_purchase_order",
                {"supplier": "MAPLE", "lines": [{"sku": "GADGET-2", "quantity": quantity}], "rationale": RATIONALE},
            )
    finally:
        await database.dispose()


async def rows(db: Path, model) -> list:
    database = await open_database(db)
    try:
        async with database.read() as session:
            return list((await session.execute(select(model).order_by(model.id))).scalars().all())
    finally:
        await database.dispose()


def test_foreign_price_without_rate_rejected(workspace) -> None:
    db, tokens, _root = workspace

    result = anyio.run(draft_po, db, tokens)

    assert result.is_error
    assert (
        "The price of GADGET-2 from MAPLE is in CAD and the workspace has no exchange rate for CAD; an admin sets one "
        "with `order3 rates set CAD RATE`"
    ) in result.content[0].text
    assert anyio.run(rows, db, Draft) == []


def test_foreign_purchase_valued_with_rate(workspace) -> None:
    db, tokens, root = workspace
    saved = order3(db, "rates", "set", "cad", "0.73", "--as-of", "2026-12-01", token=root)

    drafted = anyio.run(draft_po, db, tokens)
    detail = drafted.structured_content
    # The rate changes after drafting: the draft keeps the one it was valued with.
    order3(db, "rates", "set", "CAD", "0.80", token=root)
    approved = order3(db, "drafts", "approve", str(detail["draft_id"]), token=tokens.buyer_secret)
    shown = order3(db, "drafts", "show", str(detail["draft_id"]), token=tokens.buyer_secret)

    assert saved.exit_code == 0, saved.output
    assert "1 CAD = 0.73 in the base currency, as of 2026-12-01" in saved.output
    assert not drafted.is_error, drafted.content
    # 10 × 12.40 CAD × 0.73 = 90.52 USD.
    assert (detail["estimated_value"], detail["currency"]) == ("90.52", "USD")
    [draft] = anyio.run(rows, db, Draft)
    assert draft.payload["currency"] == "CAD"
    assert draft.payload["exchange_rates"] == {"CAD": {"rate": "0.73", "as_of": "2026-12-01"}}
    assert draft.payload["lines"][0]["unit_price"] == "12.4"
    assert approved.exit_code == 0, approved.output
    [order] = anyio.run(rows, db, PurchaseOrder)
    [line] = anyio.run(rows, db, PurchaseOrderLine)
    assert (order.currency, line.unit_price, line.quantity_ordered) == ("CAD", Decimal("12.40"), Decimal(10))
    assert "1 CAD = 0.73 USD (as of 2026-12-01)" in shown.output


def test_rates_list_current_and_history(workspace) -> None:
    db, tokens, root = workspace
    order3(db, "rates", "set", "EUR", "1.08", "--as-of", "2026-11-30", token=root)
    order3(db, "rates", "set", "EUR", "1.10", "--as-of", "2026-12-02", token=root)

    current = order3(db, "rates", "list", token=tokens.buyer_secret)
    history = order3(db, "rates", "list", "--history", token=tokens.buyer_secret)

    assert current.exit_code == 0, current.output
    assert "1.10" in current.output
    assert "1.08" not in current.output
    assert "1.08" in history.output
    assert "1.10" in history.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["CA", "0.7"], "currency 'CA' is not a currency code; use three letters"),
        (["XYZ", "0.7"], "currency 'XYZ' is not an ISO 4217 currency code; check the spelling"),
        (["ERU", "1.1"], "currency 'ERU' is not an ISO 4217 currency code"),
        (["CAD", "0"], "Rate '0' must be a positive number"),
        (["CAD", "abc"], "Rate 'abc' is not a number"),
        (["CAD", "1e3"], "Rate '1e3' has too many digits; write a plain decimal"),
        (["USD", "1"], "USD is the workspace base currency; its rate is always 1."),
        (["CAD", "0.7", "--as-of", "2026-13-01"], "as_of '2026-13-01' is not a date; write it as YYYY-MM-DD."),
        (["CAD", "0.7", "--as-of", "2099-01-01"], "as_of 2099-01-01 is after today"),
    ],
)
def test_bad_rate_writes_nothing(workspace, arguments: list[str], message: str) -> None:
    db, _tokens, root = workspace

    result = order3(db, "rates", "set", *arguments, token=root)

    assert result.exit_code != 0
    assert message in " ".join(result.output.split())
    assert anyio.run(rows, db, ExchangeRate) == []


def test_only_admins_set_rates(workspace) -> None:
    db, tokens, _root = workspace

    result = order3(db, "rates", "set", "CAD", "0.73", token=tokens.buyer_secret)

    assert result.exit_code != 0
    assert "needs the 'admin' scope" in " ".join(result.output.split())
    assert anyio.run(rows, db, ExchangeRate) == []


async def test_foreign_cost_adjustment_uses_rate(database: Database) -> None:
    tokens = await stock_workspace(database)
    async with database.write() as session:
        await session.execute(update(Item).where(Item.sku == "WIDGET-1").values(currency="EUR"))
    app = make_app(database)
    from order3_mcp.services import rates

    await rates.set_rate(app, tokens.admin, currency="EUR", rate="1.10", as_of="2026-12-01")
    async with Client(build_server(app, tokens.agent)) as client:
        result = await client.call_tool(
            "draft_adjustment",
            {"sku": "WIDGET-1", "location": "WH1", "bin": "A-01", "quantity": -3, "reason_code": "damaged", "rationale": RATIONALE},
        )
    detail = result.structured_content
    executed = await approvals.approve_draft(app, tokens.admin, draft_id=detail["draft_id"], expected_hash="", reason="")

    assert not result.is_error, result.content
    # -3 × 2.50 EUR × 1.10 = -8.25 USD.
    assert detail["estimated_value"] == "-8.25"
    assert executed.status == "executed"


def test_init_refuses_an_unknown_base_currency(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "o.db"), "init", "--currency", "XYZ"])

    assert result.exit_code != 0
    assert "Currency 'XYZ' is not an ISO 4217 currency code" in " ".join(result.output.split())

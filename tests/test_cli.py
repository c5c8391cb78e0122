"""The `order3` CLI through typer's runner: exit codes, key output lines and what reaches the database."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner, Result

from order3_mcp.app import Order3
from order3_mcp.cli import app
from order3_mcp.inputs import PurchaseLine
from order3_mcp.services import drafts
from store.db import open_database
from store.models import Item, Location, Supplier, SupplierItem
from store.workspaces import sku_key
from tests.conftest import INVENTREE_DEMO

runner = CliRunner()


def order3(db: Path, *args: str, token: str | None = None) -> Result:
    """Run `order3 --db DB [--token TOKEN] ARGS` with no token in the environment."""
    options = ["--db", str(db)] + (["--token", token] if token else [])
    return runner.invoke(app, [*options, *args], env={"ORDER3_TOKEN": None, "ORDER3_DB": None, "COLUMNS": "200"})


def secret_in(output: str) -> str:
    """Return the token secret printed on a line of its own."""
    return next(line.strip() for line in output.splitlines() if line.strip().startswith("o3_"))


def event_count(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT COUNT(*) FROM activity_event").fetchone()[0]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "order3.db"


@pytest.fixture
def admin_token(db: Path) -> str:
    result = order3(db, "init", "--workspace", "main", "--admin", "root")
    assert result.exit_code == 0, result.stderr
    return secret_in(result.stdout)


def test_init_prints_token_once_with_warning(db: Path) -> None:
    result = order3(db, "init", "--workspace", "main", "--currency", "eur", "--timezone", "Europe/Berlin")

    assert result.exit_code == 0
    assert "Created workspace 'main' (EUR, Europe/Berlin)." in result.stdout
    assert secret_in(result.stdout).startswith("o3_")
    assert "it is not shown again" in result.stdout
    assert event_count(db) == 1


def test_init_again_fails_and_writes_nothing(db: Path, admin_token: str) -> None:
    result = order3(db, "init", "--workspace", "main")

    assert result.exit_code == 5
    assert "Workspace 'main' already exists" in result.stderr
    assert "o3_" not in result.stdout
    assert event_count(db) == 1
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM token").fetchone()[0] == 1


def test_init_rejects_unknown_timezone(db: Path) -> None:
    result = order3(db, "init", "--timezone", "Mars/Olympus")

    assert result.exit_code == 2
    assert "'Mars/Olympus' is not an IANA timezone" in result.stderr


def test_agent_token_withholds_approve_and_execute(db: Path, admin_token: str) -> None:
    result = order3(db, "token", "create", "--principal", "bot", "--kind", "agent", "--role", "buyer", "--for", "dana", token=admin_token)

    assert result.exit_code == 0, result.stderr
    assert "Created agent token 2 for 'bot' with role buyer." in result.stdout
    assert "Scopes: change, draft, export, read" in result.stdout
    assert "Withheld: approve, execute." in result.stdout
    assert "Acts for: dana" in result.stdout


def test_user_token_reports_nothing_withheld(db: Path, admin_token: str) -> None:
    result = order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token)

    assert result.exit_code == 0
    assert "Withheld" not in result.stdout


def test_token_create_rejects_unknown_role(db: Path, admin_token: str) -> None:
    result = order3(db, "token", "create", "--principal", "alice", "--role", "superuser", token=admin_token)

    assert result.exit_code == 2
    assert "Role 'superuser' is unknown" in result.stderr


def test_token_create_needs_admin_scope(db: Path, admin_token: str) -> None:
    buyer = secret_in(order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token).stdout)

    result = order3(db, "token", "create", "--principal", "eve", "--role", "admin", token=buyer)

    assert result.exit_code == 3
    assert "needs the 'admin' scope" in result.stderr


def test_token_list_hides_secrets(db: Path, admin_token: str) -> None:
    created = order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token)
    buyer = secret_in(created.stdout)

    result = order3(db, "token", "list", token=admin_token)

    assert result.exit_code == 0
    assert admin_token not in result.stdout
    assert buyer not in result.stdout
    assert buyer[:10] + "…" in result.stdout
    assert "alice" in result.stdout
    assert "2 tokens" in result.stdout


def test_missing_token_is_a_clear_error(db: Path, admin_token: str) -> None:
    result = order3(db, "token", "list")

    assert result.exit_code == 3
    assert "No token given: set ORDER3_TOKEN or pass --token" in result.stderr
    assert "Traceback" not in result.output


def test_unknown_token_is_rejected(db: Path, admin_token: str) -> None:
    result = order3(db, "drafts", "list", token="o3_not-a-real-token")

    assert result.exit_code == 3
    assert "The token is not valid" in result.stderr


def test_revoked_token_is_rejected(db: Path, admin_token: str) -> None:
    buyer = secret_in(order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token).stdout)
    revoked = order3(db, "token", "revoke", "2", token=admin_token)

    result = order3(db, "drafts", "list", token=buyer)

    assert revoked.exit_code == 0
    assert "Revoked token 2" in revoked.stdout
    assert result.exit_code == 3
    assert "of 'alice' was revoked" in result.stderr


def test_missing_database_file_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"

    result = order3(missing, "token", "list", token="o3_anything")

    assert result.exit_code == 4
    assert "No Order3 database at" in result.stderr
    assert not missing.exists()


def test_activity_verify_names_tampered_seq(db: Path, admin_token: str) -> None:
    order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token)
    order3(db, "token", "list", token=admin_token)

    intact = order3(db, "activity", "verify", token=admin_token)
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE activity_event SET summary = 'nothing happened' WHERE seq = 2")
    broken = order3(db, "activity", "verify", token=admin_token)

    assert intact.exit_code == 0
    assert "Activity chain intact: 3 events verified." in intact.stdout
    assert broken.exit_code == 1
    assert "Activity chain broken at seq 2: event 2 was changed after it was written." in broken.stderr


def test_activity_list_shows_timeline(db: Path, admin_token: str) -> None:
    order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token)

    result = order3(db, "activity", "list", token=admin_token)

    assert result.exit_code == 0
    assert "init" in result.stdout
    assert "Created user token 2 for 'alice' with role buyer." in result.stdout


def test_activity_show_prints_hashes(db: Path, admin_token: str) -> None:
    result = order3(db, "activity", "show", "1", token=admin_token)

    assert result.exit_code == 0
    assert "action: init" in result.stdout
    lines = result.stdout.splitlines()
    assert "prev_hash:" in [line.strip() for line in lines]
    assert any(line.startswith("hash: ") and len(line) == len("hash: ") + 64 for line in lines)


def test_activity_export_writes_json_lines(db: Path, admin_token: str, tmp_path: Path) -> None:
    output = tmp_path / "activity.jsonl"

    result = order3(db, "activity", "export", "--output", str(output), token=admin_token)

    assert result.exit_code == 0
    lines = output.read_text().splitlines()
    assert len(lines) == 1
    assert '"action":"init"' in lines[0]


def test_activity_export_needs_export_scope(db: Path, admin_token: str) -> None:
    agent = secret_in(order3(db, "token", "create", "--principal", "bot", "--kind", "agent", "--role", "agent", token=admin_token).stdout)

    result = order3(db, "activity", "export", token=agent)

    assert result.exit_code == 3
    assert "needs the 'export' scope" in result.stderr


def test_import_of_missing_file_fails(db: Path, admin_token: str, tmp_path: Path) -> None:
    result = order3(db, "import", "inventree", str(tmp_path / "missing.json"), token=admin_token)

    assert result.exit_code == 2
    assert "missing.json" in result.stderr


@pytest.mark.skipif(not INVENTREE_DEMO.exists(), reason="the InvenTree demo export is not next to the repository")
def test_verify_passes_after_import(db: Path, admin_token: str) -> None:
    imported = order3(db, "import", "inventree", str(INVENTREE_DEMO), token=admin_token)

    result = order3(db, "verify", token=admin_token)

    assert imported.exit_code == 0, imported.stderr
    assert "items: 414 imported" in imported.stdout
    assert result.exit_code == 0
    assert "Mismatches: 0" in result.stdout


def test_verify_reports_ledger_mismatch(db: Path, admin_token: str) -> None:
    _seed_catalogue(db)
    with sqlite3.connect(db) as connection:
        connection.execute(
            "INSERT INTO stock_level (workspace_id, item_id, location_id, bin_id, bin_key, on_hand, version, updated_at) "
            "SELECT 1, item.id, location.id, NULL, 0, 5000000, 1, '2025-01-01T00:00:00+00:00' FROM item, location LIMIT 1"
        )

    result = order3(db, "verify", token=admin_token)

    assert result.exit_code == 1
    assert "Mismatches: 1" in result.stdout
    assert "on hand 5, ledger sum 0" in result.stdout


def _seed_catalogue(db: Path) -> None:
    """Add location WH1 and supplier ACME selling WIDGET-1 (pack 10, minimum 20, 2.50 USD) to workspace 1."""

    async def seed() -> None:
        database = await open_database(db)
        try:
            async with database.write() as session:
                supplier = Supplier(workspace_id=1, code="ACME", name="Acme Parts")
                item = Item(workspace_id=1, sku="WIDGET-1", sku_key=sku_key("WIDGET-1"), name="Widget", unit_cost=Decimal("2.5"))
                session.add_all([supplier, item, Location(workspace_id=1, code="WH1", name="Main warehouse")])
                await session.flush()
                session.add(
                    SupplierItem(
                        workspace_id=1, supplier_id=supplier.id, item_id=item.id, supplier_sku="AC-W1",
                        unit_price=Decimal("2.50"), min_order_qty=Decimal(20), pack_size=Decimal(10), preferred=True,
                    )
                )
        finally:
            await database.dispose()

    anyio.run(seed)


def _draft_as(db: Path, secret: str) -> int:
    """Prepare a purchase order draft for 20 WIDGET-1 through the draft service and return its id."""

    async def draft() -> int:
        database = await open_database(db)
        try:
            service = Order3(database)
            caller = await service.authenticate(secret, channel="cli")
            detail = await drafts.draft_purchase_order(
                service, caller, supplier="ACME", lines=[PurchaseLine(sku="WIDGET-1", quantity=Decimal(20))],
                rationale="Widget stock is below the reorder point of 30.", title="", exception_ids=[], idempotency_key=None,
            )
            return detail.draft_id
        finally:
            await database.dispose()

    return anyio.run(draft)


def test_drafter_cannot_approve_own_draft(db: Path, admin_token: str) -> None:
    _seed_catalogue(db)
    alice = secret_in(order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token).stdout)
    draft_id = _draft_as(db, alice)

    result = order3(db, "drafts", "approve", str(draft_id), token=alice)
    shown = order3(db, "drafts", "show", str(draft_id), token=alice)

    assert result.exit_code == 3
    assert "'alice' created this draft and cannot approve it" in result.stderr
    assert shown.exit_code == 0
    assert "Status: pending_approval" in shown.stdout
    assert "Decisions: none yet" in shown.stdout


def test_second_buyer_approves_and_issues_purchase_order(db: Path, admin_token: str) -> None:
    _seed_catalogue(db)
    alice = secret_in(order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token).stdout)
    bob = secret_in(order3(db, "token", "create", "--principal", "bob", "--role", "buyer", token=admin_token).stdout)
    draft_id = _draft_as(db, alice)

    stale = order3(db, "drafts", "approve", str(draft_id), "--hash", "ffffffffffff", token=bob)
    result = order3(db, "drafts", "approve", str(draft_id), "--reason", "ok", token=bob)
    again = order3(db, "drafts", "execute", str(draft_id), token=bob)

    assert stale.exit_code == 5
    assert "is not the version you reviewed" in stale.stderr
    assert result.exit_code == 0, result.stderr
    assert "Draft 1 is executed." in result.stdout
    assert "Issued purchase order PO-000001." in result.stdout
    assert again.exit_code == 5
    assert "was already executed" in again.stderr


def test_reject_needs_reason_and_records_it(db: Path, admin_token: str) -> None:
    _seed_catalogue(db)
    alice = secret_in(order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token).stdout)
    bob = secret_in(order3(db, "token", "create", "--principal", "bob", "--role", "buyer", token=admin_token).stdout)
    draft_id = _draft_as(db, alice)

    result = order3(db, "drafts", "reject", str(draft_id), "--reason", "Wrong supplier.", token=bob)
    listed = order3(db, "drafts", "list", "--status", "rejected", token=bob)

    assert result.exit_code == 0
    assert "Draft 1 is rejected." in result.stdout
    assert "1 drafts" in listed.stdout


def test_exceptions_list_runs(db: Path, admin_token: str) -> None:
    result = order3(db, "exceptions", "list", token=admin_token)

    assert result.exit_code == 0, result.stderr
    assert "0 exceptions" in result.stdout


@pytest.mark.skipif(not INVENTREE_DEMO.exists(), reason="the InvenTree demo export is not next to the repository")
def test_exceptions_show_and_dismiss_overdue_line(db: Path, admin_token: str) -> None:
    order3(db, "import", "inventree", str(INVENTREE_DEMO), token=admin_token)
    listed = order3(db, "exceptions", "list", "--kind", "supplier_delay", token=admin_token)
    exception_id = next(line.split("│")[1].strip() for line in listed.stdout.splitlines() if "PO0001" in line)

    shown = order3(db, "exceptions", "show", exception_id, token=admin_token)
    unexplained = order3(db, "exceptions", "dismiss", exception_id, token=admin_token)
    dismissed = order3(db, "exceptions", "dismiss", exception_id, "--reason", "DigiKey confirmed the new date.", token=admin_token)
    again = order3(db, "exceptions", "dismiss", exception_id, "--reason", "DigiKey confirmed the new date.", token=admin_token)

    assert shown.exit_code == 0, shown.stderr
    assert "expected 2021-12-10" in shown.stdout
    assert "days_late" in shown.stdout
    assert unexplained.exit_code == 2
    assert "too short" in unexplained.stderr
    assert dismissed.exit_code == 0, dismissed.stderr
    assert f"Dismissed exception {exception_id}" in dismissed.stdout
    assert again.exit_code == 5
    assert "already dismissed" in again.stderr


def test_serve_without_token_writes_nothing_to_stdout(db: Path, admin_token: str) -> None:
    result = order3(db, "serve")

    assert result.exit_code == 3
    assert result.stdout == ""
    assert "No token given" in result.stderr


def test_serve_with_revoked_token_fails(db: Path, admin_token: str) -> None:
    agent = secret_in(order3(db, "token", "create", "--principal", "bot", "--kind", "agent", "--role", "agent", token=admin_token).stdout)
    order3(db, "token", "revoke", "2", token=admin_token)

    result = order3(db, "serve", token=agent)

    assert result.exit_code == 3
    assert result.stdout == ""
    assert "was revoked" in result.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com"])
def test_serve_http_refuses_non_loopback_host(db: Path, admin_token: str, host: str) -> None:
    result = order3(db, "serve", "--http", "--host", host, token=admin_token)

    assert result.exit_code == 2
    assert f"Host {host!r}" in result.stderr

"""The `order3` CLI through typer's runner: exit codes, key output lines and what reaches the database."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner, Result

from order3_mcp.app import Order3
from order3_mcp.cli import app
from order3_mcp.inputs import PurchaseLine
from order3_mcp.services import drafts
from store.db import open_database
from store.models import Item, Location, Supplier, SupplierItem
from store.workspaces import sku_key
from tests.conftest import INVENTREE_DEMO, run_sql, sqlite_only

runner = CliRunner()


def order3(db: Path | str, *args: str, token: str | None = None, columns: int = 200) -> Result:
    """Run `order3 --db DB [--token TOKEN] ARGS` with no token in the environment."""
    options = ["--db", str(db)] + (["--token", token] if token else [])
    return runner.invoke(app, [*options, *args], env={"ORDER3_TOKEN": None, "ORDER3_DB": None, "COLUMNS": str(columns)})


def secret_in(output: str) -> str:
    """Return the token secret printed on a line of its own."""
    return next(line.strip() for line in output.splitlines() if line.strip().startswith("o3_"))


def event_count(db: Path | str) -> int:
    return run_sql(db, "SELECT COUNT(*) FROM activity_event")[0][0]


@pytest.fixture
def db(db_location_factory: Callable[..., str]) -> str:
    return db_location_factory()


@pytest.fixture
def admin_token(db: str) -> str:
    result = order3(db, "init", "--workspace", "main", "--admin", "root")
    assert result.exit_code == 0, result.stderr
    return secret_in(result.stdout)


def test_init_prints_token_once_with_warning(db: str) -> None:
    result = order3(db, "init", "--workspace", "main", "--currency", "eur", "--timezone", "Europe/Berlin")

    assert result.exit_code == 0
    assert "Created workspace 'main' (EUR, Europe/Berlin)." in result.stdout
    assert secret_in(result.stdout).startswith("o3_")
    assert "it is not shown again" in result.stdout
    assert event_count(db) == 1


def test_init_again_fails_and_writes_nothing(db: str, admin_token: str) -> None:
    result = order3(db, "init", "--workspace", "main")

    assert result.exit_code == 5
    assert "Workspace 'main' already exists" in result.stderr
    assert "o3_" not in result.stdout
    assert event_count(db) == 1
    assert run_sql(db, "SELECT COUNT(*) FROM token") == [(1,)]


def test_init_rejects_unknown_timezone(db: str) -> None:
    result = order3(db, "init", "--timezone", "Mars/Olympus")

    assert result.exit_code == 2
    assert "'Mars/Olympus' is not an IANA timezone" in result.stderr


def test_agent_token_withholds_approve_and_execute(db: str, admin_token: str) -> None:
    order3(db, "token", "create", "--principal", "dana", "--role", "buyer", token=admin_token)

    result = order3(db, "token", "create", "--principal", "bot", "--kind", "agent", "--role", "buyer", "--for", "dana", token=admin_token)

    assert result.exit_code == 0, result.stderr
    assert "Created agent token 3 for 'bot' with role buyer." in result.stdout
    assert "Scopes: change, draft, export, read" in result.stdout
    assert "Withheld: approve, execute." in result.stdout
    assert "An agent token never gets approve, execute or admin" in result.stdout
    assert "Acts for: dana" in result.stdout


def test_user_token_reports_nothing_withheld(db: str, admin_token: str) -> None:
    result = order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token)

    assert result.exit_code == 0
    assert "Withheld" not in result.stdout


def test_token_create_rejects_unknown_role(db: str, admin_token: str) -> None:
    result = order3(db, "token", "create", "--principal", "alice", "--role", "superuser", token=admin_token)

    assert result.exit_code == 2
    assert "Role 'superuser' is unknown" in result.stderr


def test_token_create_needs_admin_scope(db: str, admin_token: str) -> None:
    buyer = secret_in(order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token).stdout)

    result = order3(db, "token", "create", "--principal", "eve", "--role", "admin", token=buyer)

    assert result.exit_code == 3
    assert "needs the 'admin' scope" in result.stderr


def test_token_list_hides_secrets(db: str, admin_token: str) -> None:
    created = order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token)
    buyer = secret_in(created.stdout)

    result = order3(db, "token", "list", token=admin_token)

    assert result.exit_code == 0
    assert admin_token not in result.stdout
    assert buyer not in result.stdout
    assert buyer[:10] + "…" in result.stdout
    assert "alice" in result.stdout
    assert "2 tokens" in result.stdout


def test_missing_token_is_a_clear_error(db: str, admin_token: str) -> None:
    result = order3(db, "token", "list")

    assert result.exit_code == 3
    assert "No token given: set ORDER3_TOKEN or pass --token" in result.stderr
    assert "Traceback" not in result.output


def test_unknown_token_is_rejected(db: str, admin_token: str) -> None:
    result = order3(db, "drafts", "list", token="o3_not-a-real-token")

    assert result.exit_code == 3
    assert "The token is not valid" in result.stderr


def test_revoked_token_is_rejected(db: str, admin_token: str) -> None:
    buyer = secret_in(order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token).stdout)
    revoked = order3(db, "token", "revoke", "2", token=admin_token)

    result = order3(db, "drafts", "list", token=buyer)

    assert revoked.exit_code == 0
    assert "Revoked token 2" in revoked.stdout
    assert result.exit_code == 3
    assert "of 'alice' was revoked" in result.stderr


@sqlite_only
def test_missing_database_file_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"

    result = order3(missing, "token", "list", token="o3_anything")

    assert result.exit_code == 4
    assert "No Order3 database at" in result.stderr
    assert not missing.exists()


def test_activity_verify_names_tampered_seq(db: str, admin_token: str) -> None:
    order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token)
    order3(db, "token", "list", token=admin_token)

    intact = order3(db, "activity", "verify", token=admin_token)
    run_sql(db, "UPDATE activity_event SET summary = 'nothing happened' WHERE seq = 2")
    broken = order3(db, "activity", "verify", token=admin_token)

    assert intact.exit_code == 0
    assert "Activity chain intact: 3 events verified." in intact.stdout
    assert broken.exit_code == 7
    assert "Activity chain broken at seq 2 (edited): event 2 was changed after it was written." in broken.stderr


def test_activity_list_shows_timeline(db: str, admin_token: str) -> None:
    order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token)

    result = order3(db, "activity", "list", token=admin_token)

    assert result.exit_code == 0
    assert "init" in result.stdout
    assert "Created user token 2 for 'alice' with role buyer." in result.stdout


def test_activity_show_prints_hashes(db: str, admin_token: str) -> None:
    result = order3(db, "activity", "show", "1", token=admin_token)

    assert result.exit_code == 0
    assert "action: init" in result.stdout
    lines = result.stdout.splitlines()
    assert "prev_hash:" in [line.strip() for line in lines]
    assert any(line.startswith("hash: ") and len(line) == len("hash: ") + 64 for line in lines)


def test_activity_export_writes_json_lines(db: str, admin_token: str, tmp_path: Path) -> None:
    output = tmp_path / "activity.jsonl"

    result = order3(db, "activity", "export", "--output", str(output), token=admin_token)

    assert result.exit_code == 0
    lines = output.read_text().splitlines()
    assert len(lines) == 1
    assert '"action":"init"' in lines[0]


def test_activity_export_needs_export_scope(db: str, admin_token: str) -> None:
    agent = secret_in(order3(db, "token", "create", "--principal", "bot", "--kind", "agent", "--role", "agent", token=admin_token).stdout)

    result = order3(db, "activity", "export", token=agent)

    assert result.exit_code == 3
    assert "needs the 'export' scope" in result.stderr


def test_import_of_missing_file_fails(db: str, admin_token: str, tmp_path: Path) -> None:
    result = order3(db, "import", "inventree", str(tmp_path / "missing.json"), token=admin_token)

    assert result.exit_code == 2
    assert "missing.json" in result.stderr


@pytest.mark.skipif(not INVENTREE_DEMO.exists(), reason="the InvenTree demo export is not next to the repository")
def test_verify_passes_after_import(db: str, admin_token: str) -> None:
    imported = order3(db, "import", "inventree", str(INVENTREE_DEMO), token=admin_token)

    result = order3(db, "verify", token=admin_token)

    assert imported.exit_code == 0, imported.stderr
    assert "items: 414 imported" in imported.stdout
    assert result.exit_code == 0
    assert "Mismatches: 0" in result.stdout


def test_verify_reports_ledger_mismatch(db: str, admin_token: str) -> None:
    _seed_catalogue(db)
    run_sql(
        db,
        "INSERT INTO stock_level (workspace_id, item_id, location_id, bin_id, bin_key, on_hand, version, updated_at) "
        "SELECT 1, item.id, location.id, NULL, 0, 5000000, 1, '2025-01-01T00:00:00+00:00' FROM item, location LIMIT 1",
    )

    result = order3(db, "verify", token=admin_token)

    assert result.exit_code == 1
    assert "Mismatches: 1" in result.stdout
    assert "  WIDGET-1 at WH1: on hand 5, ledger sum 0" in result.stdout.splitlines()


def _seed_catalogue(db: str) -> None:
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


def _draft_as(db: str, secret: str, quantity: int = 20) -> int:
    """Prepare a purchase order draft for `quantity` WIDGET-1 (2.50 USD each) through the draft service and return its id."""

    async def draft() -> int:
        database = await open_database(db)
        try:
            service = Order3(database)
            caller = await service.authenticate(secret, channel="cli")
            detail = await drafts.draft_purchase_order(
                service, caller, supplier="ACME", lines=[PurchaseLine(sku="WIDGET-1", quantity=Decimal(quantity))],
                rationale="Widget stock is below the reorder point of 30.", title="", exception_ids=[], idempotency_key=None,
            )
            return detail.draft_id
        finally:
            await database.dispose()

    return anyio.run(draft)


def test_drafter_cannot_approve_own_draft(db: str, admin_token: str) -> None:
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


def test_second_buyer_approves_and_issues_purchase_order(db: str, admin_token: str) -> None:
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


def test_reject_needs_reason_and_records_it(db: str, admin_token: str) -> None:
    _seed_catalogue(db)
    alice = secret_in(order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token).stdout)
    bob = secret_in(order3(db, "token", "create", "--principal", "bob", "--role", "buyer", token=admin_token).stdout)
    draft_id = _draft_as(db, alice)

    result = order3(db, "drafts", "reject", str(draft_id), "--reason", "Wrong supplier.", token=bob)
    listed = order3(db, "drafts", "list", "--status", "rejected", token=bob)

    assert result.exit_code == 0
    assert "Draft 1 is rejected." in result.stdout
    assert "1 drafts" in listed.stdout


def test_exceptions_list_runs(db: str, admin_token: str) -> None:
    result = order3(db, "exceptions", "list", token=admin_token)

    assert result.exit_code == 0, result.stderr
    assert "0 exceptions" in result.stdout


@pytest.mark.skipif(not INVENTREE_DEMO.exists(), reason="the InvenTree demo export is not next to the repository")
def test_exceptions_show_and_dismiss_overdue_line(db: str, admin_token: str) -> None:
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


def test_serve_without_token_writes_nothing_to_stdout(db: str, admin_token: str) -> None:
    result = order3(db, "serve")

    assert result.exit_code == 3
    assert result.stdout == ""
    assert "No token given" in result.stderr


def test_serve_with_revoked_token_fails(db: str, admin_token: str) -> None:
    agent = secret_in(order3(db, "token", "create", "--principal", "bot", "--kind", "agent", "--role", "agent", token=admin_token).stdout)
    order3(db, "token", "revoke", "2", token=admin_token)

    result = order3(db, "serve", token=agent)

    assert result.exit_code == 3
    assert result.stdout == ""
    assert "was revoked" in result.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com"])
def test_serve_http_refuses_non_loopback_host(db: str, admin_token: str, host: str) -> None:
    result = order3(db, "serve", "--http", "--host", host, token=admin_token)

    assert result.exit_code == 2
    assert f"Host {host!r}" in result.stderr


def test_agent_token_with_admin_role_names_withheld_scopes(db: str, admin_token: str) -> None:
    result = order3(db, "token", "create", "--principal", "bot", "--kind", "agent", "--role", "admin", token=admin_token)

    assert result.exit_code == 0, result.stderr
    assert (
        "Withheld: admin, approve, execute. An agent token never gets approve, execute or admin, whatever its role. "
        "A person approves its drafts."
    ) in result.stdout.splitlines()


def test_verify_names_bin_by_code(db: str, admin_token: str) -> None:
    _seed_catalogue(db)
    run_sql(
        db,
        "INSERT INTO bin (workspace_id, location_id, code, name, created_at) "
        "SELECT 1, id, 'A-01', '', '2025-01-01T00:00:00+00:00' FROM location WHERE code = 'WH1'",
    )
    run_sql(
        db,
        "INSERT INTO stock_level (workspace_id, item_id, location_id, bin_id, bin_key, on_hand, version, updated_at) "
        "SELECT 1, item.id, location.id, bin.id, bin.id, 2000000, 1, '2025-01-01T00:00:00+00:00' FROM item, location, bin",
    )

    result = order3(db, "verify", token=admin_token)

    assert result.exit_code == 1
    assert "  WIDGET-1 at WH1 bin A-01: on hand 2, ledger sum 0" in result.stdout.splitlines()


def test_first_of_two_approvals_says_what_is_missing(db: str, admin_token: str) -> None:
    _seed_catalogue(db)
    alice = secret_in(order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token).stdout)
    carol = secret_in(order3(db, "token", "create", "--principal", "carol", "--role", "approver", token=admin_token).stdout)
    dave = secret_in(order3(db, "token", "create", "--principal", "dave", "--role", "approver", token=admin_token).stdout)
    draft_id = _draft_as(db, alice, quantity=2100)

    first = order3(db, "drafts", "approve", str(draft_id), token=carol)
    second = order3(db, "drafts", "approve", str(draft_id), token=dave)

    assert first.exit_code == 0, first.stderr
    assert first.stdout == (
        f"Approval 1 of 2 recorded. Draft {draft_id} needs another approver with role approver or admin "
        "(policy rule po-above-5000).\n"
    )
    assert second.exit_code == 0, second.stderr
    assert f"Draft {draft_id} is executed." in second.stdout


def test_token_list_fits_80_columns(db: str, admin_token: str) -> None:
    tokens = [
        ("alice", "user", "buyer", ""),
        ("buyer-bot", "agent", "agent", "alice"),
        ("shopify-eu", "integration", "integration", ""),
    ]
    for principal, kind, role, for_person in tokens:
        created = order3(
            db, "token", "create", "--principal", principal, "--kind", kind, "--role", role, "--for", for_person, token=admin_token
        )
        assert created.exit_code == 0, created.stderr
    order3(db, "token", "revoke", "2", token=admin_token)
    prefixes = dict(run_sql(db, "SELECT id, prefix FROM token"))

    result = order3(db, "token", "list", token=admin_token, columns=80)

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [("1", "root", "user", "admin"), *[(str(n), p, k, r) for n, (p, k, r, _) in enumerate(tokens, start=2)]]
    for token_id, principal, kind, role in rows:
        expected = [token_id, prefixes[int(token_id)] + "…", principal, kind, role]
        assert any(line.split()[:5] == expected for line in lines), f"no full row for token {token_id}"
    assert "for alice" in result.stdout
    assert "revoked" in result.stdout


# Opening --db: bad values and other applications' databases.


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def foreign_sqlite_file(path: Path) -> Path:
    """Write a SQLite file of another application, with an orders and a users table."""
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total TEXT)")
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        connection.execute("INSERT INTO users (name) VALUES ('mallory')")
    connection.close()
    return path


def test_db_url_with_unknown_scheme_is_invalid() -> None:
    result = order3("foo://bar", "drafts", "list", token="o3_anything")

    assert result.exit_code == 2
    assert result.stderr == (
        "Cannot open database 'foo://bar': unknown database URL scheme 'foo'. "
        "Use a SQLite file path or a postgresql://user@host/db URL.\n"
    )


def test_unreachable_postgresql_server_is_not_found() -> None:
    pytest.importorskip("asyncpg")

    result = order3("postgresql://nobody:hunter2@127.0.0.1:1/x", "drafts", "list", token="o3_anything")

    assert result.exit_code == 4
    assert result.stderr.startswith("Cannot open database 'postgresql://nobody:***@127.0.0.1:1/x': the server cannot be reached (")
    assert result.stderr.endswith("Check that it is running and that the host and port in the URL are right.\n")
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.output


@sqlite_only
def test_file_that_is_not_a_database_is_invalid(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    before = sha256_of(passwd)

    result = order3(passwd, "drafts", "list", token="o3_anything")

    assert result.exit_code == 2
    assert result.stderr == (
        f"Cannot open database '{passwd}': SQLite reports 'file is not a database'. "
        "Point --db or ORDER3_DB at an Order3 database file.\n"
    )
    assert sha256_of(passwd) == before


@sqlite_only
def test_directory_as_database_is_invalid(tmp_path: Path) -> None:
    result = order3(tmp_path, "init")

    assert result.exit_code == 2
    assert result.stderr == f"Cannot open database '{tmp_path}': it is a directory. Pass a file path such as {tmp_path / 'order3.db'}.\n"


@sqlite_only
@pytest.mark.parametrize(
    "command",
    [
        ["drafts", "list"],
        ["token", "list"],
        ["activity", "verify"],
        ["verify"],
        ["serve"],
        ["sync", "ingest", "batch.json"],
    ],
)
def test_foreign_sqlite_file_is_left_unchanged(tmp_path: Path, command: list[str]) -> None:
    foreign = foreign_sqlite_file(tmp_path / "foreign.db")
    before = sha256_of(foreign)

    result = order3(foreign, *command, token="o3_anything")

    assert result.exit_code == 2
    assert result.stderr == (
        f"Database '{foreign}' is not an Order3 database: it has tables (orders, users) but no workspace and "
        "activity_event tables. Nothing was written to it. Point --db or ORDER3_DB at an Order3 database.\n"
    )
    assert result.stdout == ""
    assert sha256_of(foreign) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["foreign.db"]


@sqlite_only
def test_init_refuses_foreign_sqlite_file(tmp_path: Path) -> None:
    foreign = foreign_sqlite_file(tmp_path / "foreign.db")
    before = sha256_of(foreign)

    result = order3(foreign, "init")

    assert result.exit_code == 2
    assert result.stderr == (
        f"Database '{foreign}' contains another application's tables (orders, users), so `order3 init` leaves it "
        "unchanged. Pass --db a new file path or an empty database.\n"
    )
    assert sha256_of(foreign) == before


@sqlite_only
def test_init_fills_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()

    result = order3(empty, "init")

    assert result.exit_code == 0, result.stderr
    assert event_count(empty) == 1


@sqlite_only
def test_empty_file_needs_init(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()

    result = order3(empty, "drafts", "list", token="o3_anything")

    assert result.exit_code == 4
    assert result.stderr == f"Database '{empty}' has no Order3 tables. Create them and a workspace with `order3 init`.\n"
    assert empty.stat().st_size == 0


def test_foreign_postgresql_database_is_left_unchanged() -> None:
    pytest.importorskip("asyncpg")
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from tests.conftest import POSTGRES_ADMIN_URL, _postgres_admin

    name = f"order3_foreign_{uuid.uuid4().hex[:12]}"

    async def create_foreign() -> bool:
        admin = await _postgres_admin()
        if admin is None:
            return False
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        await admin.dispose()
        foreign = create_async_engine(make_url(POSTGRES_ADMIN_URL).set(database=name))
        async with foreign.begin() as connection:
            await connection.execute(text("CREATE TABLE orders (id integer PRIMARY KEY)"))
        await foreign.dispose()
        return True

    async def tables_and_drop() -> list[str]:
        foreign = create_async_engine(make_url(POSTGRES_ADMIN_URL).set(database=name))
        async with foreign.connect() as connection:
            names = (await connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).scalars().all()
        await foreign.dispose()
        admin = await _postgres_admin()
        assert admin is not None
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
        return sorted(names)

    if not anyio.run(create_foreign):
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
    url = make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql", database=name).render_as_string(hide_password=True)
    try:
        listed = order3(url, "drafts", "list", token="o3_anything")
        initialised = order3(url, "init")
    finally:
        tables = anyio.run(tables_and_drop)

    assert listed.exit_code == 2
    assert "is not an Order3 database: it has tables (orders)" in listed.stderr
    assert initialised.exit_code == 2
    assert "contains another application's tables (orders)" in initialised.stderr
    assert tables == ["orders"]


# Activity list: the newest events by default, paging forward with --from and --cursor.


def _five_events(db: str, admin_token: str) -> None:
    """Record events 2 to 5 after init: two token creations, a token list and a revocation."""
    order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token)
    order3(db, "token", "create", "--principal", "bob", "--role", "buyer", token=admin_token)
    order3(db, "token", "list", token=admin_token)
    order3(db, "token", "revoke", "2", token=admin_token)


def test_activity_list_shows_newest_events(db: str, admin_token: str) -> None:
    _five_events(db, admin_token)

    result = order3(db, "activity", "list", "--limit", "2", token=admin_token)

    assert result.exit_code == 0, result.stderr
    assert "Newest 2 of 5 activity events" in result.stdout
    assert "Listed 3 tokens." in result.stdout
    assert "Revoked token 2 of 'alice'." in result.stdout
    assert "Created user token 3" not in result.stdout
    assert "3 older events are not shown. List them from the first with --from 1." in result.stdout.splitlines()
    assert "--cursor" not in result.stdout


def test_activity_list_pages_forward(db: str, admin_token: str) -> None:
    _five_events(db, admin_token)

    first = order3(db, "activity", "list", "--from", "2", "--limit", "2", token=admin_token)
    cursor = next(line.removeprefix("More events: --cursor ") for line in first.stdout.splitlines() if line.startswith("More events:"))
    second = order3(db, "activity", "list", "--cursor", cursor, "--limit", "2", token=admin_token)

    assert first.exit_code == 0, first.stderr
    assert "2 activity events" in first.stdout
    assert "Created user token 2 for 'alice'" in first.stdout
    assert "Created user token 3 for 'bob'" in first.stdout
    assert second.exit_code == 0, second.stderr
    assert "Listed 3 tokens." in second.stdout
    assert "Revoked token 2 of 'alice'." in second.stdout
    assert "Created user token" not in second.stdout


def test_activity_list_rejects_from_with_cursor(db: str, admin_token: str) -> None:
    result = order3(db, "activity", "list", "--from", "1", "--cursor", "abc", token=admin_token)

    assert result.exit_code == 2
    assert result.stderr == "Pass either --from or --cursor, not both, because each sets where the listing starts.\n"


# sync ingest with a batch file.


def _integration_token(db: str, admin_token: str) -> str:
    created = order3(db, "token", "create", "--principal", "shopify-eu", "--kind", "integration", "--role", "integration", token=admin_token)
    assert created.exit_code == 0, created.stderr
    return secret_in(created.stdout)


def test_sync_ingest_prints_each_outcome(db: str, admin_token: str, tmp_path: Path) -> None:
    _seed_catalogue(db)
    integration = _integration_token(db, admin_token)
    batch = tmp_path / "batch.json"
    batch.write_text(
        json.dumps(
            {
                "source": "shopify-eu",
                "batch_id": "2026-12-05-001",
                "records": [
                    {"external_id": "q-1", "kind": "channel_quantity", "sku": "WIDGET-1", "location": "WH1", "quantity": "0"},
                    {"external_id": "q-2", "kind": "channel_quantity", "sku": "WIDGET-1", "location": "WH1", "quantity": "five"},
                ],
            }
        )
    )

    result = order3(db, "sync", "ingest", str(batch), token=integration)

    assert result.exit_code == 0, result.stderr
    assert (
        "Batch '2026-12-05-001' from shopify-eu: 2 records, 1 agreed, 0 mismatch, 0 conflict, 0 applied, 0 stale, 1 invalid."
    ) in result.stdout.splitlines()
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 5}
    assert "agreed" in rows["q-1"]
    assert "invalid" in rows["q-2"]
    assert "five" in rows["q-2"]


def test_sync_ingest_of_missing_file_names_it(db: str, admin_token: str, tmp_path: Path) -> None:
    integration = _integration_token(db, admin_token)
    missing = tmp_path / "no-such-batch.json"

    result = order3(db, "sync", "ingest", str(missing), token=integration)

    assert result.exit_code == 2
    assert str(missing) in result.stderr


def test_sync_ingest_rejects_agent_token(db: str, admin_token: str, tmp_path: Path) -> None:
    agent = secret_in(order3(db, "token", "create", "--principal", "bot", "--kind", "agent", "--role", "agent", token=admin_token).stdout)
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps({"source": "shopify-eu", "batch_id": "b-1", "records": [{"external_id": "q-1", "kind": "channel_quantity", "sku": "WIDGET-1", "location": "WH1", "quantity": "0"}]}))

    result = order3(db, "sync", "ingest", str(batch), token=agent)

    assert result.exit_code == 3
    assert "needs the 'sync' scope" in result.stderr


def test_database_from_before_migrations_needs_upgrade(db: str, admin_token: str) -> None:
    # A database made before schema revisions were recorded has no alembic_version table.
    run_sql(db, "DROP TABLE alembic_version")

    refused = order3(db, "drafts", "list", token=admin_token)
    upgraded = order3(db, "db", "upgrade")
    listed = order3(db, "drafts", "list", token=admin_token)

    assert refused.exit_code == 2
    message = " ".join(refused.stderr.split())
    assert "has Order3 tables but no schema revision" in message
    assert "Run `order3 db upgrade` to migrate it." in message
    assert upgraded.exit_code == 0, upgraded.stderr
    assert listed.exit_code == 0, listed.stderr

"""`order3 verify` recomputes every current finder kind and compares it with the stored exception records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update

from order3_mcp.app import Order3
from order3_mcp.services.admin import check_stock_ledger
from order3_mcp.services.exceptions import find_exceptions
from order3_mcp.services.finder_refresh import REFRESHABLE_KINDS
from store.models import ExceptionRecord
from tests.conftest import run_sql
from tests.factory import small_workspace
from tests.test_cli import _seed_catalogue, admin_token, db, order3  # noqa: F401  (fixtures this file uses)
from tests.test_exception_lifecycle import add_reorder_rule, set_reorder_point
from tests.test_finder_freshness import Clock


async def _found(app: Order3, caller) -> list[dict]:
    page = await find_exceptions(
        app, caller, kind="", status="", location="", supplier="", owner="", cursor=None, limit=50
    )
    return [exception.model_dump() for exception in page.exceptions]


async def test_current_kinds_match_their_recomputation(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    app = Order3(database, clock=Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC)))
    [low] = await _found(app, tokens.agent)

    report = await check_stock_ledger(app, tokens.admin)

    assert low["kind"] == "low_stock"
    assert report.findings_checked == {"low_stock": 1, **{kind: 0 for kind in REFRESHABLE_KINDS if kind != "low_stock"}}
    assert report.findings_skipped == []
    assert report.findings_differences == []


async def test_verify_reports_changed_or_missing_record(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    app = Order3(database, clock=clock)
    [low] = await _found(app, tokens.agent)

    async with database.write() as session:
        await session.execute(update(ExceptionRecord).values(reason="Edited outside Order3."))
    edited = await check_stock_ledger(app, tokens.admin)
    async with database.write() as session:
        await session.execute(delete(ExceptionRecord))
    deleted = await check_stock_ledger(app, tokens.admin)

    assert edited.findings_differences == [f"low_stock: record {low['exception_id']} differs from what is found now"]
    assert deleted.findings_differences == ["low_stock: low_stock:item=1:location=1 is found but has no live record"]


async def test_verify_reports_record_no_longer_found(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    app = Order3(database, clock=Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC)))
    [low] = await _found(app, tokens.agent)
    # Written outside Order3, so the change counter does not move and the kind still counts as current.
    await set_reorder_point(database, "1")

    report = await check_stock_ledger(app, tokens.admin)

    assert report.findings_differences == [f"low_stock: record {low['exception_id']} is live but no longer found"]


async def test_kinds_due_for_a_rerun_are_not_compared(database):
    tokens = await small_workspace(database)
    await add_reorder_rule(database, reorder_point="20", max_level="60")
    clock = Clock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    app = Order3(database, clock=clock)
    await _found(app, tokens.agent)
    clock.now += timedelta(days=1)

    report = await check_stock_ledger(app, tokens.admin)

    # The business date turned, so every kind is due and none is compared.
    assert report.findings_checked == {}
    assert sorted(report.findings_skipped) == sorted(REFRESHABLE_KINDS)
    async with database.read() as session:
        assert (await session.execute(select(ExceptionRecord.status))).scalars().all() == ["open"]


def test_cli_verify_fails_on_a_difference(db: str, admin_token: str) -> None:  # noqa: F811
    _seed_catalogue(db)
    run_sql(
        db,
        "INSERT INTO reorder_rule (workspace_id, item_id, location_id, location_key, reorder_point, safety_stock, "
        "source, updated_at) SELECT 1, item.id, location.id, location.id, 20000000, 0, '', "
        "'2025-01-01T00:00:00+00:00' FROM item, location LIMIT 1",
    )
    listed = order3(db, "exceptions", "list", token=admin_token)
    clean = order3(db, "verify", token=admin_token)
    run_sql(db, "UPDATE exception_record SET reason = 'Edited outside Order3.'")
    tampered = order3(db, "verify", token=admin_token)

    assert listed.exit_code == 0, listed.stderr
    assert "WIDGET-1" in listed.stdout
    assert clean.exit_code == 0, clean.stdout + clean.stderr
    assert "Differences: 0" in clean.stdout
    assert tampered.exit_code == 1
    assert "Differences: 1" in tampered.stdout
    assert "low_stock: record 1 differs from what is found now" in tampered.stdout
    assert "order3 exceptions list --refresh" in tampered.stderr

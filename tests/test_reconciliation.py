"""Reconciliations: an agent answers a mismatch over MCP, an approver decides with the CLI, stock or snapshot follows."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Order3
from order3_mcp.services.sync import ingest_external_snapshot
from store.db import Database
from store.models import (
    ActivityEvent,
    Draft,
    ExceptionRecord,
    ExternalSnapshot,
    Item,
    Location,
    Movement,
    StockLevel,
    Supplier,
    SyncState,
)
from store.stock import Place, record_movement
from tests.kind_support import (
    Workspace,
    agent_calls,
    count,
    ledger_and_chain_clean,
    make_workspace,
    on,
    order3,
    rows,
    write,
)

SOURCE = "shopify-eu"
RATIONALE = "shopify-eu shows 8 WIDGET-1 available at WH1; the shelf count this morning agrees with the channel."


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return make_workspace(tmp_path)


def ingest(workspace: Workspace, batch_id: str, *records: dict[str, Any]) -> None:
    """Send a batch as the shopify-eu integration."""

    async def send(database: Database) -> None:
        await ingest_external_snapshot(Order3(database), workspace.integration, source=SOURCE, batch_id=batch_id, records=list(records))

    on(workspace.db, send)


def channel(external_id: str, quantity: str, *, location: str = "WH1") -> dict[str, Any]:
    return {"external_id": external_id, "kind": "channel_quantity", "sku": "WIDGET-1", "location": location, "quantity": quantity}


def mismatch(workspace: Workspace) -> dict[str, Any]:
    """Run find_mismatches as the agent and return the one mismatch."""
    (found,) = agent_calls(workspace, ("find_mismatches", {}))
    (exception,) = found.structured_content["exceptions"]
    return exception


def draft(workspace: Workspace, exception: dict[str, Any], action: str, **changes: Any) -> Any:
    arguments = {
        "exception_id": exception["exception_id"],
        "action": action,
        "reported": exception["evidence"]["reported"],
        "ours": exception["evidence"]["ours"],
        "rationale": RATIONALE,
        **changes,
    }
    (result,) = agent_calls(workspace, ("draft_reconciliation", arguments))
    return result


def on_hand(workspace: Workspace) -> Decimal:
    return sum((level.on_hand for level in rows(workspace.db, StockLevel)), Decimal(0))


def exception_status(workspace: Workspace, exception_id: int) -> str:
    return next(record.status for record in rows(workspace.db, ExceptionRecord) if record.id == exception_id)


def receive(workspace: Workspace, quantity: str) -> None:
    """Record a receipt of WIDGET-1 at WH1, the way a receiving flow would."""

    async def move(session: AsyncSession) -> None:
        item = (await session.execute(select(Item).where(Item.sku == "WIDGET-1"))).scalar_one()
        location = (await session.execute(select(Location).where(Location.code == "WH1"))).scalar_one()
        await record_movement(
            session, workspace_id=item.workspace_id, item_id=item.id, kind="receipt", quantity=Decimal(quantity),
            destination=Place(location.id), actor="test",
        )

    write(workspace.db, move)


def test_mismatch_evidence_gives_both_figures(workspace: Workspace) -> None:
    ingest(workspace, "b1", channel("q-1", "8"))

    exception = mismatch(workspace)

    assert exception["suggested_draft"] == "reconciliation"
    assert (exception["evidence"]["reported"], exception["evidence"]["ours"]) == ("8", "5")


@pytest.mark.parametrize(("reported", "adjusted", "after", "value"), [("8", "+3", Decimal(8), "7.5"), ("2", "-3", Decimal(2), "7.5")])
def test_adjust_ours_moves_stock_to_the_channel_figure(
    workspace: Workspace, reported: str, adjusted: str, after: Decimal, value: str
) -> None:
    ingest(workspace, "b1", channel("q-1", reported))
    exception = mismatch(workspace)

    drafted = draft(workspace, exception, "adjust_ours", idempotency_key="rec-1")
    detail = drafted.structured_content
    linked_status = exception_status(workspace, exception["exception_id"])
    approved = order3(workspace.db, "drafts", "approve", str(detail["draft_id"]), token=workspace.approver_secret)
    retried = draft(workspace, exception, "adjust_ours", idempotency_key="rec-1")
    again = order3(workspace.db, "drafts", "execute", str(detail["draft_id"]), token=workspace.approver_secret)

    assert not drafted.is_error, drafted.content[0].text
    assert detail["kind"] == "reconciliation"
    assert detail["estimated_value"] == value
    assert detail["policy_rule"] == "stock-correction-up-to-500"
    assert detail["approval_owner"] == "1 approver with role approver or admin (policy rule stock-correction-up-to-500)"
    assert detail["title"] == f"Reconcile WIDGET-1 at WH1 with shopify-eu: adjust ours by {adjusted}"
    assert linked_status == "drafted"
    assert approved.exit_code == 0, approved.stderr
    assert "Draft 1 is executed." in approved.stdout
    assert f"Reconciled: adjusted ours by {adjusted} with movement 2." in approved.stdout
    assert retried.structured_content["draft_id"] == detail["draft_id"]
    assert again.exit_code == 5
    assert count(workspace.db, Draft) == 1

    assert on_hand(workspace) == after
    movements = rows(workspace.db, Movement)
    assert len(movements) == 2
    movement = movements[1]
    assert (movement.kind, movement.quantity, movement.actor) == ("adjustment", Decimal(3), "carol")
    assert (movement.to_location_id, movement.from_location_id) == ((1, None) if adjusted == "+3" else (None, 1))
    assert movement.reference == "reconciliation draft 1 with shopify-eu snapshot 1"
    assert (movement.reference_kind, movement.reference_id, movement.unit_cost) == ("draft", 1, Decimal("2.5"))
    assert exception_status(workspace, exception["exception_id"]) == "resolved"
    checked, mismatches, chain_ok = ledger_and_chain_clean(workspace)
    assert (checked, mismatches, chain_ok) == (1, [], True)


def test_accept_ours_acknowledges_the_snapshot(workspace: Workspace) -> None:
    ingest(workspace, "b1", channel("q-1", "8"))
    exception = mismatch(workspace)

    drafted = draft(workspace, exception, "accept_ours")
    approved = order3(workspace.db, "drafts", "approve", "1", token=workspace.approver_secret)
    (found_again,) = agent_calls(workspace, ("find_mismatches", {}))

    assert drafted.structured_content["estimated_value"] == "0"
    assert drafted.structured_content["title"] == "Reconcile WIDGET-1 at WH1 with shopify-eu: accept ours"
    assert approved.exit_code == 0, approved.stderr
    assert "Result: acknowledged_snapshot=1" in approved.stdout
    assert on_hand(workspace) == Decimal(5)
    assert count(workspace.db, Movement) == 1
    (snapshot,) = rows(workspace.db, ExternalSnapshot)
    assert (snapshot.quantity, snapshot.is_current) == (Decimal(8), False)
    assert exception_status(workspace, exception["exception_id"]) == "resolved"
    assert found_again.structured_content["exceptions"] == []
    checked, mismatches, chain_ok = ledger_and_chain_clean(workspace)
    assert (checked, mismatches, chain_ok) == (1, [], True)


def test_newer_snapshot_fails_the_draft_and_writes_nothing(workspace: Workspace) -> None:
    ingest(workspace, "b1", channel("q-1", "8"))
    exception = mismatch(workspace)
    draft(workspace, exception, "adjust_ours")
    ingest(workspace, "b2", channel("q-2", "9"))
    snapshots_before = [(s.id, s.is_current) for s in rows(workspace.db, ExternalSnapshot)]

    approved = order3(workspace.db, "drafts", "approve", "1", token=workspace.approver_secret)
    shown = order3(workspace.db, "drafts", "show", "1", token=workspace.approver_secret)

    assert approved.exit_code == 5, approved.stderr
    assert "Draft 1 is failed." in approved.stdout
    reason = (
        "shopify-eu sent a newer snapshot for WIDGET-1 at WH1 since the draft: it reports 9 where the draft saw 8. "
        "Nothing was written; draft a new reconciliation from the current figures."
    )
    assert f"Execution failed: {reason}" in approved.stdout
    assert f"Failure: {reason}" in shown.stdout
    assert on_hand(workspace) == Decimal(5)
    assert count(workspace.db, Movement) == 1
    assert [(s.id, s.is_current) for s in rows(workspace.db, ExternalSnapshot)] == snapshots_before == [(1, False), (2, True)]
    assert exception_status(workspace, exception["exception_id"]) == "open"
    last = rows(workspace.db, ActivityEvent)[-2]
    assert (last.action, last.outcome) == ("execute_draft", "invalid")


def test_moved_stock_fails_the_draft_and_writes_nothing(workspace: Workspace) -> None:
    ingest(workspace, "b1", channel("q-1", "8"))
    exception = mismatch(workspace)
    draft(workspace, exception, "adjust_ours")
    receive(workspace, "2")

    approved = order3(workspace.db, "drafts", "approve", "1", token=workspace.approver_secret)

    assert "Draft 1 is failed." in approved.stdout
    assert (
        "Execution failed: Order3's available quantity of WIDGET-1 at WH1 changed from 5 to 7 since the draft. "
        "Nothing was written; draft a new reconciliation from the current figures."
    ) in approved.stdout
    assert on_hand(workspace) == Decimal(7)
    assert count(workspace.db, Movement) == 2
    (snapshot,) = rows(workspace.db, ExternalSnapshot)
    assert snapshot.is_current is True


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"reported": "7"},
            "reported 7 is not what shopify-eu reports now for WIDGET-1 at WH1: its current snapshot says 8.",
        ),
        ({"ours": "4.5"}, "ours 4.5 is not Order3's current available quantity of WIDGET-1 at WH1: it is 5."),
        ({"reported": True}, "figure True is a boolean"),
        ({"reported": "8e0"}, "figure '8e0' is not a plain decimal number"),
        ({"action": "adjust_theirs"}, "action: Input should be 'adjust_ours' or 'accept_ours'"),
        ({"bin": "NOPE"}, "Bin 'NOPE' does not exist at WH1"),
        ({"exception_id": 42}, "Exception 42 does not exist"),
        ({"rationale": "fix it"}, "Rationale 'fix it' is too short"),
    ],
)
def test_bad_reconciliation_is_refused(workspace: Workspace, changes: dict[str, Any], message: str) -> None:
    ingest(workspace, "b1", channel("q-1", "8"))
    exception = mismatch(workspace)

    action = changes.pop("action", "adjust_ours")

    result = draft(workspace, exception, action, **changes)

    assert result.is_error
    assert message in result.content[0].text
    assert count(workspace.db, Draft) == 0
    assert exception_status(workspace, exception["exception_id"]) == "open"


def test_accounting_value_can_only_be_accepted(workspace: Workspace) -> None:
    ingest(workspace, "b1", {"external_id": "v-1", "kind": "accounting_value", "sku": "WIDGET-1", "location": "WH1", "value": "20", "currency": "USD"})
    exception = mismatch(workspace)

    refused = draft(workspace, exception, "adjust_ours")
    accepted = draft(workspace, exception, "accept_ours")

    assert (exception["evidence"]["reported"], exception["evidence"]["ours"]) == ("20", "12.5")
    assert refused.is_error
    assert "compares an accounting value" in refused.content[0].text
    assert not accepted.is_error, accepted.content[0].text
    assert accepted.structured_content["estimated_value"] == "0"


def test_workspace_wide_mismatch_cannot_be_adjusted(workspace: Workspace) -> None:
    ingest(workspace, "b1", channel("q-1", "8", location=""))
    exception = mismatch(workspace)

    refused = draft(workspace, exception, "adjust_ours")

    assert refused.is_error
    assert "across all locations, so there is no one location to adjust" in refused.content[0].text


def test_large_adjustment_needs_two_approvers(workspace: Workspace) -> None:
    ingest(workspace, "b1", channel("q-1", "405"))
    exception = mismatch(workspace)

    drafted = draft(workspace, exception, "adjust_ours")
    first = order3(workspace.db, "drafts", "approve", "1", token=workspace.approver_secret)

    # 400 units × 2.5 is 1000 USD, above the 500 limit of the one-approver rule.
    assert drafted.structured_content["estimated_value"] == "1000"
    assert drafted.structured_content["policy_rule"] == "stock-correction-above-500"
    assert drafted.structured_content["approvals_required"] == 2
    assert "Approval 1 of 2 recorded." in first.stdout
    assert on_hand(workspace) == Decimal(5)


def supplier_change(external_id: str, version: str, **fields: Any) -> dict[str, Any]:
    return {"external_id": external_id, "kind": "supplier", "key": "ACME", "version": version, "fields": fields}


def conflict(workspace: Workspace) -> dict[str, Any]:
    """Return the one live sync conflict, as the agent sees it."""
    (found,) = agent_calls(workspace, ("find_exceptions", {"kind": "sync_conflict"}))
    (exception,) = found.structured_content["exceptions"]
    return exception


def settle(workspace: Workspace, exception: dict[str, Any], action: str, **changes: Any) -> Any:
    arguments = {
        "exception_id": exception["exception_id"],
        "action": action,
        "our_version": exception["evidence"]["our_version"],
        "their_version": exception["evidence"]["their_version"],
        "rationale": "Acme confirmed a 21-day lead time by phone this morning.",
        **changes,
    }
    (result,) = agent_calls(workspace, ("draft_reconciliation", arguments))
    return result


def acme(workspace: Workspace) -> Supplier:
    (supplier,) = rows(workspace.db, Supplier)
    return supplier


def test_take_theirs_writes_their_values_and_agrees(workspace: Workspace) -> None:
    ingest(workspace, "b1", supplier_change("s-1", "7", lead_time_days=21))
    exception = conflict(workspace)

    drafted = settle(workspace, exception, "adjust_ours")
    approved = order3(workspace.db, "drafts", "approve", "1", token=workspace.approver_secret)
    shown = order3(workspace.db, "drafts", "show", "1", token=workspace.approver_secret)
    ingest(workspace, "b2", supplier_change("s-1", "7", lead_time_days=21))

    assert (exception["evidence"]["our_version"], exception["evidence"]["their_version"]) == ("1", "7")
    assert not drafted.is_error, drafted.content[0].text
    assert drafted.structured_content["title"] == "Reconcile Supplier ACME with shopify-eu: take shopify-eu's lead_time_days"
    assert drafted.structured_content["estimated_value"] == "0"
    assert drafted.structured_content["policy_rule"] == "stock-correction-up-to-500"
    assert approved.exit_code == 0, approved.stderr
    assert "Result: took_theirs=lead_time_days, version=2" in approved.stdout
    assert "Sync conflict on supplier ACME from shopify-eu, exception 1: Order3 version 1, shopify-eu version 7" in shown.stdout
    assert "  lead_time_days: ours '7', theirs '21'" in shown.stdout
    supplier = acme(workspace)
    assert (supplier.lead_time_days, supplier.version) == (21, 2)
    (state,) = rows(workspace.db, SyncState)
    # The second batch agreed, so the state now names it.
    assert (state.key, state.our_version, state.their_version, state.batch_id) == ("ACME", 2, "7", "b2")
    assert exception_status(workspace, exception["exception_id"]) == "resolved"
    assert [s.outcome for s in rows(workspace.db, ExternalSnapshot)] == ["conflict", "agreed"]
    assert count(workspace.db, ExceptionRecord) == 1
    checked, mismatches, chain_ok = ledger_and_chain_clean(workspace)
    assert (checked, mismatches, chain_ok) == (1, [], True)


def test_keep_ours_closes_the_conflict(workspace: Workspace) -> None:
    ingest(workspace, "b1", supplier_change("s-1", "7", lead_time_days=21))
    exception = conflict(workspace)

    drafted = settle(workspace, exception, "accept_ours")
    approved = order3(workspace.db, "drafts", "approve", "1", token=workspace.approver_secret)

    assert drafted.structured_content["title"] == "Reconcile Supplier ACME with shopify-eu: keep Order3's lead_time_days"
    assert "Result: kept_ours=lead_time_days, version=1" in approved.stdout
    supplier = acme(workspace)
    assert (supplier.lead_time_days, supplier.version) == (7, 1)
    assert count(workspace.db, SyncState) == 0
    assert exception_status(workspace, exception["exception_id"]) == "resolved"


def test_item_cost_taken_from_source_is_valued(workspace: Workspace) -> None:
    ingest(workspace, "b1", {"external_id": "i-1", "kind": "item", "key": "WIDGET-1", "version": "3", "fields": {"unit_cost": "4.5"}})
    exception = conflict(workspace)

    drafted = settle(workspace, exception, "adjust_ours")
    approved = order3(workspace.db, "drafts", "approve", "1", token=workspace.approver_secret)

    # 5 on hand × (4.5 − 2.5).
    assert drafted.structured_content["estimated_value"] == "10"
    assert "Result: took_theirs=unit_cost, version=2" in approved.stdout
    (widget, _gadget) = rows(workspace.db, Item)
    assert widget.unit_cost == Decimal("4.5")


def test_record_changed_in_order3_fails_the_draft(workspace: Workspace) -> None:
    ingest(workspace, "b1", supplier_change("s-1", "7", lead_time_days=21))
    exception = conflict(workspace)
    settle(workspace, exception, "adjust_ours")

    async def edit(session: AsyncSession) -> None:
        await session.execute(update(Supplier).values(lead_time_days=10, version=Supplier.version + 1))

    write(workspace.db, edit)

    approved = order3(workspace.db, "drafts", "approve", "1", token=workspace.approver_secret)

    assert "Draft 1 is failed." in approved.stdout
    assert (
        "Execution failed: Supplier ACME changed in Order3 since the draft (version 1 → 2). Nothing was written; "
        "draft a new reconciliation from the current versions."
    ) in approved.stdout
    assert (acme(workspace).lead_time_days, acme(workspace).version) == (10, 2)
    assert count(workspace.db, SyncState) == 0
    assert exception_status(workspace, exception["exception_id"]) == "open"


def test_newer_conflicting_batch_fails_the_draft(workspace: Workspace) -> None:
    ingest(workspace, "b1", supplier_change("s-1", "7", lead_time_days=21))
    exception = conflict(workspace)
    settle(workspace, exception, "adjust_ours")
    ingest(workspace, "b2", supplier_change("s-1", "8", lead_time_days=30))

    approved = order3(workspace.db, "drafts", "approve", "1", token=workspace.approver_secret)

    assert (
        "Execution failed: shopify-eu sent Supplier ACME again since the draft (version '8', outcome conflict). "
        "Nothing was written; run find_exceptions to see whether a conflict remains."
    ) in approved.stdout
    assert (acme(workspace).lead_time_days, acme(workspace).version) == (7, 1)
    assert exception_status(workspace, exception["exception_id"]) == "open"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"our_version": "9"}, "our_version '9' is not Supplier ACME's current version 1."),
        ({"their_version": "6"}, "their_version '6' is not the version shopify-eu sent last, '7'."),
        ({"their_version": ""}, "our_version and their_version are required for sync conflict 1"),
        ({"reported": "8", "ours": "5"}, "reported, ours and bin apply to mismatch exceptions"),
    ],
)
def test_bad_conflict_step_is_refused(workspace: Workspace, changes: dict[str, Any], message: str) -> None:
    ingest(workspace, "b1", supplier_change("s-1", "7", lead_time_days=21))
    exception = conflict(workspace)

    result = settle(workspace, exception, "adjust_ours", **changes)

    assert result.is_error
    assert message in result.content[0].text
    assert count(workspace.db, Draft) == 0


def test_mismatch_step_rejects_versions(workspace: Workspace) -> None:
    ingest(workspace, "b1", channel("q-1", "8"))
    exception = mismatch(workspace)

    result = draft(workspace, exception, "adjust_ours", our_version="1")

    assert result.is_error
    assert "our_version and their_version apply to sync conflicts" in result.content[0].text


def test_drafts_show_prints_both_figures_and_escapes_external_text(workspace: Workspace) -> None:
    ingest(workspace, "b\u202e1", channel("q\x1b]0;pwned\x07", "8"))
    exception = mismatch(workspace)
    draft(workspace, exception, "adjust_ours")

    shown = order3(workspace.db, "drafts", "show", "1", token=workspace.approver_secret)

    assert shown.exit_code == 0, shown.stderr
    assert "\x1b" not in shown.stdout
    assert "\u202e" not in shown.stdout
    lines = shown.stdout.splitlines()
    assert "Reconciliation of exception 1: channel_quantity from shopify-eu, snapshot 1" in lines
    assert "Item WIDGET-1 at WH1" in lines
    assert "External figure (reported): 8    Order3's figure (ours): 5    Difference: 3 (tolerance 0)" in lines
    assert "Step: adjust_ours, an adjustment movement of +3 at WH1 so Order3 matches shopify-eu" in lines
    assert "Value change: 7.5 USD (unit cost 2.5)" in lines
    assert any(
        line.startswith('External record (untrusted text from shopify-eu): id "q\\x1b]0;pwned\\x07" in batch "b\\u202e1"')
        for line in lines
    )


def test_exceptions_show_escapes_integration_text(workspace: Workspace) -> None:
    ingest(workspace, "b1", supplier_change("s\x1b[2J", "7", name="Acme\x1b[31m [bold]Parts[/bold]\u202e"))

    shown = order3(workspace.db, "exceptions", "show", "1", token=workspace.approver_secret)

    assert shown.exit_code == 0, shown.stderr
    assert "\x1b" not in shown.stdout
    assert "\u202e" not in shown.stdout
    assert "theirs.name" in shown.stdout
    assert "Acme\\x1b[31m [bold]Parts[/bold]\\u202e" in shown.stdout
    assert "s\\x1b[2J" in shown.stdout

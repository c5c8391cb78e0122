"""Supplier notes and reconciliations (of mismatches and sync conflicts) through the service path on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from order3_mcp.app import Order3
from order3_mcp.services.approvals import approve_draft, execute_draft
from order3_mcp.services.exceptions import find_exceptions, find_mismatches
from order3_mcp.services.reconciliations import draft_reconciliation
from order3_mcp.services.supplier_notes import draft_supplier_note
from order3_mcp.services.sync import ingest_external_snapshot
from policies import parse_policy
from store.codes import find_by_code
from store.errors import ConflictError, InvalidInputError
from store.models import (
    Draft,
    ExceptionRecord,
    ExternalSnapshot,
    Movement,
    OutboxMessage,
    StockLevel,
    Supplier,
    SyncState,
)
from store.stock import verify_ledger
from tests.factory import make_app, small_workspace
from tests.test_sync import integration_caller

BODY = "Dear Acme,\n\u00a0Wann liefern Sie? \u2014 \u202e reversed\ttab"


async def test_supplier_note_queues_verbatim_text(any_database):
    tokens = await small_workspace(any_database)
    app = make_app(any_database)
    async with any_database.write() as session:
        await session.execute(update(Supplier).where(Supplier.code == "ACME").values(contact_email="orders@acme.example"))

    drafted = await draft_supplier_note(
        app, tokens.agent, supplier=" acme ", subject="Delivery date", body=BODY, purchase_order="",
        rationale="Ask Acme for the delivery date of the widgets.", title="", exception_ids=[], idempotency_key="note-1",
    )
    approved = await approve_draft(app, tokens.buyer, draft_id=drafted.draft_id, expected_hash=drafted.payload_hash[:12], reason="")
    replayed = await draft_supplier_note(
        app, tokens.agent, supplier=" acme ", subject="Delivery date", body=BODY, purchase_order="",
        rationale="Ask Acme for the delivery date of the widgets.", title="", exception_ids=[], idempotency_key="note-1",
    )

    assert approved.status == "executed"
    assert approved.result == "outbox_message=1"
    assert replayed.draft_id == drafted.draft_id
    async with any_database.read() as session:
        messages = (await session.execute(select(OutboxMessage))).scalars().all()
        drafts = (await session.execute(select(Draft))).scalars().all()
    assert len(drafts) == 1
    assert [(m.draft_id, m.recipient, m.subject, m.body, m.status) for m in messages] == [
        (1, "orders@acme.example", "Delivery date", BODY, "queued")
    ]


async def test_reconciliation_adjusts_then_accepts(any_database):
    tokens = await small_workspace(any_database)
    app = make_app(any_database)
    integration = await integration_caller(any_database, tokens)
    record = {"external_id": "q-1", "kind": "channel_quantity", "sku": "WIDGET-1", "location": "WH1", "quantity": "8.25"}
    await ingest_external_snapshot(app, integration, source="shopify-eu", batch_id="b1", records=[record])
    (first,) = (await find_mismatches(app, tokens.agent, location="", supplier="", cursor=None, limit=10)).exceptions

    adjusting = await draft_reconciliation(
        app, tokens.agent, exception_id=first.exception_id, action="adjust_ours", reported=Decimal("8.25"),
        ours=Decimal(5), bin="", rationale="The channel count of 8.25 matches the shelf.", title="", idempotency_key=None,
    )
    adjusted = await approve_draft(app, tokens.admin, draft_id=adjusting.draft_id, expected_hash="", reason="")
    await ingest_external_snapshot(app, integration, source="shopify-eu", batch_id="b2", records=[{**record, "quantity": "6"}])
    (second,) = (await find_mismatches(app, tokens.agent, location="", supplier="", cursor=None, limit=10)).exceptions
    accepting = await draft_reconciliation(
        app, tokens.agent, exception_id=second.exception_id, action="accept_ours", reported=Decimal(6),
        ours=Decimal("8.25"), bin="", rationale="The channel lost two sales; our 8.25 is right.", title="", idempotency_key=None,
    )
    accepted = await approve_draft(app, tokens.admin, draft_id=accepting.draft_id, expected_hash="", reason="")

    # 3.25 units × 2.5 USD.
    assert adjusting.estimated_value == "8.125"
    assert adjusted.status == "executed"
    assert adjusted.result == "adjusted=+3.25, movement=2"
    assert accepted.status == "executed"
    assert accepted.result == "acknowledged_snapshot=2"
    async with any_database.read() as session:
        levels = (await session.execute(select(StockLevel))).scalars().all()
        statuses = (await session.execute(select(ExceptionRecord.id, ExceptionRecord.status).order_by(ExceptionRecord.id))).all()
        current = (await session.execute(select(ExternalSnapshot.id, ExternalSnapshot.is_current).order_by(ExternalSnapshot.id))).all()
        checked, mismatches = await verify_ledger(session, workspace_id=tokens.admin.workspace_id)
    assert [level.on_hand for level in levels] == [Decimal("8.25")]
    assert [tuple(row) for row in statuses] == [(first.exception_id, "resolved"), (second.exception_id, "resolved")]
    assert [tuple(row) for row in current] == [(1, False), (2, False)]
    assert (checked, mismatches) == (1, [])


async def test_sync_conflict_takes_theirs(any_database):
    tokens = await small_workspace(any_database)
    app = make_app(any_database)
    integration = await integration_caller(any_database, tokens)
    change = {"external_id": "s-1", "kind": "supplier", "key": "ACME", "version": "7", "fields": {"lead_time_days": 21}}
    await ingest_external_snapshot(app, integration, source="shopify-eu", batch_id="b1", records=[change])
    (conflict,) = (
        await find_exceptions(app, tokens.agent, kind="sync_conflict", status="", location="", supplier="", owner="", cursor=None, limit=10)
    ).exceptions

    drafted = await draft_reconciliation(
        app, tokens.agent, exception_id=conflict.exception_id, action="adjust_ours", reported=None, ours=None,
        our_version="1", their_version="7", bin="", rationale="Acme confirmed the 21-day lead time.", title="",
        idempotency_key=None,
    )
    approved = await approve_draft(app, tokens.admin, draft_id=drafted.draft_id, expected_hash="", reason="")

    assert approved.result == "took_theirs=lead_time_days, version=2"
    async with any_database.read() as session:
        supplier = (await session.execute(select(Supplier))).scalar_one()
        state = (await session.execute(select(SyncState))).scalar_one()
        status = (await session.execute(select(ExceptionRecord.status))).scalar_one()
    assert (supplier.lead_time_days, supplier.version) == (21, 2)
    assert (state.our_version, state.their_version) == (2, "7")
    assert status == "resolved"


MANUAL_POLICY = """
[policy]
name = "manual"
version = "1"

[[rules]]
id = "manual-note"
kinds = ["supplier_note", "reconciliation"]
approver_roles = ["buyer", "admin"]
approvals = 1
auto_execute = false
"""


async def test_concurrent_executions_write_once(any_database):
    tokens = await small_workspace(any_database)
    app = Order3(any_database, policy=parse_policy(MANUAL_POLICY, source="manual.toml"))
    integration = await integration_caller(any_database, tokens)
    async with any_database.write() as session:
        await session.execute(update(Supplier).where(Supplier.code == "ACME").values(contact_email="orders@acme.example"))
    record = {"external_id": "q-1", "kind": "channel_quantity", "sku": "WIDGET-1", "location": "WH1", "quantity": "8"}
    await ingest_external_snapshot(app, integration, source="shopify-eu", batch_id="b1", records=[record])
    (mismatch,) = (await find_mismatches(app, tokens.agent, location="", supplier="", cursor=None, limit=10)).exceptions
    note = await draft_supplier_note(
        app, tokens.agent, supplier="ACME", subject="Delivery date", body="When?", purchase_order="",
        rationale="Ask Acme for the delivery date of the widgets.", title="", exception_ids=[], idempotency_key=None,
    )
    step = await draft_reconciliation(
        app, tokens.agent, exception_id=mismatch.exception_id, action="adjust_ours", reported=Decimal(8), ours=Decimal(5),
        bin="", rationale="The channel count of 8 matches the shelf.", title="", idempotency_key=None,
    )
    for draft_id in (note.draft_id, step.draft_id):
        approved = await approve_draft(app, tokens.buyer, draft_id=draft_id, expected_hash="", reason="")
        assert approved.status == "approved"

    results = await asyncio.gather(
        *(execute_draft(app, caller, draft_id=draft_id) for draft_id in (note.draft_id, step.draft_id) for caller in (tokens.buyer, tokens.second_buyer)),
        return_exceptions=True,
    )

    executed = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert sorted(r.draft_id for r in executed) == [note.draft_id, step.draft_id]
    assert len(refused) == 2
    assert all(isinstance(r, ConflictError) for r in refused), refused
    async with any_database.read() as session:
        messages = (await session.execute(select(func.count()).select_from(OutboxMessage))).scalar_one()
        movements = (await session.execute(select(func.count()).select_from(Movement))).scalar_one()
        levels = (await session.execute(select(StockLevel.on_hand))).scalars().all()
        checked, mismatches = await verify_ledger(session, workspace_id=tokens.admin.workspace_id)
    assert messages == 1
    assert movements == 2
    assert levels == [Decimal(8)]
    assert (checked, mismatches) == (1, [])


async def test_find_by_code_folds_case_without_wildcards(any_database):
    tokens = await small_workspace(any_database)
    workspace_id = tokens.admin.workspace_id
    async with any_database.write() as session:
        session.add_all([
            Supplier(workspace_id=workspace_id, code="ÖKO", name="Öko GmbH"),
            Supplier(workspace_id=workspace_id, code="Dup", name="Dup one"),
            Supplier(workspace_id=workspace_id, code="DUP", name="Dup two"),
        ])

    async with any_database.read() as session:
        def lookup(code: str):
            return find_by_code(session, Supplier, Supplier.code, code, Supplier.workspace_id == workspace_id)

        umlaut = await lookup(" ÖKO ")
        acme = await lookup("aCmE")
        wildcard = await lookup("AC%")
        underscore = await lookup("ACM_")
        exact = await lookup("DUP")
        with pytest.raises(InvalidInputError, match="'Dup', 'DUP', which differ only in case"):
            await lookup("dup")

    assert umlaut.code == "ÖKO"
    assert acme.code == "ACME"
    assert wildcard is None
    assert underscore is None
    assert exact.name == "Dup two"

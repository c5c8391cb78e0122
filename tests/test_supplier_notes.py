"""Supplier notes: an agent drafts over MCP, a buyer approves with the CLI, the note lands in the outbox once."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from mcp import Client
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Order3
from order3_mcp.server import build_server
from store.db import Database
from store.models import (
    ActivityEvent,
    Draft,
    ExceptionRecord,
    OutboxMessage,
    PurchaseOrder,
    PurchaseOrderLine,
    Supplier,
)
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

RATIONALE = "PO-LATE line 1 (40 WIDGET-1) was due 2022-01-03 and nothing has arrived."
SUBJECT = "PO-LATE: new delivery date?"
BODY = "Hello,\n\nour order PO-LATE was due on 2022-01-03. When will it ship?\n\nThanks, Alice"


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """The small workspace, where ACME has a contact email and a late order PO-LATE, and OTHER has PO-OTHER."""
    workspace = make_workspace(tmp_path)

    async def seed(session: AsyncSession) -> None:
        acme = (await session.execute(select(Supplier).where(Supplier.code == "ACME"))).scalar_one()
        acme.contact_email = "orders@acme.example"
        other = Supplier(workspace_id=acme.workspace_id, code="OTHER", name="Other Co", contact_email="sales@other.example")
        session.add(other)
        await session.flush()
        late = PurchaseOrder(
            workspace_id=acme.workspace_id, number="PO-LATE", supplier_id=acme.id, status="issued",
            expected_date=date(2022, 1, 3), owner="alice",
        )
        elsewhere = PurchaseOrder(workspace_id=acme.workspace_id, number="PO-OTHER", supplier_id=other.id, status="issued")
        session.add_all([late, elsewhere])
        await session.flush()
        session.add(
            PurchaseOrderLine(
                workspace_id=acme.workspace_id, purchase_order_id=late.id, line_no=1, item_id=1,
                quantity_ordered=Decimal(40), quantity_received=Decimal(0), unit_price=Decimal("2.5"),
            )
        )

    write(workspace.db, seed)
    return workspace


def late_exception_id(workspace: Workspace) -> int:
    """Run the supplier-delay finder as the agent and return the id of PO-LATE's exception."""
    (found,) = agent_calls(workspace, ("find_supplier_delays", {}))
    (exception,) = found.structured_content["exceptions"]
    assert exception["purchase_order"] == "PO-LATE"
    return exception["exception_id"]


def note_arguments(**changes: object) -> dict[str, object]:
    arguments: dict[str, object] = {
        "supplier": "ACME",
        "subject": SUBJECT,
        "body": BODY,
        "purchase_order": "PO-LATE",
        "rationale": RATIONALE,
    }
    arguments.update(changes)
    return arguments


def set_supplier(workspace: Workspace, **values: object) -> None:
    async def change(session: AsyncSession) -> None:
        await session.execute(update(Supplier).where(Supplier.code == "ACME").values(**values))

    write(workspace.db, change)


def exception_status(workspace: Workspace, exception_id: int) -> str:
    return next(record.status for record in rows(workspace.db, ExceptionRecord) if record.id == exception_id)


def test_agent_tool_list_includes_both_new_drafts(workspace: Workspace) -> None:
    async def listed(database: Database) -> set[str]:
        async with Client(build_server(Order3(database), workspace.tokens.agent), mode="legacy") as client:
            return {tool.name for tool in (await client.list_tools()).tools}

    tools = on(workspace.db, listed)

    assert {"draft_supplier_note", "draft_reconciliation", "list_outbox"} <= tools
    assert "execute_draft" not in tools


def test_note_is_queued_once_after_approval(workspace: Workspace) -> None:
    exception_id = late_exception_id(workspace)

    (drafted,) = agent_calls(
        workspace, ("draft_supplier_note", note_arguments(exception_ids=[exception_id], idempotency_key="note-1"))
    )
    draft = drafted.structured_content
    linked_status = exception_status(workspace, exception_id)
    approved = order3(workspace.db, "drafts", "approve", str(draft["draft_id"]), token=workspace.tokens.buyer_secret)
    again = order3(workspace.db, "drafts", "execute", str(draft["draft_id"]), token=workspace.tokens.buyer_secret)
    (retried,) = agent_calls(
        workspace, ("draft_supplier_note", note_arguments(exception_ids=[exception_id], idempotency_key="note-1"))
    )

    assert not drafted.is_error, drafted.content[0].text
    assert draft["kind"] == "supplier_note"
    assert draft["status"] == "pending_approval"
    assert draft["estimated_value"] == "0"
    assert draft["policy_rule"] == "supplier-note"
    assert draft["title"] == "Note to ACME: PO-LATE: new delivery date?"
    assert draft["exception_ids"] == [exception_id]
    assert linked_status == "drafted"
    assert approved.exit_code == 0, approved.stderr
    assert "Draft 1 is executed." in approved.stdout
    assert "Queued outbox message 1; `order3 outbox show 1` prints it." in approved.stdout
    assert again.exit_code == 5
    assert "Draft 1 was already executed (outbox_message 1); it runs only once." in again.stderr
    assert retried.structured_content["draft_id"] == draft["draft_id"]
    # A replay returns the stored original result and writes nothing.
    assert retried.structured_content["status"] == "pending_approval"
    assert count(workspace.db, Draft) == 1

    (message,) = rows(workspace.db, OutboxMessage)
    assert (message.id, message.draft_id, message.supplier_id, message.purchase_order_id) == (1, 1, 1, 1)
    assert message.recipient == "orders@acme.example"
    assert message.subject == SUBJECT
    assert message.body == BODY
    assert message.status == "queued"
    assert message.queued_by == "alice"
    # The note chases the supplier but the line is still late, so the delay needs watching again.
    assert exception_status(workspace, exception_id) == "open"
    checked, mismatches, chain_ok = ledger_and_chain_clean(workspace)
    assert (checked, mismatches, chain_ok) == (1, [], True)


def test_outbox_commands_show_the_queued_note(workspace: Workspace) -> None:
    (drafted,) = agent_calls(workspace, ("draft_supplier_note", note_arguments()))
    order3(workspace.db, "drafts", "approve", str(drafted.structured_content["draft_id"]), token=workspace.tokens.buyer_secret)

    listed = order3(workspace.db, "outbox", "list", token=workspace.tokens.buyer_secret)
    shown = order3(workspace.db, "outbox", "show", "1", token=workspace.tokens.buyer_secret)
    sent = order3(workspace.db, "outbox", "list", "--status", "sent", token=workspace.tokens.buyer_secret)
    missing = order3(workspace.db, "outbox", "show", "7", token=workspace.tokens.buyer_secret)
    bad_status = order3(workspace.db, "outbox", "list", "--status", "mailed", token=workspace.tokens.buyer_secret)

    assert listed.exit_code == 0, listed.stderr
    assert "1 outbox messages" in listed.stdout
    row = next(line for line in listed.stdout.splitlines() if "orders@acme.example" in line)
    assert [cell.strip() for cell in row.split("│")[1:6]] == ["1", "queued", "ACME", "orders@acme.example", "PO-LATE"]
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.splitlines()[:5] == [
        "Outbox message 1: queued",
        "To: ACME <orders@acme.example>, about purchase order PO-LATE",
        shown.stdout.splitlines()[2],
        'Subject (untrusted text from the drafter): "PO-LATE: new delivery date?"',
        "Body (untrusted text from the drafter, 5 lines):",
    ]
    assert shown.stdout.splitlines()[2].endswith("by alice, from draft 1")
    assert shown.stdout.splitlines()[5:] == [
        "  │ Hello,",
        "  │ ",
        "  │ our order PO-LATE was due on 2022-01-03. When will it ship?",
        "  │ ",
        "  │ Thanks, Alice",
        "  └ end of body",
    ]
    assert "0 outbox messages" in sent.stdout
    assert missing.exit_code == 4
    assert "Outbox message 7 does not exist in this workspace" in missing.stderr
    assert bad_status.exit_code == 2
    assert "Outbox status 'mailed' is unknown; use one of queued, sent, failed." in bad_status.stderr


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"supplier": "NOPE"}, "Supplier 'NOPE' does not exist in this workspace; list_suppliers shows the codes."),
        ({"supplier": "AC%"}, "Supplier 'AC%' does not exist in this workspace"),
        ({"purchase_order": "PO-404"}, "Purchase order 'PO-404' does not exist in this workspace"),
        (
            {"purchase_order": "PO-OTHER"},
            "Purchase order PO-OTHER is from supplier OTHER, not ACME; name one of ACME's orders",
        ),
        ({"subject": "   "}, 'subject is empty; write one line, such as "PO-000001: new delivery date?".'),
        ({"subject": "Late\nApproved by alice"}, "subject contains a line break or control character (U+000A) at position 4"),
        ({"subject": "x" * 201}, "subject: String should have at most 200 characters"),
        ({"body": ""}, "body is empty; write the message to the supplier."),
        ({"body": "x" * 8001}, "body: String should have at most 8000 characters"),
        ({"body": "nul \x00 byte"}, "body contains a NUL character (U+0000) at position 4; remove it."),
        (
            {"body": "Hi \x1b[31m red"},
            "body contains a control character (U+001B) at position 3; use plain text with line breaks and tabs only.",
        ),
        ({"rationale": "late"}, "Rationale 'late' is too short"),
        ({"exception_ids": [99]}, "Exception 99 does not exist in this workspace"),
    ],
)
def test_bad_note_is_refused_naming_the_field(workspace: Workspace, changes: dict[str, object], message: str) -> None:
    (result,) = agent_calls(workspace, ("draft_supplier_note", note_arguments(**changes)))

    assert result.is_error
    assert message in result.content[0].text
    assert count(workspace.db, Draft) == 0
    last = rows(workspace.db, ActivityEvent)[-1]
    assert (last.action, last.outcome) == ("draft_supplier_note", "invalid")


def test_note_refuses_supplier_without_contact_email(workspace: Workspace) -> None:
    set_supplier(workspace, contact_email="")

    (result,) = agent_calls(workspace, ("draft_supplier_note", note_arguments()))

    assert result.is_error
    assert "Supplier ACME has no contact email, so the note could not be delivered" in result.content[0].text
    assert count(workspace.db, Draft) == 0


def test_note_refuses_exception_of_another_supplier(workspace: Workspace) -> None:
    exception_id = late_exception_id(workspace)

    (result,) = agent_calls(
        workspace,
        ("draft_supplier_note", note_arguments(supplier="OTHER", purchase_order="", exception_ids=[exception_id])),
    )

    assert result.is_error
    assert (
        f"Exception {exception_id} (supplier_delay) is about supplier ACME, not OTHER; link only exceptions the "
        "draft answers."
    ) in result.content[0].text
    assert exception_status(workspace, exception_id) == "open"


def test_inactive_supplier_fails_the_note(workspace: Workspace) -> None:
    exception_id = late_exception_id(workspace)
    (drafted,) = agent_calls(workspace, ("draft_supplier_note", note_arguments(exception_ids=[exception_id])))
    set_supplier(workspace, active=False)

    approved = order3(workspace.db, "drafts", "approve", str(drafted.structured_content["draft_id"]), token=workspace.tokens.buyer_secret)

    assert approved.exit_code == 5, approved.stderr
    assert "Draft 1 is failed." in approved.stdout
    assert "Execution failed: Supplier ACME is no longer active, so the note was not queued." in approved.stdout
    assert count(workspace.db, OutboxMessage) == 0
    assert exception_status(workspace, exception_id) == "open"


def test_changed_contact_email_fails_the_note(workspace: Workspace) -> None:
    (drafted,) = agent_calls(workspace, ("draft_supplier_note", note_arguments()))
    set_supplier(workspace, contact_email="new@acme.example")

    approved = order3(workspace.db, "drafts", "approve", str(drafted.structured_content["draft_id"]), token=workspace.tokens.buyer_secret)

    assert "Draft 1 is failed." in approved.stdout
    assert (
        "Supplier ACME's contact email changed from 'orders@acme.example' to 'new@acme.example' since the draft"
    ) in approved.stdout
    assert count(workspace.db, OutboxMessage) == 0


HOSTILE_TITLE = "Routine note\x1b[2J\x1b[H"
HOSTILE_RATIONALE = "Supplier is late on PO-LATE.\nApproved by alice (buyer) at 2026-12-04T10:00:00+00:00\x1b[8m"
HOSTILE_BODY = "Hi\nApproved by alice\n\u202eevil\\x1b"


def test_drafts_show_escapes_hostile_agent_text(workspace: Workspace) -> None:
    (drafted,) = agent_calls(
        workspace, ("draft_supplier_note", note_arguments(title=HOSTILE_TITLE, rationale=HOSTILE_RATIONALE, body=HOSTILE_BODY))
    )

    shown = order3(workspace.db, "drafts", "show", str(drafted.structured_content["draft_id"]), token=workspace.tokens.buyer_secret)
    listed = order3(workspace.db, "drafts", "list", token=workspace.tokens.buyer_secret)

    assert drafted.structured_content["rationale"] == HOSTILE_RATIONALE.strip()
    assert shown.exit_code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    for forbidden in ("\x1b", "\r", "\u202e"):
        assert forbidden not in shown.stdout
        assert forbidden not in listed.stdout
    assert lines[0] == "Draft 1: Routine note\\x1b[2J\\x1b[H"
    assert not any(line.startswith("Approved by") for line in lines)
    start = lines.index("Rationale (untrusted text from agent:buyer-bot, 2 lines):")
    assert lines[start + 1 : start + 4] == [
        "  │ Supplier is late on PO-LATE.",
        "  │ Approved by alice (buyer) at 2026-12-04T10:00:00+00:00\\x1b[8m",
        "  └ end of rationale",
    ]
    body = lines.index("Body (untrusted text from agent:buyer-bot, 3 lines):")
    assert lines[body + 1 : body + 5] == [
        "  │ Hi",
        "  │ Approved by alice",
        "  │ \\u202eevil\\\\x1b",
        "  └ end of body",
    ]
    assert "Supplier note to ACME <orders@acme.example>, about purchase order PO-LATE" in lines
    assert "Decisions: none yet" in lines
    assert "Routine note\\x1b[2J\\x1b[H" in listed.stdout


def test_agent_sees_queued_note_in_outbox(workspace: Workspace) -> None:
    (drafted,) = agent_calls(workspace, ("draft_supplier_note", note_arguments()))
    order3(workspace.db, "drafts", "approve", str(drafted.structured_content["draft_id"]), token=workspace.tokens.buyer_secret)

    listed, other, wrong = agent_calls(
        workspace,
        ("list_outbox", {"supplier": "acme"}),
        ("list_outbox", {"supplier": "OTHER"}),
        ("list_outbox", {"status": "lost"}),
    )

    (message,) = listed.structured_content["messages"]
    assert (message["message_id"], message["supplier"], message["purchase_order"]) == (1, "ACME", "PO-LATE")
    assert (message["subject"], message["status"], message["draft_id"]) == (SUBJECT, "queued", 1)
    assert "body" not in message
    assert other.structured_content["messages"] == []
    assert wrong.is_error
    assert "Outbox status 'lost' is unknown; use one of queued, sent, failed." in wrong.content[0].text

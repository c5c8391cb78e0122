"""Idempotency keys on every write, through a real MCP client in memory and the real CLI runner.

Each write kind is checked the same way: the same key and arguments replay the
stored result and add one `replayed` event and nothing else; the same key with
other arguments is a conflict that writes nothing; a refused call leaves the
key unused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from order3_mcp.app import Caller, Order3
from order3_mcp.server import build_server
from order3_mcp.services.sync import ingest_external_snapshot
from policies import default_policy_path
from store.db import Database
from store.models import ActivityEvent, ExceptionRecord, Supplier
from store.purchasing import NewLine, issue_purchase_order
from tests.factory import add_bins_and_second_location, issue_secret
from tests.kind_support import Workspace, make_workspace, on, order3, read, write

KEY = "key-1"
RATIONALE = "WIDGET-1 has 5 available against a reorder point of 20."
REPLAY_NOTICE = "Replayed: idempotency key 'key-1' was already used for this"


@dataclass
class Reply:
    """What a client saw: success, the structured result or stdout, the error text, and the CLI exit code."""

    ok: bool
    output: Any
    message: str
    exit_code: int | None = None


def tool_call(workspace: Workspace, caller: Caller, tool: str, arguments: dict[str, Any]) -> Reply:
    """Call one tool as `caller` over an in-memory JSON-RPC session."""

    async def run(database: Database) -> Any:
        async with Client(build_server(Order3(database), caller), mode="legacy") as client:
            return await client.call_tool(tool, arguments)

    result = on(workspace.db, run)
    message = result.content[0].text if result.is_error and result.content else ""
    return Reply(ok=not result.is_error, output=result.structured_content, message=message)


def cli_call(workspace: Workspace, secret: str, *args: str) -> Reply:
    result = order3(workspace.db, *args, token=secret)
    return Reply(ok=result.exit_code == 0, output=result.stdout, message=result.stderr, exit_code=result.exit_code)


def table_counts(workspace: Workspace) -> dict[str, int]:
    """Return the row count of every table."""

    async def count(session: AsyncSession) -> dict[str, int]:
        return {
            table.name: (await session.execute(select(func.count()).select_from(table))).scalar_one()
            for table in SQLModel.metadata.sorted_tables
        }

    return read(workspace.db, count)


def events(workspace: Workspace) -> list[ActivityEvent]:
    async def load(session: AsyncSession) -> list[ActivityEvent]:
        return list((await session.execute(select(ActivityEvent).order_by(ActivityEvent.seq))).scalars().all())

    return read(workspace.db, load)


def plus_events(counts: dict[str, int], added: int) -> dict[str, int]:
    return {**counts, "activity_event": counts["activity_event"] + added}


# Setup steps the write kinds need.


def agent_purchase_order(workspace: Workspace, quantity: int = 40) -> int:
    reply = tool_call(
        workspace, workspace.tokens.agent, "draft_purchase_order",
        {"lines": [{"sku": "WIDGET-1", "quantity": quantity}], "rationale": RATIONALE},
    )
    assert reply.ok, reply.message
    return reply.output["draft_id"]


def add_bins(workspace: Workspace) -> None:
    async def add(database: Database) -> None:
        await add_bins_and_second_location(database, workspace_id=workspace.tokens.admin.workspace_id)

    on(workspace.db, add)


def transfer_arguments(quantity: object = 4) -> dict[str, Any]:
    return {
        "sku": "WIDGET-1", "quantity": quantity, "from_location": "WH1", "from_bin": "A-01", "to_location": "WH2",
        "to_bin": "B-02", "rationale": "WH2 runs out of WIDGET-1 before the next delivery.",
    }


def agent_transfer(workspace: Workspace, quantity: int = 4) -> int:
    reply = tool_call(workspace, workspace.tokens.agent, "draft_transfer", transfer_arguments(quantity))
    assert reply.ok, reply.message
    return reply.output["draft_id"]


def approve_as_bob(workspace: Workspace, draft_id: int) -> None:
    reply = tool_call(workspace, workspace.tokens.second_buyer, "approve_draft", {"draft_id": draft_id})
    assert reply.ok, reply.message


def purchase_order_drafts(workspace: Workspace) -> dict[str, Any]:
    return {"draft": agent_purchase_order(workspace), "other": agent_purchase_order(workspace, quantity=20)}


def transfer_drafts(workspace: Workspace) -> dict[str, Any]:
    """Two transfer drafts, one approved and one pending, and alice's own pending purchase order draft."""
    add_bins(workspace)
    approved = agent_transfer(workspace)
    approve_as_bob(workspace, approved)
    pending = agent_transfer(workspace, quantity=2)
    own = tool_call(
        workspace, workspace.tokens.buyer, "draft_purchase_order",
        {"lines": [{"sku": "WIDGET-1", "quantity": 20}], "rationale": RATIONALE},
    )
    return {"draft": approved, "pending": pending, "own": own.output["draft_id"]}


def withdrawable_drafts(workspace: Workspace) -> dict[str, Any]:
    own = agent_purchase_order(workspace)
    alices = tool_call(
        workspace, workspace.tokens.buyer, "draft_purchase_order",
        {"lines": [{"sku": "WIDGET-1", "quantity": 20}], "rationale": RATIONALE},
    )
    return {"draft": own, "alices": alices.output["draft_id"]}


def open_exception(workspace: Workspace) -> dict[str, Any]:
    async def insert(session: AsyncSession) -> int:
        record = ExceptionRecord(
            workspace_id=workspace.tokens.admin.workspace_id, kind="supplier_delay", fingerprint="delay:PO-X:1",
            purchase_order_number="PO-X", reason="PO-X line 1 is 3 days late.", evidence={},
        )
        session.add(record)
        await session.flush()
        return record.id  # type: ignore[return-value]

    return {"exception": write(workspace.db, insert)}


def channel_mismatch(workspace: Workspace) -> dict[str, Any]:
    """Report 8 WIDGET-1 at WH1 from shopify-eu, where Order3 has 5, and return the mismatch found."""

    async def send(database: Database) -> None:
        await ingest_external_snapshot(
            Order3(database), workspace.integration, source="shopify-eu", batch_id="b-1",
            records=[{"external_id": "q-1", "kind": "channel_quantity", "sku": "WIDGET-1", "location": "WH1", "quantity": "8"}],
        )

    on(workspace.db, send)
    found = tool_call(workspace, workspace.tokens.agent, "find_mismatches", {})
    (exception,) = found.output["exceptions"]
    return {"exception": exception["exception_id"]}


def supplier_with_email(workspace: Workspace) -> dict[str, Any]:
    async def change(session: AsyncSession) -> None:
        await session.execute(update(Supplier).where(Supplier.code == "ACME").values(contact_email="orders@acme.example"))

    write(workspace.db, change)
    return {}


def issued_order(workspace: Workspace) -> dict[str, Any]:
    """Issue PO-000001 from ACME: 40 WIDGET-1 for WH1."""

    async def issue(session: AsyncSession) -> None:
        await issue_purchase_order(
            session, workspace_id=workspace.tokens.admin.workspace_id, supplier_id=1, currency="USD",
            lines=[NewLine(item_id=1, supplier_item_id=1, quantity=Decimal(40), unit_price=Decimal("2.5"), destination_location_id=1, expected_date=None)],
            expected_date=None, owner="alice", description="Test order",
        )

    write(workspace.db, issue)
    return {}


def open_count_task(workspace: Workspace) -> dict[str, Any]:
    drafted = tool_call(
        workspace, workspace.tokens.agent, "draft_count_task",
        {"location": "WH1", "lines": [{"sku": "WIDGET-1"}], "rationale": "WIDGET-1 drifted at the last two counts."},
    )
    approve_as_bob(workspace, drafted.output["draft_id"])
    return {}


def shipped_transfer(workspace: Workspace) -> dict[str, Any]:
    add_bins(workspace)
    draft_id = agent_transfer(workspace)
    approve_as_bob(workspace, draft_id)
    executed = tool_call(workspace, workspace.tokens.second_buyer, "execute_draft", {"draft_id": draft_id})
    assert executed.ok, executed.message
    return {}


def admin_secret(workspace: Workspace) -> str:
    async def issue(database: Database) -> str:
        return await issue_secret(
            database, workspace_id=workspace.tokens.admin.workspace_id, principal="dana", kind="user", role="admin"
        )

    return on(workspace.db, issue)


def policy_files(workspace: Workspace) -> dict[str, Any]:
    text = default_policy_path().read_text(encoding="utf-8")
    folder = workspace.folder
    (folder / "v3.toml").write_text(text.replace('version = "2"', 'version = "3"'), encoding="utf-8")
    (folder / "v4.toml").write_text(text.replace('version = "2"', 'version = "4"'), encoding="utf-8")
    (folder / "broken.toml").write_text("[policy\nname = ", encoding="utf-8")
    return {"secret": admin_secret(workspace), "folder": folder}


def rates_admin(workspace: Workspace) -> dict[str, Any]:
    return {"secret": admin_secret(workspace)}


def batch_files(workspace: Workspace) -> dict[str, Any]:
    folder = workspace.folder
    record = {"external_id": "q-1", "kind": "channel_quantity", "sku": "WIDGET-1", "location": "WH1", "quantity": "5"}
    batch = {"source": "shopify-eu", "batch_id": "b-9", "records": [record]}
    (folder / "same.json").write_text(json.dumps(batch), encoding="utf-8")
    (folder / "other.json").write_text(json.dumps({**batch, "records": [{**record, "quantity": "6"}]}), encoding="utf-8")
    secret = on(
        workspace.db,
        lambda database: issue_secret(
            database, workspace_id=workspace.tokens.admin.workspace_id, principal="shopify-eu", kind="integration",
            role="integration",
        ),
    )
    return {"secret": secret, "folder": folder}


# The write kinds.

Variants = dict[str, Callable[[dict[str, Any]], Any]]


@dataclass(frozen=True)
class WriteKind:
    """One write: how to set it up, and its arguments for the same request, another request and a refused one."""

    name: str
    action: str
    prepare: Callable[[Workspace], dict[str, Any]]
    variants: Variants
    #: Tool name for an MCP write; empty for a CLI command.
    tool: str = ""
    #: The principal calling the tool, or the CLI secret (from the prepared context when it names one).
    caller: Callable[[Workspace], Caller] | None = None
    secret: Callable[[Workspace, dict[str, Any]], str] | None = None
    #: The CLI secret of the refused call, when it is refused for its token rather than its arguments.
    refused_secret: Callable[[Workspace, dict[str, Any]], str] | None = None
    #: Events one replay adds, and the action and key of the last one.
    replay_events: int = 1
    last_action: str = ""
    recorded_key: str = KEY
    #: False when the key is part of the arguments (a sync batch id) rather than passed beside them.
    takes_key: bool = True

    def __str__(self) -> str:
        return self.name

    def send(self, workspace: Workspace, context: dict[str, Any], variant: str, key: str | None = KEY) -> Reply:
        arguments = self.variants[variant](context)
        if self.tool:
            assert self.caller is not None
            if key is not None and self.takes_key:
                arguments = {**arguments, "idempotency_key": key}
            return tool_call(workspace, self.caller(workspace), self.tool, arguments)
        assert self.secret is not None
        if key is not None and self.takes_key:
            arguments = [*arguments, "--idempotency-key", key]
        secret = self.refused_secret if variant == "refused" and self.refused_secret else self.secret
        return cli_call(workspace, secret(workspace, context), *arguments)


def agent(workspace: Workspace) -> Caller:
    return workspace.tokens.agent


def alice(workspace: Workspace) -> Caller:
    return workspace.tokens.buyer


def alice_secret(workspace: Workspace, _context: dict[str, Any]) -> str:
    return workspace.tokens.buyer_secret


def context_secret(_workspace: Workspace, context: dict[str, Any]) -> str:
    return context["secret"]


def nothing(_workspace: Workspace) -> dict[str, Any]:
    return {}


def with_bins(workspace: Workspace) -> dict[str, Any]:
    add_bins(workspace)
    return {}


def po_lines(quantity: object) -> dict[str, Any]:
    return {"lines": [{"sku": "WIDGET-1", "quantity": quantity}], "rationale": RATIONALE}


NOTE = {"supplier": "ACME", "subject": "Delivery date", "body": "When will PO-LATE ship?", "rationale": RATIONALE}
DISMISS_REASON = "The order was cancelled by phone; nothing to chase."

MCP_KINDS = [
    WriteKind(
        "draft_purchase_order", "draft_purchase_order", nothing, tool="draft_purchase_order", caller=agent,
        variants={"same": lambda _: po_lines(40), "other": lambda _: po_lines(50), "refused": lambda _: po_lines(41)},
    ),
    WriteKind(
        "draft_count_task", "draft_count_task", nothing, tool="draft_count_task", caller=agent,
        variants={
            "same": lambda _: {"location": "WH1", "lines": [{"sku": "WIDGET-1"}], "rationale": RATIONALE},
            "other": lambda _: {"location": "WH1", "lines": [{"sku": "GADGET-2"}], "rationale": RATIONALE},
            "refused": lambda _: {"location": "NOWHERE", "lines": [{"sku": "WIDGET-1"}], "rationale": RATIONALE},
        },
    ),
    WriteKind(
        "draft_transfer", "draft_transfer", with_bins, tool="draft_transfer", caller=agent,
        variants={
            "same": lambda _: transfer_arguments(4),
            "other": lambda _: transfer_arguments(5),
            "refused": lambda _: transfer_arguments(100),
        },
    ),
    WriteKind(
        "draft_adjustment", "draft_adjustment", with_bins, tool="draft_adjustment", caller=agent,
        variants={
            "same": lambda _: {"sku": "WIDGET-1", "location": "WH1", "bin": "A-01", "quantity": -3, "reason_code": "damaged", "rationale": RATIONALE},
            "other": lambda _: {"sku": "WIDGET-1", "location": "WH1", "bin": "A-01", "quantity": -4, "reason_code": "damaged", "rationale": RATIONALE},
            "refused": lambda _: {"sku": "WIDGET-1", "location": "WH1", "bin": "A-01", "quantity": -3, "reason_code": "lost-in-space", "rationale": RATIONALE},
        },
    ),
    WriteKind(
        "draft_supplier_note", "draft_supplier_note", supplier_with_email, tool="draft_supplier_note", caller=agent,
        variants={
            "same": lambda _: NOTE,
            "other": lambda _: {**NOTE, "subject": "Delivery date, again"},
            "refused": lambda _: {**NOTE, "supplier": "NOBODY"},
        },
    ),
    WriteKind(
        "draft_reconciliation", "draft_reconciliation", channel_mismatch, tool="draft_reconciliation", caller=agent,
        variants={
            "same": lambda c: {"exception_id": c["exception"], "action": "adjust_ours", "reported": "8", "ours": "5", "rationale": RATIONALE},
            "other": lambda c: {"exception_id": c["exception"], "action": "accept_ours", "reported": "8", "ours": "5", "rationale": RATIONALE},
            "refused": lambda c: {"exception_id": c["exception"], "action": "adjust_ours", "reported": "9", "ours": "5", "rationale": RATIONALE},
        },
    ),
    WriteKind(
        # The refused call is alice's own draft: only its drafter may withdraw it.
        "withdraw_draft", "withdraw_draft", withdrawable_drafts, tool="withdraw_draft", caller=agent,
        variants={
            "same": lambda c: {"draft_id": c["draft"], "reason": "Bought elsewhere."},
            "other": lambda c: {"draft_id": c["draft"], "reason": "Not needed."},
            "refused": lambda c: {"draft_id": c["alices"], "reason": "Bought elsewhere."},
        },
    ),
    WriteKind(
        # The purchase order rule executes on approval, so a replay replays the execution too.
        "approve_draft", "approve_draft", purchase_order_drafts, tool="approve_draft", caller=alice,
        replay_events=2, last_action="execute_draft", recorded_key=f"{KEY}/execute",
        variants={
            "same": lambda c: {"draft_id": c["draft"]},
            "other": lambda c: {"draft_id": c["other"]},
            "refused": lambda c: {"draft_id": c["draft"], "expected_hash": "not-a-hash"},
        },
    ),
    WriteKind(
        # The refused call is on alice's own draft: its creator cannot reject it.
        "reject_draft", "reject_draft", transfer_drafts, tool="reject_draft", caller=alice,
        variants={
            "same": lambda c: {"draft_id": c["pending"], "reason": "WH2 gets a delivery tomorrow."},
            "other": lambda c: {"draft_id": c["pending"], "reason": "Not now."},
            "refused": lambda c: {"draft_id": c["own"], "reason": "WH2 gets a delivery tomorrow."},
        },
    ),
    WriteKind(
        # The refused call is on a draft still pending approval.
        "execute_draft", "execute_draft", transfer_drafts, tool="execute_draft", caller=alice,
        variants={
            "same": lambda c: {"draft_id": c["draft"]},
            "other": lambda c: {"draft_id": c["pending"]},
            "refused": lambda c: {"draft_id": c["pending"]},
        },
    ),
    WriteKind(
        "dismiss_exception", "dismiss_exception", open_exception, tool="dismiss_exception", caller=alice,
        variants={
            "same": lambda c: {"exception_id": c["exception"], "reason": DISMISS_REASON},
            "other": lambda c: {"exception_id": c["exception"], "reason": "Supplier confirmed a new date."},
            "refused": lambda c: {"exception_id": c["exception"], "reason": "short"},
        },
    ),
    WriteKind(
        # The batch id is the key, within its source.
        "ingest_external_snapshot", "ingest_external_snapshot", nothing, tool="ingest_external_snapshot",
        caller=lambda w: w.integration, takes_key=False, recorded_key="sync:shopify-eu:b-9",
        variants={
            "same": lambda _: {"source": "shopify-eu", "batch_id": "b-9", "records": [{"external_id": "q-1", "kind": "channel_quantity", "sku": "WIDGET-1", "location": "WH1", "quantity": "5"}]},
            "other": lambda _: {"source": "shopify-eu", "batch_id": "b-9", "records": [{"external_id": "q-1", "kind": "channel_quantity", "sku": "WIDGET-1", "location": "WH1", "quantity": "6"}]},
            "refused": lambda _: {"source": "shopify-eu", "batch_id": "b-9", "records": []},
        },
    ),
]

CLI_KINDS = [
    WriteKind(
        "drafts approve", "approve_draft", purchase_order_drafts, secret=alice_secret,
        replay_events=2, last_action="execute_draft", recorded_key=f"{KEY}/execute",
        variants={
            "same": lambda c: ["drafts", "approve", str(c["draft"])],
            "other": lambda c: ["drafts", "approve", str(c["other"])],
            "refused": lambda c: ["drafts", "approve", str(c["draft"]), "--hash", "zz"],
        },
    ),
    WriteKind(
        "drafts reject", "reject_draft", transfer_drafts, secret=alice_secret,
        variants={
            "same": lambda c: ["drafts", "reject", str(c["pending"]), "--reason", "Not now."],
            "other": lambda c: ["drafts", "reject", str(c["pending"]), "--reason", "Later."],
            "refused": lambda c: ["drafts", "reject", str(c["own"]), "--reason", "Not now."],
        },
    ),
    WriteKind(
        "drafts execute", "execute_draft", transfer_drafts, secret=alice_secret,
        variants={
            "same": lambda c: ["drafts", "execute", str(c["draft"])],
            "other": lambda c: ["drafts", "execute", str(c["pending"])],
            "refused": lambda c: ["drafts", "execute", str(c["pending"])],
        },
    ),
    WriteKind(
        "exceptions dismiss", "dismiss_exception", open_exception, secret=alice_secret,
        variants={
            "same": lambda c: ["exceptions", "dismiss", str(c["exception"]), "--reason", DISMISS_REASON],
            "other": lambda c: ["exceptions", "dismiss", str(c["exception"]), "--reason", "Supplier confirmed a new date."],
            "refused": lambda c: ["exceptions", "dismiss", str(c["exception"]), "--reason", "short"],
        },
    ),
    WriteKind(
        "receive", "receive", issued_order, secret=alice_secret,
        variants={
            "same": lambda _: ["receive", "PO-000001", "1", "10"],
            "other": lambda _: ["receive", "PO-000001", "1", "11"],
            "refused": lambda _: ["receive", "PO-000001", "1", "400"],
        },
    ),
    WriteKind(
        "count submit", "count_submit", open_count_task, secret=alice_secret,
        variants={
            "same": lambda _: ["count", "submit", "1", "--line", "WIDGET-1=2"],
            "other": lambda _: ["count", "submit", "1", "--line", "WIDGET-1=3"],
            "refused": lambda _: ["count", "submit", "1", "--line", "GADGET-2=2"],
        },
    ),
    WriteKind(
        "transfer receive", "transfer_receive", shipped_transfer, secret=alice_secret,
        variants={
            "same": lambda _: ["transfer", "receive", "TR-000001"],
            "other": lambda _: ["transfer", "receive", "TR-000002"],
            "refused": lambda _: ["transfer", "receive", "TR-000009"],
        },
    ),
    WriteKind(
        # A malformed batch file is refused before the batch id is read, so the refused call is for the token:
        # alice holds no sync scope.
        "sync ingest", "ingest_external_snapshot", batch_files, secret=context_secret, takes_key=False,
        recorded_key="sync:shopify-eu:b-9", refused_secret=alice_secret,
        variants={
            "same": lambda c: ["sync", "ingest", str(c["folder"] / "same.json")],
            "other": lambda c: ["sync", "ingest", str(c["folder"] / "other.json")],
            "refused": lambda c: ["sync", "ingest", str(c["folder"] / "same.json")],
        },
    ),
    WriteKind(
        "policy load", "policy_load", policy_files, secret=context_secret,
        variants={
            "same": lambda c: ["policy", "load", str(c["folder"] / "v3.toml")],
            "other": lambda c: ["policy", "load", str(c["folder"] / "v4.toml")],
            "refused": lambda c: ["policy", "load", str(c["folder"] / "broken.toml")],
        },
    ),
    WriteKind(
        "rates set", "rates_set", rates_admin, secret=context_secret,
        variants={
            "same": lambda _: ["rates", "set", "CAD", "0.73"],
            "other": lambda _: ["rates", "set", "CAD", "0.74"],
            "refused": lambda _: ["rates", "set", "CAD", "0.7x"],
        },
    ),
]

KINDS = MCP_KINDS + CLI_KINDS


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_same_key_and_arguments_replay(tmp_path: Path, kind: WriteKind) -> None:
    workspace = make_workspace(tmp_path)
    context = kind.prepare(workspace)

    first = kind.send(workspace, context, "same")
    before = table_counts(workspace)
    again = kind.send(workspace, context, "same")
    after = table_counts(workspace)

    assert first.ok, first.message
    assert again.ok, again.message
    if kind.tool:
        assert again.output == first.output
    elif kind.action == "receive":
        assert again.output.startswith("Nothing received: idempotency key 'key-1' already recorded this receipt")
    elif kind.takes_key:
        assert again.output.startswith(REPLAY_NOTICE)
        assert again.output.endswith(first.output)
    else:
        assert again.output.endswith(first.output)
    assert after == plus_events(before, kind.replay_events)
    last = events(workspace)[-1]
    assert last.action == (kind.last_action or kind.action)
    assert last.outcome == "replayed"
    assert last.idempotency_key == kind.recorded_key
    assert repr(kind.recorded_key) in last.summary


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_same_key_other_arguments_conflict(tmp_path: Path, kind: WriteKind) -> None:
    workspace = make_workspace(tmp_path)
    context = kind.prepare(workspace)

    first = kind.send(workspace, context, "same")
    before = table_counts(workspace)
    other = kind.send(workspace, context, "other")
    after = table_counts(workspace)

    assert first.ok, first.message
    assert not other.ok
    assert "was already used for" in other.message
    assert other.exit_code in (None, 5)
    assert after == plus_events(before, 1)
    last = events(workspace)[-1]
    assert (last.action, last.outcome) == (kind.action, "conflict")


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_refused_call_leaves_key_unused(tmp_path: Path, kind: WriteKind) -> None:
    workspace = make_workspace(tmp_path)
    context = kind.prepare(workspace)

    before = table_counts(workspace)
    refused = kind.send(workspace, context, "refused")
    after_refusal = table_counts(workspace)
    corrected = kind.send(workspace, context, "same")

    assert not refused.ok
    assert after_refusal == plus_events(before, 1)
    assert corrected.ok, corrected.message
    outcomes = [(event.action, event.outcome) for event in events(workspace)]
    assert outcomes[before["activity_event"]][0] == kind.action
    assert outcomes[before["activity_event"]][1] in ("denied", "invalid", "conflict")
    assert outcomes[before["activity_event"] + 1] == (kind.action, "ok")
    assert table_counts(workspace)["idempotency_record"] == before["idempotency_record"] + kind.replay_events

"""Demo steps around the agent's drafts of the other five kinds: the channel snapshot before, the people's decisions after.

Each step calls the service function behind the matching `order3` command, so the
demo runs the same approve, execute, receive, count and sync paths as the CLI.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.text import Text

from order3_mcp.agent_kinds import KindDrafts
from order3_mcp.agent_script import AgentScriptError
from order3_mcp.app import Caller, Order3
from order3_mcp.commands.drafts import describe_result, parse_result
from order3_mcp.schemas import DraftDetail
from order3_mcp.services import (
    admin,
    approvals,
    count_tasks,
    drafts,
    outbox,
    reads,
    sync,
    transfers,
)
from order3_mcp.services.count_tasks import CountEntry

# The sales channel whose snapshot disagrees with Order3: it reports
# CHANNEL_SHORTFALL fewer available than Order3 has, as after two unrecorded picks.
CHANNEL_SOURCE = "webshop"
CHANNEL_SKU = "widget.green"
CHANNEL_LOCATION = "FACTORY"
CHANNEL_SHORTFALL = Decimal(2)


async def send_channel_snapshot(app: Order3, integration: Caller, *, directory: Path, console: Console) -> int:
    """Write a channel batch that disagrees with Order3 by CHANNEL_SHORTFALL and ingest it; return the mismatch exception id."""
    stock = await reads.get_stock(app, integration, sku=CHANNEL_SKU, location=CHANNEL_LOCATION)
    reported = Decimal(stock.available) - CHANNEL_SHORTFALL
    batch = {
        "source": CHANNEL_SOURCE,
        "batch_id": "demo-quantities-1",
        "records": [
            {
                "external_id": f"{CHANNEL_SKU}@{CHANNEL_LOCATION}",
                "kind": "channel_quantity",
                "sku": CHANNEL_SKU,
                "location": CHANNEL_LOCATION,
                "quantity": str(reported),
            }
        ],
    }
    path = directory / "webshop-batch.json"
    path.write_text(json.dumps(batch, indent=2), encoding="utf-8")
    result = await sync.ingest_file(app, integration, path=path)
    record = result.records[0] if result.records else None
    if result.mismatch != 1 or record is None or record.exception_id is None:
        raise AgentScriptError(f"The channel batch {path} did not open one mismatch exception: {result.model_dump_json()}")
    console.print(Text(f"Batch {path.name}: {result.received} record, {result.mismatch} mismatch → exception {record.exception_id}."), soft_wrap=True)
    console.print(Text(record.detail), soft_wrap=True)
    return record.exception_id


async def _approve(app: Order3, person: Caller, draft_id: int, *, reason: str) -> DraftDetail:
    """Read a draft as `person` and approve the payload hash that was read, as `order3 drafts show` then `approve --hash` do."""
    review = await drafts.get_draft(app, person, draft_id=draft_id)
    return await approvals.approve_draft(app, person, draft_id=draft_id, expected_hash=review.payload_hash[:12], reason=reason)


def _expect(detail: DraftDetail, status: str) -> dict[str, str]:
    """Return the draft's parsed result, or raise if the draft is not in `status`."""
    if detail.status != status:
        failure = f": {detail.failure_reason}" if detail.failure_reason else "."
        raise AgentScriptError(f"Draft {detail.draft_id} ({detail.kind}) is {detail.status}, not {status}{failure}")
    return parse_result(detail.result)


def _done(console: Console, detail: DraftDetail, person: str) -> None:
    result = parse_result(detail.result)
    if "count_task" in result:
        summary = f"Created count task {result['count_task']}."
    elif "adjusted" in result:
        summary = f"Posted movement {result.get('movement', '?')}, adjusting stock by {result['adjusted']}."
    else:
        summary = describe_result(result) or f"Result: {detail.result}"
    console.print(Text(f"Draft {detail.draft_id} ({detail.kind}) {detail.status} by {person}. {summary}"), soft_wrap=True)


async def decide_transfer(app: Order3, buyer: Caller, draft_id: int, *, console: Console) -> tuple[DraftDetail, str, str]:
    """Approve, execute and receive the transfer; return the draft, its transfer number and the transfer's status."""
    approved = await _approve(app, buyer, draft_id, reason="Source stock checked.")
    _expect(approved, "approved")
    console.print(Text(f"Draft {draft_id} (transfer) approved by {buyer.principal}; the transfer rule does not execute on approval."), soft_wrap=True)

    executed = await approvals.execute_draft(app, buyer, draft_id=draft_id)
    number = _expect(executed, "executed").get("transfer", "")
    _done(console, executed, buyer.principal)

    received = await transfers.receive_transfer(app, buyer, transfer=number, idempotency_key=f"demo-receive-{number}")
    if received.status != "received":
        raise AgentScriptError(f"Transfer {number} is {received.status} after receiving it, not received.")
    console.print(Text(f"order3 transfer receive {number}: {received.quantity} {received.sku} from {received.transit_place} into {received.to_place}."), soft_wrap=True)
    return executed, number, received.status


async def decide_count_task(app: Order3, buyer: Caller, draft_id: int, *, console: Console) -> tuple[DraftDetail, int, str]:
    """Approve the count task, then submit counts one unit short on the first line; return the draft, task id and task status."""
    executed = await _approve(app, buyer, draft_id, reason="Count before the delivery lands.")
    task_id = int(_expect(executed, "executed").get("count_task", "0"))
    _done(console, executed, buyer.principal)

    task = await count_tasks.get_count_task(app, buyer, task_id=task_id, show_expected=True)
    # The demo's count finds one unit missing on the first line, so the submission posts a correction movement.
    entries = [
        CountEntry(
            sku=line.sku,
            bin=line.bin,
            counted=str(Decimal(line.expected or "0") - (1 if index == 0 else 0)),
            source=f"demo line {line.line_no}",
        )
        for index, line in enumerate(task.lines)
    ]

    submitted = await count_tasks.submit_counts(
        app, buyer, task_id=task_id, entries=entries, show_expected=True, idempotency_key=f"demo-count-{task_id}"
    )
    counted = ", ".join(f"{line.sku}@{line.bin or '-'} {line.counted} (expected {line.expected}, variance {line.variance})" for line in submitted.lines)
    console.print(Text(f"order3 count submit {task_id}: {counted}; task {submitted.status}."), soft_wrap=True)
    if submitted.status != "applied":
        raise AgentScriptError(f"Count task {task_id} is {submitted.status} after the count was submitted, not applied.")
    return executed, task_id, submitted.status


async def decide_supplier_note(app: Order3, buyer: Caller, draft_id: int, *, console: Console) -> tuple[DraftDetail, int]:
    """Approve the supplier note and list the outbox; return the draft and the number of queued messages."""
    executed = await _approve(app, buyer, draft_id, reason="Reminder text checked.")
    _expect(executed, "executed")
    _done(console, executed, buyer.principal)

    listing = await outbox.list_outbox(app, buyer, status="queued", supplier="", cursor=None, limit=50)
    for message in listing.messages:
        console.print(Text(f"order3 outbox list: message {message.message_id} {message.status} to {message.supplier} <{message.recipient}>: {message.subject!r}"), soft_wrap=True)
    if len(listing.messages) != 1 or listing.messages[0].draft_id != draft_id:
        raise AgentScriptError(
            f"Expected exactly 1 queued outbox message, from draft {draft_id}, after it executed; found {len(listing.messages)}."
        )
    return executed, len(listing.messages)


async def decide_stock_corrections(app: Order3, approver: Caller, kinds: KindDrafts, *, console: Console) -> list[DraftDetail]:
    """Approve the adjustment and the reconciliation as the approver; both execute on approval."""
    decided = []
    for draft_id in (kinds.adjustment, kinds.reconciliation):
        executed = await _approve(app, approver, draft_id, reason="Value change within the single-approver limit.")
        _expect(executed, "executed")
        _done(console, executed, approver.principal)
        decided.append(executed)
    return decided


async def check_ledger(app: Order3, caller: Caller, *, console: Console) -> tuple[int, int]:
    """Run the check behind `order3 verify`; return (levels checked, mismatches), raising if any level is off."""
    report = await admin.check_stock_ledger(app, caller)
    console.print(f"Stock levels checked: {report.levels_checked}. Mismatches: {len(report.mismatches)}.")
    if report.mismatches:
        raise AgentScriptError("The stock ledger does not match the stock levels: " + "; ".join(report.mismatches[:5]))
    return report.levels_checked, len(report.mismatches)

"""The `drafts` commands: list, show, approve, reject and execute drafts through the one service path."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from order3_mcp.commands._draft_payloads import show_reconciliation, show_supplier_note
from order3_mcp.commands._runtime import (
    IdempotencyKeyOption,
    execute,
    keyed,
    out,
    parse_payload,
    say,
    say_replayed,
    settings_of,
    signed_in,
)
from order3_mcp.commands._untrusted import quoted_block, visible
from order3_mcp.schemas import DraftDetail, DraftPage
from order3_mcp.services import approvals, drafts

drafts_app = typer.Typer(help="Review drafts and decide on them.", no_args_is_help=True)

DraftId = Annotated[int, typer.Argument(help="Draft id, from `drafts list`.")]


def approval_progress(detail: DraftDetail) -> str | None:
    """Describe how many approvals a pending draft has and how many more it needs.

    Returns None when no approval is recorded yet, or when no policy rule matched.
    """
    required = detail.approvals_required
    recorded = detail.approvals_recorded
    if required == 0 or recorded == 0 or recorded >= required:
        return None

    missing = required - recorded
    needed = "another approver" if missing == 1 else f"{missing} more approvers"
    roles = " or ".join(detail.approver_roles)
    return (
        f"Approval {recorded} of {required} recorded. Draft {detail.draft_id} needs {needed} with role {roles} "
        f"(policy rule {detail.policy_rule})."
    )


# Exit code of approve or execute when execution ran and failed: the conflict code.
FAILED_EXECUTION_EXIT = 5


def print_decision(detail: DraftDetail) -> None:
    """Print a draft's status after a decision, and what execution produced."""
    progress = approval_progress(detail) if detail.status == "pending_approval" else None
    if progress is not None:
        say(progress)
        return

    say(f"Draft {detail.draft_id} is {detail.status}.")
    if detail.result:
        say(describe_result(parse_result(detail.result)) or f"Result: {detail.result}", style="green")
    if detail.failure_reason:
        say(f"Execution failed: {visible(detail.failure_reason)}", style="red")
    if detail.status == "pending_approval":
        say(detail.approval_owner)
    if detail.status == "failed":
        # A script must not read a failed execution as success.
        raise typer.Exit(FAILED_EXECUTION_EXIT)


def describe_result(result: dict[str, str]) -> str:
    """Return a sentence for what execution produced, or "" for a result of an unknown shape."""
    if "purchase_order" in result:
        return f"Issued purchase order {result['purchase_order']}."
    if "transfer" in result:
        number = result["transfer"]
        return (
            f"Shipped transfer {number} into {result.get('transit_location', 'transit')}. Once the goods arrive, "
            f"receive it at {result.get('destination', 'its destination')} with `order3 transfer receive {number}`."
        )
    if "count_task" in result:
        task = result["count_task"]
        return f"Created count task {task}; count it and run `order3 count submit {task}`."
    if "adjusted" in result and "movement" in result:
        return f"Reconciled: adjusted ours by {result['adjusted']} with movement {result['movement']}."
    if "outbox_message" in result:
        queued = result["outbox_message"]
        return f"Queued outbox message {queued}; `order3 outbox show {queued}` prints it."
    if "movement" in result and "on_hand_after" in result:
        return (
            f"Posted adjustment movement {result['movement']}: {result.get('sku', 'the item')} at "
            f"{result.get('place', 'its place')} now has {result.get('on_hand_after', '?')} on hand."
        )
    return ""


def parse_result(result: str) -> dict[str, str]:
    """Split a draft's "key=value, key=value" result text into a dict."""
    pairs = (part.split("=", 1) for part in result.split(", ") if "=" in part)
    return {key.strip(): value.strip() for key, value in pairs}


def _place(payload: dict[str, object], prefix: str) -> str:
    location = payload.get(f"{prefix}location_code", "")
    bin_code = payload.get(f"{prefix}bin_code", "")
    return f"{location}/{bin_code}" if bin_code else str(location)


def _valuation(payload: dict[str, object], value: object) -> str:
    """Return "VALUE CUR (unit cost C)" or why there is no value, from a stock draft's payload."""
    if not payload.get("unit_cost"):
        return f"{value or 0} {payload.get('currency', '')} ({payload.get('value_source', 'no unit cost')})"
    return f"{value} {payload.get('currency', '')} (unit cost {payload['unit_cost']}, {payload.get('value_source', '')})"


def print_transfer(payload: dict[str, object]) -> None:
    """Print a transfer draft's payload: what moves where, availability when drafted, and the moved value."""
    say(
        f"Transfer: {payload.get('quantity', '')} {payload.get('unit', '')} of {payload.get('sku', '')} "
        f"from {_place(payload, 'from_')} to {_place(payload, 'to_')}"
    )
    say(f"Available at {_place(payload, 'from_')} when drafted: {payload.get('available_at_draft', '')}")
    say(f"Moved value: {_valuation(payload, payload.get('moved_value'))}; inventory value change 0")


def print_adjustment(payload: dict[str, object]) -> None:
    """Print an adjustment draft's payload: the signed change, its reason, on hand when drafted and the value change."""
    say(
        f"Adjustment: {payload.get('quantity', '')} {payload.get('unit', '')} of {payload.get('sku', '')} "
        f"at {_place(payload, '')}, reason {payload.get('reason_code', '')}"
    )
    say(f"On hand at {_place(payload, '')} when drafted: {payload.get('on_hand_at_draft', '')}")
    say(f"Value change: {_valuation(payload, payload.get('value_change'))}")


@drafts_app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[str, typer.Option(help="Only drafts in this status (pending_approval, approved, executed, ...).")] = "",
    kind: Annotated[str, typer.Option(help="Only drafts of this kind (purchase_order, transfer, ...).")] = "",
    limit: Annotated[int, typer.Option(help="Drafts per page, 1 to 100.")] = 50,
    cursor: Annotated[str, typer.Option(help="Cursor printed at the end of the previous page.")] = "",
) -> None:
    """List drafts with their status."""
    settings = settings_of(ctx)

    async def step() -> DraftPage:
        async with signed_in(settings) as (app, caller):
            return await drafts.list_drafts(app, caller, status=status, kind=kind, cursor=cursor, limit=limit)

    listing = execute(step)
    table = Table(title=f"{len(listing.drafts)} drafts")
    for column in ("id", "kind", "status", "title", "value", "by", "result"):
        table.add_column(column)
    for draft in listing.drafts:
        table.add_row(
            str(draft.draft_id),
            draft.kind,
            draft.status,
            Text(visible(draft.title)),
            f"{draft.estimated_value} {draft.currency}",
            draft.created_by,
            draft.result,
        )
    out().print(table)
    if listing.next_cursor:
        say(f"More drafts: --cursor {listing.next_cursor}")


@drafts_app.command("show")
def show(ctx: typer.Context, draft_id: DraftId) -> None:
    """Show a draft: payload lines, rationale, approval owner, payload hash, decisions and linked exceptions."""
    settings = settings_of(ctx)

    async def step() -> DraftDetail:
        async with signed_in(settings) as (app, caller):
            return await drafts.get_draft(app, caller, draft_id=draft_id)

    detail = execute(step)
    # Title, rationale and payload text come from the drafter, often an agent, so they are printed escaped.
    drafter = visible(detail.created_by)
    say(f"Draft {detail.draft_id}: {visible(detail.title)}", style="bold")
    say(f"Kind: {detail.kind}    Status: {detail.status}    Created by: {drafter} at {detail.created_at}")
    say(f"Estimated value: {detail.estimated_value} {detail.currency}")
    quoted_block("Rationale", detail.rationale, origin=drafter)
    say(f"Approval owner: {detail.approval_owner}")
    say(f"Payload hash: {detail.payload_hash}")
    if detail.expires_at:
        say(f"Approval window ends: {detail.expires_at}")

    payload = parse_payload(detail.payload_json)
    rates = payload.get("exchange_rates")
    if isinstance(rates, dict) and rates:
        used = ", ".join(
            f"1 {code} = {rate.get('rate', '?')} {detail.currency} (as of {rate.get('as_of', '?')})"
            for code, rate in sorted(rates.items())
            if isinstance(rate, dict)
        )
        say(f"Exchange rates used: {visible(used)}")
    lines = payload.get("lines")
    if detail.kind == "count_task" and isinstance(lines, list):
        say(f"Assignee: {payload.get('assignee') or '-'}    Due: {payload.get('due_date') or '-'}")
        say(f"Lines to count at {payload.get('location_code', '')}:")
        table = Table()
        for column in ("sku", "bin"):
            table.add_column(column)
        for line in lines:
            table.add_row(str(line.get("sku", "")), str(line.get("bin_code", "")))
        out().print(table)
    elif detail.kind == "transfer":
        print_transfer(payload)
    elif detail.kind == "adjustment":
        print_adjustment(payload)
    elif isinstance(lines, list) and lines:
        table = Table(title=f"Lines (supplier {payload.get('supplier_code', '')}, {payload.get('currency', '')})")
        for column in ("sku", "supplier sku", "quantity", "unit price", "price source", "destination"):
            table.add_column(column)
        for line in lines:
            table.add_row(
                str(line.get("sku", "")),
                str(line.get("supplier_sku", "")),
                str(line.get("quantity", "")),
                str(line.get("unit_price", "")),
                str(line.get("price_source", "")),
                str(line.get("location_code", "")),
            )
        out().print(table)
    elif detail.kind == "supplier_note":
        show_supplier_note(payload, drafter=drafter)
    elif detail.kind == "reconciliation":
        show_reconciliation(payload)
    else:
        say(f"Payload: {visible(detail.payload_json)}")

    say("Decisions: " + ("none yet" if not detail.approvals else ""))
    for decision in detail.approvals:
        say(f"  {visible(decision)}")
    say("Linked exceptions: " + (", ".join(str(e) for e in detail.exception_ids) or "none"))
    if detail.result:
        say(f"Result: {detail.result}")
    if detail.failure_reason:
        say(f"Failure: {visible(detail.failure_reason)}", style="red")


@drafts_app.command("approve")
def approve(
    ctx: typer.Context,
    draft_id: DraftId,
    hash_prefix: Annotated[
        str, typer.Option("--hash", help="Payload hash, or a prefix of it, that you reviewed with `drafts show`; the approval is rejected if the draft changed since.")
    ] = "",
    reason: Annotated[str, typer.Option(help="Note kept with the approval.")] = "",
    idempotency_key: IdempotencyKeyOption = None,
) -> None:
    """Approve a draft; if the matching policy rule sets auto_execute, the draft is executed at once."""
    settings = settings_of(ctx)

    async def step() -> tuple[DraftDetail, str | None]:
        async with signed_in(settings) as (app, caller):
            return await keyed(
                approvals.approve_draft(
                    app, caller, draft_id=draft_id, expected_hash=hash_prefix, reason=reason, idempotency_key=idempotency_key
                )
            )

    detail, replayed = execute(step)
    # After an automatic execution the replayed key is the derived KEY/execute; name the key that was given.
    say_replayed(idempotency_key if replayed else None, "approval")
    print_decision(detail)


@drafts_app.command("reject")
def reject(
    ctx: typer.Context,
    draft_id: DraftId,
    reason: Annotated[str, typer.Option(help="Why the draft is rejected; the drafter reads it.")],
    idempotency_key: IdempotencyKeyOption = None,
) -> None:
    """Reject a pending draft with a reason."""
    settings = settings_of(ctx)

    async def step() -> tuple[DraftDetail, str | None]:
        async with signed_in(settings) as (app, caller):
            return await keyed(
                approvals.reject_draft(app, caller, draft_id=draft_id, reason=reason, idempotency_key=idempotency_key)
            )

    detail, replayed = execute(step)
    say_replayed(replayed, "rejection")
    print_decision(detail)


@drafts_app.command("execute")
def execute_(ctx: typer.Context, draft_id: DraftId, idempotency_key: IdempotencyKeyOption = None) -> None:
    """Execute an approved draft once, through the normal inventory flow."""
    settings = settings_of(ctx)

    async def step() -> tuple[DraftDetail, str | None]:
        async with signed_in(settings) as (app, caller):
            return await keyed(approvals.execute_draft(app, caller, draft_id=draft_id, idempotency_key=idempotency_key))

    detail, replayed = execute(step)
    say_replayed(replayed, "execution")
    print_decision(detail)

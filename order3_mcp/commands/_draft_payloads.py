"""Payload printing for `order3 drafts show`: supplier note and reconciliation drafts."""

from __future__ import annotations

from typing import Any

from order3_mcp.commands._runtime import say
from order3_mcp.commands._untrusted import quoted_block, visible


def show_supplier_note(payload: dict[str, Any], *, drafter: str) -> None:
    """Print where a supplier note goes, its subject and its body, with the agent's text escaped."""
    about = f", about purchase order {payload['purchase_order_number']}" if payload.get("purchase_order_number") else ""
    say(f"Supplier note to {payload.get('supplier_code', '')} <{visible(str(payload.get('recipient', '')))}>{about}")
    say("Nothing is sent from Order3: executing the draft queues the note in the outbox (`order3 outbox list`).")
    say(f"Subject (untrusted text from {drafter}): \"{visible(str(payload.get('subject', '')))}\"")
    quoted_block("Body", str(payload.get("body", "")), origin=drafter)


def show_reconciliation(payload: dict[str, Any]) -> None:
    """Print the exception a reconciliation settles, what it was drafted on, and the step."""
    if payload.get("exception_kind") == "sync_conflict":
        show_conflict_step(payload)
        return
    source = payload.get("source", "")
    place = f"at {payload['location_code']}" if payload.get("location_code") else "across all locations"
    if payload.get("bin_code"):
        place += f" bin {payload['bin_code']}"
    say(
        f"Reconciliation of exception {payload.get('exception_id')}: {payload.get('record_kind')} from {source}, "
        f"snapshot {payload.get('snapshot_id')}"
    )
    say(f"Item {payload.get('sku')} {place}")
    say(
        f"External figure (reported): {payload.get('reported')}    Order3's figure (ours): {payload.get('ours')}    "
        f"Difference: {payload.get('difference')} (tolerance {payload.get('tolerance')})"
    )
    if payload.get("action") == "adjust_ours":
        say(
            f"Step: adjust_ours, an adjustment movement of {_signed(payload.get('adjustment', '0'))} "
            f"{place} so Order3 matches {source}"
        )
        say(f"Value change: {payload.get('value_change')} {payload.get('currency')} (unit cost {payload.get('unit_cost')})")
    else:
        say(f"Step: accept_ours, Order3's figure stands and the {source} snapshot is acknowledged; no stock moves")
    say("Execution checks both figures again; if either changed, the draft fails and nothing is written.")
    say(
        f"External record (untrusted text from {source}): id \"{visible(str(payload.get('external_id', '')))}\" "
        f"in batch \"{visible(str(payload.get('batch_id', '')))}\", received {payload.get('received_at')}"
    )


def show_conflict_step(payload: dict[str, Any]) -> None:
    """Print the conflicting record, both versions and each differing field's two values, and the step."""
    source = payload.get("source", "")
    label = f"{payload.get('record_kind')} {payload.get('key')}"
    say(
        f"Sync conflict on {label} from {source}, exception {payload.get('exception_id')}: "
        f"Order3 version {payload.get('our_version')}, {source} version {visible(str(payload.get('their_version', '')))}"
    )
    say(f"Differing fields (the values from {source} are untrusted text):")
    fields = payload.get("fields")
    for name, sides in (fields.items() if isinstance(fields, dict) else []):
        ours = visible(str(sides.get("ours", "")))
        theirs = visible(str(sides.get("theirs", "")))
        say(f"  {name}: ours '{ours}', theirs '{theirs}'")
    if payload.get("action") == "adjust_ours":
        say(f"Step: adjust_ours, write {source}'s values to Order3's {label} and record that the two agree")
        say(f"Value change: {payload.get('value_change')} (on hand × the unit cost difference; 0 for other fields)")
    else:
        say(
            f"Step: accept_ours, keep Order3's values and close the conflict; until {source} takes them, "
            "its next batch conflicts again"
        )
    say("Execution checks both versions again; if either changed, the draft fails and nothing is written.")
    say(
        f"External record (untrusted text from {source}): id \"{visible(str(payload.get('external_id', '')))}\" "
        f"in batch \"{visible(str(payload.get('batch_id', '')))}\""
    )


def _signed(amount: str) -> str:
    return amount if amount.startswith("-") else f"+{amount}"

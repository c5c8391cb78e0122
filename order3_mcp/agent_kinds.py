"""The scripted agent's drafts after the purchase order: one transfer, count task, supplier note, adjustment and reconciliation.

Each function makes the MCP calls an agent would make to ground its draft in the
workspace data, then drafts with a rationale that cites those numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mcp import Client

from order3_mcp.agent_script import AgentScriptError, call

# A report from the floor that the agent turns into an adjustment draft. It is
# scenario input, because no finder can detect damaged goods from the records.
DAMAGED_SKU = "widget.blue"
DAMAGED_LOCATION = "FACTORY"
DAMAGED_QUANTITY = Decimal(1)
# Locations looked at when the agent searches for a small stock to replenish.
MAX_LOCATIONS_SCANNED = 20
MOVEMENT_PAGE = 100
MAX_COUNT_PAGES = 10

Say = Callable[[str], None]


@dataclass(frozen=True)
class KindDrafts:
    """Ids of the drafts the agent made after the purchase order, one per kind."""

    transfer: int
    count_task: int
    supplier_note: int
    adjustment: int
    reconciliation: int


def _plain(value: Decimal) -> str:
    """Format a decimal without exponent or trailing zeros, as the tools accept it."""
    return format(value.normalize(), "f")


async def _smallest_location_stock(client: Client) -> tuple[str, str, Decimal, int]:
    """Return (location, sku, on hand, item count) for the least-stocked item of the location that stocks the fewest items.

    Only locations whose whole movement history fits one page are compared, so a
    location's stock is known exactly from its movements.
    """
    listing = await call(client, "list_locations", {"limit": MAX_LOCATIONS_SCANNED})
    best: tuple[str, str, Decimal, int] | None = None

    for location in listing["locations"]:
        if location["kind"] == "transit":
            continue
        page = await call(client, "list_movements", {"location": location["code"], "limit": MOVEMENT_PAGE})
        if page["next_cursor"] is not None or not page["movements"]:
            continue

        on_hand: dict[str, Decimal] = {}
        for movement in page["movements"]:
            quantity = Decimal(movement["quantity"])
            if movement["to_place"].split("/", 1)[0] == location["code"]:
                on_hand[movement["sku"]] = on_hand.get(movement["sku"], Decimal(0)) + quantity
            if movement["from_place"].split("/", 1)[0] == location["code"]:
                on_hand[movement["sku"]] = on_hand.get(movement["sku"], Decimal(0)) - quantity
        stocked = {sku: quantity for sku, quantity in on_hand.items() if quantity > 0}
        if not stocked:
            continue
        sku = min(sorted(stocked), key=lambda name: stocked[name])
        if best is None or len(stocked) < best[3]:
            best = (location["code"], sku, stocked[sku], len(stocked))

    if best is None:
        raise AgentScriptError(
            f"No location has stock and fewer than {MOVEMENT_PAGE} movements, so the agent found no small stock to "
            "replenish; pass --data with an export that has such a location."
        )
    return best


async def draft_transfer(client: Client, say: Say) -> int:
    """Draft a transfer that doubles the smallest stock of the location that stocks the fewest items, as far as the source allows."""
    destination, sku, destination_on_hand, item_count = await _smallest_location_stock(client)
    item = await call(client, "get_item", {"sku": sku})
    sources = [place for place in item["stock"] if place["location"] != destination]
    if not sources:
        raise AgentScriptError(f"{sku} is stocked only at {destination}, so there is nothing to transfer there.")
    source = max(sources, key=lambda place: Decimal(place["on_hand"]))
    stock = await call(client, "get_stock", {"sku": sku, "location": source["location"]})
    source_label = f"{source['location']}/{source['bin']}" if source["bin"] else source["location"]
    source_on_hand = Decimal(source["on_hand"])
    quantity = min(destination_on_hand, source_on_hand, Decimal(stock["available"]))
    share = (destination_on_hand / Decimal(item["on_hand"]) * 100).quantize(Decimal("0.1"))

    say(
        f"list_locations, list_movements, get_item {sku} ({item['name']}): {destination} stocks {item_count} items, "
        f"the fewest; it has {_plain(destination_on_hand)} {sku}, while {source_label} has {_plain(source_on_hand)}."
    )
    rationale = (
        f"{destination} stocks only {item_count} items, and its {_plain(destination_on_hand)} of {sku} ({item['name']}) "
        f"are {share} % of the {item['on_hand']} on hand. {source_label} has {_plain(source_on_hand)}, and "
        f"{source['location']} has {stock['available']} available. Moving {_plain(quantity)} brings {destination} to "
        f"{_plain(destination_on_hand + quantity)} and leaves {_plain(source_on_hand - quantity)} at {source_label}."
    )

    draft = await call(
        client,
        "draft_transfer",
        {
            "sku": sku,
            "quantity": _plain(quantity),
            "from_location": source["location"],
            "from_bin": source["bin"],
            "to_location": destination,
            "rationale": rationale,
            "idempotency_key": f"demo-transfer-{sku}-{destination}",
        },
    )
    say(f"draft_transfer: draft {draft['draft_id']}, {_plain(quantity)} × {sku} from {source_label} to {destination}; {draft['approval_owner']}")
    return draft["draft_id"]


async def _all_counts(client: Client, sku: str) -> list[dict[str, Any]]:
    """Return the item's count results, oldest first, reading at most MAX_COUNT_PAGES pages."""
    counts: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(MAX_COUNT_PAGES):
        page = await call(client, "list_counts", {"sku": sku, "cursor": cursor, "limit": 100})
        counts.extend(page["counts"])
        if page["next_cursor"] is None:
            return counts
        cursor = page["next_cursor"]
    raise AgentScriptError(f"{sku} has more than {MAX_COUNT_PAGES * 100} count results; the demo reads no more than that.")


async def draft_count_task(client: Client, say: Say, *, fallback_sku: str, incoming: str) -> int:
    """Draft a count of the first count-drift exception's item, or else of `fallback_sku` where most of it is.

    `incoming` describes the stock of `fallback_sku` on its way, such as "the 60 in purchase order draft 1".
    """
    drift = await call(client, "find_count_drift", {"limit": 20})
    live = [found for found in drift["exceptions"] if found["status"] == "open"]
    item = await call(client, "get_item", {"sku": live[0]["sku"] if live else fallback_sku})

    if live:
        location, exception_ids = live[0]["location"], [live[0]["exception_id"]]
        reason = f"It answers count-drift exception {live[0]['exception_id']}: {live[0]['reason']}"
    else:
        stocked_places = [place for place in item["stock"] if Decimal(place["on_hand"]) > 0]
        if not stocked_places:
            raise AgentScriptError(f"{fallback_sku} has no stock to count and there is no count-drift exception.")
        location, exception_ids = max(stocked_places, key=lambda place: Decimal(place["on_hand"]))["location"], []
        reason = (
            f"No count-drift exception is open, so the count checks {item['sku']} before {incoming} arrive."
        )

    places = [place for place in item["stock"] if place["location"] == location and Decimal(place["on_hand"]) > 0]
    counts = await _all_counts(client, item["sku"])
    last = counts[-1] if counts else None
    last_text = f"last counted {last['counted_quantity']} on {last['counted_at'][:10]}" if last else "never counted"
    on_hand = sum((Decimal(place["on_hand"]) for place in places), Decimal(0))
    place_count = f"{len(places)} place" if len(places) == 1 else f"{len(places)} places"

    say(
        f"find_count_drift: {len(drift['exceptions'])} exceptions; list_counts {item['sku']}: {len(counts)} counts, "
        f"{last_text}."
    )
    rationale = (
        f"{item['sku']} ({item['name']}) has {_plain(on_hand)} on hand at {location} in "
        f"{place_count}, {item['on_hand']} in all; it was {last_text}. {reason}"
    )

    draft = await call(
        client,
        "draft_count_task",
        {
            "location": location,
            "lines": [{"sku": item["sku"], "bin": place["bin"]} for place in places],
            "rationale": rationale,
            "exception_ids": exception_ids,
            "idempotency_key": f"demo-count-{item['sku']}-{location}",
        },
    )
    say(f"draft_count_task: draft {draft['draft_id']}, {item['sku']} at {location} ({place_count}); {draft['approval_owner']}")
    return draft["draft_id"]


async def draft_supplier_note(client: Client, say: Say, *, delays: list[dict[str, Any]]) -> int:
    """Draft a note to the supplier of the first late purchase order, linked to that order's delay exceptions."""
    late = [found for found in delays if found["status"] == "open" and found["purchase_order"]]
    if not late:
        raise AgentScriptError("find_supplier_delays returned no open exception with a purchase order, so no note is needed.")

    first = late[0]
    lines = [found for found in late if found["purchase_order"] == first["purchase_order"]]
    order = await call(client, "get_purchase_order", {"number": first["purchase_order"]})
    outbox = await call(client, "list_outbox", {"supplier": first["supplier"]})
    open_lines = [line for line in order["lines"] if Decimal(line["open"]) > 0]
    listed = "; ".join(f"line {line['line']}: {line['sku']}, {line['open']} of {line['ordered']} open" for line in open_lines)
    days_late = first["evidence"].get("days_late", "")

    say(
        f"get_purchase_order {order['number']}: {len(open_lines)} open lines, expected {order['expected_date']}; "
        f"list_outbox {first['supplier']}: {len(outbox['messages'])} notes sent before."
    )
    body = (
        f"Hello,\n\nour purchase order {order['number']} was expected on {order['expected_date']} and has not arrived. "
        f"Still open: {listed}.\nPlease confirm a delivery date for these lines, or tell us if any of them cannot be "
        "delivered.\n\nThank you."
    )
    rationale = (
        f"{len(lines)} supplier-delay exceptions are open for {order['number']} from {first['supplier']}: {first['reason']} "
        f"{len(open_lines)} lines are still open ({listed}). The outbox holds {len(outbox['messages'])} earlier notes to "
        f"{first['supplier']}, so this is the first reminder."
    )

    draft = await call(
        client,
        "draft_supplier_note",
        {
            "supplier": first["supplier"],
            "subject": f"Delivery date for purchase order {order['number']}",
            "body": body,
            "purchase_order": order["number"],
            "rationale": rationale,
            "exception_ids": [found["exception_id"] for found in lines],
            "idempotency_key": f"demo-note-{order['number']}",
        },
    )
    late_text = f", {days_late} days late" if days_late else ""
    say(
        f"draft_supplier_note: draft {draft['draft_id']} to {first['supplier']} about {order['number']}{late_text}, "
        f"linked to {len(lines)} exceptions; {draft['approval_owner']}"
    )
    return draft["draft_id"]


async def draft_adjustment(client: Client, say: Say) -> int:
    """Draft the write-off of the damaged units the floor reported."""
    stock = await call(client, "get_stock", {"sku": DAMAGED_SKU, "location": DAMAGED_LOCATION})
    at_location = [place for place in stock["places"] if place["location"] == DAMAGED_LOCATION and not place["bin"]]
    outside_bins = Decimal(at_location[0]["on_hand"]) if at_location else Decimal(0)
    if outside_bins < DAMAGED_QUANTITY:
        raise AgentScriptError(
            f"{DAMAGED_SKU} has {outside_bins} on hand at {DAMAGED_LOCATION} outside bins, fewer than the "
            f"{DAMAGED_QUANTITY} reported damaged; the demo's damage report does not fit this data."
        )

    say(f"get_stock {DAMAGED_SKU} at {DAMAGED_LOCATION}: {outside_bins} on hand outside bins, {stock['on_hand']} at the location.")
    rationale = (
        f"The floor reported {DAMAGED_QUANTITY} {DAMAGED_SKU} damaged at {DAMAGED_LOCATION}. {DAMAGED_LOCATION} has "
        f"{_plain(outside_bins)} outside bins ({stock['on_hand']} at the location), and writing off {DAMAGED_QUANTITY} "
        f"leaves {_plain(outside_bins - DAMAGED_QUANTITY)} there."
    )

    draft = await call(
        client,
        "draft_adjustment",
        {
            "sku": DAMAGED_SKU,
            "location": DAMAGED_LOCATION,
            "quantity": _plain(-DAMAGED_QUANTITY),
            "reason_code": "damaged",
            "rationale": rationale,
            "idempotency_key": f"demo-damaged-{DAMAGED_SKU}",
        },
    )
    say(
        f"draft_adjustment: draft {draft['draft_id']}, -{DAMAGED_QUANTITY} {DAMAGED_SKU} damaged, value change "
        f"{draft['estimated_value']} {draft['currency']}; {draft['approval_owner']}"
    )
    return draft["draft_id"]


async def draft_reconciliation(client: Client, say: Say) -> int:
    """Find the first open mismatch and draft a stock adjustment to the channel's figure."""
    page = await call(client, "find_mismatches", {"limit": 20})
    live = [found for found in page["exceptions"] if found["status"] == "open"]
    if not live:
        raise AgentScriptError("find_mismatches returned no open mismatch; the integration's snapshot did not disagree with Order3.")

    found = live[0]
    evidence = found["evidence"]
    say(f"find_mismatches: {len(page['exceptions'])} exceptions; exception {found['exception_id']}: {found['reason']}")
    rationale = (
        f"Answers mismatch exception {found['exception_id']}: {evidence['source']} reports {evidence['reported']} available "
        f"for {found['sku']} at {found['location']}, Order3 has {evidence['ours']} ({evidence['on_hand']} on hand − "
        f"{evidence['reserved']} reserved), a difference of {evidence['difference']}. The proposal moves Order3's stock to "
        f"the channel's figure, and the approver decides whether the channel or Order3 is right."
    )

    draft = await call(
        client,
        "draft_reconciliation",
        {
            "exception_id": found["exception_id"],
            "action": "adjust_ours",
            "reported": evidence["reported"],
            "ours": evidence["ours"],
            "rationale": rationale,
            "idempotency_key": f"demo-reconcile-{found['exception_id']}",
        },
    )
    say(
        f"draft_reconciliation: draft {draft['draft_id']}, adjust_ours by {evidence['difference']}, value change "
        f"{draft['estimated_value']} {draft['currency']}; {draft['approval_owner']}"
    )
    return draft["draft_id"]

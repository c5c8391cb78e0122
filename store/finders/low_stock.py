"""The low-stock finder: reorder rules whose stock position is at or below the reorder point.

stock position = available + on order + in open drafts, where
- available = on hand − active reservations (at the rule's location, or over
  every location for a workspace-wide rule, whose `location_id` is NULL);
- on order = ordered − received over lines of issued or partially received POs
  whose destination is the rule's location (a workspace-wide rule counts every
  open line of the item, including lines with no destination);
- in open drafts = line quantities of purchase_order drafts pending approval or
  approved, matched the same way by location code.

Rules of inactive items are skipped. The suggested quantity tops the position
up to the target level (max level, else reorder point + reorder quantity, else
twice the reorder point), rounded up to whole packs of the chosen supplier item
and to its minimum order quantity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from store.finders.findings import (
    Finding,
    check_aware,
    optional_quantity,
    pick_owner,
    quantity,
    text_or_none,
)
from store.finders.open_drafts import DraftQuantity, open_draft_quantities
from store.models import OPEN_PO_STATUSES

# Everything below works in raw millionths (see store.types) so SUM() stays exact.
# The correlated subqueries each probe an index on (item, location) or
# (workspace, item); MATERIALIZED keeps SQLite from running them twice, once for
# the filter and once for the output. On order only raises the stock position,
# so it is summed just for rules whose available is already at or below the
# reorder point. Only rules at or below the reorder point leave the database,
# so the rows returned grow with the findings, not the catalogue.
_LOW_STOCK_SQL = """
WITH rule_available AS MATERIALIZED (
    SELECT r.id AS rule_id, r.item_id, r.location_id, r.reorder_point, r.reorder_quantity,
           r.max_level, r.safety_stock, r.preferred_supplier_id,
           COALESCE((SELECT SUM(s.on_hand) FROM stock_level AS s
                     WHERE s.workspace_id = r.workspace_id AND s.item_id = r.item_id
                       AND (r.location_id IS NULL OR s.location_id = r.location_id)), 0) AS on_hand,
           COALESCE((SELECT SUM(v.quantity) FROM reservation AS v
                     WHERE v.workspace_id = r.workspace_id AND v.item_id = r.item_id AND v.status = 'active'
                       AND (r.location_id IS NULL OR v.location_id = r.location_id)), 0) AS reserved
    FROM reorder_rule AS r
    JOIN item AS i ON i.id = r.item_id
    WHERE r.workspace_id = :workspace_id AND i.active {location_clause}
),
rule_position AS MATERIALIZED (
    SELECT a.*,
           COALESCE((SELECT SUM(l.quantity_ordered - l.quantity_received)
                     FROM purchase_order_line AS l
                     JOIN purchase_order AS p ON p.id = l.purchase_order_id
                     WHERE l.workspace_id = :workspace_id AND l.item_id = a.item_id
                       AND p.status IN :open_po_statuses
                       AND l.quantity_received < l.quantity_ordered
                       AND (a.location_id IS NULL OR l.destination_location_id = a.location_id)), 0) AS on_order
    FROM rule_available AS a
    WHERE a.on_hand - a.reserved <= a.reorder_point
),
low AS MATERIALIZED (
    SELECT * FROM rule_position WHERE on_hand - reserved + on_order <= reorder_point
),
ranked AS (
    SELECT low.rule_id, si.id AS supplier_item_id, si.supplier_id, si.pack_size, si.min_order_qty,
           si.unit_price, si.currency, si.lead_time_days, si.preferred,
           ROW_NUMBER() OVER (
               PARTITION BY low.rule_id
               ORDER BY si.preferred DESC, CASE WHEN si.unit_price IS NULL THEN 1 ELSE 0 END, si.unit_price, si.id
           ) AS choice
    FROM low
    JOIN supplier_item AS si ON si.workspace_id = :workspace_id AND si.item_id = low.item_id
    JOIN supplier AS s ON s.id = si.supplier_id
    WHERE (low.preferred_supplier_id IS NULL AND s.active) OR si.supplier_id = low.preferred_supplier_id
)
SELECT low.rule_id, low.item_id, low.location_id, low.reorder_point, low.reorder_quantity, low.max_level,
       low.safety_stock, low.preferred_supplier_id, low.on_hand, low.reserved, low.on_order,
       i.sku, i.owner AS item_owner, loc.code AS location_code,
       ranked.supplier_item_id, ranked.pack_size, ranked.min_order_qty, ranked.unit_price,
       ranked.currency AS price_currency, ranked.lead_time_days AS item_lead_time_days,
       ranked.preferred AS marked_preferred,
       sup.id AS supplier_id, sup.code AS supplier_code, sup.owner AS supplier_owner,
       sup.lead_time_days AS supplier_lead_time_days
FROM low
JOIN item AS i ON i.id = low.item_id
LEFT JOIN location AS loc ON loc.id = low.location_id
LEFT JOIN ranked ON ranked.rule_id = low.rule_id AND ranked.choice = 1
LEFT JOIN supplier AS sup ON sup.id = COALESCE(low.preferred_supplier_id, ranked.supplier_id)
ORDER BY low.item_id, COALESCE(low.location_id, 0)
"""


@dataclass(frozen=True)
class OrderSuggestion:
    """A suggested order quantity and how it was rounded."""

    quantity: Decimal
    packs: Decimal | None
    notes: tuple[str, ...]


def _parse_pack_size(raw: Any) -> Decimal | None:
    if raw is None:
        return None
    try:
        pack_size = Decimal(str(raw))
    except InvalidOperation:
        return None
    return pack_size if pack_size.is_finite() and pack_size > 0 else None


def _round_up_to_packs(amount: Decimal, pack_size: Decimal) -> Decimal:
    return (amount / pack_size).to_integral_value(rounding=ROUND_CEILING)


def suggest_order_quantity(*, need: Decimal, pack_size: Decimal | None, min_order_qty: Decimal | None) -> OrderSuggestion:
    """Round a needed quantity up to whole packs and to the minimum order quantity.

    A minimum order quantity that is not a whole number of packs is itself rounded
    up to packs (MOQ 25 in packs of 10 orders 30). Without a pack size no pack
    rounding happens, and a note records that instead of assuming a pack of 1.
    """
    notes: list[str] = []
    if need <= 0:
        notes.append("The target level is at or below the stock position; check the reorder rule's max level.")
        return OrderSuggestion(quantity=Decimal(0), packs=None, notes=tuple(notes))

    minimum = min_order_qty if min_order_qty is not None and min_order_qty > 0 else Decimal(0)
    if pack_size is None:
        notes.append("The supplier item has no pack size, so the quantity is not rounded to packs.")
        return OrderSuggestion(quantity=max(need, minimum), packs=None, notes=tuple(notes))

    packs = max(_round_up_to_packs(need, pack_size), _round_up_to_packs(minimum, pack_size))
    if minimum and minimum % pack_size != 0:
        notes.append(f"The minimum order quantity {minimum} is not a whole number of packs of {pack_size}; rounded up.")
    return OrderSuggestion(quantity=packs * pack_size, packs=packs, notes=tuple(notes))


def _target_level(row: Any) -> tuple[Decimal, str]:
    reorder_point = quantity(row.reorder_point)
    if row.max_level is not None:
        return quantity(row.max_level), "max_level"
    if row.reorder_quantity is not None:
        return reorder_point + quantity(row.reorder_quantity), "reorder_point + reorder_quantity"
    return 2 * reorder_point, "2 × reorder_point"


def _supplier_choice(row: Any) -> str | None:
    if row.supplier_id is None:
        return None
    if row.preferred_supplier_id is not None:
        return "reorder rule"
    if row.marked_preferred:
        return "preferred supplier item"
    return "cheapest supplier item"


async def find_low_stock(
    session: AsyncSession, *, workspace_id: int, location_id: int | None = None, now: datetime
) -> list[Finding]:
    """Find reorder rules whose stock position is at or below the reorder point.

    With `location_id`, only rules at that location are checked and workspace-wide
    rules are left out. `now` is recorded in the evidence as the time of the check.

    Raises:
        InvalidInputError: If `now` has no timezone.
    """
    check_aware(now)
    location_clause = "AND r.location_id = :location_id" if location_id is not None else ""
    statement = text(_LOW_STOCK_SQL.format(location_clause=location_clause)).bindparams(
        bindparam("open_po_statuses", expanding=True)
    )
    params: dict[str, Any] = {"workspace_id": workspace_id, "open_po_statuses": list(OPEN_PO_STATUSES)}
    if location_id is not None:
        params["location_id"] = location_id
    rows = (await session.execute(statement, params)).all()
    if not rows:
        return []

    drafts = await open_draft_quantities(session, workspace_id=workspace_id)
    findings: list[Finding] = []
    for row in rows:
        finding = _low_stock_finding(row, drafts=drafts.at(item_id=row.item_id, location_id=row.location_id), now=now)
        if finding is not None:
            findings.append(finding)
    return findings


def _low_stock_finding(row: Any, *, drafts: DraftQuantity, now: datetime) -> Finding | None:
    reorder_point = quantity(row.reorder_point)
    on_hand = quantity(row.on_hand)
    reserved = quantity(row.reserved)
    available = on_hand - reserved
    on_order = quantity(row.on_order)
    position = available + drafts.quantity + on_order
    # SQL filtered on available + on order; an open draft can still lift the position above the point.
    if position > reorder_point:
        return None

    target, target_source = _target_level(row)
    need = target - position
    pack_size = _parse_pack_size(row.pack_size)
    min_order_qty = optional_quantity(row.min_order_qty)
    notes: list[str] = []
    if row.supplier_item_id is None:
        suggestion = OrderSuggestion(quantity=max(need, Decimal(0)), packs=None, notes=())
        if row.supplier_code:
            notes.append(
                f"Supplier {row.supplier_code} has no supplier item for {row.sku}, "
                "so pack size and minimum order quantity are unknown."
            )
        else:
            notes.append(f"No supplier sells {row.sku}, so pack size and minimum order quantity are unknown.")
    else:
        if row.pack_size is not None and pack_size is None:
            notes.append(f"The stored pack size {row.pack_size!r} is not a positive number and was ignored.")
        suggestion = suggest_order_quantity(need=need, pack_size=pack_size, min_order_qty=min_order_qty)
    notes.extend(suggestion.notes)

    lead_time = row.item_lead_time_days if row.item_lead_time_days is not None else row.supplier_lead_time_days
    location_code = row.location_code or ""
    where = f"at {location_code}" if row.location_id is not None else "across all locations"
    supplier_part = f" from {row.supplier_code}" if row.supplier_code else ", but no supplier is on file"
    reason = (
        f"{row.sku} {where} has {available} available, {on_order} on order and {drafts.quantity} in open drafts, "
        f"at or below the reorder point of {reorder_point}, so {suggestion.quantity} should be ordered{supplier_part}."
    )
    evidence: dict[str, Any] = {
        "as_of": now.isoformat(),
        "rule_id": row.rule_id,
        "scope": "location" if row.location_id is not None else "workspace",
        "on_hand": str(on_hand),
        "reserved": str(reserved),
        "available": str(available),
        "on_order": str(on_order),
        "in_open_drafts": str(drafts.quantity),
        "open_draft_ids": sorted(drafts.draft_ids),
        "stock_position": str(position),
        "reorder_point": str(reorder_point),
        "safety_stock": str(quantity(row.safety_stock)),
        "reorder_quantity": text_or_none(optional_quantity(row.reorder_quantity)),
        "max_level": text_or_none(optional_quantity(row.max_level)),
        "target_level": str(target),
        "target_source": target_source,
        "need": str(need),
        "suggested_quantity": str(suggestion.quantity),
        "packs": text_or_none(suggestion.packs),
        "pack_size": text_or_none(pack_size),
        "min_order_qty": text_or_none(min_order_qty),
        "supplier_item_id": row.supplier_item_id,
        "supplier_choice": _supplier_choice(row),
        "unit_price": text_or_none(optional_quantity(row.unit_price)),
        "currency": row.price_currency,
        "lead_time_days": lead_time,
        "notes": notes,
    }
    location_part = str(row.location_id) if row.location_id is not None else "*"
    return Finding(
        kind="low_stock",
        fingerprint=f"low_stock:item={row.item_id}:location={location_part}",
        reason=reason,
        suggested_draft_kind="purchase_order",
        evidence=evidence,
        item_id=row.item_id,
        sku=row.sku,
        location_id=row.location_id,
        location_code=location_code,
        supplier_id=row.supplier_id,
        supplier_code=row.supplier_code or "",
        owner=pick_owner(row.item_owner, row.supplier_owner),
    )

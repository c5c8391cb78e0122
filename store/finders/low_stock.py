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

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from store.dialect import dialect_of, ids_parameter, in_ids_sql
from store.finders.findings import (
    Finding,
    QuantityMemo,
    build_finding,
    check_aware,
    check_scope,
    collection_paused,
    optional_quantity,
    pick_owner,
)
from store.finders.open_drafts import OpenDraftQuantities, open_draft_quantities
from store.models import OPEN_PO_STATUSES

# Everything below works in raw millionths (see store.types) so SUM() stays exact.
# Location rules join per-(item, location) totals of stock, active reservations
# and open lines, grouped in one pass over the three tables. The few
# workspace-wide rules (location_id NULL) sum every location through correlated
# subqueries on the (workspace, item) indexes.
# On order only raises the stock position, so the filter on available + on
# order keeps every rule that can be low once open drafts are added in Python.
# The supplier item is picked per low rule: the rule's preferred supplier,
# else the item marked preferred, else the cheapest, then the lowest id.
# The column order is fixed because the finder unpacks each row as a tuple.
# A run scoped to some items adds `item_id IN` conditions to every table read
# (the `*_items` slots), so it reads those items' rows through the item indexes.
_ZERO = Decimal(0)

_LOW_STOCK_SQL = """
WITH place AS MATERIALIZED (
    SELECT item_id, location_id,
           SUM(on_hand) AS on_hand, SUM(reserved) AS reserved, SUM(on_order) AS on_order
    FROM (
        SELECT item_id, location_id, on_hand, 0 AS reserved, 0 AS on_order
        FROM stock_level
        WHERE workspace_id = :workspace_id {stock_location}{stock_items}
        UNION ALL
        SELECT item_id, location_id, 0, quantity, 0
        FROM reservation
        WHERE workspace_id = :workspace_id AND status = 'active' {stock_location}{stock_items}
        UNION ALL
        SELECT l.item_id, l.destination_location_id, 0, 0, l.quantity_ordered - l.quantity_received
        FROM purchase_order_line AS l
        JOIN purchase_order AS p ON p.id = l.purchase_order_id
        WHERE l.workspace_id = :workspace_id AND p.status IN :open_po_statuses
          AND l.quantity_received < l.quantity_ordered {order_location}{order_items}
    ) AS place_line
    GROUP BY item_id, location_id
),
{workspace_position}low AS MATERIALIZED (
    SELECT r.id AS rule_id, r.item_id, r.location_id, r.reorder_point, r.reorder_quantity, r.max_level,
           r.safety_stock, r.preferred_supplier_id,
           COALESCE(t.on_hand, 0) AS on_hand, COALESCE(t.reserved, 0) AS reserved,
           COALESCE(t.on_order, 0) AS on_order
    FROM reorder_rule AS r
    JOIN item AS i ON i.id = r.item_id
    LEFT JOIN place AS t ON t.item_id = r.item_id AND t.location_id = r.location_id
    WHERE r.workspace_id = :workspace_id AND i.active AND r.location_id IS NOT NULL {rule_location}{rule_items}
      AND COALESCE(t.on_hand, 0) - COALESCE(t.reserved, 0) + COALESCE(t.on_order, 0) <= r.reorder_point
    {workspace_rules}
),
chosen AS MATERIALIZED (
    SELECT low.*,
           (SELECT si.id
            FROM supplier_item AS si
            JOIN supplier AS s ON s.id = si.supplier_id
            WHERE si.workspace_id = :workspace_id AND si.item_id = low.item_id
              AND ((low.preferred_supplier_id IS NULL AND s.active) OR si.supplier_id = low.preferred_supplier_id)
            ORDER BY si.preferred DESC, CASE WHEN si.unit_price IS NULL THEN 1 ELSE 0 END, si.unit_price, si.id
            LIMIT 1) AS supplier_item_id
    FROM low
)
SELECT c.rule_id, c.item_id, c.location_id, c.reorder_point, c.reorder_quantity, c.max_level,
       c.safety_stock, c.preferred_supplier_id, c.on_hand, c.reserved, c.on_order,
       i.sku, i.owner, loc.code,
       c.supplier_item_id, si.pack_size, si.min_order_qty, si.unit_price, si.currency, si.lead_time_days,
       si.preferred, sup.id, sup.code, sup.owner, sup.lead_time_days
FROM chosen AS c
JOIN item AS i ON i.id = c.item_id
LEFT JOIN location AS loc ON loc.id = c.location_id
LEFT JOIN supplier_item AS si ON si.id = c.supplier_item_id
LEFT JOIN supplier AS sup ON sup.id = COALESCE(c.preferred_supplier_id, si.supplier_id)
ORDER BY c.item_id, COALESCE(c.location_id, 0)
"""

_WORKSPACE_POSITION_SQL = """workspace_position AS MATERIALIZED (
    SELECT r.id AS rule_id, r.item_id, r.reorder_point, r.reorder_quantity, r.max_level, r.safety_stock,
           r.preferred_supplier_id,
           COALESCE((SELECT SUM(s.on_hand) FROM stock_level AS s
                     WHERE s.workspace_id = :workspace_id AND s.item_id = r.item_id), 0) AS on_hand,
           COALESCE((SELECT SUM(v.quantity) FROM reservation AS v
                     WHERE v.workspace_id = :workspace_id AND v.item_id = r.item_id
                       AND v.status = 'active'), 0) AS reserved,
           COALESCE((SELECT SUM(l.quantity_ordered - l.quantity_received)
                     FROM purchase_order_line AS l
                     JOIN purchase_order AS p ON p.id = l.purchase_order_id
                     WHERE l.workspace_id = :workspace_id AND l.item_id = r.item_id
                       AND p.status IN :open_po_statuses
                       AND l.quantity_received < l.quantity_ordered), 0) AS on_order
    FROM reorder_rule AS r
    JOIN item AS i ON i.id = r.item_id
    WHERE r.workspace_id = :workspace_id AND i.active AND r.location_id IS NULL{rule_items}
),
"""

_WORKSPACE_RULES_SQL = """
    UNION ALL
    SELECT w.rule_id, w.item_id, NULL, w.reorder_point, w.reorder_quantity, w.max_level, w.safety_stock,
           w.preferred_supplier_id, w.on_hand, w.reserved, w.on_order
    FROM workspace_position AS w
    WHERE w.on_hand - w.reserved + w.on_order <= w.reorder_point
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


_NOTE_AT_TARGET = "The target level is at or below the stock position; check the reorder rule's max level."
_NOTE_NO_PACK_SIZE = "The supplier item has no pack size, so the quantity is not rounded to packs."

# The minimum order quantity, how many packs it takes (None without a pack size),
# and the note to add when it is not a whole number of packs.
_MinimumTerms = tuple[Decimal, Decimal | None, str | None]


def _minimum_terms(min_order_qty: Decimal | None, pack_size: Decimal | None) -> _MinimumTerms:
    minimum = min_order_qty if min_order_qty is not None and min_order_qty > 0 else _ZERO
    if pack_size is None:
        return minimum, None, None
    note = None
    if minimum and minimum % pack_size != 0:
        note = f"The minimum order quantity {minimum} is not a whole number of packs of {pack_size}; rounded up."
    return minimum, _round_up_to_packs(minimum, pack_size), note


def _suggest(
    need: Decimal, pack_size: Decimal | None, terms: _MinimumTerms
) -> tuple[Decimal, Decimal | None, tuple[str, ...]]:
    minimum, minimum_packs, note = terms
    if need <= 0:
        return _ZERO, None, (_NOTE_AT_TARGET,)
    if pack_size is None or minimum_packs is None:
        return max(need, minimum), None, (_NOTE_NO_PACK_SIZE,)
    packs = max(_round_up_to_packs(need, pack_size), minimum_packs)
    return packs * pack_size, packs, (note,) if note else ()


def suggest_order_quantity(*, need: Decimal, pack_size: Decimal | None, min_order_qty: Decimal | None) -> OrderSuggestion:
    """Round a needed quantity up to whole packs and to the minimum order quantity.

    A minimum order quantity that is not a whole number of packs is itself rounded
    up to packs (MOQ 25 in packs of 10 orders 30). Without a pack size no pack
    rounding happens, and a note records that instead of assuming a pack of 1.
    """
    suggested, packs, notes = _suggest(need, pack_size, _minimum_terms(min_order_qty, pack_size))
    return OrderSuggestion(quantity=suggested, packs=packs, notes=notes)


async def find_low_stock(
    session: AsyncSession,
    *,
    workspace_id: int,
    location_id: int | None = None,
    now: datetime,
    item_ids: Collection[int] | None = None,
) -> list[Finding]:
    """Find reorder rules whose stock position is at or below the reorder point.

    With `location_id`, only rules at that location are checked and workspace-wide
    rules are left out. With `item_ids`, only the rules of those items are
    checked, workspace-wide ones included, and each finding is the one a run
    without `item_ids` returns. `now` is recorded in the evidence as the time of
    the check.

    Raises:
        InvalidInputError: If `now` has no timezone or `item_ids` contains anything but integer ids.
    """
    check_aware(now)
    scope = check_scope("item_ids", item_ids)
    if scope == []:
        return []
    if scope is None:
        item_clauses = {"stock_items": "", "order_items": "", "rule_items": ""}
    else:
        dialect = dialect_of(session)
        item_clauses = {
            "stock_items": f" AND {in_ids_sql(dialect, 'item_id', 'item_ids')}",
            "order_items": f" AND {in_ids_sql(dialect, 'l.item_id', 'item_ids')}",
            "rule_items": f" AND {in_ids_sql(dialect, 'r.item_id', 'item_ids')}",
        }
    if location_id is None:
        clauses = {
            "stock_location": "",
            "order_location": "",
            "rule_location": "",
            "workspace_position": _WORKSPACE_POSITION_SQL.format(rule_items=item_clauses["rule_items"]),
            "workspace_rules": _WORKSPACE_RULES_SQL,
        }
    else:
        clauses = {
            "stock_location": "AND location_id = :location_id",
            "order_location": "AND l.destination_location_id = :location_id",
            "rule_location": "AND r.location_id = :location_id",
            "workspace_position": "",
            "workspace_rules": "",
        }
    statement = text(_LOW_STOCK_SQL.format(**clauses, **item_clauses)).bindparams(
        bindparam("open_po_statuses", expanding=True)
    )
    params: dict[str, Any] = {"workspace_id": workspace_id, "open_po_statuses": list(OPEN_PO_STATUSES)}
    if location_id is not None:
        params["location_id"] = location_id
    if scope is not None:
        params["item_ids"] = ids_parameter(dialect_of(session), scope)
    result = await session.execute(statement, params)
    drafts = await open_draft_quantities(session, workspace_id=workspace_id)

    builder = _LowStockFindings(drafts=drafts, now=now)
    findings: list[Finding] = []
    with collection_paused():
        for row in result.all():
            finding = builder.finding(row)
            if finding is not None:
                findings.append(finding)
    return findings


class _LowStockFindings:
    """Low-stock finding builder for one run, which caches the conversions that repeat across rows."""

    def __init__(self, *, drafts: OpenDraftQuantities, now: datetime) -> None:
        self.by_location = drafts.by_location
        self.by_item = drafts.by_item
        self.as_of = now.isoformat()
        self.quantities = QuantityMemo()
        self.supplier_terms: dict[tuple[Any, Any], tuple[Decimal | None, Decimal | None, _MinimumTerms]] = {}

    def terms(self, pack_size_raw: Any, min_order_qty_raw: Any) -> tuple[Decimal | None, Decimal | None, _MinimumTerms]:
        """Return the pack size, the minimum order quantity and its rounding, parsed once per distinct pair."""
        key = (pack_size_raw, min_order_qty_raw)
        try:
            return self.supplier_terms[key]
        except KeyError:
            pack_size = _parse_pack_size(pack_size_raw)
            min_order_qty = optional_quantity(min_order_qty_raw)
            parsed = self.supplier_terms[key] = (pack_size, min_order_qty, _minimum_terms(min_order_qty, pack_size))
            return parsed

    def finding(self, row: Any) -> Finding | None:
        (
            rule_id, item_id, location_id, reorder_point_raw, reorder_quantity_raw, max_level_raw, safety_stock_raw,
            preferred_supplier_id, on_hand_raw, reserved_raw, on_order_raw, sku, item_owner, location_code,
            supplier_item_id, pack_size_raw, min_order_qty_raw, unit_price_raw, price_currency, item_lead_time_days,
            marked_preferred, supplier_id, supplier_code, supplier_owner, supplier_lead_time_days,
        ) = row
        if location_id is None:
            drafted = self.by_item.get(item_id)
        else:
            drafted = self.by_location.get((item_id, location_id))
        in_drafts = drafted.quantity if drafted is not None else _ZERO

        quantities = self.quantities
        reorder_point = quantities[reorder_point_raw]
        on_hand = quantities[on_hand_raw]
        reserved = quantities[reserved_raw]
        available = on_hand - reserved
        on_order = quantities[on_order_raw]
        position = available + in_drafts + on_order
        # SQL filtered on available + on order; an open draft can still lift the position above the point.
        if position > reorder_point:
            return None

        reorder_quantity = None if reorder_quantity_raw is None else quantities[reorder_quantity_raw]
        max_level = None if max_level_raw is None else quantities[max_level_raw]
        if max_level is not None:
            target, target_source = max_level, "max_level"
        elif reorder_quantity is not None:
            target, target_source = reorder_point + reorder_quantity, "reorder_point + reorder_quantity"
        else:
            target, target_source = 2 * reorder_point, "2 × reorder_point"
        need = target - position
        pack_size, min_order_qty, terms = self.terms(pack_size_raw, min_order_qty_raw)
        notes: list[str] = []
        if supplier_item_id is None:
            suggested, packs, suggestion_notes = max(need, _ZERO), None, ()
            if supplier_code:
                notes.append(
                    f"Supplier {supplier_code} has no supplier item for {sku}, "
                    "so pack size and minimum order quantity are unknown."
                )
            else:
                notes.append(f"No supplier sells {sku}, so pack size and minimum order quantity are unknown.")
        else:
            if pack_size_raw is not None and pack_size is None:
                notes.append(f"The stored pack size {pack_size_raw!r} is not a positive number and was ignored.")
            suggested, packs, suggestion_notes = _suggest(need, pack_size, terms)
        notes.extend(suggestion_notes)

        if supplier_id is None:
            supplier_choice = None
        elif preferred_supplier_id is not None:
            supplier_choice = "reorder rule"
        elif marked_preferred:
            supplier_choice = "preferred supplier item"
        else:
            supplier_choice = "cheapest supplier item"
        available_text = str(available)
        on_order_text = str(on_order)
        in_drafts_text = str(in_drafts)
        reorder_point_text = str(reorder_point)
        suggested_text = str(suggested)
        location_code = location_code or ""
        where = f"at {location_code}" if location_id is not None else "across all locations"
        supplier_part = f" from {supplier_code}" if supplier_code else ", but no supplier is on file"
        reason = (
            f"{sku} {where} has {available_text} available, {on_order_text} on order and {in_drafts_text} "
            f"in open drafts, at or below the reorder point of {reorder_point_text}, "
            f"so {suggested_text} should be ordered{supplier_part}."
        )
        evidence: dict[str, Any] = {
            "as_of": self.as_of,
            "rule_id": rule_id,
            "scope": "location" if location_id is not None else "workspace",
            "on_hand": str(on_hand),
            "reserved": str(reserved),
            "available": available_text,
            "on_order": on_order_text,
            "in_open_drafts": in_drafts_text,
            "open_draft_ids": sorted(drafted.draft_ids) if drafted is not None else [],
            "stock_position": str(position),
            "reorder_point": reorder_point_text,
            "safety_stock": str(quantities[safety_stock_raw]),
            "reorder_quantity": None if reorder_quantity is None else str(reorder_quantity),
            "max_level": None if max_level is None else str(max_level),
            "target_level": str(target),
            "target_source": target_source,
            "need": str(need),
            "suggested_quantity": suggested_text,
            "packs": None if packs is None else str(packs),
            "pack_size": None if pack_size is None else str(pack_size),
            "min_order_qty": None if min_order_qty is None else str(min_order_qty),
            "supplier_item_id": supplier_item_id,
            "supplier_choice": supplier_choice,
            "unit_price": None if unit_price_raw is None else str(quantities[unit_price_raw]),
            "currency": price_currency,
            "lead_time_days": item_lead_time_days if item_lead_time_days is not None else supplier_lead_time_days,
            "notes": notes,
        }
        return build_finding(
            {
                "kind": "low_stock",
                "fingerprint": f"low_stock:item={item_id}:location={location_id if location_id is not None else '*'}",
                "reason": reason,
                "suggested_draft_kind": "purchase_order",
                "evidence": evidence,
                "item_id": item_id,
                "sku": sku,
                "location_id": location_id,
                "location_code": location_code,
                "supplier_id": supplier_id,
                "supplier_code": supplier_code or "",
                "purchase_order_id": None,
                "purchase_order_number": "",
                "purchase_order_line_id": None,
                "owner": pick_owner(item_owner, supplier_owner),
            }
        )

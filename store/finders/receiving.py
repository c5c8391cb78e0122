"""The receiving-variance finder: lines of finished POs received short or over beyond tolerance.

Only lines of POs whose status is received or closed are checked: a line of an
open PO may still be receiving, and its lateness is the supplier-delay finder's
business. With ordered quantity q and tolerances in percent,
- short when received < q × (1 − short_pct / 100);
- over when received > q × (1 + over_pct / 100).
Receiving exactly at the tolerance boundary is not a finding. Both directions
are kind `short_receiving`; their fingerprints differ, so a line that turns
from short to over resolves one record and opens another.
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal
from operator import itemgetter
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from store.dialect import dialect_of, ids_parameter, in_ids_sql
from store.finders.findings import (
    Finding,
    QuantityMemo,
    build_finding,
    check_scope,
    check_tolerance,
    collection_paused,
    pick_owner,
    utc_text,
)

# The column order is fixed because the finder unpacks each row as a tuple.
# Rows are put in line order in Python: with an ORDER BY, SQLite reads the lines
# through the workspace index in id order instead of scanning the table.
# The SQL pre-filter compares in 8-byte floating point (DOUBLE PRECISION: REAL is
# only 4 bytes on PostgreSQL) with a margin of one part in
# 10^9 toward inclusion, so it keeps every real finding. The exact Decimal test
# in Python then decides. Integer millionths times a percentage could overflow
# 64 bits for large quantities.
# A run scoped to some items fills `{line_items}` with an `item_id IN`
# condition, so the lines are read through the (workspace, item) index.
_VARIANCE_LINES_SQL = """
SELECT l.id AS line_id, l.line_no, l.item_id, l.quantity_ordered, l.quantity_received,
       p.id AS purchase_order_id, p.number AS purchase_order_number, p.status AS purchase_order_status,
       p.owner AS purchase_order_owner,
       s.id AS supplier_id, s.code AS supplier_code, s.owner AS supplier_owner,
       i.sku, i.owner AS item_owner,
       l.destination_location_id AS location_id, loc.code AS location_code,
       (SELECT MAX(e.received_at) FROM receiving_event AS e
        WHERE e.purchase_order_line_id = l.id) AS last_received_at
FROM purchase_order_line AS l
JOIN purchase_order AS p ON p.id = l.purchase_order_id
JOIN supplier AS s ON s.id = p.supplier_id
JOIN item AS i ON i.id = l.item_id
LEFT JOIN location AS loc ON loc.id = l.destination_location_id
WHERE l.workspace_id = :workspace_id AND p.workspace_id = :workspace_id
  AND p.status IN ('received', 'closed')
  AND l.quantity_received <> l.quantity_ordered
  AND (CAST(l.quantity_received AS DOUBLE PRECISION) < CAST(l.quantity_ordered AS DOUBLE PRECISION) * :short_factor
       OR CAST(l.quantity_received AS DOUBLE PRECISION) > CAST(l.quantity_ordered AS DOUBLE PRECISION) * :over_factor){line_items}
"""

_MARGIN = 1e-9


def receiving_variance(*, ordered: Decimal, received: Decimal, short_pct: Decimal, over_pct: Decimal) -> str | None:
    """Return "short", "over" or None for a line's received quantity against the tolerances."""
    if received < ordered * (1 - short_pct / 100):
        return "short"
    if received > ordered * (1 + over_pct / 100):
        return "over"
    return None


async def find_receiving_variances(
    session: AsyncSession,
    *,
    workspace_id: int,
    short_pct: Decimal,
    over_pct: Decimal,
    item_ids: Collection[int] | None = None,
) -> list[Finding]:
    """Find lines of received or closed POs whose received quantity is outside the tolerances.

    With `item_ids`, only the lines of those items are checked.

    Raises:
        InvalidInputError: If a tolerance is not a non-negative Decimal, or `item_ids` contains
            anything but integer ids.
    """
    check_tolerance("short_pct", short_pct)
    check_tolerance("over_pct", over_pct)
    scope = check_scope("item_ids", item_ids)
    if scope == []:
        return []
    params: dict[str, Any] = {
        "workspace_id": workspace_id,
        "short_factor": float(1 - short_pct / 100) * (1 + _MARGIN),
        "over_factor": float(1 + over_pct / 100) * (1 - _MARGIN),
    }
    if scope is None:
        line_items = ""
    else:
        dialect = dialect_of(session)
        line_items = f"\n  AND {in_ids_sql(dialect, 'l.item_id', 'item_ids')}"
        params["item_ids"] = ids_parameter(dialect, scope)
    result = await session.execute(text(_VARIANCE_LINES_SQL.format(line_items=line_items)), params)

    # The same Decimal products receiving_variance() forms, with the factors worked out once.
    short_factor = 1 - short_pct / 100
    over_factor = 1 + over_pct / 100
    short_text = str(short_pct)
    over_text = str(over_pct)
    quantities = QuantityMemo()
    findings: list[Finding] = []
    with collection_paused():
        for row in sorted(result.all(), key=itemgetter(0)):
            (
                line_id, line_no, item_id, ordered_raw, received_raw, purchase_order_id, purchase_order_number,
                purchase_order_status, purchase_order_owner, supplier_id, supplier_code, supplier_owner, sku,
                item_owner, location_id, location_code, last_received_at,
            ) = row
            ordered = quantities[ordered_raw]
            received = quantities[received_raw]
            if received < ordered * short_factor:
                direction, tolerance_text = "short", short_text
            elif received > ordered * over_factor:
                direction, tolerance_text = "over", over_text
            else:
                continue
            difference_text = str(received - ordered)
            ordered_text = str(ordered)
            received_text = str(received)
            # The text of format(difference, "+"): str() already carries a minus sign.
            signed_text = difference_text if difference_text.startswith("-") else f"+{difference_text}"
            reason = (
                f"{purchase_order_number} line {line_no} for {sku} from {supplier_code} "
                f"was received {direction}: {received_text} of {ordered_text} ordered ({signed_text}), "
                f"beyond the {tolerance_text}% tolerance."
            )
            evidence: dict[str, Any] = {
                "direction": direction,
                "line_no": line_no,
                "purchase_order_status": purchase_order_status,
                "quantity_ordered": ordered_text,
                "quantity_received": received_text,
                "difference": difference_text,
                "short_pct": short_text,
                "over_pct": over_text,
                "last_received_at": None if last_received_at is None else utc_text(last_received_at),
            }
            findings.append(
                build_finding(
                    {
                        "kind": "short_receiving",
                        "fingerprint": f"{direction}_receiving:po_line={line_id}",
                        "reason": reason,
                        "suggested_draft_kind": "supplier_note",
                        "evidence": evidence,
                        "item_id": item_id,
                        "sku": sku,
                        "location_id": location_id,
                        "location_code": location_code or "",
                        "supplier_id": supplier_id,
                        "supplier_code": supplier_code,
                        "purchase_order_id": purchase_order_id,
                        "purchase_order_number": purchase_order_number,
                        "purchase_order_line_id": line_id,
                        "owner": pick_owner(item_owner, supplier_owner, purchase_order_owner),
                    }
                )
            )
    return findings

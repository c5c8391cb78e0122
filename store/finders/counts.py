"""The count-drift finder: locations whose latest count missed the system quantity beyond tolerance.

Only count results with a location and a system quantity are used. The variance
of a count is counted − system quantity, where the system quantity is the
snapshot taken when the count was made. Stock that moved afterwards does not
change it. Per (item, location), with v the latest count's variance and s its
snapshot, the finder reports drift when
- |v| > abs_tol and |v| > pct_tol % of |s| (both tolerances must be exceeded), or
- value_tol is given and |v| × the item's unit cost > value_tol, or
- repeat ≥ 2 and the last `repeat` counts all have a non-zero variance of the
  same sign (repeated drift, even when each is within tolerance).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from store.dialect import dialect_of, ids_parameter, in_ids_sql
from store.errors import InvalidInputError
from store.finders.findings import (
    Finding,
    build_finding,
    check_scope,
    check_tolerance,
    collection_paused,
    pick_owner,
    quantity,
    scaled_text,
    text_or_none,
    utc_text,
)
from store.types import SCALE

# Counts of an (item, location) kept in the evidence, newest first.
HISTORY_DEPTH = 5

# The column order is fixed because the finder reads rows by position.
# Phase one ranks the counts of each (item, location) newest first. Per pair it
# keeps the newest count and the number of over and under variances among the
# newest `repeat` counts. Its main cost is one window sort over all counts.
# Phase two reads the history of the flagged pairs alone, through the
# (workspace, item) index. The pre-filter compares percentages and values in
# floating point, loosened by one part in 10^9 so no real finding is dropped;
# the exact Decimal rule in Python then decides. Products of two millionths
# columns would overflow 64 bits.
# A run scoped to some items fills `{count_items}` with an `item_id IN`
# condition, so phase one reads those items' counts through the same index.
_DRIFT_SQL = """
WITH ranked AS (
    SELECT c.item_id, c.location_id, c.counted_quantity - c.system_quantity AS variance, c.system_quantity,
           ROW_NUMBER() OVER (
               PARTITION BY c.item_id, c.location_id ORDER BY c.counted_at DESC, c.id DESC
           ) AS recency
    FROM count_result AS c
    WHERE c.workspace_id = :workspace_id AND c.location_id IS NOT NULL AND c.system_quantity IS NOT NULL{count_items}
),
pair AS (
    SELECT item_id, location_id,
           SUM(CASE WHEN variance > 0 THEN 1 ELSE 0 END) AS recent_over,
           SUM(CASE WHEN variance < 0 THEN 1 ELSE 0 END) AS recent_under,
           MAX(CASE WHEN recency = 1 THEN variance END) AS latest_variance,
           MAX(CASE WHEN recency = 1 THEN system_quantity END) AS latest_system
    FROM ranked
    WHERE recency <= :repeat_window
    GROUP BY item_id, location_id
),
flagged AS MATERIALIZED (
    SELECT pair.item_id, pair.location_id
    FROM pair
    JOIN item AS i ON i.id = pair.item_id
    WHERE pair.latest_variance <> 0
      AND ((:repeat >= 2 AND (pair.recent_over = :repeat OR pair.recent_under = :repeat))
           OR (ABS(pair.latest_variance) > :abs_tol
               AND CAST(ABS(pair.latest_variance) AS DOUBLE PRECISION) * 100
                   > :pct_tol * CAST(ABS(pair.latest_system) AS DOUBLE PRECISION) * :lower_margin)
           OR (:value_check = 1
               AND CAST(ABS(pair.latest_variance) AS DOUBLE PRECISION) * CAST(i.unit_cost AS DOUBLE PRECISION)
                   > :value_tol_squared * :lower_margin))
),
history AS (
    SELECT c.id AS count_id, c.item_id, c.location_id, c.bin_id, c.counted_quantity, c.system_quantity,
           c.counted_quantity - c.system_quantity AS variance, c.counted_at, c.actor, c.task_id,
           ROW_NUMBER() OVER (
               PARTITION BY c.item_id, c.location_id ORDER BY c.counted_at DESC, c.id DESC
           ) AS recency
    FROM flagged
    JOIN count_result AS c
      ON c.workspace_id = :workspace_id AND c.item_id = flagged.item_id AND c.location_id = flagged.location_id
    WHERE c.system_quantity IS NOT NULL
)
SELECT history.count_id, history.item_id, history.location_id, history.bin_id, history.counted_quantity,
       history.system_quantity, history.variance, history.counted_at, history.actor, history.task_id,
       i.sku, i.owner AS item_owner, i.unit_cost, i.currency, loc.code AS location_code, loc.owner AS location_owner
FROM history
JOIN item AS i ON i.id = history.item_id
JOIN location AS loc ON loc.id = history.location_id
WHERE history.recency <= :depth
ORDER BY history.item_id, history.location_id, history.recency
"""


def _check_repeat(repeat: int) -> None:
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat == 1 or repeat < 0:
        raise InvalidInputError(
            f"repeat={repeat!r} is invalid; pass 0 to turn repeated-drift detection off, or 2 or more counts."
        )


async def find_count_drift(
    session: AsyncSession,
    *,
    workspace_id: int,
    abs_tol: Decimal,
    pct_tol: Decimal,
    value_tol: Decimal | None,
    repeat: int,
    item_ids: Collection[int] | None = None,
) -> list[Finding]:
    """Find (item, location) pairs whose latest count drifts beyond tolerance, or that drift repeatedly.

    With `item_ids`, only the counts of those items are read, and each finding
    is the one a run without `item_ids` returns.

    Raises:
        InvalidInputError: For a negative or non-Decimal tolerance, `repeat` of 1 or below 0,
            or `item_ids` containing anything but integer ids.
    """
    check_tolerance("abs_tol", abs_tol)
    check_tolerance("pct_tol", pct_tol)
    check_tolerance("value_tol", value_tol, optional=True)
    _check_repeat(repeat)
    scope = check_scope("item_ids", item_ids)
    if scope == []:
        return []
    depth = max(HISTORY_DEPTH, repeat)
    params: dict[str, Any] = {
        "workspace_id": workspace_id,
        "repeat": repeat,
        # Phase one needs at least the newest count, even with repeated drift off.
        "repeat_window": max(repeat, 1),
        "depth": depth,
        # Rounded down to whole millionths, which only loosens the pre-filter.
        "abs_tol": int((abs_tol * SCALE).to_integral_value(rounding=ROUND_FLOOR)),
        "pct_tol": float(pct_tol),
        "value_check": 1 if value_tol is not None else 0,
        # |v| and unit cost are both in millionths, so their product is in 10^-12.
        "value_tol_squared": float(value_tol or 0) * SCALE * SCALE,
        "lower_margin": 1 - 1e-9,
    }
    if scope is None:
        count_items = ""
    else:
        dialect = dialect_of(session)
        count_items = f" AND {in_ids_sql(dialect, 'c.item_id', 'item_ids')}"
        params["item_ids"] = ids_parameter(dialect, scope)
    result = await session.execute(text(_DRIFT_SQL.format(count_items=count_items)), params)

    texts = _ToleranceTexts(
        abs_tol=str(abs_tol),
        pct_tol=str(pct_tol),
        value_tol=text_or_none(value_tol),
        tolerance_reason=f"beyond the tolerance of {abs_tol} units and {pct_tol}%",
    )
    findings: list[Finding] = []
    with collection_paused():
        # Rows arrive grouped by (item, location), newest count first.
        for _, group in groupby(result.all(), key=itemgetter(1, 2)):
            finding = _drift_finding(
                list(group), abs_tol=abs_tol, pct_tol=pct_tol, value_tol=value_tol, repeat=repeat, texts=texts
            )
            if finding is not None:
                findings.append(finding)
    return findings


def _repeated_direction(counts: list[Any], *, repeat: int) -> str | None:
    if repeat < 2 or len(counts) < repeat:
        return None
    # The raw millionths carry the sign, so no Decimal conversion is needed here.
    signs = {(variance > 0) - (variance < 0) for variance in (row[_VARIANCE] for row in counts[:repeat])}
    if signs == {1}:
        return "over"
    if signs == {-1}:
        return "under"
    return None


# Positions of the columns of _DRIFT_SQL that are read more than once.
_VARIANCE = 6


@dataclass(frozen=True)
class _ToleranceTexts:
    """The tolerances as evidence strings, rendered once per run instead of once per finding."""

    abs_tol: str
    pct_tol: str
    value_tol: str | None
    tolerance_reason: str


def _drift_finding(
    counts: list[Any],
    *,
    abs_tol: Decimal,
    pct_tol: Decimal,
    value_tol: Decimal | None,
    repeat: int,
    texts: _ToleranceTexts,
) -> Finding | None:
    (
        count_id, item_id, location_id, _, _, system_raw, variance_raw, _, _, _,
        sku, item_owner, unit_cost_raw, currency, location_code, location_owner,
    ) = counts[0]
    variance = quantity(variance_raw)
    system = quantity(system_raw)
    unit_cost = quantity(unit_cost_raw)
    variance_value = abs(variance) * unit_cost

    reasons: list[str] = []
    triggers: list[str] = []
    if abs(variance) > abs_tol and abs(variance) > pct_tol / 100 * abs(system):
        triggers.append("tolerance")
        reasons.append(texts.tolerance_reason)
    if value_tol is not None and variance_value > value_tol:
        triggers.append("value")
        reasons.append(f"worth {variance_value} {currency}, over the value tolerance of {value_tol}")
    direction = _repeated_direction(counts, repeat=repeat)
    if direction is not None:
        triggers.append("repeated")
        reasons.append(f"after {repeat} counts in a row {direction} the system quantity")
    if not triggers:
        return None

    recent_counts = [
        {
            "count_id": row[0],
            "counted_quantity": scaled_text(row[4]),
            "system_quantity": scaled_text(row[5]),
            "variance": scaled_text(row[6]),
            "counted_at": utc_text(row[7]),
            "bin_id": row[3],
            "actor": row[8],
            "task_id": row[9],
        }
        for row in counts[:HISTORY_DEPTH]
    ]
    latest = recent_counts[0]
    reason = (
        f"{sku} at {location_code} was last counted at {latest['counted_quantity']} against a system quantity of "
        f"{latest['system_quantity']} (variance {latest['variance']}) at {latest['counted_at']}, {' and '.join(reasons)}."
    )
    evidence: dict[str, Any] = {
        "triggers": triggers,
        "count_id": count_id,
        "counted_quantity": latest["counted_quantity"],
        "system_quantity": latest["system_quantity"],
        "variance": latest["variance"],
        "variance_value": str(variance_value),
        "unit_cost": str(unit_cost),
        "currency": currency,
        "abs_tol": texts.abs_tol,
        "pct_tol": texts.pct_tol,
        "value_tol": texts.value_tol,
        "repeat": repeat,
        "repeated_direction": direction,
        "recent_counts": recent_counts,
    }
    return build_finding(
        {
            "kind": "count_drift",
            "fingerprint": f"count_drift:item={item_id}:location={location_id}",
            "reason": reason,
            "suggested_draft_kind": "count_task",
            "evidence": evidence,
            "item_id": item_id,
            "sku": sku,
            "location_id": location_id,
            "location_code": location_code,
            "supplier_id": None,
            "supplier_code": "",
            "purchase_order_id": None,
            "purchase_order_number": "",
            "purchase_order_line_id": None,
            "owner": pick_owner(item_owner, location_owner),
        }
    )

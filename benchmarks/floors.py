"""Hand-written single SQL statements that answer each finder's question: the floor a finder is timed against.

Each statement returns one row per finding the finder returns, so the row
counts can be compared. They read the workspace the generator wrote
(workspace 1) and the default policy's tolerances, which the benchmark passes
as parameters.
"""

from __future__ import annotations

# Stock position per reorder rule from grouped aggregates, joined by (item, location)
# for location rules and by item for workspace-wide rules. Draft quantities come
# from the JSON lines of open purchase-order drafts, as in the finder. Each low
# rule returns its stock figures, item, location and chosen supplier item (the
# rule's preferred supplier, else the item marked preferred, else the cheapest).
LOW_STOCK = """
WITH draft_line AS (
    SELECT json_extract(line.value, '$.item_id') AS item_id,
           json_extract(line.value, '$.location_code') AS location_code,
           CAST(ROUND(CAST(json_extract(line.value, '$.quantity') AS DOUBLE PRECISION) * 1000000) AS INTEGER) AS quantity
    FROM draft AS d, json_each(d.payload, '$.lines') AS line
    WHERE d.workspace_id = :workspace_id AND d.kind = 'purchase_order'
      AND d.status IN ('pending_approval', 'approved') AND line.type = 'object'
),
place_total AS MATERIALIZED (
    SELECT item_id, location_id, SUM(on_hand) AS on_hand, SUM(reserved) AS reserved,
           SUM(on_order) AS on_order, SUM(drafted) AS drafted
    FROM (
        SELECT item_id, location_id, on_hand, 0 AS reserved, 0 AS on_order, 0 AS drafted
        FROM stock_level WHERE workspace_id = :workspace_id
        UNION ALL
        SELECT item_id, location_id, 0, quantity, 0, 0
        FROM reservation WHERE workspace_id = :workspace_id AND status = 'active'
        UNION ALL
        SELECT l.item_id, l.destination_location_id, 0, 0, l.quantity_ordered - l.quantity_received, 0
        FROM purchase_order_line AS l JOIN purchase_order AS p ON p.id = l.purchase_order_id
        WHERE l.workspace_id = :workspace_id AND p.status IN ('issued', 'partially_received')
          AND l.quantity_received < l.quantity_ordered
        UNION ALL
        SELECT dl.item_id, loc.id, 0, 0, 0, dl.quantity
        FROM draft_line AS dl
        LEFT JOIN location AS loc ON loc.workspace_id = :workspace_id AND loc.code = dl.location_code
    ) AS place_line
    GROUP BY item_id, location_id
),
item_total AS (
    SELECT item_id, SUM(on_hand) AS on_hand, SUM(reserved) AS reserved, SUM(on_order) AS on_order,
           SUM(drafted) AS drafted
    FROM place_total
    WHERE item_id IN (SELECT item_id FROM reorder_rule WHERE workspace_id = :workspace_id AND location_id IS NULL)
    GROUP BY item_id
),
low AS MATERIALIZED (
    SELECT r.id, r.item_id, r.location_id, r.reorder_point, r.reorder_quantity, r.max_level, r.safety_stock,
           r.preferred_supplier_id,
           COALESCE(at_place.on_hand, everywhere.on_hand, 0) AS on_hand,
           COALESCE(at_place.reserved, everywhere.reserved, 0) AS reserved,
           COALESCE(at_place.on_order, everywhere.on_order, 0) AS on_order
    FROM reorder_rule AS r
    JOIN item AS i ON i.id = r.item_id
    LEFT JOIN place_total AS at_place ON r.location_id IS NOT NULL
         AND at_place.item_id = r.item_id AND at_place.location_id = r.location_id
    LEFT JOIN item_total AS everywhere ON r.location_id IS NULL AND everywhere.item_id = r.item_id
    WHERE r.workspace_id = :workspace_id AND i.active
      AND COALESCE(at_place.on_hand - at_place.reserved + at_place.on_order + at_place.drafted,
                   everywhere.on_hand - everywhere.reserved + everywhere.on_order + everywhere.drafted,
                   0) <= r.reorder_point
),
chosen AS MATERIALIZED (
    SELECT low.*,
           (SELECT choice.id
            FROM supplier_item AS choice
            JOIN supplier AS s ON s.id = choice.supplier_id
            WHERE choice.workspace_id = :workspace_id AND choice.item_id = low.item_id
              AND ((low.preferred_supplier_id IS NULL AND s.active) OR choice.supplier_id = low.preferred_supplier_id)
            ORDER BY choice.preferred DESC, choice.unit_price IS NULL, choice.unit_price, choice.id
            LIMIT 1) AS supplier_item_id
    FROM low
)
SELECT chosen.*, i.sku, i.owner, loc.code, si.pack_size, si.min_order_qty, si.unit_price, si.currency,
       si.lead_time_days, si.preferred, sup.id, sup.code, sup.owner, sup.lead_time_days
FROM chosen
JOIN item AS i ON i.id = chosen.item_id
LEFT JOIN location AS loc ON loc.id = chosen.location_id
LEFT JOIN supplier_item AS si ON si.id = chosen.supplier_item_id
LEFT JOIN supplier AS sup ON sup.id = COALESCE(chosen.preferred_supplier_id, si.supplier_id)
"""

# Late open lines with every column the finding shows (PO, supplier, item, location,
# quantities, owners, last receipt) and the supplier's on-time record over its
# fully received lines. The business date of a receipt applies the single UTC
# offset :utc_offset (a date() modifier such as '+3600 seconds'), where the
# finder applies the offset in force at each receipt's time.
SUPPLIER_DELAYS = """
WITH received_line AS (
    SELECT p.supplier_id, COALESCE(l.expected_date, p.expected_date) AS expected_date,
           MAX(e.received_at) AS last_received_at
    FROM purchase_order_line AS l
    JOIN purchase_order AS p ON p.id = l.purchase_order_id
    JOIN receiving_event AS e ON e.purchase_order_line_id = l.id
    WHERE l.workspace_id = :workspace_id AND l.quantity_ordered > 0
      AND l.quantity_received >= l.quantity_ordered
      AND COALESCE(l.expected_date, p.expected_date) IS NOT NULL
    GROUP BY l.id
),
on_time AS (
    SELECT supplier_id, COUNT(*) AS received_lines,
           SUM(date(last_received_at, :utc_offset) <= expected_date) AS on_time_lines
    FROM received_line GROUP BY supplier_id
)
SELECT l.id, l.line_no, l.item_id, l.quantity_ordered, l.quantity_received,
       COALESCE(l.expected_date, p.expected_date), p.id, p.number, p.status, p.owner,
       s.id, s.code, s.owner, i.sku, i.owner, l.destination_location_id, loc.code,
       (SELECT MAX(e.received_at) FROM receiving_event AS e WHERE e.purchase_order_line_id = l.id),
       COALESCE(on_time.on_time_lines, 0), COALESCE(on_time.received_lines, 0)
FROM purchase_order_line AS l
JOIN purchase_order AS p ON p.id = l.purchase_order_id
JOIN supplier AS s ON s.id = p.supplier_id
JOIN item AS i ON i.id = l.item_id
LEFT JOIN location AS loc ON loc.id = l.destination_location_id
LEFT JOIN on_time ON on_time.supplier_id = p.supplier_id
WHERE l.workspace_id = :workspace_id
  AND p.status IN ('issued', 'partially_received')
  AND l.quantity_received < l.quantity_ordered
  AND COALESCE(l.expected_date, p.expected_date) < :today
"""

# Exact integer test: received × 100 against ordered × (100 ∓ tolerance), all in
# millionths, with every column the finding shows.
RECEIVING_VARIANCES = """
SELECT l.id, l.line_no, l.item_id, l.quantity_ordered, l.quantity_received,
       p.id, p.number, p.status, p.owner, s.id, s.code, s.owner, i.sku, i.owner,
       l.destination_location_id, loc.code,
       (SELECT MAX(e.received_at) FROM receiving_event AS e WHERE e.purchase_order_line_id = l.id)
FROM purchase_order_line AS l
JOIN purchase_order AS p ON p.id = l.purchase_order_id
JOIN supplier AS s ON s.id = p.supplier_id
JOIN item AS i ON i.id = l.item_id
LEFT JOIN location AS loc ON loc.id = l.destination_location_id
WHERE l.workspace_id = :workspace_id
  AND p.status IN ('received', 'closed')
  AND (l.quantity_received * 100 < l.quantity_ordered * (100 - :short_pct)
       OR l.quantity_received * 100 > l.quantity_ordered * (100 + :over_pct))
"""

# The latest count per (item, location) against the absolute, percent and value
# tolerances, or the last `repeat` counts drifting the same way. Each flagged
# pair then returns the item and location columns the finding shows and its
# five most recent counts joined into one text column.
COUNT_DRIFT = """
WITH ranked AS (
    SELECT c.item_id, c.location_id, c.counted_quantity - c.system_quantity AS variance, c.system_quantity,
           ROW_NUMBER() OVER (PARTITION BY c.item_id, c.location_id ORDER BY c.counted_at DESC, c.id DESC) AS recency
    FROM count_result AS c
    WHERE c.workspace_id = :workspace_id AND c.location_id IS NOT NULL AND c.system_quantity IS NOT NULL
),
pair AS (
    SELECT item_id, location_id,
           SUM(recency <= :repeat AND variance > 0) AS recent_over,
           SUM(recency <= :repeat AND variance < 0) AS recent_under,
           COUNT(*) AS counts,
           MAX(CASE WHEN recency = 1 THEN variance END) AS variance,
           MAX(CASE WHEN recency = 1 THEN system_quantity END) AS system_quantity
    FROM ranked GROUP BY item_id, location_id
),
flagged AS MATERIALIZED (
    SELECT pair.item_id, pair.location_id
    FROM pair JOIN item AS i ON i.id = pair.item_id
    WHERE (ABS(pair.variance) > :abs_tol AND ABS(pair.variance) * 100 > :pct_tol * ABS(pair.system_quantity))
       OR (ABS(pair.variance) * CAST(i.unit_cost AS DOUBLE PRECISION) > :value_tol_squared)
       OR (:repeat >= 2 AND pair.counts >= :repeat AND (pair.recent_over = :repeat OR pair.recent_under = :repeat))
),
history AS (
    SELECT c.item_id, c.location_id, c.id, c.bin_id, c.counted_quantity, c.system_quantity, c.counted_at,
           c.actor, c.task_id,
           ROW_NUMBER() OVER (PARTITION BY c.item_id, c.location_id ORDER BY c.counted_at DESC, c.id DESC) AS recency
    FROM flagged
    JOIN count_result AS c
      ON c.workspace_id = :workspace_id AND c.item_id = flagged.item_id AND c.location_id = flagged.location_id
    WHERE c.system_quantity IS NOT NULL
)
SELECT h.item_id, h.location_id, i.sku, i.owner, i.unit_cost, i.currency, loc.code, loc.owner,
       group_concat(h.id || ',' || h.counted_quantity || ',' || h.system_quantity || ',' || h.counted_at
                    || ',' || IFNULL(h.bin_id, '') || ',' || h.actor || ',' || IFNULL(h.task_id, ''), ';')
FROM history AS h
JOIN item AS i ON i.id = h.item_id
JOIN location AS loc ON loc.id = h.location_id
WHERE h.recency <= 5
GROUP BY h.item_id, h.location_id
"""

# Current channel quantities against available from grouped stock and reservation
# totals. The generator writes no accounting values, so only quantities are compared.
MISMATCHES = """
WITH on_hand AS (
    SELECT item_id, location_id, SUM(on_hand) AS quantity
    FROM stock_level WHERE workspace_id = :workspace_id GROUP BY item_id, location_id
),
reserved AS (
    SELECT item_id, location_id, SUM(quantity) AS quantity
    FROM reservation WHERE workspace_id = :workspace_id AND status = 'active' GROUP BY item_id, location_id
)
SELECT s.id
FROM external_snapshot AS s
JOIN item AS i ON i.id = s.item_id
LEFT JOIN on_hand AS h ON h.item_id = s.item_id AND h.location_id = s.location_id
LEFT JOIN reserved AS r ON r.item_id = s.item_id AND r.location_id = s.location_id
WHERE s.workspace_id = :workspace_id AND s.is_current AND s.record_kind = 'channel_quantity'
  AND s.location_id IS NOT NULL
  AND ABS(s.quantity - (COALESCE(h.quantity, 0) - COALESCE(r.quantity, 0))) > :qty_tol
"""

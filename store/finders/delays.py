"""The supplier-delay finder: open PO lines not fully received after their expected date.

A line is late when its PO is issued or partially received, received < ordered,
and its expected date is before today, where today is the business date of
`now` in the workspace timezone. The UTC date of `now` is never used: at 11:30
UTC it is already tomorrow in Auckland.

The expected date is the line's, else the order's. When neither has one (orders
imported from systems that leave the date empty), it is the business date the
order was issued plus the supplier item's lead time, else the supplier's; the
evidence says so.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Date, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from store.dialect import (
    POSTGRESQL,
    dialect_of,
    ids_parameter,
    in_ids_sql,
    local_date_sql,
)
from store.errors import InvalidInputError
from store.finders.findings import (
    Finding,
    QuantityMemo,
    build_finding,
    check_aware,
    check_scope,
    collection_paused,
    pick_owner,
    text_or_none,
    utc_text,
    utc_time,
)
from store.models import (
    LIVE_EXCEPTION_STATUSES,
    OPEN_PO_STATUSES,
    ExceptionRecord,
    PurchaseOrder,
    PurchaseOrderLine,
)

# Open lines that are late or may be: lines without an expected date are kept
# when their order was issued, and Python adds the lead time to the business
# date of issue. The issue time and lead time are read for those lines alone.
# Each supplier's on-time record comes from the same statement. Rows are put in
# line order in Python: they mostly arrive in that order, and an ORDER BY would
# sort them all in a temporary B-tree.
# The column order is fixed because the finder unpacks each row as a tuple.
# A run scoped to some suppliers fills `{late_suppliers}` and the on-time
# `{supplier_filter}` with a condition on the orders of those suppliers, so it
# reads their lines alone, through the purchase_order supplier index.
_LATE_LINES_SQL = """
WITH late AS (
    SELECT l.id AS line_id, l.line_no, l.item_id, l.quantity_ordered, l.quantity_received,
           l.expected_date AS line_expected_date, p.expected_date AS order_expected_date,
           CASE WHEN l.expected_date IS NULL AND p.expected_date IS NULL THEN p.issued_at END AS issued_at,
           CASE WHEN l.expected_date IS NULL AND p.expected_date IS NULL
                THEN COALESCE((SELECT si.lead_time_days FROM supplier_item AS si WHERE si.id = l.supplier_item_id),
                              s.lead_time_days)
           END AS lead_time_days,
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
      AND p.status IN :open_po_statuses{late_suppliers}
      AND l.quantity_received < l.quantity_ordered
      AND (COALESCE(l.expected_date, p.expected_date) < :today
           OR (l.expected_date IS NULL AND p.expected_date IS NULL AND p.issued_at IS NOT NULL))
),
{on_time_ctes}
SELECT late.line_id, late.line_no, late.item_id, late.quantity_ordered, late.quantity_received,
       late.line_expected_date, late.order_expected_date, late.issued_at, late.lead_time_days,
       late.purchase_order_id, late.purchase_order_number, late.purchase_order_status, late.purchase_order_owner,
       late.supplier_id, late.supplier_code, late.supplier_owner, late.sku, late.item_owner,
       late.location_id, late.location_code, late.last_received_at,
       COALESCE(on_time.on_time_lines, 0) AS on_time_lines, COALESCE(on_time.received_lines, 0) AS received_lines
FROM late
LEFT JOIN on_time ON on_time.supplier_id = late.supplier_id
"""

# Per supplier, the fully received lines with an expected date and a receiving
# event, and how many of them had their last receipt on or before the expected
# date. The receipt's business date is `{local_date}`, an expression over
# `last_received_at` that depends on the backend (see _local_date_sql).
_ON_TIME_CTES = """received_line AS (
    SELECT p.supplier_id, COALESCE(l.expected_date, p.expected_date) AS expected_date,
           MAX(e.received_at) AS last_received_at
    FROM purchase_order_line AS l
    JOIN purchase_order AS p ON p.id = l.purchase_order_id
    JOIN receiving_event AS e ON e.purchase_order_line_id = l.id
    WHERE l.workspace_id = :workspace_id AND p.workspace_id = :workspace_id
      {supplier_filter}
      AND l.quantity_ordered > 0
      AND l.quantity_received >= l.quantity_ordered
      AND COALESCE(l.expected_date, p.expected_date) IS NOT NULL
    GROUP BY l.id, p.supplier_id, COALESCE(l.expected_date, p.expected_date)
),
on_time AS (
    SELECT supplier_id, COUNT(*) AS received_lines,
           SUM(CASE WHEN {local_date} <= expected_date THEN 1 ELSE 0 END) AS on_time_lines
    FROM received_line
    GROUP BY supplier_id
)
"""


@dataclass(frozen=True)
class OnTimeRecord:
    """How many of a supplier's fully received lines arrived by their expected date."""

    on_time_lines: int
    received_lines: int

    @property
    def rate(self) -> Decimal | None:
        """The on-time share rounded to four places, or None without history."""
        if self.received_lines == 0:
            return None
        return (Decimal(self.on_time_lines) / Decimal(self.received_lines)).quantize(Decimal("0.0001"))


def business_date(moment: datetime, *, timezone: str) -> date:
    """Return the calendar date of an aware `moment` in the named IANA timezone.

    Raises:
        InvalidInputError: If the timezone name is unknown or `moment` is naive.
    """
    check_aware(moment)
    return moment.astimezone(_zone(timezone)).date()


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInputError(
            f"Timezone {timezone!r} is not an IANA timezone name; use one like 'UTC' or 'Pacific/Auckland'."
        ) from exc


async def supplier_on_time_records(
    session: AsyncSession, *, workspace_id: int, supplier_ids: set[int], timezone: str
) -> dict[int, OnTimeRecord]:
    """Count, per supplier, the fully received lines whose last receipt was on or before the expected date.

    Dates compare in the workspace timezone. A supplier with no fully received
    line that has both an expected date and a receiving event is absent.

    Raises:
        InvalidInputError: If the timezone name is unknown.
    """
    _zone(timezone)
    if not supplier_ids:
        return {}
    dialect = dialect_of(session)
    # Named by order id, as in find_supplier_delays: a condition on p.supplier_id alone scanned every line on SQLite.
    orders = (
        "AND l.purchase_order_id IN (SELECT o.id FROM purchase_order AS o WHERE o.workspace_id = :workspace_id "
        f"AND {in_ids_sql(dialect, 'o.supplier_id', 'supplier_ids')})"
    )
    ctes = _ON_TIME_CTES.format(supplier_filter=orders, local_date=local_date_sql(dialect, "last_received_at", timezone))
    statement = text(f"WITH {ctes} SELECT supplier_id, on_time_lines, received_lines FROM on_time")
    params: dict[str, Any] = {"workspace_id": workspace_id, "supplier_ids": ids_parameter(dialect, sorted(supplier_ids))}
    if dialect == POSTGRESQL:
        params["timezone"] = timezone
    rows = await session.execute(statement, params)
    return {
        supplier_id: OnTimeRecord(on_time_lines=int(on_time), received_lines=int(received))
        for supplier_id, on_time, received in rows.all()
    }


async def suppliers_of_items(session: AsyncSession, *, workspace_id: int, item_ids: Collection[int]) -> set[int]:
    """Return the suppliers of every purchase order, whatever its status, with a line of one of `item_ids`.

    Raises:
        InvalidInputError: If `item_ids` contains anything but integer ids.
    """
    if item_ids is None:
        raise InvalidInputError("item_ids is required; pass a list or set of item ids.")
    scope = check_scope("item_ids", item_ids)
    if not scope:
        return set()
    dialect = dialect_of(session)
    statement = text(
        "SELECT DISTINCT p.supplier_id FROM purchase_order_line AS l "
        "JOIN purchase_order AS p ON p.id = l.purchase_order_id "
        "WHERE l.workspace_id = :workspace_id AND p.workspace_id = :workspace_id "
        f"AND {in_ids_sql(dialect, 'l.item_id', 'item_ids')}"
    )
    rows = await session.execute(statement, {"workspace_id": workspace_id, "item_ids": ids_parameter(dialect, scope)})
    return set(rows.scalars().all())


async def stored_on_time_records(
    session: AsyncSession, *, workspace_id: int, supplier_ids: Collection[int]
) -> dict[int, set[tuple[int, int]]]:
    """Return, per supplier, the (on-time lines, received lines) pairs in the evidence of its live supplier-delay records.

    A supplier whose records agree has one pair. A supplier without a live
    delay record is absent.
    """
    ids = check_scope("supplier_ids", supplier_ids)
    if not ids:
        return {}
    evidence = ExceptionRecord.evidence
    rows = await session.execute(
        select(
            ExceptionRecord.supplier_id,
            evidence["supplier_on_time_lines"].as_integer(),
            evidence["supplier_received_lines"].as_integer(),
        )
        .where(
            ExceptionRecord.workspace_id == workspace_id,
            ExceptionRecord.kind == "supplier_delay",
            ExceptionRecord.status.in_(LIVE_EXCEPTION_STATUSES),
            ExceptionRecord.supplier_id.in_(ids),
        )
        .distinct()
    )
    stored: dict[int, set[tuple[int, int]]] = {}
    for supplier_id, on_time, received in rows.all():
        stored.setdefault(supplier_id, set()).add((on_time or 0, received or 0))
    return stored


async def delay_items_of_suppliers(session: AsyncSession, *, workspace_id: int, supplier_ids: Collection[int]) -> set[int]:
    """Return the items of the open order lines of `supplier_ids` and of their live supplier-delay records.

    These are the items a rerun must cover when those suppliers' on-time
    records changed, because every delay finding of a supplier shows it.
    """
    ids = check_scope("supplier_ids", supplier_ids)
    if not ids:
        return set()
    lines = await session.execute(
        select(PurchaseOrderLine.item_id)
        .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
        .where(
            PurchaseOrder.workspace_id == workspace_id,
            PurchaseOrder.supplier_id.in_(ids),
            PurchaseOrder.status.in_(OPEN_PO_STATUSES),
        )
    )
    records = await session.execute(
        select(ExceptionRecord.item_id).where(
            ExceptionRecord.workspace_id == workspace_id,
            ExceptionRecord.kind == "supplier_delay",
            ExceptionRecord.status.in_(LIVE_EXCEPTION_STATUSES),
            ExceptionRecord.supplier_id.in_(ids),
        )
    )
    found = set(lines.scalars().all()) | set(records.scalars().all())
    found.discard(None)
    return found  # type: ignore[return-value]


async def find_supplier_delays(
    session: AsyncSession,
    *,
    workspace_id: int,
    timezone: str,
    now: datetime,
    supplier_ids: Collection[int] | None = None,
    item_ids: Collection[int] | None = None,
) -> list[Finding]:
    """Find open PO lines not fully received whose expected date is before today in `timezone`.

    With `supplier_ids`, only the orders of those suppliers are checked. With
    `item_ids`, only the lines of those items are, each with its supplier's
    whole on-time record. A receipt that completes a line changes its
    supplier's on-time rate, which every finding of that supplier shows;
    `finder_refresh.refresh_scope` adds the items of such suppliers' lines.

    Raises:
        InvalidInputError: If `now` is naive, `timezone` is unknown, a scope contains anything
            but integer ids, or both scopes are given.
    """
    today = business_date(now, timezone=timezone)
    if supplier_ids is not None and item_ids is not None:
        raise InvalidInputError("Pass supplier_ids or item_ids to find_supplier_delays, not both.")
    scope = check_scope("supplier_ids", supplier_ids)
    items = check_scope("item_ids", item_ids)
    if scope == [] or items == []:
        return []
    dialect = dialect_of(session)
    if items is not None:
        # The lines of the items, through the line item index. Their suppliers' on-time
        # records count every line of those suppliers, read by order as below.
        late_suppliers = f"\n      AND {in_ids_sql(dialect, 'l.item_id', 'item_ids')}"
        supplier_filter = (
            "AND l.purchase_order_id IN (SELECT o.id FROM purchase_order AS o WHERE o.workspace_id = :workspace_id "
            "AND o.supplier_id IN (SELECT po.supplier_id FROM purchase_order_line AS il "
            "JOIN purchase_order AS po ON po.id = il.purchase_order_id "
            f"WHERE il.workspace_id = :workspace_id AND {in_ids_sql(dialect, 'il.item_id', 'item_ids')}))"
        )
    elif scope is None:
        # Every supplier's record is counted: the join keeps those of late lines, and
        # a filter on the late suppliers made the statement slower.
        late_suppliers = supplier_filter = ""
    else:
        # Naming the orders by id leads both planners to the supplier index, then
        # to the lines by order. A condition on p.supplier_id alone scanned every line on SQLite.
        orders = (
            "l.purchase_order_id IN (SELECT o.id FROM purchase_order AS o WHERE o.workspace_id = :workspace_id "
            f"AND {in_ids_sql(dialect, 'o.supplier_id', 'supplier_ids')})"
        )
        late_suppliers = f"\n      AND {orders}"
        supplier_filter = f"AND {orders}"
    ctes = _ON_TIME_CTES.format(
        supplier_filter=supplier_filter, local_date=local_date_sql(dialect, "last_received_at", timezone)
    )
    statement = (
        text(_LATE_LINES_SQL.format(on_time_ctes=ctes, late_suppliers=late_suppliers))
        .bindparams(bindparam("open_po_statuses", expanding=True), bindparam("today", type_=Date))
    )
    params: dict[str, Any] = {"workspace_id": workspace_id, "open_po_statuses": list(OPEN_PO_STATUSES), "today": today}
    if dialect == POSTGRESQL:
        params["timezone"] = timezone
    if scope is not None:
        params["supplier_ids"] = ids_parameter(dialect, scope)
    if items is not None:
        params["item_ids"] = ids_parameter(dialect, items)
    result = await session.execute(statement, params)

    with collection_paused():
        return _delay_findings(sorted(result.all(), key=itemgetter(0)), today=today, now=now, timezone=timezone)


def _delay_findings(rows: Sequence[Any], *, today: date, now: datetime, timezone: str) -> list[Finding]:
    """Build the findings of the late rows, rendering each expected date and on-time rate once."""
    as_of = now.isoformat()
    today_text = today.isoformat()
    quantities = QuantityMemo()
    lateness: dict[date | str, tuple[date, str, int]] = {}
    rates: dict[tuple[int, int], str | None] = {(0, 0): None}
    findings: list[Finding] = []
    for row in rows:
        (
            line_id, line_no, item_id, ordered_raw, received_raw, line_expected_date, order_expected_date,
            issued_at, lead_time_days, purchase_order_id, purchase_order_number, purchase_order_status,
            purchase_order_owner, supplier_id, supplier_code, supplier_owner, sku, item_owner,
            location_id, location_code, last_received_at, on_time_lines, received_lines,
        ) = row
        stored_date = line_expected_date if line_expected_date is not None else order_expected_date
        if stored_date is not None:
            source = "line" if line_expected_date is not None else "order"
            known = lateness.get(stored_date)
            if known is None:
                expected = date.fromisoformat(stored_date) if isinstance(stored_date, str) else stored_date
                known = lateness[stored_date] = (expected, expected.isoformat(), (today - expected).days)
            expected, expected_text, days_late = known
        else:
            issued = business_date(utc_time(issued_at), timezone=timezone)
            expected = issued + timedelta(days=lead_time_days)
            expected_text = expected.isoformat()
            days_late = (today - expected).days
            source = f"issued {issued.isoformat()} + {lead_time_days}-day lead time"
        if expected >= today:
            continue

        ordered = quantities[ordered_raw]
        received = quantities[received_raw]
        ordered_text = str(ordered)
        received_text = str(received)
        record = (int(on_time_lines), int(received_lines))
        rate = rates.get(record, "")
        if rate == "":
            rate = rates[record] = text_or_none(OnTimeRecord(*record).rate)
        reason = (
            f"{purchase_order_number} line {line_no} for {sku} ({ordered_text} ordered, {received_text} received) "
            f"from {supplier_code} was expected {expected_text} and is {days_late} days late."
        )
        evidence: dict[str, Any] = {
            "as_of": as_of,
            "timezone": timezone,
            "today": today_text,
            "expected_date": expected_text,
            "expected_date_source": source,
            "days_late": days_late,
            "line_no": line_no,
            "purchase_order_status": purchase_order_status,
            "quantity_ordered": ordered_text,
            "quantity_received": received_text,
            "quantity_outstanding": str(ordered - received),
            "last_received_at": None if last_received_at is None else utc_text(last_received_at),
            "supplier_on_time_rate": rate,
            "supplier_on_time_lines": record[0],
            "supplier_received_lines": record[1],
        }
        findings.append(
            build_finding(
                {
                    "kind": "supplier_delay",
                    "fingerprint": f"supplier_delay:po_line={line_id}",
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

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

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Date, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from store.errors import InvalidInputError
from store.finders.findings import (
    Finding,
    check_aware,
    pick_owner,
    quantity,
    text_or_none,
)
from store.models import OPEN_PO_STATUSES
from store.types import UTCDateTime

_LATE_LINES_SQL = """
SELECT l.id AS line_id, l.line_no, l.item_id, l.quantity_ordered, l.quantity_received,
       l.expected_date AS line_expected_date, p.expected_date AS order_expected_date,
       COALESCE(l.expected_date, p.expected_date) AS expected_date,
       p.issued_at, COALESCE(si.lead_time_days, s.lead_time_days) AS lead_time_days,
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
LEFT JOIN supplier_item AS si ON si.id = l.supplier_item_id
LEFT JOIN location AS loc ON loc.id = l.destination_location_id
WHERE l.workspace_id = :workspace_id AND p.workspace_id = :workspace_id
  AND p.status IN :open_po_statuses
  AND l.quantity_received < l.quantity_ordered
  AND (COALESCE(l.expected_date, p.expected_date) < :today
       OR (l.expected_date IS NULL AND p.expected_date IS NULL AND p.issued_at IS NOT NULL))
ORDER BY l.id
"""

# Fully received lines of the given suppliers with the time of their last receipt.
# The business date of that time is taken in Python, because SQLite cannot convert
# to an IANA timezone. NOTE: this reads each late supplier's whole receiving
# history; on PostgreSQL `received_at AT TIME ZONE 'UTC' AT TIME ZONE :tz` would
# let the database count on-time lines itself.
_RECEIVED_HISTORY_SQL = """
SELECT p.supplier_id, COALESCE(l.expected_date, p.expected_date) AS expected_date,
       MAX(e.received_at) AS last_received_at
FROM purchase_order_line AS l
JOIN purchase_order AS p ON p.id = l.purchase_order_id
JOIN receiving_event AS e ON e.purchase_order_line_id = l.id
WHERE l.workspace_id = :workspace_id AND p.workspace_id = :workspace_id
  AND p.supplier_id IN :supplier_ids
  AND l.quantity_ordered > 0
  AND l.quantity_received >= l.quantity_ordered
  AND COALESCE(l.expected_date, p.expected_date) IS NOT NULL
GROUP BY l.id, p.supplier_id, COALESCE(l.expected_date, p.expected_date)
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
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInputError(
            f"Timezone {timezone!r} is not an IANA timezone name; use one like 'UTC' or 'Pacific/Auckland'."
        ) from exc
    return moment.astimezone(zone).date()


async def supplier_on_time_records(
    session: AsyncSession, *, workspace_id: int, supplier_ids: set[int], timezone: str
) -> dict[int, OnTimeRecord]:
    """Count, per supplier, the fully received lines whose last receipt was on or before the expected date.

    Dates compare in the workspace timezone. A supplier with no fully received
    line that has both an expected date and a receiving event is absent.
    """
    if not supplier_ids:
        return {}
    statement = (
        text(_RECEIVED_HISTORY_SQL)
        .bindparams(bindparam("supplier_ids", expanding=True))
        .columns(expected_date=Date, last_received_at=UTCDateTime)
    )
    rows = await session.execute(statement, {"workspace_id": workspace_id, "supplier_ids": sorted(supplier_ids)})
    on_time: dict[int, int] = defaultdict(int)
    received: dict[int, int] = defaultdict(int)
    for row in rows.all():
        received[row.supplier_id] += 1
        if business_date(row.last_received_at, timezone=timezone) <= row.expected_date:
            on_time[row.supplier_id] += 1
    return {
        supplier_id: OnTimeRecord(on_time_lines=on_time[supplier_id], received_lines=count)
        for supplier_id, count in received.items()
    }


async def find_supplier_delays(
    session: AsyncSession, *, workspace_id: int, timezone: str, now: datetime
) -> list[Finding]:
    """Find open PO lines not fully received whose expected date is before today in `timezone`.

    Raises:
        InvalidInputError: If `now` is naive or `timezone` is unknown.
    """
    today = business_date(now, timezone=timezone)
    statement = (
        text(_LATE_LINES_SQL)
        .bindparams(bindparam("open_po_statuses", expanding=True), bindparam("today", type_=Date))
        .columns(
            expected_date=Date,
            line_expected_date=Date,
            order_expected_date=Date,
            issued_at=UTCDateTime,
            last_received_at=UTCDateTime,
        )
    )
    params = {"workspace_id": workspace_id, "open_po_statuses": list(OPEN_PO_STATUSES), "today": today}
    late: list[tuple[Any, date, str]] = []
    for row in (await session.execute(statement, params)).all():
        expected, source = _expected_date(row, timezone=timezone)
        if expected < today:
            late.append((row, expected, source))
    if not late:
        return []

    history = await supplier_on_time_records(
        session, workspace_id=workspace_id, supplier_ids={row.supplier_id for row, _, _ in late}, timezone=timezone
    )
    return [
        _delay_finding(row, expected=expected, source=source, today=today, now=now, timezone=timezone, history=history)
        for row, expected, source in late
    ]


def _expected_date(row: Any, *, timezone: str) -> tuple[date, str]:
    """Return a late-candidate line's expected date and where it came from."""
    if row.line_expected_date is not None:
        return row.line_expected_date, "line"
    if row.order_expected_date is not None:
        return row.order_expected_date, "order"
    issued = business_date(row.issued_at, timezone=timezone)
    return issued + timedelta(days=row.lead_time_days), f"issued {issued.isoformat()} + {row.lead_time_days}-day lead time"


def _delay_finding(
    row: Any,
    *,
    expected: date,
    source: str,
    today: date,
    now: datetime,
    timezone: str,
    history: dict[int, OnTimeRecord],
) -> Finding:
    ordered = quantity(row.quantity_ordered)
    received = quantity(row.quantity_received)
    days_late = (today - expected).days
    record = history.get(row.supplier_id)
    reason = (
        f"{row.purchase_order_number} line {row.line_no} for {row.sku} ({ordered} ordered, {received} received) "
        f"from {row.supplier_code} was expected {expected.isoformat()} and is {days_late} days late."
    )
    evidence: dict[str, Any] = {
        "as_of": now.isoformat(),
        "timezone": timezone,
        "today": today.isoformat(),
        "expected_date": expected.isoformat(),
        "expected_date_source": source,
        "days_late": days_late,
        "line_no": row.line_no,
        "purchase_order_status": row.purchase_order_status,
        "quantity_ordered": str(ordered),
        "quantity_received": str(received),
        "quantity_outstanding": str(ordered - received),
        "last_received_at": text_or_none(row.last_received_at),
        "supplier_on_time_rate": text_or_none(record.rate if record else None),
        "supplier_on_time_lines": record.on_time_lines if record else 0,
        "supplier_received_lines": record.received_lines if record else 0,
    }
    return Finding(
        kind="supplier_delay",
        fingerprint=f"supplier_delay:po_line={row.line_id}",
        reason=reason,
        suggested_draft_kind="supplier_note",
        evidence=evidence,
        item_id=row.item_id,
        sku=row.sku,
        location_id=row.location_id,
        location_code=row.location_code or "",
        supplier_id=row.supplier_id,
        supplier_code=row.supplier_code,
        purchase_order_id=row.purchase_order_id,
        purchase_order_number=row.purchase_order_number,
        purchase_order_line_id=row.line_id,
        owner=pick_owner(row.item_owner, row.supplier_owner, row.purchase_order_owner),
    )

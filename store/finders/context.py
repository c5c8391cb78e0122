"""Item context for exception evidence: recent counts and reservations, fetched in bulk."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, String, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from store.finders.findings import Finding, build_finding, quantity, utc_text
from store.models import CountResult, Location, Reservation

# Most items bound into one statement; SQLite allows 32,766 bound parameters per statement from 3.32 on.
_CHUNK = 5_000


def _chunks(ids: Sequence[int]) -> list[Sequence[int] | None]:
    # Past one chunk, one pass over the whole workspace is cheaper than binding
    # thousands of ids per statement. Rows of other items are skipped in Python.
    if len(ids) > _CHUNK:
        return [None]
    return [ids]


def _of_items(column: Any, chunk: Sequence[int] | None) -> Any:
    return column.in_(chunk) if chunk is not None else column.is_not(None)


async def _recent_counts(
    session: AsyncSession, *, workspace_id: int, item_ids: Sequence[int], per_item: int
) -> dict[int, list[dict[str, Any]]]:
    history: dict[int, list[dict[str, Any]]] = defaultdict(list)
    wanted = set(item_ids)
    for chunk in _chunks(item_ids):
        newest = (
            select(
                CountResult.id,
                func.row_number()
                .over(partition_by=CountResult.item_id, order_by=(CountResult.counted_at.desc(), CountResult.id.desc()))
                .label("position"),
            )
            .where(CountResult.workspace_id == workspace_id, _of_items(CountResult.item_id, chunk))
            .subquery()
        )
        # Plain columns, not CountResult objects: a refresh reads one row per recent count of every finding's item.
        rows = await session.execute(
            # Raw stored values: only the rows of wanted items are converted below.
            select(
                CountResult.item_id,
                type_coerce(CountResult.counted_at, String),
                Location.code,
                type_coerce(CountResult.counted_quantity, BigInteger),
                type_coerce(CountResult.system_quantity, BigInteger),
                type_coerce(CountResult.variance, BigInteger),
                CountResult.source,
            )
            .join(newest, newest.c.id == CountResult.id)
            .outerjoin(Location, Location.id == CountResult.location_id)
            .where(newest.c.position <= per_item)
            .order_by(CountResult.item_id, CountResult.counted_at.desc(), CountResult.id.desc())
        )
        for item_id, counted_at, location_code, counted, system, variance, source in rows.all():
            if item_id not in wanted:
                continue
            history[item_id].append(
                {
                    "counted_at": utc_text(counted_at),
                    "location": location_code or "all locations",
                    "counted": str(quantity(counted)),
                    "system": None if system is None else str(quantity(system)),
                    "variance": None if variance is None else str(quantity(variance)),
                    "source": source,
                }
            )
    return history


async def _recent_reservations(
    session: AsyncSession, *, workspace_id: int, item_ids: Sequence[int], per_item: int
) -> dict[int, list[dict[str, Any]]]:
    recent: dict[int, list[dict[str, Any]]] = defaultdict(list)
    wanted = set(item_ids)
    for chunk in _chunks(item_ids):
        newest = (
            select(
                Reservation.id,
                func.row_number()
                .over(partition_by=Reservation.item_id, order_by=Reservation.id.desc())
                .label("position"),
            )
            .where(Reservation.workspace_id == workspace_id, _of_items(Reservation.item_id, chunk))
            .subquery()
        )
        rows = await session.execute(
            select(
                Reservation.item_id,
                Reservation.reference,
                Location.code,
                type_coerce(Reservation.quantity, BigInteger),
                Reservation.status,
            )
            .join(newest, newest.c.id == Reservation.id)
            .join(Location, Location.id == Reservation.location_id)
            .where(newest.c.position <= per_item)
            .order_by(Reservation.item_id, Reservation.id.desc())
        )
        for item_id, reference, location_code, raw_quantity, status in rows.all():
            if item_id not in wanted:
                continue
            recent[item_id].append(
                {"reference": reference, "location": location_code, "quantity": str(quantity(raw_quantity)), "status": status}
            )
    return recent


async def add_item_context(
    session: AsyncSession,
    *,
    workspace_id: int,
    findings: Sequence[Finding],
    counts_per_item: int = 3,
    reservations_per_item: int = 3,
) -> list[Finding]:
    """Return the findings with each item's most recent counts and reservations added to the evidence.

    Two set-based queries, so a refresh of many findings does not run one query
    per finding. Findings without an item are returned as they are.
    """
    item_ids = sorted({finding.item_id for finding in findings if finding.item_id is not None})
    if not item_ids:
        return list(findings)
    counts = await _recent_counts(session, workspace_id=workspace_id, item_ids=item_ids, per_item=counts_per_item)
    reservations = await _recent_reservations(
        session, workspace_id=workspace_id, item_ids=item_ids, per_item=reservations_per_item
    )

    enriched: list[Finding] = []
    for finding in findings:
        if finding.item_id is None:
            enriched.append(finding)
            continue
        evidence = dict(finding.evidence)
        evidence.setdefault("recent_counts", counts.get(finding.item_id, []))
        evidence.setdefault("recent_reservations", reservations.get(finding.item_id, []))
        # build_finding skips the frozen dataclass's per-field setattr that dataclasses.replace pays.
        enriched.append(build_finding({**vars(finding), "evidence": evidence}))
    return enriched

"""Reconciliation steps for sync conflict exceptions: take the integration's values, or keep Order3's.

The agent passes the two versions it saw in the exception evidence
(`our_version` and `their_version`). The draft is rejected when either is not
the current one, and execution fails when either moved after the draft.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller
from store.errors import InvalidInputError
from store.models import ExceptionRecord, Item, StockLevel
from store.sync.changes import render
from store.sync.settlement import ConflictSides, conflict_sides, record_id_of
from store.types import MAX_FIXED, from_scaled, to_scaled

# A quantity times a cost difference can carry more digits than the default Decimal context keeps.
_EXACT = decimal.Context(prec=60)


@dataclass
class PreparedStep:
    """The inputs of a reconciliation draft: payload, value change, locations and title."""

    payload: dict[str, Any]
    value: Decimal
    title: str
    location_codes: tuple[str, ...] = ()
    affected: list[dict[str, Any]] = field(default_factory=list)


async def load_sides(session: AsyncSession, caller: Caller, record: ExceptionRecord) -> ConflictSides:
    """Return both sides of a sync conflict exception as they are now.

    Raises:
        InvalidInputError: If our record or the source's snapshot of it no longer exists.
    """
    source = str(record.evidence.get("source", ""))
    kind = str(record.evidence.get("record_kind", ""))
    record_id = record_id_of(record, kind)
    sides = None
    if record_id is not None:
        sides = await conflict_sides(session, workspace_id=caller.workspace_id, source=source, kind=kind, record_id=record_id)
    if sides is None:
        raise InvalidInputError(
            f"Exception {record.id} names a {kind or 'record'} that no longer exists in Order3 or in the {source} "
            "snapshots; nothing is left to reconcile."
        )
    return sides


def check_seen_versions(record: ExceptionRecord, sides: ConflictSides, *, our_version: str, their_version: str) -> None:
    """Reject a draft whose versions are not the current ones, naming both.

    Raises:
        InvalidInputError: Naming the version that differs and the fix.
    """
    source = sides.snapshot.source
    again = f"Read exception {record.id} again with get_exception and draft from its current versions."
    if not our_version.strip() or not their_version.strip():
        raise InvalidInputError(
            f"our_version and their_version are required for sync conflict {record.id}; copy them from the "
            "exception evidence."
        )
    if sides.snapshot.outcome != "conflict":
        raise InvalidInputError(
            f"{source} sent {sides.label} again after the conflict, with outcome {sides.snapshot.outcome}; "
            "find_exceptions shows whether a conflict remains."
        )
    if our_version.strip() != str(sides.record.version):
        raise InvalidInputError(f"our_version {our_version[:40]!r} is not {sides.label}'s current version {sides.record.version}. {again}")
    if their_version.strip() != sides.change.version:
        raise InvalidInputError(
            f"their_version {their_version[:40]!r} is not the version {source} sent last, {sides.change.version!r}. {again}"
        )
    if not sides.differing:
        raise InvalidInputError(f"{sides.label} now has the values {source} sent; nothing needs reconciling.")


async def cost_change_value(session: AsyncSession, caller: Caller, sides: ConflictSides) -> Decimal:
    """Return the inventory value change of taking the integration's unit cost: on hand × the cost difference.

    Every other field changes no value, so the result is 0 for them.

    Raises:
        InvalidInputError: If the item is costed in another currency than the base currency, or the value is out of range.
    """
    record = sides.record
    if not isinstance(record, Item) or "unit_cost" not in sides.differing:
        return Decimal(0)
    if record.currency != caller.base_currency:
        raise InvalidInputError(
            f"Item {record.sku} is costed in {record.currency} but the workspace base currency is {caller.base_currency}, "
            "and reconciliations convert no currencies, so the cost change cannot be priced for approval; use accept_ours."
        )
    on_hand = (
        await session.execute(
            select(func.sum(StockLevel.on_hand)).where(StockLevel.workspace_id == caller.workspace_id, StockLevel.item_id == record.id)
        )
    ).scalar_one() or Decimal(0)
    exact = _EXACT.multiply(abs(on_hand), abs(sides.theirs["unit_cost"] - record.unit_cost))
    rounded = exact.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP, context=_EXACT)
    if rounded > MAX_FIXED:
        raise InvalidInputError(f"The value change {rounded} of taking {record.sku}'s unit cost is out of range.")
    return from_scaled(to_scaled(rounded))


async def prepare_conflict_step(
    session: AsyncSession,
    caller: Caller,
    record: ExceptionRecord,
    *,
    action: str,
    our_version: str,
    their_version: str,
    reported: Decimal | None,
    ours: Decimal | None,
    bin: str,
) -> PreparedStep:
    """Check a step for a sync conflict and return what its draft is created from.

    `adjust_ours` writes the source's differing values to Order3's record;
    `accept_ours` keeps Order3's values and closes the conflict.

    Raises:
        InvalidInputError: For arguments of a mismatch, versions that are not current, or nothing to reconcile.
    """
    if reported is not None or ours is not None or bin.strip():
        raise InvalidInputError(
            f"reported, ours and bin apply to mismatch exceptions; for sync conflict {record.id} pass our_version "
            "and their_version from its evidence instead."
        )
    sides = await load_sides(session, caller, record)
    check_seen_versions(record, sides, our_version=our_version, their_version=their_version)
    value = await cost_change_value(session, caller, sides) if action == "adjust_ours" else Decimal(0)

    source = sides.snapshot.source
    fields = ", ".join(sides.differing)
    step = f"take {source}'s {fields}" if action == "adjust_ours" else f"keep Order3's {fields}"
    payload = {
        "exception_kind": "sync_conflict",
        "action": action,
        "exception_id": record.id,
        "fingerprint": record.fingerprint,
        "source": source,
        "record_kind": sides.kind,
        "record_id": sides.record.id,
        "key": sides.code,
        "snapshot_id": sides.snapshot.id,
        "external_id": sides.snapshot.external_id,
        "batch_id": sides.snapshot.batch_id,
        "our_version": str(sides.record.version),
        "their_version": sides.change.version,
        "fields": {name: {"ours": sides.ours[name], "theirs": render(sides.theirs[name])} for name in sides.differing},
        "value_change": str(value),
    }
    location_codes = (sides.code,) if sides.kind == "location" else ()
    return PreparedStep(
        payload=payload,
        value=value,
        title=f"Reconcile {sides.label} with {source}: {step}",
        location_codes=location_codes,
        affected=[{"kind": sides.kind, "id": sides.record.id}, {"kind": "external_snapshot", "id": sides.snapshot.id}],
    )

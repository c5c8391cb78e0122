"""Reconciliation drafts: executed by an adjustment movement or a snapshot acknowledgement (mismatches), or by
taking the integration's values or keeping Order3's (sync conflicts).

What the draft was approved on is read again first: both figures of a
mismatch, or both versions of a conflicting record. If the source sent a newer
snapshot, or Order3's side moved, the draft fails with the reason and nothing
else is written, because the approval was for other numbers.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.services.kinds import KindExecutor, Performed
from order3_mcp.services.reconciliations import figure_name, where_text
from store.finders.mismatches import Measurement
from store.models import Draft, ExternalSnapshot, Item, Location
from store.reconciliations import (
    acknowledge_snapshot,
    current_snapshot,
    measure,
    on_hand_at,
)
from store.stock import Place, record_movement
from store.sync.settlement import (
    ConflictSides,
    conflict_sides,
    resolve_exception,
    take_theirs,
)

if TYPE_CHECKING:
    from order3_mcp.app import Caller, Order3


async def _measure_now(session: AsyncSession, draft: Draft) -> tuple[Item | None, ExternalSnapshot | None, Measurement | None]:
    """Return the item, the current snapshot and both current figures for the draft's item and location."""
    payload = draft.payload
    item = await session.get(Item, payload["item_id"])
    if item is None:
        return None, None, None
    location = await session.get(Location, payload["location_id"]) if payload["location_id"] is not None else None
    snapshot = await current_snapshot(
        session,
        workspace_id=draft.workspace_id,
        source=payload["source"],
        record_kind=payload["record_kind"],
        item_id=item.id,  # type: ignore[arg-type]
        location_id=payload["location_id"],
    )
    if snapshot is None:
        return item, None, None
    return item, snapshot, await measure(session, snapshot=snapshot, item=item, location=location)


def _place(draft: Draft) -> Place:
    return Place(draft.payload["location_id"], draft.payload["bin_id"])


async def revalidate(session: AsyncSession, draft: Draft) -> str:
    """Return why the step can no longer run: the snapshot was replaced, our side moved, or stock is short."""
    payload = draft.payload
    if payload.get("exception_kind") == "sync_conflict":
        return await _revalidate_conflict(session, draft)
    source = payload["source"]
    where = where_text(payload["location_code"])
    item, snapshot, measurement = await _measure_now(session, draft)
    if item is None:
        return f"Item {payload['sku']} no longer exists."
    if snapshot is None or measurement is None:
        return (
            f"The {source} snapshot this draft answers (id {payload['snapshot_id']}) is no longer current: it was "
            "acknowledged by another draft or replaced. Nothing was written; run find_mismatches to see what remains."
        )
    if snapshot.id != payload["snapshot_id"]:
        return (
            f"{source} sent a newer snapshot for {payload['sku']} {where} since the draft: it reports "
            f"{measurement.reported} where the draft saw {payload['reported']}. Nothing was written; draft a new "
            "reconciliation from the current figures."
        )
    if measurement.ours != Decimal(payload["ours"]):
        return (
            f"Order3's {figure_name(payload['record_kind'])} of {payload['sku']} {where} changed from {payload['ours']} "
            f"to {measurement.ours} since the draft. Nothing was written; draft a new reconciliation from the current figures."
        )
    if payload["action"] != "adjust_ours":
        return ""

    if not item.active:
        return f"Item {item.sku} is no longer active, so its stock is not adjusted."
    adjustment = Decimal(payload["adjustment"])
    if adjustment < 0:
        at_place = await on_hand_at(session, workspace_id=draft.workspace_id, item_id=item.id, place=_place(draft))  # type: ignore[arg-type]
        if at_place < -adjustment:
            return f"{item.sku} has {at_place} on hand at the place to adjust, so removing {-adjustment} would make stock negative."
    return ""


async def perform(session: AsyncSession, app: Order3, caller: Caller, draft: Draft) -> Performed:
    """Move stock by reported − ours, computed again now, or acknowledge the snapshot; or settle a sync conflict."""
    payload = draft.payload
    if payload.get("exception_kind") == "sync_conflict":
        return await _perform_conflict(session, app, draft)
    item, snapshot, measurement = await _measure_now(session, draft)
    # revalidate ran first in this transaction and found all three.
    assert item is not None
    assert snapshot is not None
    assert measurement is not None

    if payload["action"] == "accept_ours":
        await acknowledge_snapshot(session, snapshot_id=snapshot.id)  # type: ignore[arg-type]
        return {"acknowledged_snapshot": snapshot.id}, [{"kind": "external_snapshot", "id": snapshot.id}]

    adjustment = measurement.difference
    side = {"destination": _place(draft)} if adjustment > 0 else {"source": _place(draft)}
    movement = await record_movement(
        session,
        workspace_id=caller.workspace_id,
        item_id=item.id,  # type: ignore[arg-type]
        kind="adjustment",
        quantity=abs(adjustment),
        actor=caller.principal,
        reference_kind="draft",
        reference_id=draft.id,
        reference=f"reconciliation draft {draft.id} with {payload['source']} snapshot {snapshot.id}",
        unit_cost=item.unit_cost,
        occurred_at=app.clock(),
        item_label=item.sku,
        **side,
    )
    return (
        {"movement": movement.id, "adjusted": f"{adjustment:+}"},
        [{"kind": "movement", "id": movement.id}, {"kind": "item", "id": item.id}],
    )


async def _conflict_sides(session: AsyncSession, draft: Draft) -> ConflictSides | None:
    payload = draft.payload
    return await conflict_sides(
        session, workspace_id=draft.workspace_id, source=payload["source"], kind=payload["record_kind"],
        record_id=payload["record_id"],
    )


async def _revalidate_conflict(session: AsyncSession, draft: Draft) -> str:
    payload = draft.payload
    source = payload["source"]
    sides = await _conflict_sides(session, draft)
    if sides is None:
        return f"The {payload['record_kind']} {payload['key']} or {source}'s snapshot of it no longer exists; nothing was written."
    if sides.snapshot.id != payload["snapshot_id"]:
        return (
            f"{source} sent {sides.label} again since the draft (version {sides.change.version!r}, outcome "
            f"{sides.snapshot.outcome}). Nothing was written; run find_exceptions to see whether a conflict remains."
        )
    if str(sides.record.version) != payload["our_version"]:
        return (
            f"{sides.label} changed in Order3 since the draft (version {payload['our_version']} → {sides.record.version}). "
            "Nothing was written; draft a new reconciliation from the current versions."
        )
    return ""


async def _perform_conflict(session: AsyncSession, app: Order3, draft: Draft) -> Performed:
    payload = draft.payload
    sides = await _conflict_sides(session, draft)
    # revalidate ran first in this transaction and found both sides unchanged.
    assert sides is not None
    now = app.clock()
    affected: list[dict[str, Any]] = [{"kind": sides.kind, "id": sides.record.id}, {"kind": "exception", "id": payload["exception_id"]}]
    if payload["action"] == "adjust_ours":
        fields = ", ".join(sides.differing)
        await take_theirs(session, sides, source=payload["source"], now=now)
        result = {"took_theirs": fields, "version": sides.record.version}
    else:
        result = {"kept_ours": ", ".join(sides.differing), "version": sides.record.version}
    await resolve_exception(session, exception_id=payload["exception_id"], now=now)
    return result, affected


EXECUTOR = KindExecutor(revalidate=revalidate, perform=perform)

"""Reconciliation drafts: executed by an adjustment movement, or by acknowledging the external snapshot.

Both figures the draft was approved on are read again first. If the source
sent a newer snapshot, or Order3's figure moved, the draft fails with the
reason and nothing else is written: the approval was for other numbers.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

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
    """Return why the step can no longer run: the snapshot was replaced, our figure moved, or stock is short."""
    payload = draft.payload
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
    """Move stock by reported − ours, computed again now, or acknowledge the snapshot."""
    payload = draft.payload
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


EXECUTOR = KindExecutor(revalidate=revalidate, perform=perform)

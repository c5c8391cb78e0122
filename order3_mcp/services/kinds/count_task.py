"""Count task drafts: executed by creating the count task with an on hand snapshot per line."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.services.kinds import KindExecutor, Performed
from store.count_sheets import SheetLine, create_count_sheet, open_task_counting
from store.models import Bin, Draft, Item, Location

if TYPE_CHECKING:
    from order3_mcp.app import Caller, Order3


async def revalidate(session: AsyncSession, draft: Draft) -> str:
    """Return why the task can no longer be created: location, bin or item gone, or an item inactive."""
    payload = draft.payload
    location = (await session.execute(select(Location).where(Location.id == payload["location_id"]))).scalar_one_or_none()
    if location is None:
        return f"Location {payload['location_code']} no longer exists."
    for line in payload["lines"]:
        item = (await session.execute(select(Item).where(Item.id == line["item_id"]))).scalar_one_or_none()
        if item is None or not item.active:
            return f"Item {line['sku']} is no longer active, so it cannot be counted."
        if line["bin_id"] is not None:
            bin_row = (await session.execute(select(Bin).where(Bin.id == line["bin_id"]))).scalar_one_or_none()
            if bin_row is None or bin_row.location_id != location.id:
                return f"Bin {line['bin_code']} no longer exists at {location.code}."
        task = await open_task_counting(
            session, workspace_id=draft.workspace_id, item_id=line["item_id"], location_id=location.id,
            bin_key=line["bin_id"] or 0,
        )
        if task is not None:
            place = f"{location.code}/{line['bin_code']}" if line["bin_code"] else location.code
            return (
                f"Count task {task} is still open for {line['sku']} at {place}; submit it first, because two open "
                "tasks would correct the same difference twice."
            )
    return ""


async def perform(session: AsyncSession, app: Order3, caller: Caller, draft: Draft) -> Performed:
    """Create the open count task; each line's snapshot is on hand at this moment."""
    payload = draft.payload
    sheet = await create_count_sheet(
        session,
        workspace_id=caller.workspace_id,
        location_id=payload["location_id"],
        lines=[SheetLine(item_id=line["item_id"], bin_id=line["bin_id"]) for line in payload["lines"]],
        title=draft.title,
        due_date=date.fromisoformat(payload["due_date"]) if payload.get("due_date") else None,
        assignee=payload.get("assignee", ""),
        created_by=caller.principal,
        created_at=app.clock(),
        draft_id=draft.id,
    )
    return {"count_task": sheet.id}, [{"kind": "count_task", "id": sheet.id}]


EXECUTOR = KindExecutor(revalidate=revalidate, perform=perform)

"""Count tasks: creating them with an on hand snapshot, and applying submitted counts through the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.changes import touch_items
from store.errors import ConflictError, InvalidInputError, NotFoundError
from store.models import (
    Bin,
    CountResult,
    CountSheet,
    CountSheetLine,
    Item,
    Location,
    Movement,
    StockLevel,
)
from store.stock import Place, record_movement

# CountResult.source of counts submitted against a count task.
COUNT_TASK_SOURCE = "count_task"


@dataclass(frozen=True)
class SheetLine:
    """One item and bin of a count task about to be created."""

    item_id: int
    bin_id: int | None = None


@dataclass(frozen=True)
class LineView:
    """A count task line with the item and bin it names, and the correction it caused."""

    line: CountSheetLine
    item: Item
    bin: Bin | None
    movement_id: int | None


async def _on_hand(session: AsyncSession, *, workspace_id: int, item_id: int, location_id: int, bin_key: int) -> Decimal:
    on_hand = (
        await session.execute(
            select(StockLevel.on_hand).where(
                StockLevel.workspace_id == workspace_id,
                StockLevel.item_id == item_id,
                StockLevel.location_id == location_id,
                StockLevel.bin_key == bin_key,
            )
        )
    ).scalar_one_or_none()
    return on_hand if on_hand is not None else Decimal(0)


async def create_count_sheet(
    session: AsyncSession,
    *,
    workspace_id: int,
    location_id: int,
    lines: list[SheetLine],
    title: str,
    due_date: date | None,
    assignee: str,
    created_by: str,
    created_at: datetime,
    draft_id: int | None = None,
) -> CountSheet:
    """Create an open count task whose lines record on hand at this moment as their snapshot."""
    sheet = CountSheet(
        workspace_id=workspace_id,
        location_id=location_id,
        title=title,
        status="open",
        due_date=due_date,
        assignee=assignee,
        draft_id=draft_id,
        created_by=created_by,
        created_at=created_at,
    )
    session.add(sheet)
    await session.flush()
    for line_no, line in enumerate(lines, start=1):
        bin_key = line.bin_id or 0
        snapshot = await _on_hand(
            session, workspace_id=workspace_id, item_id=line.item_id, location_id=location_id, bin_key=bin_key
        )
        session.add(
            CountSheetLine(
                workspace_id=workspace_id,
                sheet_id=sheet.id,  # type: ignore[arg-type]
                line_no=line_no,
                item_id=line.item_id,
                location_id=location_id,
                bin_id=line.bin_id,
                bin_key=bin_key,
                snapshot_quantity=snapshot,
            )
        )
    await session.flush()
    touch_items(session, (line.item_id for line in lines))
    return sheet


async def get_count_sheet(session: AsyncSession, *, workspace_id: int, sheet_id: int) -> CountSheet:
    """Return a count task of this workspace.

    Raises:
        NotFoundError: If there is none with that id.
    """
    sheet = (
        await session.execute(select(CountSheet).where(CountSheet.workspace_id == workspace_id, CountSheet.id == sheet_id))
    ).scalar_one_or_none()
    if sheet is None:
        raise NotFoundError(f"Count task {sheet_id} does not exist in this workspace; `order3 count list` shows the open ones.")
    return sheet


async def count_sheet_lines(session: AsyncSession, *, sheet_id: int) -> list[LineView]:
    """Return a count task's lines in line order, with their items, bins and correction movements."""
    rows = (
        await session.execute(
            select(CountSheetLine, Item, Bin, CountResult.applied_movement_id)
            .join(Item, Item.id == CountSheetLine.item_id)
            .outerjoin(Bin, Bin.id == CountSheetLine.bin_id)
            .outerjoin(CountResult, CountResult.id == CountSheetLine.count_result_id)
            .where(CountSheetLine.sheet_id == sheet_id)
            .order_by(CountSheetLine.line_no)
        )
    ).all()
    return [LineView(line=row[0], item=row[1], bin=row[2], movement_id=row[3]) for row in rows]


async def list_count_sheets(
    session: AsyncSession, *, workspace_id: int, status: str | None = None, after_id: int | None = None, limit: int = 50
) -> list[tuple[CountSheet, Location, int]]:
    """Return count tasks ordered by id, each with its location and number of lines."""
    line_count = (
        select(func.count(CountSheetLine.id)).where(CountSheetLine.sheet_id == CountSheet.id).scalar_subquery()
    )
    statement = (
        select(CountSheet, Location, line_count)
        .join(Location, Location.id == CountSheet.location_id)
        .where(CountSheet.workspace_id == workspace_id)
    )
    if status is not None:
        statement = statement.where(CountSheet.status == status)
    if after_id is not None:
        statement = statement.where(CountSheet.id > after_id)
    rows = (await session.execute(statement.order_by(CountSheet.id).limit(limit))).all()
    return [(row[0], row[1], row[2]) for row in rows]


async def apply_counts(
    session: AsyncSession,
    *,
    sheet: CountSheet,
    counted: dict[int, Decimal],
    actor: str,
    counted_at: datetime,
    location_code: str,
) -> list[CountResult]:
    """Store a count result for every line and post each non-zero variance as a count correction.

    `counted` maps every line id of the sheet to its counted quantity. Each
    variance is counted − snapshot, so stock ends at counted + whatever moved
    since the task was created.

    Raises:
        ConflictError: If the task is no longer open, or changed while this ran.
        InvalidInputError: If a line is missing from `counted`, or a correction
            would take on hand below zero.
    """
    if sheet.status != "open":
        raise ConflictError(
            f"Count task {sheet.id} is {sheet.status}: its counts were submitted by {sheet.submitted_by or 'someone'} "
            f"at {sheet.submitted_at.isoformat() if sheet.submitted_at else 'an unknown time'}, and a task is counted "
            "once. Draft a new count task to count again."
        )
    # The conditional update is what makes a second, concurrent submission fail.
    claimed = await session.execute(
        update(CountSheet)
        .where(CountSheet.id == sheet.id, CountSheet.version == sheet.version, CountSheet.status == "open")
        .values(status="applied", version=sheet.version + 1, submitted_by=actor, submitted_at=counted_at)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        raise ConflictError(f"Count task {sheet.id} was submitted by someone else while this request ran; reload it.")

    results: list[CountResult] = []
    for view in await count_sheet_lines(session, sheet_id=sheet.id):  # type: ignore[arg-type]
        line = view.line
        if line.id not in counted:
            raise InvalidInputError(f"Count task {sheet.id} line {line.line_no} ({view.item.sku}) has no counted quantity.")
        quantity = counted[line.id]  # type: ignore[index]
        variance = quantity - line.snapshot_quantity
        place = Place(line.location_id, line.bin_id)
        where = location_code + (f" bin {view.bin.code}" if view.bin is not None else "")
        movement = None
        if variance != 0:
            on_hand = await _on_hand(
                session, workspace_id=sheet.workspace_id, item_id=line.item_id, location_id=line.location_id,
                bin_key=line.bin_key,
            )
            if on_hand + variance < 0:
                raise InvalidInputError(
                    f"{view.item.sku} at {where}: counted {quantity} against a snapshot of {line.snapshot_quantity}, "
                    f"but only {on_hand} is on hand now because stock left after the task was created, so the "
                    f"correction of {variance} would make stock negative. Recount, or check the movements since "
                    f"{sheet.created_at.isoformat()}."
                )
            movement = await _post_correction(session, sheet=sheet, view=view, place=place, variance=variance, actor=actor, counted_at=counted_at)
        result = CountResult(
            workspace_id=sheet.workspace_id,
            item_id=line.item_id,
            location_id=line.location_id,
            bin_id=line.bin_id,
            counted_quantity=quantity,
            system_quantity=line.snapshot_quantity,
            variance=variance,
            source=COUNT_TASK_SOURCE,
            note=f"Count task {sheet.id} line {line.line_no}",
            actor=actor,
            counted_at=counted_at,
            applied_movement_id=movement.id if movement is not None else None,
            external_ref=f"count_sheet:{sheet.id}:line:{line.id}",
        )
        session.add(result)
        await session.flush()
        line.counted_quantity = quantity
        line.count_result_id = result.id
        touch_items(session, [line.item_id])
        results.append(result)
    await session.flush()
    await session.refresh(sheet)
    return results


async def _post_correction(
    session: AsyncSession,
    *,
    sheet: CountSheet,
    view: LineView,
    place: Place,
    variance: Decimal,
    actor: str,
    counted_at: datetime,
) -> Movement:
    # A positive variance adds stock at the counted place and a negative one removes it.
    return await record_movement(
        session,
        workspace_id=sheet.workspace_id,
        item_id=view.line.item_id,
        kind="count_correction",
        quantity=abs(variance),
        destination=place if variance > 0 else None,
        source=place if variance < 0 else None,
        actor=actor,
        reference_kind="count_task",
        reference_id=sheet.id,
        reference=f"Count task {sheet.id} line {view.line.line_no}",
        unit_cost=view.item.unit_cost,
        occurred_at=counted_at,
        item_label=view.item.sku,
    )


async def open_task_counting(
    session: AsyncSession, *, workspace_id: int, item_id: int, location_id: int, bin_key: int
) -> int | None:
    """Return the id of an open count task that already counts this item at this place, or None.

    Two open tasks for one place would each post counted − its own snapshot,
    so the same shortfall would be corrected twice.
    """
    statement = (
        select(CountSheet.id)
        .join(CountSheetLine, CountSheetLine.sheet_id == CountSheet.id)
        .where(
            CountSheet.workspace_id == workspace_id,
            CountSheet.status == "open",
            CountSheetLine.item_id == item_id,
            CountSheetLine.location_id == location_id,
            CountSheetLine.bin_key == bin_key,
        )
        .order_by(CountSheet.id)
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()

"""Count task services: drafting a count, reading count tasks, and submitting what was counted.

Submitting and applying are one step. The variance of each line is measured
against the snapshot taken when the task was created, so the correction is the
same whenever it is posted, and a later review has nothing to change about it.
Counting blind is what needs protecting: `get_count_task` and `submit_counts`
hide expected quantities and variances unless the caller asks for them, and the
activity log records whether they were shown.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from order3_mcp.inputs import CountLine, parse_quantity
from order3_mcp.operator_schemas import (
    CountTaskLineOut,
    CountTaskOut,
    CountTaskPage,
    CountTaskSummary,
)
from order3_mcp.pagination import check_limit, decode_cursor, render_page
from order3_mcp.schemas import DraftDetail
from order3_mcp.services import policy_routing
from order3_mcp.services.drafts import (
    MAX_LINES,
    _check_rationale,
    _live_exceptions,
    _policy_fields,
    approval_owner,
    draft_detail,
)
from order3_mcp.services.finder_refresh import refresh_kind
from policies import DraftFacts
from store import catalog, drafts
from store.changes import item_scoped
from store.count_sheets import (
    LineView,
    apply_counts,
    count_sheet_lines,
    get_count_sheet,
    list_count_sheets,
    open_task_counting,
)
from store.errors import ConflictError, InvalidInputError, NotFoundError
from store.idempotency import decimal_or_raw
from store.models import (
    COUNT_SHEET_STATUSES,
    OPEN_DRAFT_STATUSES,
    Bin,
    CountSheet,
    Draft,
    ExceptionRecord,
    Item,
    Location,
    StockLevel,
)
from store.types import from_scaled, to_scaled
from store.workspaces import sku_key

_COUNTED_TEXT = re.compile(r"^[0-9]+(\.[0-9]+)?$")


@dataclass(frozen=True)
class CountEntry:
    """One counted quantity as the person entered it, before it is matched to a line.

    `source` names where it came from, such as "--line WIDGET-1=12" or
    "counts.csv row 3", so an error can point at it.
    """

    sku: str
    bin: str
    counted: str
    source: str


def _today(app: Order3, caller: Caller) -> date:
    return app.clock().astimezone(ZoneInfo(caller.timezone)).date()


def _check_due_date(app: Order3, caller: Caller, due_date: str) -> date | None:
    text = due_date.strip()
    if not text:
        return None
    try:
        due = date.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(f"due_date {due_date!r} is not a date; write it as YYYY-MM-DD, or leave it empty.") from None
    today = _today(app, caller)
    if due < today:
        raise InvalidInputError(
            f"due_date {due.isoformat()} is before today ({today.isoformat()} in {caller.timezone}); "
            "give today or a later date, or leave it empty."
        )
    return due


async def _find_bin(session: AsyncSession, *, location: Location, code: str, field: str) -> Bin:
    bins = list(
        (await session.execute(select(Bin).where(Bin.location_id == location.id).order_by(Bin.code))).scalars().all()
    )
    for candidate in bins:
        if candidate.code.strip().casefold() == code.strip().casefold():
            return candidate
    known = ", ".join(b.code for b in bins[:20]) + (", …" if len(bins) > 20 else "")
    fix = f"bins there: {known}" if bins else f"{location.code} has no bins, so leave bin empty"
    raise NotFoundError(f"{field}: bin {code!r} does not exist at {location.code}; {fix}.")


async def _check_unbinned(session: AsyncSession, *, workspace_id: int, item: Item, location: Location, field: str) -> None:
    """Reject a line without a bin for an item that is held only in bins at the location.

    Such a line would count the empty location-level shelf and find nothing to correct.
    """
    rows = (
        await session.execute(
            select(StockLevel.bin_key, StockLevel.on_hand, Bin.code)
            .outerjoin(Bin, Bin.id == StockLevel.bin_id)
            .where(
                StockLevel.workspace_id == workspace_id,
                StockLevel.item_id == item.id,
                StockLevel.location_id == location.id,
                StockLevel.on_hand != 0,
            )
            .order_by(Bin.code)
        )
    ).all()
    if rows and all(row.bin_key != 0 for row in rows):
        bins = ", ".join(row.code for row in rows)
        raise InvalidInputError(
            f"{field}: {item.sku} is held at {location.code} only in bins {bins}, not at the location itself; "
            "name the bin to count, with one line per bin."
        )


async def _count_exceptions(
    session: AsyncSession, caller: Caller, exception_ids: list[int], *, item_ids: set[int], location: Location
) -> list[int]:
    """Check that each linked exception is about one of the items at this location, then that it is live."""
    if not exception_ids:
        return []
    rows = (
        await session.execute(
            select(ExceptionRecord).where(
                ExceptionRecord.workspace_id == caller.workspace_id, ExceptionRecord.id.in_(sorted(set(exception_ids)))
            )
        )
    ).scalars().all()
    for record in rows:
        about_item = record.item_id is not None and record.item_id in item_ids
        about_place = record.location_id is None or record.location_id == location.id
        if not (about_item and about_place):
            subject = f"{record.sku or 'no item'} at {record.location_code or 'no location'}"
            raise InvalidInputError(
                f"exception_ids: exception {record.id} ({record.kind}) is about {subject}, which this count task "
                f"does not count at {location.code}; link only exceptions the count answers."
            )
    # Every remaining exception names one of the items, so the supplier branch of the check never applies.
    return await _live_exceptions(session, caller, exception_ids, item_ids=item_ids, supplier_id=-1)


async def _check_no_overlap(session: AsyncSession, caller: Caller, place: Location, lines: list[dict[str, Any]]) -> None:
    """Refuse a count of a place that an open task, or a count draft not yet decided, already counts.

    Two tasks for one place would each correct counted − its own snapshot, so one
    shortfall would be corrected twice.
    """
    wanted = {(line["item_id"], line["bin_id"] or 0): line for line in lines}
    for (item_id, bin_key), line in wanted.items():
        task = await open_task_counting(
            session, workspace_id=caller.workspace_id, item_id=item_id, location_id=place.id, bin_key=bin_key  # type: ignore[arg-type]
        )
        if task is not None:
            raise InvalidInputError(
                f"lines: count task {task} is still open for {line['sku']} at {place.code}; submit it before drafting "
                "another count of the same place."
            )
    pending = await session.execute(
        select(Draft.id, Draft.payload).where(
            Draft.workspace_id == caller.workspace_id, Draft.kind == "count_task", Draft.status.in_(OPEN_DRAFT_STATUSES)
        )
    )
    for draft_id, payload in pending.all():
        if payload.get("location_id") != place.id:
            continue
        for other in payload.get("lines", []):
            line = wanted.get((other.get("item_id"), other.get("bin_id") or 0))
            if line is not None:
                raise InvalidInputError(
                    f"lines: count draft {draft_id} already asks for {line['sku']} at {place.code}; withdraw it or wait "
                    "for its decision before drafting another count of the same place."
                )


async def draft_count_task(
    app: Order3,
    caller: Caller,
    *,
    location: str,
    lines: list[CountLine],
    rationale: str,
    title: str = "",
    assignee: str = "",
    due_date: str = "",
    exception_ids: list[int] | None = None,
    idempotency_key: str | None = None,
    request_id: str = "",
) -> DraftDetail:
    """Prepare a count task draft; no task exists until a person approves it.

    Raises:
        InvalidInputError: For an empty or duplicate line, an inactive item, a
            bin left out for an item held only in bins, or a bad due date.
        NotFoundError: For an unknown location, SKU, bin or exception.
    """
    linked_ids = list(exception_ids or [])

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        clean_rationale = _check_rationale(rationale)
        if not location.strip():
            raise InvalidInputError("location is empty; pass the code of the location to count at (list_locations shows them).")
        if not lines:
            raise InvalidInputError("lines is empty; pass at least one line such as {\"sku\": \"WIDGET-1\"} to count.")
        if len(lines) > MAX_LINES:
            raise InvalidInputError(f"lines has {len(lines)} entries; split the count into tasks of at most {MAX_LINES} lines.")
        if len(assignee.strip()) > 120:
            raise InvalidInputError("assignee is longer than 120 characters; give the person's short name.")
        due = _check_due_date(app, caller, due_date)

        try:
            place = await catalog.get_location_by_code(session, workspace_id=caller.workspace_id, code=location)
        except NotFoundError as exc:
            raise NotFoundError(f"location: {exc.message}") from None

        items: list[Item] = []
        payload_lines: list[dict[str, Any]] = []
        seen: dict[tuple[int, int], int] = {}
        for index, line in enumerate(lines):
            field = f"lines[{index}]"
            try:
                item = await catalog.get_item_by_sku(session, workspace_id=caller.workspace_id, sku=line.sku)
            except NotFoundError as exc:
                raise NotFoundError(f"{field}.sku: {exc.message}") from None
            if not item.active:
                raise InvalidInputError(f"{field}.sku: item {item.sku} is inactive, so it cannot be counted; reactivate it or remove the line.")
            bin_row = None
            if line.bin.strip():
                bin_row = await _find_bin(session, location=place, code=line.bin, field=f"{field}.bin")
            else:
                await _check_unbinned(session, workspace_id=caller.workspace_id, item=item, location=place, field=f"{field}.bin")
            key = (item.id, bin_row.id if bin_row else 0)  # type: ignore[arg-type]
            if key in seen:
                where = f"bin {bin_row.code}" if bin_row else "the location itself"
                raise InvalidInputError(
                    f"{field}: {item.sku} in {where} at {place.code} is already lines[{seen[key]}]; list each item and bin once."
                )
            # A submitted count names its line by SKU, plus the bin when there is one, so an
            # item counted both in a bin and at the location itself would be ambiguous.
            other = next(
                (at for (seen_item, seen_bin), at in seen.items() if seen_item == item.id and (seen_bin == 0) != (key[1] == 0)),
                None,
            )
            if other is not None:
                raise InvalidInputError(
                    f"{field}: {item.sku} is already lines[{other}], once in a bin and once at {place.code} itself; "
                    "count the bin and the location itself in separate count tasks."
                )
            seen[key] = index
            items.append(item)
            payload_lines.append(
                {"sku": item.sku, "item_id": item.id, "bin_code": bin_row.code if bin_row else "", "bin_id": bin_row.id if bin_row else None}
            )

        await _check_no_overlap(session, caller, place, payload_lines)
        linked = await _count_exceptions(
            session, caller, linked_ids, item_ids={item.id for item in items}, location=place  # type: ignore[misc]
        )
        route = await policy_routing.route_draft(
            app, session, caller, DraftFacts(kind="count_task", value=Decimal(0), location_codes=(place.code,))
        )
        payload = {
            "location_code": place.code,
            "location_id": place.id,
            "assignee": assignee.strip(),
            "due_date": due.isoformat() if due else "",
            "lines": payload_lines,
        }
        count = len(payload_lines)
        draft = await drafts.create_draft(
            session,
            workspace_id=caller.workspace_id,
            kind="count_task",
            title=title.strip() or f"Count {count} line{'s' if count != 1 else ''} at {place.code}",
            rationale=clean_rationale,
            payload=payload,
            affected=[{"kind": "location", "id": place.id}] + [{"kind": "item", "id": item.id} for item in items],
            created_by_kind=caller.principal_kind,
            created_by=caller.principal,
            created_by_token_id=caller.token_id,
            on_behalf_of=caller.on_behalf_of,
            estimated_value=Decimal(0),
            currency=caller.base_currency,
            idempotency_key=idempotency_key,
            exception_ids=linked,
            **_policy_fields(app, route.rule, caller, policy=route.policy),
        )
        await policy_routing.record_route(session, draft=draft, route=route, now=app.clock())
        detail = await draft_detail(session, draft)
        summary = f"Drafted count task draft {draft.id} for {count} line(s) at {place.code}; {approval_owner(draft)}."
        affected = [{"kind": "draft", "id": draft.id}] + [{"kind": "exception", "id": e} for e in linked]
        return Outcome(detail, summary, affected=affected + draft.affected, draft_id=draft.id)

    arguments = {
        "location": location,
        "lines": [line.model_dump(mode="json") for line in lines],
        "rationale": rationale,
        "title": title,
        "assignee": assignee,
        "due_date": due_date,
        "exception_ids": linked_ids,
    }
    return await app.run(
        caller, "draft_count_task", arguments, work, result_type=DraftDetail, idempotency_key=idempotency_key, request_id=request_id
    )


def _line_label(view: LineView) -> str:
    return view.item.sku + (f"@{view.bin.code}" if view.bin is not None else "")


def _task_out(sheet: CountSheet, location: Location, views: list[LineView], *, show_expected: bool) -> CountTaskOut:
    lines = []
    for view in views:
        line = view.line
        counted = line.counted_quantity
        variance = counted - line.snapshot_quantity if counted is not None else None
        lines.append(
            CountTaskLineOut(
                line_no=line.line_no,
                sku=view.item.sku,
                bin=view.bin.code if view.bin is not None else "",
                expected=str(line.snapshot_quantity) if show_expected else None,
                counted=str(counted) if counted is not None else None,
                variance=str(variance) if show_expected and variance is not None else None,
                count_result_id=line.count_result_id,
                movement_id=view.movement_id,
            )
        )
    return CountTaskOut(
        task_id=sheet.id,  # type: ignore[arg-type]
        status=sheet.status,
        location=location.code,
        title=sheet.title,
        assignee=sheet.assignee,
        due_date=sheet.due_date.isoformat() if sheet.due_date else None,
        draft_id=sheet.draft_id,
        created_by=sheet.created_by,
        created_at=sheet.created_at.isoformat(),
        submitted_by=sheet.submitted_by,
        submitted_at=sheet.submitted_at.isoformat() if sheet.submitted_at else None,
        expected_shown=show_expected,
        lines=lines,
    )


async def _load_task(session: AsyncSession, caller: Caller, task_id: int) -> tuple[CountSheet, Location, list[LineView]]:
    sheet = await get_count_sheet(session, workspace_id=caller.workspace_id, sheet_id=task_id)
    location = (await session.execute(select(Location).where(Location.id == sheet.location_id))).scalar_one()
    return sheet, location, await count_sheet_lines(session, sheet_id=sheet.id)  # type: ignore[arg-type]


async def list_count_tasks(
    app: Order3, caller: Caller, *, status: str = "", cursor: str | None = None, limit: int = 50
) -> CountTaskPage:
    """List count tasks, optionally only those in one status."""

    async def work(session: AsyncSession) -> Outcome:
        check_limit(limit)
        after = decode_cursor(cursor, "count_list")
        if status and status not in COUNT_SHEET_STATUSES:
            raise InvalidInputError(f"Count task status {status!r} is unknown; use one of {', '.join(COUNT_SHEET_STATUSES)}.")
        rows = await list_count_sheets(
            session, workspace_id=caller.workspace_id, status=status or None, after_id=after, limit=limit + 1
        )

        def render(row: tuple[CountSheet, Location, int]) -> CountTaskSummary:
            sheet, location, line_count = row
            return CountTaskSummary(
                task_id=sheet.id,  # type: ignore[arg-type]
                status=sheet.status,
                location=location.code,
                title=sheet.title,
                assignee=sheet.assignee,
                due_date=sheet.due_date.isoformat() if sheet.due_date else None,
                lines=line_count,
                created_at=sheet.created_at.isoformat(),
            )

        tasks, next_cursor = render_page("count_list", rows, limit, lambda row: row[0].id, render)  # type: ignore[arg-type, return-value]
        return Outcome(CountTaskPage(tasks=tasks, next_cursor=next_cursor), f"Listed {len(tasks)} count tasks.")

    arguments = {"status": status, "cursor": cursor, "limit": limit}
    return await app.run(caller, "count_list", arguments, work, result_type=CountTaskPage)


async def get_count_task(app: Order3, caller: Caller, *, task_id: int, show_expected: bool = False) -> CountTaskOut:
    """Return one count task; expected quantities only when `show_expected` is true."""

    async def work(session: AsyncSession) -> Outcome:
        sheet, location, views = await _load_task(session, caller, task_id)
        shown = " with expected quantities" if show_expected else ""
        return Outcome(
            _task_out(sheet, location, views, show_expected=show_expected),
            f"Read count task {sheet.id}{shown}.",
            affected=[{"kind": "count_task", "id": sheet.id}],
        )

    arguments = {"task_id": task_id, "show_expected": show_expected}
    return await app.run(caller, "count_show", arguments, work, result_type=CountTaskOut)


def _counted_parser(entry: CountEntry) -> Callable[[str], Decimal]:
    # parse_counted reads the entry's text and names its source in errors.
    return lambda _: parse_counted(entry)


def parse_counted(entry: CountEntry) -> Decimal:
    """Return the counted quantity of an entry: zero or a positive decimal with at most six places.

    Raises:
        InvalidInputError: Naming the entry's source and the accepted form.
    """
    text = entry.counted.strip()
    fix = "write the counted quantity as digits such as 12 or 12.5, and 0 for an empty shelf"
    if not _COUNTED_TEXT.match(text):
        raise InvalidInputError(f"{entry.source}: counted quantity {entry.counted!r} is not a plain decimal number; {fix}.")
    if Decimal(text) == 0:
        return Decimal(0)
    try:
        # Stored quantities come back without trailing zeros, so 12.50 is kept as 12.5 from the start.
        return from_scaled(to_scaled(parse_quantity(text)))
    except ValueError as exc:
        raise InvalidInputError(f"{entry.source}: counted {exc}; {fix}.") from None


def _match_entries(sheet: CountSheet, views: list[LineView], entries: list[CountEntry]) -> dict[int, Decimal]:
    """Match each entry to exactly one line and return counted quantities by line id.

    Raises:
        InvalidInputError: For an entry that matches no line or several, a line
            given twice, or a line left without a count.
    """
    if not entries:
        raise InvalidInputError(
            f"No counts given for count task {sheet.id}; pass --line SKU=QTY for each line, or --file with the counts."
        )
    counted: dict[int, Decimal] = {}
    given_by: dict[int, str] = {}
    labels = ", ".join(_line_label(view) for view in views)
    for entry in entries:
        quantity = parse_counted(entry)
        same_sku = [view for view in views if view.item.sku_key == sku_key(entry.sku)]
        if entry.bin.strip():
            matches = [v for v in same_sku if v.bin is not None and v.bin.code.casefold() == entry.bin.strip().casefold()]
        else:
            matches = same_sku
        if not matches:
            raise InvalidInputError(
                f"{entry.source}: {entry.sku}{'@' + entry.bin if entry.bin.strip() else ''} is not a line of count task "
                f"{sheet.id}; its lines are {labels}."
            )
        if len(matches) > 1:
            bins = ", ".join(_line_label(view) for view in matches)
            raise InvalidInputError(
                f"{entry.source}: {entry.sku} is on count task {sheet.id} more than once ({bins}); give the bin as SKU@BIN=QTY."
            )
        line_id = matches[0].line.id
        if line_id in given_by:
            raise InvalidInputError(
                f"{entry.source}: line {matches[0].line.line_no} ({_line_label(matches[0])}) was already counted by "
                f"{given_by[line_id]}; give each line once."  # type: ignore[index]
            )
        given_by[line_id] = entry.source  # type: ignore[index]
        counted[line_id] = quantity  # type: ignore[index]
    missing = [_line_label(view) for view in views if view.line.id not in counted]
    if missing:
        raise InvalidInputError(
            f"Count task {sheet.id} has no count for {', '.join(missing)}; count every line, writing 0 for an empty shelf."
        )
    return counted


async def submit_counts(
    app: Order3,
    caller: Caller,
    *,
    task_id: int,
    entries: list[CountEntry],
    show_expected: bool = False,
    idempotency_key: str | None = None,
) -> CountTaskOut:
    """Record the counts of an open task and apply them in one transaction.

    Each line gets a count result (counted, the snapshot as system quantity,
    and the variance), and each non-zero variance is posted as a
    count-correction movement. Count drift exceptions are then recomputed, so
    a count that matches the snapshot resolves the drift exception.

    Raises:
        ConflictError: If the task was already submitted.
        InvalidInputError: For a count that is malformed, matches no line or
            several, repeats a line, leaves a line out, or would make stock negative.
        NotFoundError: If the task does not exist.
    """

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        sheet, location, views = await _load_task(session, caller, task_id)
        if sheet.status != "open":
            raise ConflictError(
                f"Count task {sheet.id} was already submitted by {sheet.submitted_by} at "
                f"{sheet.submitted_at.isoformat() if sheet.submitted_at else 'an unknown time'}; a task is counted once. "
                "Draft a new count task to count again."
            )
        counted = _match_entries(sheet, views, entries)
        results = await apply_counts(
            session, sheet=sheet, counted=counted, actor=caller.principal, counted_at=app.clock(), location_code=location.code
        )
        await refresh_kind(app, caller, session, "count_drift")
        if sheet.draft_id is not None:
            # Drift still found after the count goes back to open: the count did not settle it.
            linked = await drafts.linked_exception_ids(session, draft_id=sheet.draft_id)
            if linked:
                await drafts.reopen_unanswered(session, linked=linked)

        views = await count_sheet_lines(session, sheet_id=sheet.id)  # type: ignore[arg-type]
        corrections = [view.movement_id for view in views if view.movement_id is not None]
        summary = (
            f"Submitted count task {sheet.id} at {location.code}: {len(results)} line(s) counted, "
            f"{len(corrections)} corrected by a count-correction movement."
        )
        affected = (
            [{"kind": "count_task", "id": sheet.id}]
            + [{"kind": "count_result", "id": result.id} for result in results]
            + [{"kind": "movement", "id": movement_id} for movement_id in corrections]
        )
        return Outcome(_task_out(sheet, location, views, show_expected=show_expected), summary, affected=affected)

    arguments = {
        "task_id": task_id,
        "counts": [
            {"sku": e.sku, "bin": e.bin, "counted": decimal_or_raw(e.counted, _counted_parser(e))} for e in entries
        ],
        "show_expected": show_expected,
    }
    return await app.run(
        caller, "count_submit", arguments, work, result_type=CountTaskOut, idempotency_key=idempotency_key
    )

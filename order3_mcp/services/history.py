"""Activity history: listing events with filters shared by the timeline, the tool and the export."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from order3_mcp.pagination import check_limit, decode_cursor, encode_cursor, render_page
from order3_mcp.schemas import ActivityOut, ActivityPage
from policies import PRINCIPAL_KINDS
from store import catalog
from store.activity_filters import EventFilter, filter_events
from store.errors import InvalidInputError, NotFoundError
from store.models import OUTCOMES, ActivityEvent

_RECORD_NUMBER = re.compile(r"^[0-9]{1,18}$")
MAX_FILTER_TEXT = 200
# Kinds of record that events name in their affected list.
# NOTE: an action that starts naming a new kind of record must add it here, or the filter rejects that kind.
RECORD_KINDS = (
    "count_result",
    "count_task",
    "draft",
    "exception",
    "exchange_rate",
    "external_snapshot",
    "item",
    "location",
    "movement",
    "outbox_message",
    "policy_version",
    "purchase_order",
    "purchase_order_line",
    "receiving_event",
    "reorder_rule",
    "supplier",
    "token",
    "transfer",
    "workspace",
)


@dataclass(frozen=True)
class ActivityQuery:
    """Filters of the activity timeline, as the caller wrote them; empty values match everything.

    `actor` is a principal name or KIND:NAME (e.g. agent:buyer-bot). `record_kind`
    and `record_id` name a record the event affected, e.g. "draft" and "3"; an
    item may be named by SKU, a location or supplier by code. `since` and
    `until` are ISO 8601 times with a UTC offset: events at or after `since`
    and before `until`.
    """

    actor: str = ""
    action: str = ""
    outcome: str = ""
    draft_id: int | None = None
    record_kind: str = ""
    record_id: str = ""
    since: str = ""
    until: str = ""

    def arguments(self) -> dict[str, Any]:
        """Return the filters that are set, for the activity log."""
        return {name: value for name, value in asdict(self).items() if value not in ("", None)}


def activity_out(event: ActivityEvent) -> ActivityOut:
    """Convert an activity event row to its tool result."""
    return ActivityOut(
        seq=event.seq,
        occurred_at=event.occurred_at.isoformat(),
        actor=f"{event.actor_kind}:{event.actor}",
        on_behalf_of=event.on_behalf_of,
        client_name_unverified=event.client_name,
        channel=event.channel,
        action=event.action,
        outcome=event.outcome,
        draft_id=event.draft_id,
        summary=event.summary,
        affected=[f"{entry.get('kind')}:{entry.get('id')}" for entry in event.affected],
    )


def parse_time(value: str, *, name: str) -> datetime | None:
    """Return an ISO 8601 time with a UTC offset as an aware UTC datetime, or None for an empty value.

    Raises:
        InvalidInputError: If the time is malformed or has no offset, because a
            time without one could be in any timezone.
    """
    text = value.strip()
    if not text:
        return None
    shown = text if len(text) <= 60 else text[:60] + "…"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInputError(
            f"{name} {shown!r} is not an ISO 8601 time; write it with a UTC offset, such as "
            "2026-03-01T09:00:00+01:00 or 2026-03-01T08:00:00Z."
        ) from exc
    if moment.utcoffset() is None:
        raise InvalidInputError(
            f"{name} {shown!r} has no UTC offset, so it could be in any timezone; add one, such as "
            f"{moment.isoformat()}+00:00 for UTC or {moment.isoformat()}+01:00."
        )
    return moment.astimezone(UTC)


def _split_actor(actor: str) -> tuple[str, str]:
    kind, separator, name = actor.partition(":")
    if separator and kind in PRINCIPAL_KINDS and name:
        return kind, name
    return "", actor


async def _find_by_code(session: AsyncSession, caller: Caller, *, kind: str, code: str) -> int | None:
    """Return the id of the item with SKU `code`, or the location or supplier with that code; None for other kinds.

    Raises:
        NotFoundError: If no record of that kind has the SKU or code.
    """
    if kind == "item":
        return (await catalog.get_item_by_sku(session, workspace_id=caller.workspace_id, sku=code)).id
    if kind == "location":
        return (await catalog.get_location_by_code(session, workspace_id=caller.workspace_id, code=code)).id
    if kind == "supplier":
        return (await catalog.get_supplier_by_code(session, workspace_id=caller.workspace_id, code=code)).id
    return None


async def _resolve_record_id(session: AsyncSession, caller: Caller, *, kind: str, record_id: str) -> str:
    """Return the stored id of the record: a SKU or code becomes an id, and other kinds need a number.

    A SKU or code is looked up first, so an item whose SKU is a number is found
    by its SKU; a number that is no SKU or code is taken as the id itself.
    """
    is_number = bool(_RECORD_NUMBER.match(record_id))
    try:
        found = await _find_by_code(session, caller, kind=kind, code=record_id)
    except NotFoundError:
        if not is_number:
            raise
        found = None
    if found is not None:
        return str(found)
    if not is_number:
        raise InvalidInputError(
            f"Record id {record_id!r} of kind {kind!r} is not a number; give the record's id as shown in the "
            "event's affected list (KIND:ID). Items also accept a SKU, locations and suppliers a code."
        )
    return str(int(record_id))


async def resolve_query(session: AsyncSession, caller: Caller, query: ActivityQuery) -> EventFilter:
    """Check the filters and turn them into database conditions.

    Raises:
        InvalidInputError: For an unknown outcome, a malformed or offset-less
            time, an empty range, or a record kind or id in the wrong form.
        NotFoundError: For an item SKU, location or supplier code that does not exist.
    """
    for name in ("actor", "action", "record_kind", "record_id", "since", "until"):
        if len(getattr(query, name)) > MAX_FILTER_TEXT:
            raise InvalidInputError(f"Filter {name} is {len(getattr(query, name))} characters long; the maximum is {MAX_FILTER_TEXT}.")
    outcome = query.outcome.strip()
    if outcome and outcome not in OUTCOMES:
        raise InvalidInputError(f"Outcome {outcome!r} is unknown; use one of {', '.join(OUTCOMES)}.")

    since = parse_time(query.since, name="since")
    until = parse_time(query.until, name="until")
    if since is not None and until is not None and since >= until:
        raise InvalidInputError(
            f"since {query.since.strip()!r} is not before until {query.until.strip()!r}, so no event could match; "
            "swap them or widen the range."
        )

    record_kind = query.record_kind.strip().lower()
    record_id = query.record_id.strip()
    if bool(record_kind) != bool(record_id):
        raise InvalidInputError(
            "A record filter needs both its kind and its id, e.g. kind 'draft' and id '3', or kind 'item' and a SKU."
        )
    if record_kind and record_kind not in RECORD_KINDS:
        shown = record_kind if len(record_kind) <= 40 else record_kind[:40] + "…"
        raise InvalidInputError(f"Record kind {shown!r} is unknown; use one of {', '.join(RECORD_KINDS)}.")
    if record_kind:
        record_id = await _resolve_record_id(session, caller, kind=record_kind, record_id=record_id)

    actor_kind, actor = _split_actor(query.actor.strip())
    return EventFilter(
        actor_kind=actor_kind,
        actor=actor,
        action=query.action.strip(),
        outcome=outcome,
        draft_id=query.draft_id,
        record_kind=record_kind,
        record_id=record_id,
        since=since,
        until=until,
    )


async def matching_events(session: AsyncSession, caller: Caller, query: ActivityQuery, *, columns: Any = ActivityEvent) -> Any:
    """Return a select of the caller's workspace events that match `query`, not yet ordered.

    Raises:
        InvalidInputError, NotFoundError: See `resolve_query`.
    """
    event_filter = await resolve_query(session, caller, query)
    statement = select(columns).where(ActivityEvent.workspace_id == caller.workspace_id)
    return filter_events(statement, event_filter, dialect=session.get_bind().dialect.name)


async def list_activity(
    app: Order3,
    caller: Caller,
    *,
    query: ActivityQuery,
    cursor: str | None,
    limit: int,
) -> ActivityPage:
    """List the activity events that match `query` in sequence order, one page at a time."""

    async def work(session: AsyncSession) -> Outcome:
        check_limit(limit)
        after = decode_cursor(cursor, "list_activity")
        statement = await matching_events(session, caller, query)
        if after is not None:
            statement = statement.where(ActivityEvent.seq > after)
        rows = list((await session.execute(statement.order_by(ActivityEvent.seq).limit(limit + 1))).scalars().all())
        listed, next_cursor = render_page("list_activity", rows, limit, lambda event: event.seq, activity_out)
        return Outcome(ActivityPage(events=listed, next_cursor=next_cursor), f"Listed {len(listed)} events.")

    arguments = {**query.arguments(), "cursor": cursor, "limit": limit}
    return await app.run(caller, "list_activity", arguments, work, result_type=ActivityPage)


class ActivityTimeline(BaseModel):
    """Events for the `order3 activity list` timeline, read in one action."""

    events: list[ActivityOut] = Field(description="Matching events in sequence order.")
    matching: int | None = Field(description="Events matching the filters, counted for a listing of the newest; else null.")
    older: int = Field(default=0, description="Matching events before the first one listed, for a listing of the newest.")
    next_cursor: str | None = Field(description="Cursor after the last event listed when more match, else null.")


async def read_activity_timeline(
    app: Order3, caller: Caller, *, query: ActivityQuery, limit: int, cursor: str | None = None, newest: bool = False
) -> ActivityTimeline:
    """Return up to `limit` matching events, recorded as one `activity_list` event.

    With `newest`, returns the newest `limit` events (the most recent last) and
    how many older ones match. Otherwise lists forward from `cursor`, a
    `list_activity` cursor, and returns the cursor after the last event when
    more match.
    """

    async def work(session: AsyncSession) -> Outcome:
        if limit < 1:
            raise InvalidInputError(f"Limit {limit} is out of range; list 1 or more events.")
        statement = await matching_events(session, caller, query)
        if newest:
            seqs = await matching_events(session, caller, query, columns=ActivityEvent.seq)
            matching = (await session.execute(select(func.count()).select_from(seqs.subquery()))).scalar_one()
            rows = list((await session.execute(statement.order_by(ActivityEvent.seq.desc()).limit(limit))).scalars().all())
            rows.reverse()
            timeline = ActivityTimeline(
                events=[activity_out(row) for row in rows], matching=matching, older=matching - len(rows), next_cursor=None
            )
            return Outcome(timeline, f"Listed the newest {len(rows)} of {matching} matching events.")

        after = decode_cursor(cursor, "list_activity")
        if after is not None:
            statement = statement.where(ActivityEvent.seq > after)
        rows = list((await session.execute(statement.order_by(ActivityEvent.seq).limit(limit + 1))).scalars().all())
        next_cursor = encode_cursor("list_activity", rows[limit - 1].seq) if len(rows) > limit else None
        timeline = ActivityTimeline(events=[activity_out(row) for row in rows[:limit]], matching=None, next_cursor=next_cursor)
        return Outcome(timeline, f"Listed {len(timeline.events)} events.")

    arguments = {**query.arguments(), "cursor": cursor, "limit": limit, "newest": newest}
    return await app.run(caller, "activity_list", arguments, work, result_type=ActivityTimeline)

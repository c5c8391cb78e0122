"""Activity history: listing events and verifying the hash chain."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from order3_mcp.pagination import check_limit, decode_cursor, render_page
from order3_mcp.schemas import ActivityOut, ActivityPage
from store.errors import InvalidInputError
from store.models import OUTCOMES, ActivityEvent


def activity_out(event: ActivityEvent) -> ActivityOut:
    """Convert an activity event row to its tool result."""
    return ActivityOut(
        seq=event.seq,
        occurred_at=event.occurred_at.isoformat(),
        actor=f"{event.actor_kind}:{event.actor}",
        channel=event.channel,
        action=event.action,
        outcome=event.outcome,
        draft_id=event.draft_id,
        summary=event.summary,
        affected=[f"{entry.get('kind')}:{entry.get('id')}" for entry in event.affected],
    )


async def list_activity(
    app: Order3,
    caller: Caller,
    *,
    draft_id: int | None,
    action: str,
    outcome: str,
    cursor: str | None,
    limit: int,
) -> ActivityPage:
    """List activity events in sequence order, optionally for one draft, action or outcome."""

    async def work(session: AsyncSession) -> Outcome:
        check_limit(limit)
        after = decode_cursor(cursor, "list_activity")
        if outcome and outcome not in OUTCOMES:
            raise InvalidInputError(f"Outcome {outcome!r} is unknown; use one of {', '.join(OUTCOMES)}.")
        statement = select(ActivityEvent).where(ActivityEvent.workspace_id == caller.workspace_id)
        if draft_id is not None:
            statement = statement.where(ActivityEvent.draft_id == draft_id)
        if action.strip():
            statement = statement.where(ActivityEvent.action == action.strip())
        if outcome:
            statement = statement.where(ActivityEvent.outcome == outcome)
        if after is not None:
            statement = statement.where(ActivityEvent.seq > after)
        rows = list((await session.execute(statement.order_by(ActivityEvent.seq).limit(limit + 1))).scalars().all())
        listed, next_cursor = render_page("list_activity", rows, limit, lambda event: event.seq, activity_out)
        return Outcome(ActivityPage(events=listed, next_cursor=next_cursor), f"Listed {len(listed)} events.")

    arguments = {"draft_id": draft_id, "action": action, "outcome": outcome, "cursor": cursor, "limit": limit}
    return await app.run(caller, "list_activity", arguments, work, result_type=ActivityPage)

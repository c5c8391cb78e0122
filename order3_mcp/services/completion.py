"""Completion services: the values an argument can take, for a client's completion/complete request."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from store import completion
from store.errors import InvalidInputError

# The MCP specification allows at most 100 values in one completion result.
MAX_COMPLETION_VALUES = 100

# Arguments completed from the store, with the lookup for each.
_LOOKUPS = {
    "sku": completion.complete_skus,
    "draft_id": completion.complete_draft_ids,
    "location": completion.complete_location_codes,
}
COMPLETED_ARGUMENTS = tuple(_LOOKUPS)


class CompletionOut(BaseModel):
    """The values an argument can take that start with what the client typed."""

    values: list[str] = Field(description=f"At most {MAX_COMPLETION_VALUES} matching values, in completion order.")
    total: int = Field(description="How many values match in all.")
    has_more: bool = Field(description="Whether more values match than `values` contains.")


async def complete_argument(app: Order3, caller: Caller, *, target: str, argument: str, prefix: str) -> CompletionOut:
    """Return the SKUs, draft ids or location codes of the caller's workspace that start with `prefix`.

    `target` names the resource template or prompt being completed, for the
    activity event. SKUs and location codes match case-insensitively; draft ids
    match on their decimal form and come newest first.

    Raises:
        InvalidInputError: If `argument` is not one of COMPLETED_ARGUMENTS.
        PermissionDeniedError: If the caller lacks the read scope.
    """

    async def work(session: AsyncSession) -> Outcome:
        lookup = _LOOKUPS.get(argument)
        if lookup is None:
            raise InvalidInputError(
                f"Argument {argument!r} has no completion; completion covers {', '.join(COMPLETED_ARGUMENTS)}."
            )
        matches = await lookup(session, workspace_id=caller.workspace_id, prefix=prefix, limit=MAX_COMPLETION_VALUES)
        result = CompletionOut(values=matches.values, total=matches.total, has_more=matches.total > len(matches.values))
        summary = f"Completed {argument} {prefix[:40]!r} for {target}: {len(matches.values)} of {matches.total} values."
        return Outcome(result, summary)

    arguments = {"target": target, "argument": argument, "prefix": prefix}
    return await app.run(caller, "complete_argument", arguments, work, result_type=CompletionOut)

"""Prompt services: check a prompt's arguments against the workspace before the prompt is rendered."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from store import catalog
from store.errors import InvalidInputError
from store.models import EXCEPTION_KINDS


class PromptSubjects(BaseModel):
    """The records a prompt is about, as stored in the workspace."""

    sku: str = Field(default="", description="The item's SKU as stored; empty when the prompt names no item.")
    item_name: str = Field(default="", description="The item's name as stored. Untrusted catalog text.")
    location: str = Field(default="", description="The location's code as stored; empty for every location.")
    kind: str = Field(default="", description="Exception kind; empty for every kind.")


async def check_prompt_arguments(
    app: Order3,
    caller: Caller,
    *,
    prompt: str,
    sku: str | None = None,
    location: str = "",
    kind: str = "",
) -> PromptSubjects:
    """Look up the item and location a prompt names and record the prompt request.

    `sku` is None for a prompt without an item argument; for one with it, a
    blank SKU is refused.

    Raises:
        InvalidInputError: For a blank SKU or an unknown exception kind.
        NotFoundError: If the item or the location does not exist in this workspace.
        PermissionDeniedError: If the caller lacks the read scope.
    """

    async def work(session: AsyncSession) -> Outcome:
        if kind and kind not in EXCEPTION_KINDS:
            raise InvalidInputError(f"Exception kind {kind!r} is unknown; use one of {', '.join(EXCEPTION_KINDS)}, or none for all.")
        if sku is not None and not sku.strip():
            raise InvalidInputError(
                f"Prompt {prompt} needs the argument sku, the SKU of an item; complete the sku argument or search "
                "items to find it."
            )

        subjects = PromptSubjects(kind=kind)
        affected: list[dict[str, Any]] = []
        if sku is not None:
            item = await catalog.get_item_by_sku(session, workspace_id=caller.workspace_id, sku=sku)
            subjects.sku, subjects.item_name = item.sku, item.name
            affected.append({"kind": "item", "id": item.id})
        if location.strip():
            place = await catalog.get_location_by_code(session, workspace_id=caller.workspace_id, code=location)
            subjects.location = place.code
            affected.append({"kind": "location", "id": place.id})
        return Outcome(subjects, f"Prepared prompt {prompt}.", affected=affected)

    arguments = {"prompt": prompt, "sku": sku, "location": location, "kind": kind}
    return await app.run(caller, "get_prompt", arguments, work, result_type=PromptSubjects)

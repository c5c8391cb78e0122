"""Argument completion (completion/complete) for the resource templates and prompts.

SKUs, draft ids and location codes come from the caller's workspace through a
service call, which checks the read scope and records an activity event.
Exception kinds are a fixed list and need no lookup.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp_types import (
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
)

from order3_mcp.app import Caller, Order3
from order3_mcp.services import completion
from order3_mcp.surface.errors import protocol_error
from order3_mcp.surface.prompts import REORDER, TRIAGE
from order3_mcp.surface.resources import DRAFT_TEMPLATE, ITEM_TEMPLATE
from store.errors import Order3Error
from store.models import EXCEPTION_KINDS

# (template URI or prompt name, argument name) -> argument the completion service looks up.
LOOKUPS = {
    (ITEM_TEMPLATE, "sku"): "sku",
    (DRAFT_TEMPLATE, "id"): "draft_id",
    (REORDER, "sku"): "sku",
    (REORDER, "location"): "location",
    (TRIAGE, "location"): "location",
}


def register(server: MCPServer, app: Order3, caller: Caller) -> None:
    """Register the completion handler."""

    @server.completion()
    async def complete(
        ref: PromptReference | ResourceTemplateReference, argument: CompletionArgument, context: CompletionContext | None
    ) -> Completion | None:
        target = ref.uri if isinstance(ref, ResourceTemplateReference) else ref.name
        if (target, argument.name) == (TRIAGE, "kind"):
            prefix = argument.value.strip().lower()
            kinds = [kind for kind in EXCEPTION_KINDS if kind.startswith(prefix)]
            return Completion(values=kinds, total=len(kinds), has_more=False)

        looked_up = LOOKUPS.get((target, argument.name))
        if looked_up is None:
            return None
        try:
            found = await completion.complete_argument(app, caller, target=target, argument=looked_up, prefix=argument.value)
        except Order3Error as exc:
            raise protocol_error(exc, data={"argument": argument.name}) from exc
        return Completion(values=found.values, total=found.total, has_more=found.has_more)

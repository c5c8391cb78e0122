"""MCP resources: an item with its stock, a draft, and the active approval policy.

Each read goes through the same service function as the matching tool
(get_item, get_draft, policy_show), so it checks the read scope, reads only
the caller's workspace and records the same activity event.
"""

from __future__ import annotations

from collections.abc import Awaitable

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.resources.templates import ResourceSecurity
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from pydantic import BaseModel

from order3_mcp.app import Caller, Order3
from order3_mcp.services import drafts, policy, reads
from order3_mcp.surface.errors import protocol_error
from store.errors import Order3Error

ITEM_TEMPLATE = "order3://items/{sku}"
DRAFT_TEMPLATE = "order3://drafts/{id}"
POLICY_URI = "order3://policies/current"
JSON = "application/json"
# Draft ids are 64-bit signed integers in the database.
MAX_DRAFT_ID = 2**63 - 1
# A SKU or draft id is looked up in the database, never used as a file path, so
# the SDK's path checks would only turn a SKU such as '../x' into "Unknown
# resource" instead of the lookup's own not-found message. NUL is still rejected.
LOOKUP_SECURITY = ResourceSecurity(reject_path_traversal=False, reject_absolute_paths=False)


def register(server: MCPServer, app: Order3, caller: Caller) -> None:
    """Register the item and draft templates and the policy resource."""

    @server.resource(
        ITEM_TEMPLATE,
        name="item",
        title="Item with stock",
        description="One item with on hand, reserved, available, on order, stock per place and supplier offers; "
        "the same data as the get_item tool. The SKU matches case-insensitively; percent-encode it when it has "
        "characters such as '/' or spaces.",
        mime_type=JSON,
        security=LOOKUP_SECURITY,
    )
    async def item(sku: str) -> str:
        return await _read(ITEM_TEMPLATE.replace("{sku}", sku), reads.get_item(app, caller, sku=sku))

    @server.resource(
        DRAFT_TEMPLATE,
        name="draft",
        title="Draft",
        description="One draft with its lines (payload), status, approval owner, linked exceptions and "
        "approvals; the same data as the get_draft tool.",
        mime_type=JSON,
        security=LOOKUP_SECURITY,
    )
    async def draft(id: str) -> str:
        uri = DRAFT_TEMPLATE.replace("{id}", id)
        draft_id = await _parse_draft_id(app, caller, id, uri=uri)
        return await _read(uri, drafts.get_draft(app, caller, draft_id=draft_id))

    @server.resource(
        POLICY_URI,
        name="current_policy",
        title="Active approval policy",
        description="The workspace's active approval policy: its rules in order, tolerances and warnings. "
        "The first matching rule decides who approves a draft.",
        mime_type=JSON,
    )
    async def current_policy() -> str:
        return await _read(POLICY_URI, policy.show_policy(app, caller))


async def _read(uri: str, call: Awaitable[BaseModel]) -> str:
    try:
        result = await call
    except Order3Error as exc:
        raise protocol_error(exc, data={"uri": uri}) from exc
    return result.model_dump_json()


async def _parse_draft_id(app: Order3, caller: Caller, text: str, *, uri: str) -> int:
    """Return the draft id in a resource URI, or record the refusal and raise.

    Raises:
        MCPError: Invalid params, as for an unknown resource, when `text` is not a draft id.
    """
    if text.isascii() and text.isdigit() and 0 < int(text) <= MAX_DRAFT_ID:
        return int(text)
    message = (
        f"Draft id {text[:40]!r} in {uri[:80]!r} is not a draft id; use the number list_drafts shows, "
        "as in order3://drafts/12."
    )
    await app.record_failure(caller, "get_draft", "invalid", {"draft_id": text[:40]}, "", "", message)
    raise MCPError(code=INVALID_PARAMS, message=message, data={"uri": uri})

"""The self-declared name of the MCP client behind a tool call."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context


def client_name_of(context: Context[Any, Any] | None) -> str:
    """Return `clientInfo.name` from the client's initialize request, or "" when the client sent none.

    On the 2026-era protocol the SDK builds the same parameters from each
    request's envelope, so both protocol generations end up here. The client
    picks the name freely: it is a label for people reading the history, never
    an identity.
    """
    if context is None:
        return ""
    try:
        params = context.session.client_params
    except ValueError:
        # A Context built outside a request, as `MCPServer.call_tool` does when called directly.
        return ""
    name = getattr(getattr(params, "client_info", None), "name", "")
    return name if isinstance(name, str) else ""

"""MCP tool definitions: thin wrappers over the service functions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from order3_mcp.app import Caller, Order3

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer


def register_all(server: MCPServer, app: Order3, caller: Caller) -> None:
    """Register every Order3 tool on `server`."""
    from order3_mcp.tools import (
        approvals,
        drafts,
        exceptions,
        reads,
        reconciliations,
        supplier_notes,
        sync,
    )

    reads.register(server, app, caller)
    exceptions.register(server, app, caller)
    drafts.register(server, app, caller)
    supplier_notes.register(server, app, caller)
    reconciliations.register(server, app, caller)
    approvals.register(server, app, caller)
    sync.register(server, app, caller)

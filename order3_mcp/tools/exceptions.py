"""Exception tools: find problems that need a next action."""

from mcp.server.mcpserver import MCPServer

from order3_mcp.app import Caller, Order3


def register(server: MCPServer, app: Order3, caller: Caller) -> None:
    """Register the exception finders."""

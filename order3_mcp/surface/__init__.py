"""The MCP protocol surface besides tools: resources, prompts, argument completion, logging and progress."""

from __future__ import annotations

from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp_types import (
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    PaginatedRequestParams,
    SetLevelRequestParams,
)

from order3_mcp.app import Caller, Order3
from order3_mcp.surface import completion, prompts, resources
from order3_mcp.surface.client_log import ClientLog


def register_surface(server: MCPServer, app: Order3, caller: Caller) -> ClientLog:
    """Register resources, prompts, completion and logging/setLevel on `server`, and return its client log.

    Every resource and prompt is registered, as every tool is. A caller without
    the read scope lists none of them. Reading one anyway is refused and
    recorded by the service it calls.
    """
    resources.register(server, app, caller)
    prompts.register(server, app, caller)
    completion.register(server, app, caller)

    client_log = ClientLog()
    server.middleware.append(client_log)
    # MCPServer has no public hook for logging/setLevel, so it goes on the low-level server;
    # registering it there also makes the server declare the logging capability.
    lowlevel = server._lowlevel_server
    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, client_log.set_level)
    if "read" not in caller.scopes:
        _list_nothing(lowlevel)
    return client_log


def _list_nothing(lowlevel: Any) -> None:
    async def no_resources(ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams) -> ListResourcesResult:
        return ListResourcesResult(resources=[])

    async def no_templates(ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams) -> ListResourceTemplatesResult:
        return ListResourceTemplatesResult(resource_templates=[])

    async def no_prompts(ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams) -> ListPromptsResult:
        return ListPromptsResult(prompts=[])

    lowlevel.add_request_handler("resources/list", PaginatedRequestParams, no_resources)
    lowlevel.add_request_handler("resources/templates/list", PaginatedRequestParams, no_templates)
    lowlevel.add_request_handler("prompts/list", PaginatedRequestParams, no_prompts)

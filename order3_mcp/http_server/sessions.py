"""One MCP server and one Streamable HTTP session manager per token, created on first use."""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup, TaskStatus
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from order3_mcp.app import Caller, Order3
from order3_mcp.server import DEFAULT_TOOL_TIMEOUT, Order3Server, build_server

logger = logging.getLogger(__name__)

# Tokens whose servers are kept at once. Past this the least recently used one is
# closed with its sessions; its clients then get 404 and initialize again.
MAX_TOKENS = 64


@dataclass
class TokenServer:
    """The MCP server bound to one token's caller, and the session manager that owns its sessions."""

    caller: Caller
    server: Order3Server
    manager: StreamableHTTPSessionManager
    #: Every registered tool name, including those this caller may not call.
    tool_names: frozenset[str]
    secret_hash: str
    stop: anyio.Event = field(default_factory=anyio.Event)


class TokenServers:
    """A bounded cache of TokenServer by token id.

    Sessions live inside one token's manager, so a session id reaches nothing
    when it is presented with another token: that manager has never seen it.
    """

    def __init__(
        self,
        app: Order3,
        *,
        security: TransportSecuritySettings,
        max_request_body: int,
        max_tokens: int = MAX_TOKENS,
        tool_timeout: float = DEFAULT_TOOL_TIMEOUT,
    ) -> None:
        self.app = app
        self.tool_timeout = tool_timeout
        self.security = security
        self.max_request_body = max_request_body
        self.max_tokens = max_tokens
        self._servers: OrderedDict[int, TokenServer] = OrderedDict()
        self._by_hash: dict[str, int] = {}
        self._lock = anyio.Lock()
        self._task_group: TaskGroup | None = None

    def start(self, task_group: TaskGroup) -> None:
        """Run session managers in `task_group` from now on."""
        self._task_group = task_group

    async def server_for(self, caller: Caller, *, secret_hash: str) -> TokenServer:
        """Return the running server of the caller's token, starting one on first use."""
        assert caller.token_id is not None
        async with self._lock:
            entry = self._servers.get(caller.token_id)
            if entry is not None:
                self._servers.move_to_end(caller.token_id)
                return entry
            while len(self._servers) >= self.max_tokens:
                oldest = next(iter(self._servers))
                logger.info("closing the sessions of token %s to make room for token %s", oldest, caller.token_id)
                self._close(oldest)
            entry = await self._open(caller, secret_hash)
            self._servers[caller.token_id] = entry
            self._by_hash[secret_hash] = caller.token_id
            return entry

    def close_secret(self, secret_hash: str) -> None:
        """Close the server and sessions of the token with this secret hash, if one is running."""
        token_id = self._by_hash.get(secret_hash)
        if token_id is not None:
            logger.info("closing the sessions of token %s, which no longer authenticates", token_id)
            self._close(token_id)

    def _close(self, token_id: int) -> None:
        entry = self._servers.pop(token_id)
        self._by_hash.pop(entry.secret_hash, None)
        entry.stop.set()

    async def _open(self, caller: Caller, secret_hash: str) -> TokenServer:
        if self._task_group is None:
            raise RuntimeError("TokenServers.start() was not called; the HTTP application's lifespan did not run.")
        server = build_server(self.app, caller, tool_timeout=self.tool_timeout)
        manager = StreamableHTTPSessionManager(
            app=server._lowlevel_server,
            security_settings=self.security,
            max_request_body_size=self.max_request_body,
        )
        tool_names = frozenset(tool.name for tool in await MCPServer.list_tools(server))
        entry = TokenServer(caller=caller, server=server, manager=manager, tool_names=tool_names, secret_hash=secret_hash)
        await self._task_group.start(self._run, entry)
        logger.info("started the MCP server of token %s (%s)", caller.token_id, caller.describe())
        return entry

    @staticmethod
    async def _run(entry: TokenServer, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # The manager's run() opens a task group, so it is entered and left in this one task.
        async with entry.manager.run():
            task_status.started()
            await entry.stop.wait()

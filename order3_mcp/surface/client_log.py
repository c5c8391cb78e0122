"""Log notifications to the MCP client: the level it sets, request timings, slow requests and finder reruns.

A client on a handshake-era protocol (up to 2025-11-25) sets the lowest level it
wants with logging/setLevel. A client on 2026-07-28 or later opts in per request
through `_meta` instead, and `allowed_log_levels` from the SDK applies that
choice. Notifications travel on the protocol stream, never as stray stdout
output, and operators' logs still go to stderr through `logging`.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from typing import Any, get_args

import anyio
from mcp.server.connection import allowed_log_levels
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp_types import (
    EmptyResult,
    LoggingLevel,
    LoggingMessageNotification,
    LoggingMessageNotificationParams,
    SetLevelRequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

logger = logging.getLogger(__name__)

#: Levels from the least to the most severe, as the MCP specification orders them (RFC 5424).
LEVELS: tuple[LoggingLevel, ...] = get_args(LoggingLevel)
#: Level used until the client sets one: quiet unless something needs attention.
DEFAULT_LEVEL: LoggingLevel = "warning"
#: A request taking at least this long is logged as slow, in seconds.
SLOW_REQUEST_SECONDS = 1.0
#: Requests that are timed, with the parameter that names what they ask for.
TIMED_METHODS = {"tools/call": "name", "resources/read": "uri", "prompts/get": "name", "completion/complete": ""}

# The client log and the request being served, for code that runs inside a request.
_serving: ContextVar[tuple[ClientLog, ServerRequestContext[Any, Any]] | None] = ContextVar("order3_client_log", default=None)


class ClientLog:
    """The log notifications of one server: the level its client set, and the sending of notifications at that level or above.

    Also a server middleware, so every request it times can send log
    notifications about itself.

    NOTE: the level belongs to the server, and Order3 builds one server per token.
    Over HTTP, every session of one token shares the level the last of them set.
    """

    def __init__(self, *, level: LoggingLevel = DEFAULT_LEVEL, slow_request_seconds: float = SLOW_REQUEST_SECONDS) -> None:
        self.level = level
        self.slow_request_seconds = slow_request_seconds

    async def set_level(self, ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
        """Handle logging/setLevel: send notifications at `params.level` and above from now on."""
        self.level = params.level
        logger.info("client log level set to %s", params.level)
        return EmptyResult()

    def enabled(self, level: LoggingLevel) -> bool:
        """Return whether `level` is at or above the level set with logging/setLevel."""
        return LEVELS.index(level) >= LEVELS.index(self.level)

    async def send(self, request: ServerRequestContext[Any, Any], level: LoggingLevel, message: str, *, source: str) -> None:
        """Send `message` to the client as a log notification of `request`, if `level` is enabled.

        `source` fills the notification's logger field, such as "order3.finders".
        """
        # From 2026-07-28 on, the request's own opt-in decides and logging/setLevel does not exist.
        modern = request.protocol_version in MODERN_PROTOCOL_VERSIONS
        if not (modern or self.enabled(level)) or level not in allowed_log_levels(request.protocol_version, request.meta):
            return
        notification = LoggingMessageNotification(
            params=LoggingMessageNotificationParams(level=level, data=message, logger=source)
        )
        try:
            await request.session.send_notification(notification, related_request_id=request.request_id)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            logger.debug("dropped a %s log notification: the client's stream is closed", level)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Time a request and log it: at debug when it is quick, at warning when it is slow."""
        if ctx.request_id is None or ctx.method not in TIMED_METHODS:
            return await call_next(ctx)

        started = time.perf_counter()
        serving = _serving.set((self, ctx))
        try:
            result = await call_next(ctx)
        finally:
            _serving.reset(serving)
        elapsed = time.perf_counter() - started

        label = _describe(ctx)
        if elapsed >= self.slow_request_seconds:
            logger.warning("%s took %.2f s", label, elapsed)
            message = f"{label} took {elapsed:.2f} s, at or over the slow-request threshold of {self.slow_request_seconds:g} s."
            await self.send(ctx, "warning", message, source="order3.requests")
        else:
            await self.send(ctx, "debug", f"{label} took {elapsed * 1000:.0f} ms.", source="order3.requests")
        return result


def _describe(ctx: ServerRequestContext[Any, Any]) -> str:
    field = TIMED_METHODS[ctx.method]
    subject = (ctx.params or {}).get(field) if field else None
    return f"{ctx.method} {str(subject)[:80]}" if isinstance(subject, str) else ctx.method


async def notify_client(level: LoggingLevel, message: str, *, source: str) -> None:
    """Send a log notification about the request being served; outside a timed request, do nothing."""
    serving = _serving.get()
    if serving is not None:
        client_log, request = serving
        await client_log.send(request, level, message, source=source)

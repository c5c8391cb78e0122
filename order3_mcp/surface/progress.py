"""Progress notifications for long tools, through the SDK Context of the tool call."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context
from mcp_types import LoggingLevel

from order3_mcp.services.progress import ProgressCallback
from order3_mcp.surface.client_log import notify_client


def progress_for(ctx: Context[Any, Any], *, level: LoggingLevel, source: str) -> ProgressCallback:
    """Return a callback that reports each step as progress and as a log notification at `level`.

    The SDK sends progress only when the client's request carried a
    progressToken; without one, only the log notification may be sent.
    """

    async def report(done: int, total: int, message: str) -> None:
        if _in_request(ctx):
            await ctx.report_progress(done, total, message)
        await notify_client(level, message, source=source)

    return report


def _in_request(ctx: Context[Any, Any]) -> bool:
    # A tool called directly on the server object, outside any request, has a Context without one.
    try:
        return ctx.request_context is not None
    except ValueError:
        return False

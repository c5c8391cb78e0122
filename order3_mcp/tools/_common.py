"""Helpers shared by the tool modules."""

from collections.abc import Awaitable
from typing import Annotated, TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, ToolAnnotations
from pydantic import Field

from order3_mcp.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, InvalidCursorError
from store.errors import Order3Error

T = TypeVar("T")

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
# Writes are idempotent only with an idempotency key, so the hint stays false.
DRAFT = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
DECIDE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False)

IdempotencyKey = Annotated[
    str | None,
    Field(
        description="Unique key for this request, e.g. a UUID, scoped to you and this tool. Retrying with the same "
        "key and arguments returns the original result and writes nothing new; the same key with other arguments, "
        "or while the first call is still running, is refused as a conflict.",
        max_length=200,
    ),
]
Cursor = Annotated[
    str,
    Field(description="next_cursor from the previous page; empty for the first page.", max_length=500),
]
Limit = Annotated[int, Field(description=f"Rows per page, 1 to {MAX_PAGE_SIZE}.", strict=True, ge=1, le=MAX_PAGE_SIZE)]
DEFAULT_LIMIT = DEFAULT_PAGE_SIZE


async def guarded(call: Awaitable[T]) -> T:
    """Await a service call, turning expected failures into tool errors with their message."""
    try:
        return await call
    except InvalidCursorError as exc:
        # A bad cursor is a malformed request rather than a failed call.
        raise MCPError(code=INVALID_PARAMS, message=exc.message) from exc
    except Order3Error as exc:
        raise ToolError(exc.message) from exc

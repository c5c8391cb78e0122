"""The protocol error an MCP client gets when a resource read, prompt or completion fails as expected."""

from __future__ import annotations

from typing import Any

from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST

from store.errors import (
    ApprovalRequiredError,
    InvalidInputError,
    NotFoundError,
    Order3Error,
    PermissionDeniedError,
)


def protocol_error(exc: Order3Error, *, data: dict[str, Any] | None = None) -> MCPError:
    """Return the MCP error for an expected failure, carrying its message.

    A record that does not exist is invalid params (-32602), the code MCP uses
    for an unknown resource. A refusal by scope or policy is an invalid request
    (-32600). Anything else, such as a database that stayed locked, is an
    internal error (-32603) that still carries the message and the fix.
    """
    if isinstance(exc, NotFoundError | InvalidInputError):
        code = INVALID_PARAMS
    elif isinstance(exc, PermissionDeniedError | ApprovalRequiredError):
        code = INVALID_REQUEST
    else:
        code = INTERNAL_ERROR
    return MCPError(code=code, message=exc.message, data=data)

"""Refusals the HTTP transport sends before a request reaches MCP: JSON-RPC error bodies with an HTTP status."""

from __future__ import annotations

import json
from typing import Any

from mcp_types import INVALID_REQUEST
from starlette.responses import Response

# JSON-RPC 2.0 leaves -32000 to -32099 to the server. These codes mirror the HTTP status.
UNAUTHORIZED = -32001
FORBIDDEN = -32003
RATE_LIMITED = -32029

_CODES = {401: UNAUTHORIZED, 403: FORBIDDEN, 429: RATE_LIMITED}


def refusal(
    status: int,
    *,
    error: str,
    message: str,
    request_id: str | int | None = None,
    headers: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
) -> Response:
    """Return a JSON-RPC error response with an HTTP status.

    MCP clients read a JSON-RPC error body at a non-2xx status as the response to
    their request, so `message` reaches the agent; `data.error` is a stable code
    ("invalid_token", "insufficient_scope", "rate_limited"...) for programs.
    """
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "error": {
            "code": _CODES.get(status, INVALID_REQUEST),
            "message": message,
            "data": {"status": status, "error": error, **(details or {})},
        },
    }
    return Response(json.dumps(body), status_code=status, media_type="application/json", headers=headers)


def bearer_challenge(**params: str) -> str:
    """Return a `WWW-Authenticate: Bearer` value (RFC 6750 section 3) with the given parameters."""
    parts = [f'{name}="{_quotable(value)}"' for name, value in params.items() if value]
    return "Bearer " + ", ".join(['realm="order3"', *parts])


def _quotable(text: str) -> str:
    # RFC 6750 allows printable ASCII other than '"' and '\' inside these quoted values.
    kept = []
    for char in text.replace("…", "...").replace('"', "'"):
        if 0x20 <= ord(char) <= 0x7E and char != "\\":
            kept.append(char)
    return "".join(kept)

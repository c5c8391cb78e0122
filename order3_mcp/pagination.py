"""Opaque keyset cursors for paginated lists."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel

from store.errors import InvalidInputError

RowT = TypeVar("RowT")
OutT = TypeVar("OutT", bound=BaseModel)

MAX_PAGE_SIZE = 100
# Serialised size a page stays under, so results stay well below 32 KiB
# (large results cost clients far more to validate than small ones).
PAGE_BUDGET_BYTES = 24_000


class InvalidCursorError(InvalidInputError):
    """A cursor this server did not issue; MCP clients get a JSON-RPC invalid-params error."""

DEFAULT_PAGE_SIZE = 50


def encode_cursor(listing: str, last_id: int) -> str:
    """Return a cursor that resumes `listing` after the row with id `last_id`."""
    raw = json.dumps({"l": listing, "a": last_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, listing: str) -> int | None:
    """Return the id to resume after, or None to start at the beginning.

    An empty string starts at the beginning, as clients often send one.

    Raises:
        InvalidInputError: If the cursor was not issued by this server for this list.
    """
    if cursor is None or cursor.strip() == "":
        return None
    try:
        padded = cursor.strip() + "=" * (-len(cursor.strip()) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position = decoded["a"]
        if decoded["l"] != listing or not isinstance(position, int) or isinstance(position, bool):
            raise ValueError("wrong listing")
        # Ids are positive 64-bit integers; anything else was forged or damaged.
        if not 0 <= position < 2**63:
            raise ValueError("position out of range")
        return int(decoded["a"])
    except (ValueError, KeyError, TypeError, binascii.Error, json.JSONDecodeError) as exc:
        shown = cursor if len(cursor) <= 40 else cursor[:40] + "…"
        raise InvalidCursorError(
            f"Cursor {shown!r} was not issued by this server for {listing}; pass the next_cursor of the "
            "previous page unchanged, or omit it to start from the first page."
        ) from exc


def check_limit(limit: int) -> int:
    """Return `limit` if it is a valid page size.

    Raises:
        InvalidInputError: If it is below 1 or above the maximum page size.
    """
    if isinstance(limit, bool) or limit < 1 or limit > MAX_PAGE_SIZE:
        raise InvalidInputError(f"Page size {limit!r} is out of range; use 1 to {MAX_PAGE_SIZE}.")
    return limit


def render_page(
    listing: str,
    rows: list[RowT],
    limit: int,
    row_id: Callable[[RowT], int],
    render: Callable[[RowT], OutT],
    *,
    budget: int = PAGE_BUDGET_BYTES,
) -> tuple[list[OutT], str | None]:
    """Render rows fetched with `limit + 1` into one page that also fits the byte budget.

    A page ends early when the next row would push its JSON past `budget`; the
    cursor then resumes at that row, so nothing is skipped. A single row larger
    than the budget still gets a page of its own.
    """
    rendered: list[OutT] = []
    used = 0
    for index, row in enumerate(rows[:limit]):
        out = render(row)
        size = len(out.model_dump_json())
        if rendered and used + size > budget:
            return rendered, encode_cursor(listing, row_id(rows[index - 1]))
        rendered.append(out)
        used += size
    if len(rows) > limit:
        return rendered, encode_cursor(listing, row_id(rows[limit - 1]))
    return rendered, None

"""Idempotency keys: the same key and arguments replay the stored result; different arguments conflict."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.activity import canonical_json
from store.errors import ConflictError, InvalidInputError
from store.models import IdempotencyRecord
from store.types import utc_now

MAX_KEY_LENGTH = 200


def request_hash(action: str, arguments: dict[str, Any]) -> str:
    """Return the fingerprint of an action and its arguments."""
    return hashlib.sha256(canonical_json({"action": action, "arguments": arguments}).encode()).hexdigest()


def check_key(key: str) -> str:
    """Validate an idempotency key and return it unchanged.

    Raises:
        InvalidInputError: If the key is blank, too long or has control characters.
    """
    if not key.strip():
        raise InvalidInputError("Idempotency key is blank; pass a unique string such as a UUID, or omit it.")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInputError(f"Idempotency key is {len(key)} characters long; use at most {MAX_KEY_LENGTH}.")
    if any(ord(char) < 32 for char in key):
        raise InvalidInputError("Idempotency key contains control characters; use printable text such as a UUID.")
    return key


# Built once: every write with a key runs both.
_KEYS = IdempotencyRecord.__table__
_FIND_KEY = select(_KEYS.c.action, _KEYS.c.request_hash, _KEYS.c.response).where(
    _KEYS.c.workspace_id == bindparam("workspace_id"),
    _KEYS.c.principal == bindparam("principal"),
    _KEYS.c.key == bindparam("key"),
)
_INSERT_KEY = insert(_KEYS)


async def find_replay(
    session: AsyncSession, *, workspace_id: int, principal: str, key: str, action: str, fingerprint: str
) -> dict[str, Any] | None:
    """Return the stored response for a repeated request, or None for a new key.

    Keys belong to the principal that sent them: another principal reusing a key
    gets nothing back from it and records its own request.

    Raises:
        ConflictError: If the key was used for another action or other arguments.
    """
    record = (
        await session.execute(_FIND_KEY, {"workspace_id": workspace_id, "principal": principal, "key": key})
    ).first()
    if record is None:
        return None
    stored_action, stored_hash, response = record
    if stored_action != action or stored_hash != fingerprint:
        raise ConflictError(
            f"Idempotency key {key!r} was already used for {stored_action} with other arguments; "
            "send a new key for a different request, or repeat the original arguments exactly."
        )
    return response


async def remember(
    session: AsyncSession,
    *,
    workspace_id: int,
    key: str,
    action: str,
    principal: str,
    fingerprint: str,
    response: dict[str, Any],
) -> None:
    """Store the response of a completed write under its key, in the same transaction."""
    await session.execute(
        _INSERT_KEY,
        {
            "workspace_id": workspace_id,
            "key": key,
            "action": action,
            "principal": principal,
            "request_hash": fingerprint,
            "response": response,
            "created_at": utc_now(),
        },
    )

"""Idempotency keys: the same key and arguments replay the stored result; different arguments conflict."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.activity import canonical_json
from store.errors import ConflictError, InvalidInputError
from store.models import IdempotencyRecord

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
        await session.execute(
            select(IdempotencyRecord).where(
                IdempotencyRecord.workspace_id == workspace_id,
                IdempotencyRecord.principal == principal,
                IdempotencyRecord.key == key,
            )
        )
    ).scalar_one_or_none()
    if record is None:
        return None
    if record.action != action or record.request_hash != fingerprint:
        raise ConflictError(
            f"Idempotency key {key!r} was already used for {record.action} with other arguments; "
            "send a new key for a different request, or repeat the original arguments exactly."
        )
    return record.response


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
    session.add(
        IdempotencyRecord(
            workspace_id=workspace_id,
            key=key,
            action=action,
            principal=principal,
            request_hash=fingerprint,
            response=response,
        )
    )
    await session.flush()

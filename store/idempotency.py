"""Idempotency keys: the same key and arguments replay the stored result; different arguments conflict.

A key belongs to one workspace and one owner (the calling principal, or the
source of a sync batch) and covers one action. Its record is written in the
action's own transaction, so a refused or failed call leaves the key unused.
Records older than KEY_RETENTION are treated as absent and purged in batches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.activity import canonical_json
from store.dialect import needs_row_locks
from store.errors import ConflictError, InvalidInputError
from store.models import IdempotencyRecord

MAX_KEY_LENGTH = 200
# How long a key keeps its stored result; an older key is treated as new.
KEY_RETENTION = timedelta(days=30)
# Most expired key records one purge deletes, so a purge never holds the write lock for long.
PURGE_BATCH = 500


def decimal_text(value: Decimal) -> str:
    """Return `value` in its shortest fixed-point form: 5, 5.0 and 5.00 all give "5", and 1E+2 gives "100"."""
    normal = value.normalize()
    if normal.is_zero():
        return "0"
    return format(normal, "f")


def decimal_or_raw(raw: str, parse: Callable[[str], Decimal]) -> str:
    """Return `raw` as `decimal_text` of what `parse` reads from it, or `raw` unchanged when `parse` rejects it.

    Services fingerprint a quantity they parse inside the action this way: a
    malformed value keeps its exact text, so it can never match a valid one.
    """
    try:
        return decimal_text(parse(raw))
    except (ValueError, InvalidInputError):
        return raw


def normalized(value: Any) -> Any:
    """Return a JSON-ready copy of `value` with every Decimal written by `decimal_text`.

    Strings are kept exactly as they are, so free text and SKUs such as "1E5"
    are never read as numbers. Key order is left to `canonical_json`, which sorts.
    """
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, dict):
        return {str(name): normalized(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [normalized(item) for item in value]
    return value


def request_hash(action: str, arguments: dict[str, Any]) -> str:
    """Return the fingerprint of an action and its arguments, independent of key order and Decimal formatting."""
    return hashlib.sha256(canonical_json({"action": action, "arguments": normalized(arguments)}).encode()).hexdigest()


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


def derived_key(key: str, step: str) -> str:
    """Return the key of a follow-up write made on behalf of a keyed call, such as the execution after an approval.

    The result fits MAX_KEY_LENGTH: a key too long to take the suffix is replaced by its SHA-256.
    """
    candidate = f"{key}/{step}"
    if len(candidate) <= MAX_KEY_LENGTH:
        return candidate
    return f"{hashlib.sha256(key.encode()).hexdigest()}/{step}"


class KeyInProgressError(ConflictError):
    """A call with the same key is still running in this process; the caller retries shortly."""


def in_progress_error(key: str) -> KeyInProgressError:
    """Return the error for a call whose key is held by a call still running."""
    return KeyInProgressError(
        f"The first call with idempotency key {key!r} is still in progress, so this one wrote nothing; retry "
        "shortly with the same key and arguments to get its result."
    )


# Built once: every write with a key runs both.
_KEYS = IdempotencyRecord.__table__
_FIND_KEY = select(_KEYS.c.id, _KEYS.c.action, _KEYS.c.request_hash, _KEYS.c.response, _KEYS.c.created_at).where(
    _KEYS.c.workspace_id == bindparam("workspace_id"),
    _KEYS.c.principal == bindparam("principal"),
    _KEYS.c.key == bindparam("key"),
)
_INSERT_KEY = insert(_KEYS)
_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:lock_id)")


async def lock_key(session: AsyncSession, *, workspace_id: int, principal: str, key: str) -> None:
    """Take a transaction-scoped advisory lock on one idempotency key where writers can interleave.

    No row exists to lock before the first use of a key, so the lock is on a
    64-bit number derived from the key. SQLite's BEGIN IMMEDIATE serialises writers already.
    """
    if not needs_row_locks(session):
        return
    digest = hashlib.sha256(canonical_json([workspace_id, principal, key]).encode()).digest()
    await session.execute(_ADVISORY_LOCK, {"lock_id": int.from_bytes(digest[:8], "big", signed=True)})


async def find_replay(
    session: AsyncSession,
    *,
    workspace_id: int,
    principal: str,
    key: str,
    action: str,
    fingerprint: str,
    now: datetime,
) -> dict[str, Any] | None:
    """Return the stored response for a repeated request, or None for a new key.

    Keys belong to the principal that sent them: another principal reusing a key
    gets nothing back from it and records its own request. A record older than
    KEY_RETENTION is deleted here and the key counts as new.

    On PostgreSQL the key is locked first until the transaction ends, so a second
    request with the same key waits for the first to commit and then gets its
    stored response, instead of doing the work again and failing on the unique key.

    Raises:
        ConflictError: If the key was used for another action or other arguments.
    """
    await lock_key(session, workspace_id=workspace_id, principal=principal, key=key)
    record = (
        await session.execute(_FIND_KEY, {"workspace_id": workspace_id, "principal": principal, "key": key})
    ).first()
    if record is None:
        return None
    record_id, stored_action, stored_hash, response, created_at = record
    if created_at < now - KEY_RETENTION:
        await session.execute(delete(_KEYS).where(_KEYS.c.id == record_id))
        return None
    if stored_action != action:
        raise ConflictError(
            f"Idempotency key {key!r} was already used for {stored_action}; a key covers one request, so send a "
            f"new key for {action}."
        )
    if stored_hash != fingerprint:
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
    now: datetime,
) -> None:
    """Store the response of a completed write under its key, in the same transaction.

    Raises:
        ConflictError: If another process stored the same key after this
            transaction looked for it (PostgreSQL, where two writers can overlap);
            the whole transaction then rolls back.
    """
    try:
        await session.execute(
            _INSERT_KEY,
            {
                "workspace_id": workspace_id,
                "key": key,
                "action": action,
                "principal": principal,
                "request_hash": fingerprint,
                "response": response,
                "created_at": now,
            },
        )
    except IntegrityError:
        # NOTE: a backstop no test reaches: on PostgreSQL, find_replay's lock_key makes a second writer of the
        # key wait and then replay, as tests/test_stress_postgres.py checks across two processes.
        raise ConflictError(
            f"Another call with idempotency key {key!r} finished first, so this one wrote nothing; retry with the "
            "same key and arguments to get its result."
        ) from None


async def purge_expired(session: AsyncSession, *, workspace_id: int, now: datetime, limit: int = PURGE_BATCH) -> int:
    """Delete up to `limit` key records of a workspace older than KEY_RETENTION and return how many went."""
    expired = (
        select(_KEYS.c.id)
        .where(_KEYS.c.workspace_id == workspace_id, _KEYS.c.created_at < now - KEY_RETENTION)
        .limit(limit)
        .scalar_subquery()
    )
    deleted = await session.execute(delete(_KEYS).where(_KEYS.c.id.in_(expired)))
    return deleted.rowcount or 0

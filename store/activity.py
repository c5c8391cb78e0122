"""Append activity events to the per-workspace hash chain and verify it."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, case, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.errors import ConflictError, NotFoundError, PermissionDeniedError
from store.models import ActivityEvent, Token, Workspace
from store.types import UTCDateTime, utc_now

# Fields covered by the hash, in a fixed order.
HASHED_FIELDS = (
    "workspace_id",
    "seq",
    "occurred_at",
    "actor_kind",
    "actor",
    "token_id",
    "channel",
    "action",
    "outcome",
    "affected",
    "draft_id",
    "request_id",
    "idempotency_key",
    "arguments",
    "summary",
    "on_behalf_of",
    "client_name",
)

# Maximum length of a stored client name, after control characters are removed.
MAX_CLIENT_NAME = 120
# Unicode categories dropped from client names: control and format characters
# (bidirectional overrides, zero-width marks) and line or paragraph separators,
# which could make a printed timeline lie about what it shows.
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})

# Kinds of break that `verify_chain` and `verify_against_checkpoint` report.
BREAK_EDITED = "edited"
BREAK_MISSING = "missing"
BREAK_LINK = "broken_link"
BREAK_HEAD = "head_mismatch"
BREAK_TRUNCATED = "truncated"
BREAK_REWRITTEN = "rewritten"


def canonical_json(value: Any) -> str:
    """Serialise `value` with sorted keys and no spaces, turning Decimals and dates into strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)


def clean_client_name(name: str) -> str:
    """Return a client name without control, format or separator characters, cut to MAX_CLIENT_NAME."""
    printable = "".join(char for char in name if unicodedata.category(char) not in _UNPRINTABLE_CATEGORIES)
    return printable[:MAX_CLIENT_NAME]


def event_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """Return the SHA-256 hex digest linking an event to the one before it."""
    body = {name: fields[name] for name in HASHED_FIELDS}
    if isinstance(body["occurred_at"], datetime):
        body["occurred_at"] = body["occurred_at"].isoformat()
    digest = hashlib.sha256()
    digest.update(prev_hash.encode())
    digest.update(b"\n")
    digest.update(canonical_json(body).encode())
    return digest.hexdigest()


class AppendedEvent(NamedTuple):
    """The sequence number and hash of an appended event in its workspace's chain."""

    seq: int
    hash: str


# The three statements of an append, built once: the chain head (with the token's
# state riding along), the conditional advance of the head, and the insert.
# 1 for a live token, 0 for a revoked one, 2 for an expired one, NULL when the token does not exist.
_TOKEN_LIVE = (
    select(
        case(
            (Token.revoked_at.is_not(None), 0),
            (Token.expires_at <= bindparam("now", type_=UTCDateTime()), 2),
            else_=1,
        )
    )
    .where(Token.id == bindparam("token_id"))
    .scalar_subquery()
)
_READ_HEAD = (
    select(Workspace.activity_seq, Workspace.activity_head, _TOKEN_LIVE)
    .where(Workspace.id == bindparam("workspace_id"))
    # NO KEY UPDATE: rows inserted earlier in the transaction hold KEY SHARE
    # locks on the workspace through their foreign keys, and a plain FOR UPDATE
    # would deadlock two such transactions.
    .with_for_update(key_share=True)
)
_WORKSPACE = Workspace.__table__
_ADVANCE_HEAD = (
    update(_WORKSPACE)
    .where(_WORKSPACE.c.id == bindparam("workspace_id"), _WORKSPACE.c.activity_seq == bindparam("old_seq"))
    .values(activity_seq=bindparam("new_seq"), activity_head=bindparam("new_head"))
)
_INSERT_EVENT = insert(ActivityEvent.__table__)


async def append_event(
    session: AsyncSession,
    *,
    workspace_id: int,
    actor_kind: str,
    actor: str,
    channel: str,
    action: str,
    outcome: str,
    token_id: int | None = None,
    affected: list[dict[str, Any]] | None = None,
    draft_id: int | None = None,
    request_id: str = "",
    idempotency_key: str = "",
    arguments: dict[str, Any] | None = None,
    summary: str = "",
    occurred_at: datetime | None = None,
    on_behalf_of: str = "",
    client_name: str = "",
    require_live_token: bool = False,
) -> AppendedEvent:
    """Append one event inside the caller's write transaction.

    With `require_live_token`, the token is checked in the same statement that
    reads the chain head, and a revoked or expired token raises, which rolls back
    everything the transaction wrote. Checking at the end is as safe as at the
    start because nothing commits before it, and it costs no extra round trip.

    The workspace row contains the chain head. It is read with FOR NO KEY UPDATE,
    so on PostgreSQL a concurrent appender waits for this transaction instead of
    failing. SQLite's BEGIN IMMEDIATE already serialises writers. The conditional
    update then guarantees that no two events share a sequence number.

    `client_name` is stored as the client sent it, minus control characters
    and cut to MAX_CLIENT_NAME characters. Nothing checks it.

    Raises:
        NotFoundError: If the workspace does not exist.
        PermissionDeniedError: If `require_live_token` is set and the token was
            revoked, has expired or no longer exists.
    """
    connection = await session.connection()
    occurred_at = occurred_at or utc_now()
    row = (
        await connection.execute(_READ_HEAD, {"workspace_id": workspace_id, "token_id": token_id, "now": occurred_at})
    ).first()
    if row is None:
        raise NotFoundError(f"Workspace {workspace_id} does not exist; run `order3 init` first.")
    if require_live_token and token_id is not None and row[2] != 1:
        if row[2] is None:
            raise PermissionDeniedError(f"Token {token_id} no longer exists; create a new one with `order3 token create`.")
        if row[2] == 2:
            expires_at = (await session.execute(select(Token.expires_at).where(Token.id == token_id))).scalar_one()
            raise PermissionDeniedError(
                f"Token {token_id} expired at {expires_at.isoformat()}; this connection can no longer act. Ask a "
                "workspace admin for a new token (`order3 token create` or `order3 token rotate ID`) and reconnect."
            )
        revoked_at = (await session.execute(select(Token.revoked_at).where(Token.id == token_id))).scalar_one()
        raise PermissionDeniedError(
            f"Token {token_id} was revoked at {revoked_at.isoformat()}; this connection can no longer act. "
            "Create a new token with `order3 token create` and reconnect."
        )
    seq, prev_hash = row[0] + 1, row[1]

    fields: dict[str, Any] = {
        "workspace_id": workspace_id,
        "seq": seq,
        "occurred_at": occurred_at,
        "actor_kind": actor_kind,
        "actor": actor,
        "token_id": token_id,
        "channel": channel,
        "action": action,
        "outcome": outcome,
        "affected": json.loads(canonical_json(affected or [])),
        "draft_id": draft_id,
        "request_id": request_id,
        "idempotency_key": idempotency_key,
        "arguments": json.loads(canonical_json(arguments or {})),
        "summary": summary[:2000],
        "on_behalf_of": on_behalf_of[:120],
        "client_name": clean_client_name(client_name),
    }
    digest = event_hash(prev_hash, fields)

    advanced = await connection.execute(
        _ADVANCE_HEAD, {"workspace_id": workspace_id, "old_seq": seq - 1, "new_seq": seq, "new_head": digest}
    )
    if advanced.rowcount != 1:
        # Only reachable on a backend without an up-front write lock.
        raise ConflictError("Another writer advanced the activity chain at the same time; retry the request.")
    await connection.execute(_INSERT_EVENT, {**fields, "prev_hash": prev_hash, "hash": digest})
    return AppendedEvent(seq=seq, hash=digest)


@dataclass(frozen=True)
class ChainReport:
    """Result of walking a workspace's activity chain, or of checking it against a checkpoint."""

    events_checked: int
    first_broken_seq: int | None
    problem: str
    #: One of the BREAK_* kinds, empty when nothing is broken.
    kind: str = ""

    @property
    def ok(self) -> bool:
        return self.first_broken_seq is None


async def verify_chain(session: AsyncSession, *, workspace_id: int, batch_size: int = 2000) -> ChainReport:
    """Recompute every hash in sequence order and report the first link that does not match.

    Each event is checked in this order, and the first failure names the kind:
    - "missing": its sequence number does not follow the one before.
    - "broken_link": its `prev_hash` is not the previous event's hash, because
      events were reordered, or one was inserted or removed and the rest renumbered.
    - "edited": its fields do not hash to its stored hash.
    Last, "head_mismatch": the workspace's chain head does not name the last
    event, because events were added or removed at the end.
    """
    expected_seq = 1
    prev_hash = ""
    checked = 0
    while True:
        events = (
            await session.execute(
                select(ActivityEvent)
                .where(ActivityEvent.workspace_id == workspace_id, ActivityEvent.seq >= expected_seq)
                .order_by(ActivityEvent.seq)
                .limit(batch_size)
            )
        ).scalars().all()
        if not events:
            break
        for event in events:
            if event.seq != expected_seq:
                return ChainReport(checked, expected_seq, f"event {expected_seq} is missing", BREAK_MISSING)
            if event.prev_hash != prev_hash:
                return ChainReport(
                    checked,
                    event.seq,
                    f"event {event.seq} does not point at the hash of event {event.seq - 1}, so events were reordered, "
                    "or one was inserted or removed and the rest renumbered",
                    BREAK_LINK,
                )
            fields = {name: getattr(event, name) for name in HASHED_FIELDS}
            if event_hash(prev_hash, fields) != event.hash:
                return ChainReport(checked, event.seq, f"event {event.seq} was changed after it was written", BREAK_EDITED)
            prev_hash = event.hash
            expected_seq += 1
            checked += 1

    head = (
        await session.execute(select(Workspace.activity_seq, Workspace.activity_head).where(Workspace.id == workspace_id))
    ).first()
    if head is not None and head[0] != checked:
        return ChainReport(
            checked,
            min(head[0], checked) + 1,
            f"the chain head says {head[0]} events but {checked} were found",
            BREAK_HEAD,
        )
    if head is not None and head[1] != prev_hash:
        return ChainReport(
            max(checked - 1, 0),
            max(checked, 1),
            f"the chain head's hash is not the hash of the last event, {checked}",
            BREAK_HEAD,
        )
    return ChainReport(checked, None, "")

"""Bearer tokens: created once, stored only as a SHA-256 hash, with optional expiry and a last-use time."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.errors import NotFoundError, PermissionDeniedError
from store.models import Token, Workspace
from store.types import utc_now

TOKEN_PREFIX = "o3_"

# last_used_at moves at most this often per token, so a token that authenticates
# many times a minute costs one write a minute, not one per request.
LAST_USED_GRANULARITY = timedelta(minutes=1)

RENEW_HINT = "ask a workspace admin for a new one (`order3 token create` or `order3 token rotate ID`)"


class DeadTokenError(PermissionDeniedError):
    """A token that exists but was revoked or has expired; `token` is its row, so the refusal can be recorded."""

    def __init__(self, message: str, *, token: Token, reason: str) -> None:
        super().__init__(message)
        self.token = token
        #: "revoked" or "expired".
        self.reason = reason


def hash_secret(secret: str) -> str:
    """Return the stored form of a token secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def is_expired(token: Token, *, now: datetime) -> bool:
    """Return True if the token has an expiry time that is not after `now`."""
    return token.expires_at is not None and token.expires_at <= now


async def issue_token(
    session: AsyncSession,
    *,
    workspace_id: int,
    principal_kind: str,
    principal: str,
    role: str,
    scopes: frozenset[str],
    on_behalf_of: str = "",
    label: str = "",
    expires_at: datetime | None = None,
    created_at: datetime | None = None,
) -> tuple[Token, str]:
    """Create a token and return it with its secret, which is never stored or shown again."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = Token(
        workspace_id=workspace_id,
        secret_hash=hash_secret(secret),
        prefix=secret[:10],
        principal_kind=principal_kind,
        principal=principal,
        role=role,
        scopes=sorted(scopes),
        on_behalf_of=on_behalf_of,
        label=label,
        expires_at=expires_at,
    )
    if created_at is not None:
        token.created_at = created_at
    session.add(token)
    await session.flush()
    return token, secret


async def find_token(session: AsyncSession, *, secret: str, now: datetime | None = None) -> Token:
    """Return the live token for `secret`.

    Raises:
        PermissionDeniedError: If the secret is unknown.
        DeadTokenError: If the token was revoked or has expired.
    """
    now = now or utc_now()
    token = (
        await session.execute(select(Token).where(Token.secret_hash == hash_secret(secret.strip())))
    ).scalar_one_or_none()
    if token is None:
        raise PermissionDeniedError(
            "The token is not valid: no token with that secret exists. Create one with `order3 token create`."
        )
    if token.revoked_at is not None:
        raise DeadTokenError(
            f"Token {token.prefix}… of {token.principal!r} was revoked at {token.revoked_at.isoformat()}; "
            "create a new one with `order3 token create`.",
            token=token,
            reason="revoked",
        )
    if is_expired(token, now=now):
        raise DeadTokenError(
            f"Token {token.id} ({token.prefix}…) of {token.principal!r} expired at {token.expires_at.isoformat()}; "  # type: ignore[union-attr]
            f"{RENEW_HINT}.",
            token=token,
            reason="expired",
        )
    return token


@dataclass(frozen=True)
class LiveToken:
    """The columns of a live token that a caller is made of, with its workspace's name, currency and timezone."""

    id: int
    workspace_id: int
    principal_kind: str
    principal: str
    role: str
    scopes: list[str]
    on_behalf_of: str
    last_used_at: datetime | None
    workspace: str
    base_currency: str
    timezone: str


_LIVE_TOKEN = (
    select(
        Token.id, Token.workspace_id, Token.principal_kind, Token.principal, Token.role, Token.scopes,
        Token.on_behalf_of, Token.last_used_at, Workspace.name, Workspace.base_currency, Workspace.timezone,
        Token.expires_at,
    )
    .join(Workspace, Workspace.id == Token.workspace_id)
    .where(Token.secret_hash == bindparam("secret_hash"), Token.revoked_at.is_(None))
)


async def find_live_token(session: AsyncSession, *, secret: str, now: datetime) -> LiveToken:
    """Return the live token for `secret` with its workspace's columns, read in one Core statement.

    Every HTTP request authenticates, so this skips building ORM objects. A
    secret that matches no live token is looked up again with `find_token`,
    which raises the error that names why.

    Raises:
        PermissionDeniedError: If the secret is unknown.
        DeadTokenError: If the token was revoked or has expired.
    """
    connection = await session.connection()
    row = (await connection.execute(_LIVE_TOKEN, {"secret_hash": hash_secret(secret.strip())})).first()
    if row is None or (row.expires_at is not None and row.expires_at <= now):
        await find_token(session, secret=secret, now=now)
        # Reached only when the token was created between the two reads.
        raise PermissionDeniedError("The token is not valid yet; send the request again.")
    return LiveToken(*row[:-1])


async def note_token_use(session: AsyncSession, *, token_id: int, now: datetime) -> bool:
    """Set the token's last_used_at to `now` unless it was set less than LAST_USED_GRANULARITY ago.

    The check and the write are one conditional UPDATE, so concurrent callers
    write at most once per interval. Returns True if the row was updated.
    """
    result = await session.execute(
        update(Token)
        .where(
            Token.id == token_id,
            or_(Token.last_used_at.is_(None), Token.last_used_at <= now - LAST_USED_GRANULARITY),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def needs_use_noted(token: Token | LiveToken, *, now: datetime) -> bool:
    """Return True if `note_token_use` would write, judged from an already loaded row."""
    return token.last_used_at is None or token.last_used_at <= now - LAST_USED_GRANULARITY


async def list_tokens(session: AsyncSession, *, workspace_id: int) -> list[Token]:
    """Return every token of the workspace, newest first."""
    return list(
        (await session.execute(select(Token).where(Token.workspace_id == workspace_id).order_by(Token.id.desc())))
        .scalars()
        .all()
    )


async def get_token(session: AsyncSession, *, workspace_id: int, token_id: int) -> Token:
    """Return one token of the workspace.

    Raises:
        NotFoundError: If the workspace has no such token.
    """
    token = (
        await session.execute(select(Token).where(Token.workspace_id == workspace_id, Token.id == token_id))
    ).scalar_one_or_none()
    if token is None:
        raise NotFoundError(f"Token {token_id} does not exist in this workspace; list tokens with `order3 token list`.")
    return token


async def user_principals(session: AsyncSession, *, workspace_id: int) -> list[str]:
    """Return the names of the users that hold or held a token in the workspace, sorted."""
    rows = await session.execute(
        select(Token.principal)
        .where(Token.workspace_id == workspace_id, Token.principal_kind == "user")
        .distinct()
        .order_by(Token.principal)
    )
    return list(rows.scalars().all())


async def revoke_token(session: AsyncSession, *, workspace_id: int, token_id: int, now: datetime | None = None) -> Token:
    """Revoke a token so it authenticates nothing from now on.

    Raises:
        NotFoundError: If the workspace has no such token.
    """
    token = await get_token(session, workspace_id=workspace_id, token_id=token_id)
    if token.revoked_at is None:
        token.revoked_at = now or utc_now()
        session.add(token)
        await session.flush()
    return token

"""Bearer tokens: created once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.errors import NotFoundError, PermissionDeniedError
from store.models import Token
from store.types import utc_now

TOKEN_PREFIX = "o3_"


def hash_secret(secret: str) -> str:
    """Return the stored form of a token secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


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
    )
    session.add(token)
    await session.flush()
    return token, secret


async def find_token(session: AsyncSession, *, secret: str) -> Token:
    """Return the live token for `secret`.

    Raises:
        PermissionDeniedError: If the secret is unknown or the token was revoked.
    """
    token = (
        await session.execute(select(Token).where(Token.secret_hash == hash_secret(secret.strip())))
    ).scalar_one_or_none()
    if token is None:
        raise PermissionDeniedError(
            "The token is not valid: no token with that secret exists. Create one with `order3 token create`."
        )
    if token.revoked_at is not None:
        raise PermissionDeniedError(
            f"Token {token.prefix}… of {token.principal!r} was revoked at {token.revoked_at.isoformat()}; "
            "create a new one with `order3 token create`."
        )
    return token


async def list_tokens(session: AsyncSession, *, workspace_id: int) -> list[Token]:
    """Return every token of the workspace, newest first."""
    return list(
        (await session.execute(select(Token).where(Token.workspace_id == workspace_id).order_by(Token.id.desc())))
        .scalars()
        .all()
    )


async def revoke_token(session: AsyncSession, *, workspace_id: int, token_id: int) -> Token:
    """Revoke a token so it authenticates nothing from now on.

    Raises:
        NotFoundError: If the workspace has no such token.
    """
    token = (
        await session.execute(select(Token).where(Token.workspace_id == workspace_id, Token.id == token_id))
    ).scalar_one_or_none()
    if token is None:
        raise NotFoundError(f"Token {token_id} does not exist in this workspace; list tokens with `order3 token list`.")
    if token.revoked_at is None:
        token.revoked_at = utc_now()
        session.add(token)
        await session.flush()
    return token


"""Token services: create, list, rotate and revoke bearer tokens, with expiry times and last use."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from policies import PRINCIPAL_KINDS, ROLES, scopes_for
from store.changes import item_scoped
from store.errors import ConflictError, InvalidInputError
from store.models import Token
from store.tokens import (
    get_token,
    is_expired,
    issue_token,
    list_tokens,
    revoke_token,
    user_principals,
)

# A lifetime or grace period: a whole number of days, hours or minutes.
DURATION_PATTERN = re.compile(r"(\d{1,7})([dhm])")
DURATION_UNITS = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
DURATION_FORMS = "a whole number followed by d (days), h (hours) or m (minutes), such as 30d, 12h or 90m"
# Maximum lifetime or grace period: ten years.
MAX_DURATION = timedelta(days=3650)
# Maximum number of user names listed in the message that rejects an unknown --for.
MAX_USERS_LISTED = 20


class TokenOut(BaseModel):
    """A token as listed: never its secret."""

    token_id: int = Field(description="Token id, used by `order3 token revoke` and `order3 token rotate`.")
    prefix: str = Field(description="First characters of the secret, to recognise it.")
    principal: str = Field(description="Who the token belongs to.")
    kind: str = Field(description="user, agent or integration.")
    role: str = Field(description="Role the token was created with.")
    scopes: list[str] = Field(description="Scopes the token carries.")
    on_behalf_of: str = Field(description="For agent tokens: the person the agent acts for.")
    label: str = Field(description="Free-text label.")
    created_at: str = Field(description="When it was created (ISO 8601, UTC).")
    expires_at: str | None = Field(description="When it stops authenticating (ISO 8601, UTC), or null for never.")
    last_used_at: str | None = Field(
        description="When it last authenticated (ISO 8601, UTC, updated at most once a minute), or null if never."
    )
    revoked_at: str | None = Field(description="When it was revoked, or null while it is not revoked.")
    replaced_by: int | None = Field(default=None, description="Id of the token a rotation issued in its place, or null.")
    status: str = Field(description="live, expired or revoked.")


class TokenCreated(TokenOut):
    """A new token with its secret, which is never shown again."""

    secret: str = Field(description="The token secret.")
    withheld: list[str] = Field(description="Scopes of the role that this principal kind may not hold.")


class TokenRotated(BaseModel):
    """The new token of a rotation and the old token as the rotation left it."""

    new: TokenCreated = Field(description="The new token, with its secret.")
    old: TokenOut = Field(description="The old token: revoked, or expiring at the end of the grace period.")


class TokenList(BaseModel):
    """Every token of the workspace, newest first."""

    tokens: list[TokenOut] = Field(description="Tokens, newest first.")


def token_status(token: Token, *, now: datetime) -> str:
    """Return "revoked", "expired" or "live"."""
    if token.revoked_at is not None:
        return "revoked"
    if is_expired(token, now=now):
        return "expired"
    return "live"


def token_out(token: Token, *, now: datetime) -> dict[str, Any]:
    """Return the TokenOut fields of a token row."""

    def stamp(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "token_id": token.id,
        "prefix": token.prefix,
        "principal": token.principal,
        "kind": token.principal_kind,
        "role": token.role,
        "scopes": list(token.scopes),
        "on_behalf_of": token.on_behalf_of,
        "label": token.label,
        "created_at": token.created_at.isoformat(),
        "expires_at": stamp(token.expires_at),
        "last_used_at": stamp(token.last_used_at),
        "revoked_at": stamp(token.revoked_at),
        "replaced_by": token.replaced_by,
        "status": token_status(token, now=now),
    }


def parse_duration(text: str, *, option: str) -> timedelta:
    """Parse a duration such as 30d, 12h or 90m.

    Raises:
        InvalidInputError: If `text` is not one of the accepted forms, is zero or exceeds MAX_DURATION.
    """
    match = DURATION_PATTERN.fullmatch(text.strip().lower())
    if match is None:
        raise InvalidInputError(f"{option} {text!r} is not a duration; use {DURATION_FORMS}.")
    duration = int(match.group(1)) * DURATION_UNITS[match.group(2)]
    if not duration:
        raise InvalidInputError(f"{option} {text!r} is zero; use a positive duration, {DURATION_FORMS}.")
    if duration > MAX_DURATION:
        raise InvalidInputError(f"{option} {text!r} is longer than the maximum of {MAX_DURATION.days} days; use a shorter one.")
    return duration


def parse_expiry(*, expires_in: str, expires_at: str, now: datetime) -> datetime | None:
    """Return the expiry time that --expires-in or --expires-at set, or None when both are empty.

    Raises:
        InvalidInputError: If both are given, the duration is malformed, the time
            is not ISO 8601 with a UTC offset, or the time is not in the future.
    """
    if expires_in.strip() and expires_at.strip():
        raise InvalidInputError(
            f"--expires-in {expires_in!r} and --expires-at {expires_at!r} both set the expiry; give only one."
        )
    if expires_in.strip():
        return now + parse_duration(expires_in, option="--expires-in")
    if not expires_at.strip():
        return None

    forms = "ISO 8601 with a UTC offset, such as 2027-01-31T18:00:00+00:00 or 2027-01-31T18:00Z"
    try:
        moment = datetime.fromisoformat(expires_at.strip())
    except ValueError as exc:
        raise InvalidInputError(f"--expires-at {expires_at!r} is not a valid time; use {forms}.") from exc
    if moment.tzinfo is None:
        raise InvalidInputError(f"--expires-at {expires_at!r} has no UTC offset; use {forms}.")
    if moment <= now:
        raise InvalidInputError(
            f"--expires-at {expires_at!r} is not in the future (it is now {now.isoformat(timespec='seconds')}); "
            f"give a later time in {forms}, or use --expires-in."
        )
    if moment - now > MAX_DURATION:
        raise InvalidInputError(f"--expires-at {expires_at!r} is more than {MAX_DURATION.days} days away; use an earlier time.")
    return moment.astimezone(UTC)


def check_principal(*, principal: str, kind: str, role: str) -> str:
    """Return the trimmed principal name after checking the name, kind and role.

    scopes_for raises a PolicyError (a ValueError); checking here first gives the
    CLI an InvalidInputError with its exit code instead of a crash.

    Raises:
        InvalidInputError: For an empty name or an unknown kind or role.
    """
    clean = principal.strip()
    if not clean:
        raise InvalidInputError("Principal name is empty; pass --principal NAME, e.g. --principal alice.")
    if kind not in PRINCIPAL_KINDS:
        raise InvalidInputError(f"Principal kind {kind!r} is unknown; use one of {', '.join(PRINCIPAL_KINDS)}.")
    if role not in ROLES:
        raise InvalidInputError(f"Role {role!r} is unknown; use one of {', '.join(ROLES)}.")
    return clean


async def _check_acting_for(session: AsyncSession, *, workspace_id: int, person: str, kind: str) -> str:
    """Return the trimmed --for name, refusing one that is not a user of the workspace.

    Separation of duties compares this name with approvers' principals, so a
    misspelt name would silently let the real person approve the agent's drafts.
    """
    name = person.strip()
    if not name:
        return ""
    if kind == "user":
        raise InvalidInputError(
            "--for names the person an agent or integration acts for; a user token acts for its own principal, "
            "so leave --for out."
        )
    users = await user_principals(session, workspace_id=workspace_id)
    if name not in users:
        listed = ", ".join(users[:MAX_USERS_LISTED]) + (", …" if len(users) > MAX_USERS_LISTED else "")
        raise InvalidInputError(
            f"--for {name!r} is not a user of this workspace: no user token was ever created for {name!r} "
            f"(users: {listed or 'none'}). Create that user's token first with "
            f"`order3 token create --principal {name} --role ROLE`, then create this token again."
        )
    return name


async def create_token(
    app: Order3,
    caller: Caller,
    *,
    principal: str,
    kind: str,
    role: str,
    on_behalf_of: str = "",
    label: str = "",
    expires_in: str = "",
    expires_at: str = "",
) -> TokenCreated:
    """Create a token for a principal; agent and integration tokens lose the scopes withheld from them.

    Raises:
        InvalidInputError: For an unknown kind or role, an expiry that is malformed
            or past, or a --for name that is not a user of the workspace.
    """

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        now = app.clock()
        name = check_principal(principal=principal, kind=kind, role=role)
        expiry = parse_expiry(expires_in=expires_in, expires_at=expires_at, now=now)
        acting_for = await _check_acting_for(session, workspace_id=caller.workspace_id, person=on_behalf_of, kind=kind)

        scopes = scopes_for(principal_kind=kind, role=role)
        withheld = sorted(ROLES[role] - scopes)
        token, secret = await issue_token(
            session,
            workspace_id=caller.workspace_id,
            principal_kind=kind,
            principal=name,
            role=role,
            scopes=scopes,
            on_behalf_of=acting_for,
            label=label.strip(),
            expires_at=expiry,
            created_at=now,
        )

        result = TokenCreated(**token_out(token, now=now), secret=secret, withheld=withheld)
        summary = f"Created {kind} token {token.id} for {name!r} with role {role}"
        if expiry is not None:
            summary += f", expiring at {expiry.isoformat()}"
        summary += f"; withheld {', '.join(withheld)}." if withheld else "."
        return Outcome(result, summary, affected=[{"kind": "token", "id": token.id}])

    arguments = {
        "principal": principal,
        "kind": kind,
        "role": role,
        "on_behalf_of": on_behalf_of,
        "label": label,
        "expires_in": expires_in,
        "expires_at": expires_at,
    }
    return await app.run(caller, "token_create", arguments, work, result_type=TokenCreated)


async def list_workspace_tokens(app: Order3, caller: Caller) -> TokenList:
    """List the workspace's tokens without their secrets."""

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        now = app.clock()
        tokens = await list_tokens(session, workspace_id=caller.workspace_id)
        return Outcome(TokenList(tokens=[TokenOut(**token_out(t, now=now)) for t in tokens]), f"Listed {len(tokens)} tokens.")

    return await app.run(caller, "token_list", {}, work, result_type=TokenList)


async def revoke_workspace_token(app: Order3, caller: Caller, *, token_id: int) -> TokenOut:
    """Revoke a token; revoking an already revoked token changes nothing.

    Raises:
        NotFoundError: If the workspace has no such token.
        InvalidInputError: If it is the token the caller runs with.
    """

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        now = app.clock()
        if token_id == caller.token_id:
            # The activity event of this call must come from a live token, so the
            # revocation would be rolled back with it.
            raise InvalidInputError(
                f"Token {token_id} is the token this command runs with; revoke it with another admin token, or "
                f"replace it with `order3 token rotate {token_id} --grace 10m`."
            )
        token = await revoke_token(session, workspace_id=caller.workspace_id, token_id=token_id, now=now)
        return Outcome(
            TokenOut(**token_out(token, now=now)),
            f"Revoked token {token.id} of {token.principal!r}.",
            affected=[{"kind": "token", "id": token.id}],
        )

    return await app.run(caller, "token_revoke", {"token_id": token_id}, work, result_type=TokenOut)


def rotated_expiry(old: Token, *, now: datetime, expires_in: str, expires_at: str) -> datetime | None:
    """Return the new token's expiry time.

    An explicit --expires-in or --expires-at wins. Otherwise the new token gets
    the old token's whole lifetime (expires_at − created_at) counted from now,
    so a 30-day token rotates into a fresh 30-day token, and a token that never
    expires rotates into one that never expires.
    """
    explicit = parse_expiry(expires_in=expires_in, expires_at=expires_at, now=now)
    if explicit is not None or old.expires_at is None:
        return explicit
    lifetime = max(old.expires_at - old.created_at, timedelta(minutes=1))
    return now + lifetime


async def rotate_workspace_token(
    app: Order3,
    caller: Caller,
    *,
    token_id: int,
    expires_in: str = "",
    expires_at: str = "",
    grace: str = "",
) -> TokenRotated:
    """Replace a token with a new one of the same principal, role, scopes, person acted for and label.

    The old token is revoked, or with `grace` it expires at now + grace (never
    later than it already expired). Both changes and the activity event are one
    transaction.

    Raises:
        NotFoundError: If the workspace has no such token.
        ConflictError: If the token was revoked or was already rotated.
        InvalidInputError: For a malformed expiry or grace, or rotating the
            caller's own token without a grace period.
    """

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        now = app.clock()
        grace_period = parse_duration(grace, option="--grace") if grace.strip() else None
        old = await get_token(session, workspace_id=caller.workspace_id, token_id=token_id)
        if old.replaced_by is not None:
            # A second rotation would leave two live successors, and the second would
            # inherit the grace-period expiry of this token as its whole lifetime.
            raise ConflictError(
                f"Token {old.id} of {old.principal!r} was already rotated into token {old.replaced_by}; "
                f"rotate token {old.replaced_by} instead."
            )
        if old.revoked_at is not None:
            raise ConflictError(
                f"Token {old.id} of {old.principal!r} was revoked at {old.revoked_at.isoformat()}, so it cannot be "
                "rotated; create a new token with `order3 token create`."
            )
        if old.id == caller.token_id and grace_period is None:
            # Revoking the token this command runs with would also refuse this command's own activity event.
            raise InvalidInputError(
                f"Token {old.id} is the token this command runs with; rotate it with a grace period "
                "(--grace 10m) or with another admin token."
            )
        expiry = rotated_expiry(old, now=now, expires_in=expires_in, expires_at=expires_at)

        scopes = scopes_for(principal_kind=old.principal_kind, role=old.role)
        new, secret = await issue_token(
            session,
            workspace_id=caller.workspace_id,
            principal_kind=old.principal_kind,
            principal=old.principal,
            role=old.role,
            scopes=scopes,
            on_behalf_of=old.on_behalf_of,
            label=old.label,
            expires_at=expiry,
            created_at=now,
        )
        old.replaced_by = new.id
        if grace_period is None:
            old.revoked_at = now
            ending = f"revoked token {old.id}"
        else:
            ends = now + grace_period
            if old.expires_at is None or ends < old.expires_at:
                old.expires_at = ends
            ending = f"token {old.id} stops working at {old.expires_at.isoformat()}"  # type: ignore[union-attr]
        session.add(old)
        await session.flush()

        withheld = sorted(ROLES[old.role] - scopes)
        result = TokenRotated(
            new=TokenCreated(**token_out(new, now=now), secret=secret, withheld=withheld),
            old=TokenOut(**token_out(old, now=now)),
        )
        summary = f"Rotated token {old.id} of {old.principal!r} into token {new.id}; {ending}."
        return Outcome(result, summary, affected=[{"kind": "token", "id": old.id}, {"kind": "token", "id": new.id}])

    arguments = {"token_id": token_id, "expires_in": expires_in, "expires_at": expires_at, "grace": grace}
    return await app.run(caller, "token_rotate", arguments, work, result_type=TokenRotated)

"""Tokens: expiry, last use, rotation, the person an agent acts for, and scopes per role and principal kind."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from order3_mcp.app import Order3
from order3_mcp.services import tokens as token_services
from policies import PRINCIPAL_KINDS, ROLES, scopes_for
from store.db import Database
from store.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from store.models import ActivityEvent, Token
from store.tokens import issue_token
from tests.conftest import REPO_ROOT
from tests.factory import small_workspace
from tests.test_cli import order3, secret_in

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    """A settable clock for Order3, so expiry and last use need no sleeps."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "order3.db"


@pytest.fixture
def admin_token(db: Path) -> str:
    result = order3(db, "init", "--workspace", "main", "--admin", "root")
    assert result.exit_code == 0, result.stderr
    return secret_in(result.stdout)


def token_rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT id, principal, expires_at, revoked_at FROM token ORDER BY id").fetchall()


async def load_token(database: Database, token_id: int) -> Token:
    async with database.read() as session:
        return (await session.execute(select(Token).where(Token.id == token_id))).scalar_one()


# Creating tokens with an expiry, through the CLI.


def test_create_expires_in_sets_expiry(db: Path, admin_token: str) -> None:
    before = datetime.now(UTC)

    result = order3(db, "token", "create", "--principal", "alice", "--role", "buyer", "--expires-in", "12h", token=admin_token)

    assert result.exit_code == 0, result.stderr
    stored = datetime.fromisoformat(token_rows(db)[1][2]).replace(tzinfo=UTC)
    assert before + timedelta(hours=12) - timedelta(seconds=5) <= stored <= datetime.now(UTC) + timedelta(hours=12)
    assert f"Expires: {stored.isoformat()[:16].replace('T', ' ')} UTC" in result.stdout


def test_create_expires_at_keeps_given_time(db: Path, admin_token: str) -> None:
    result = order3(
        db, "token", "create", "--principal", "alice", "--role", "buyer", "--expires-at", "2030-01-31T20:00:00+02:00",
        token=admin_token,
    )

    assert result.exit_code == 0, result.stderr
    assert token_rows(db)[1][2].startswith("2030-01-31 18:00:00")
    assert "Expires: 2030-01-31 18:00 UTC" in result.stdout


def test_create_without_expiry_never_expires(db: Path, admin_token: str) -> None:
    result = order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token)

    assert result.exit_code == 0, result.stderr
    assert "Expires: never" in result.stdout
    assert token_rows(db)[1][2] is None


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--expires-in", "10x", "--expires-in '10x' is not a duration; use a whole number followed by d (days), h (hours) or m (minutes), such as 30d, 12h or 90m."),
        ("--expires-in", "1.5d", "--expires-in '1.5d' is not a duration; use a whole number"),
        ("--expires-in", "-3d", "--expires-in '-3d' is not a duration"),
        ("--expires-in", "0m", "--expires-in '0m' is zero; use a positive duration"),
        ("--expires-in", "4000d", "--expires-in '4000d' is longer than the maximum of 3650 days"),
        ("--expires-at", "2020-01-01T00:00:00+00:00", "--expires-at '2020-01-01T00:00:00+00:00' is not in the future"),
        ("--expires-at", "2099-01-01T00:00:00", "--expires-at '2099-01-01T00:00:00' has no UTC offset; use ISO 8601 with a UTC offset"),
        ("--expires-at", "next tuesday", "--expires-at 'next tuesday' is not a valid time; use ISO 8601 with a UTC offset"),
    ],
)
def test_create_rejects_bad_expiry(db: Path, admin_token: str, option: str, value: str, message: str) -> None:
    result = order3(db, "token", "create", "--principal", "alice", "--role", "buyer", option, value, token=admin_token)

    assert result.exit_code == 2
    assert message in result.stderr
    assert "o3_" not in result.stdout
    assert len(token_rows(db)) == 1


def test_create_rejects_both_expiry_options(db: Path, admin_token: str) -> None:
    result = order3(
        db, "token", "create", "--principal", "alice", "--role", "buyer", "--expires-in", "1d", "--expires-at",
        "2099-01-01T00:00Z", token=admin_token,
    )

    assert result.exit_code == 2
    assert "--expires-in '1d' and --expires-at '2099-01-01T00:00Z' both set the expiry; give only one." in result.stderr
    assert len(token_rows(db)) == 1


def test_expired_token_is_refused_by_cli(db: Path, admin_token: str) -> None:
    alice = secret_in(order3(db, "token", "create", "--principal", "alice", "--role", "buyer", "--expires-in", "1h", token=admin_token).stdout)
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE token SET expires_at = '2026-01-02 03:04:05.000000' WHERE id = 2")

    result = order3(db, "drafts", "list", token=alice)

    assert result.exit_code == 3
    assert "Token 2 (" in result.stderr
    assert "of 'alice' expired at 2026-01-02T03:04:05+00:00" in result.stderr
    assert "ask a workspace admin for a new one (`order3 token create` or `order3 token rotate ID`)" in result.stderr


def test_token_list_marks_expired_and_shows_times(db: Path, admin_token: str) -> None:
    order3(db, "token", "create", "--principal", "alice", "--role", "buyer", "--expires-in", "1h", token=admin_token)
    order3(db, "token", "create", "--principal", "bob", "--role", "viewer", "--expires-in", "30d", token=admin_token)
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE token SET expires_at = '2026-01-02 03:04:05.000000' WHERE id = 2")

    result = order3(db, "token", "list", token=admin_token, columns=80)

    assert result.exit_code == 0, result.stderr
    assert "3 tokens, 1 expired (times in UTC)" in result.stdout
    assert "EXPIRED 2026-01-02 03:04" in result.stdout
    assert result.stdout.count("expires ") == 1
    assert result.stdout.count("never used") == 2
    assert "used 20" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


# Expiry and last use at authentication, with a fixed clock.


async def test_authenticate_refuses_expired_token(database: Database) -> None:
    workspace = await small_workspace(database)
    clock = Clock()
    app = Order3(database, clock=clock)
    created = await token_services.create_token(
        app, workspace.admin, principal="carol", kind="user", role="approver", expires_in="90m"
    )

    clock.now = T0 + timedelta(minutes=89)
    assert (await app.authenticate(created.secret, channel="cli")).principal == "carol"

    clock.now = T0 + timedelta(minutes=90)
    with pytest.raises(PermissionDeniedError) as refused:
        await app.authenticate(created.secret, channel="cli")
    assert refused.value.message == (
        f"Token {created.token_id} ({created.prefix}…) of 'carol' expired at 2026-03-02T10:30:00+00:00; "
        "ask a workspace admin for a new one (`order3 token create` or `order3 token rotate ID`)."
    )


async def test_authenticate_builds_caller_of_own_workspace(database: Database) -> None:
    # Two workspaces in one file: the caller carries its own workspace's name, currency and timezone.
    await small_workspace(database)
    south = await small_workspace(database, timezone="Pacific/Auckland", name="south")
    app = Order3(database)

    agent = await app.authenticate(south.agent_secret, channel="mcp")
    buyer = await app.authenticate(south.buyer_secret, channel="cli")

    assert agent == south.agent
    assert buyer == south.buyer
    assert (agent.workspace, agent.timezone, agent.base_currency) == ("south", "Pacific/Auckland", "USD")


async def test_token_expiring_mid_session_stops_acting(database: Database) -> None:
    workspace = await small_workspace(database)
    clock = Clock()
    app = Order3(database, clock=clock)
    created = await token_services.create_token(app, workspace.admin, principal="carol", kind="user", role="admin", expires_in="1h")
    carol = await app.authenticate(created.secret, channel="mcp")

    clock.now = T0 + timedelta(hours=1, seconds=1)
    with pytest.raises(PermissionDeniedError) as refused:
        await token_services.list_workspace_tokens(app, carol)

    assert f"Token {created.token_id} expired at 2026-03-02T10:00:00+00:00; this connection can no longer act." in refused.value.message
    async with database.read() as session:
        newest = (await session.execute(select(ActivityEvent).order_by(ActivityEvent.seq.desc()).limit(1))).scalar_one()
    assert newest.action == "token_list"
    assert newest.outcome == "denied"


async def test_last_used_moves_at_most_once_a_minute(database: Database) -> None:
    workspace = await small_workspace(database)
    clock = Clock()
    app = Order3(database, clock=clock)
    token_id = workspace.buyer.token_id
    assert token_id is not None
    assert (await load_token(database, token_id)).last_used_at is None

    await app.authenticate(workspace.buyer_secret, channel="cli")
    assert (await load_token(database, token_id)).last_used_at == T0

    clock.now = T0 + timedelta(seconds=59)
    await app.authenticate(workspace.buyer_secret, channel="cli")
    assert (await load_token(database, token_id)).last_used_at == T0

    clock.now = T0 + timedelta(seconds=60)
    await app.authenticate(workspace.buyer_secret, channel="cli")
    assert (await load_token(database, token_id)).last_used_at == T0 + timedelta(seconds=60)


async def test_refused_authentication_notes_no_use(database: Database) -> None:
    workspace = await small_workspace(database)
    app = Order3(database, clock=Clock())
    created = await token_services.create_token(app, workspace.admin, principal="carol", kind="user", role="viewer")
    await token_services.revoke_workspace_token(app, workspace.admin, token_id=created.token_id)

    with pytest.raises(PermissionDeniedError):
        await app.authenticate(created.secret, channel="cli")

    assert (await load_token(database, created.token_id)).last_used_at is None


# Rotation.


async def test_rotate_copies_token_and_revokes_old(database: Database) -> None:
    workspace = await small_workspace(database)
    clock = Clock()
    app = Order3(database, clock=clock)
    old = await token_services.create_token(
        app, workspace.admin, principal="claude", kind="agent", role="agent", on_behalf_of="alice", label="desktop",
    )

    clock.now = T0 + timedelta(days=3)
    rotated = await token_services.rotate_workspace_token(app, workspace.admin, token_id=old.token_id)

    new = rotated.new
    assert (new.principal, new.kind, new.role, new.scopes, new.on_behalf_of, new.label) == (
        "claude", "agent", "agent", ["draft", "read"], "alice", "desktop",
    )
    assert new.token_id != old.token_id
    assert new.secret != old.secret
    assert new.expires_at is None
    assert rotated.old.revoked_at == (T0 + timedelta(days=3)).isoformat()
    assert rotated.old.status == "revoked"
    assert (await app.authenticate(new.secret, channel="mcp")).on_behalf_of == "alice"
    with pytest.raises(PermissionDeniedError):
        await app.authenticate(old.secret, channel="mcp")


async def test_rotate_is_one_activity_event(database: Database) -> None:
    workspace = await small_workspace(database)
    app = Order3(database, clock=Clock())
    old = await token_services.create_token(app, workspace.admin, principal="carol", kind="user", role="approver")

    rotated = await token_services.rotate_workspace_token(app, workspace.admin, token_id=old.token_id, grace="10m")

    async with database.read() as session:
        events = (await session.execute(select(ActivityEvent).where(ActivityEvent.action == "token_rotate"))).scalars().all()
    assert len(events) == 1
    assert events[0].outcome == "ok"
    assert events[0].affected == [{"kind": "token", "id": old.token_id}, {"kind": "token", "id": rotated.new.token_id}]
    assert rotated.new.secret not in str(events[0].arguments)


async def test_rotate_grace_keeps_old_token_until_grace_ends(database: Database) -> None:
    workspace = await small_workspace(database)
    clock = Clock()
    app = Order3(database, clock=clock)
    old = await token_services.create_token(app, workspace.admin, principal="carol", kind="user", role="approver")

    rotated = await token_services.rotate_workspace_token(app, workspace.admin, token_id=old.token_id, grace="10m")

    assert rotated.old.revoked_at is None
    assert rotated.old.expires_at == (T0 + timedelta(minutes=10)).isoformat()
    clock.now = T0 + timedelta(minutes=9)
    assert (await app.authenticate(old.secret, channel="cli")).principal == "carol"
    clock.now = T0 + timedelta(minutes=10)
    with pytest.raises(PermissionDeniedError):
        await app.authenticate(old.secret, channel="cli")
    assert (await app.authenticate(rotated.new.secret, channel="cli")).principal == "carol"


async def test_rotate_grace_never_extends_expiry(database: Database) -> None:
    workspace = await small_workspace(database)
    app = Order3(database, clock=Clock())
    old = await token_services.create_token(app, workspace.admin, principal="carol", kind="user", role="viewer", expires_in="5m")

    rotated = await token_services.rotate_workspace_token(app, workspace.admin, token_id=old.token_id, grace="1h")

    assert rotated.old.expires_at == (T0 + timedelta(minutes=5)).isoformat()


async def test_rotate_keeps_lifetime_unless_given(database: Database) -> None:
    workspace = await small_workspace(database)
    clock = Clock()
    app = Order3(database, clock=clock)
    old = await token_services.create_token(app, workspace.admin, principal="carol", kind="user", role="viewer", expires_in="30d")
    clock.now = T0 + timedelta(days=20)

    same = await token_services.rotate_workspace_token(app, workspace.admin, token_id=old.token_id)
    given = await token_services.rotate_workspace_token(app, workspace.admin, token_id=same.new.token_id, expires_in="12h")

    assert same.new.expires_at == (T0 + timedelta(days=50)).isoformat()
    assert given.new.expires_at == (T0 + timedelta(days=20, hours=12)).isoformat()


async def test_rotate_rejects_revoked_token(database: Database) -> None:
    workspace = await small_workspace(database)
    app = Order3(database, clock=Clock())
    old = await token_services.create_token(app, workspace.admin, principal="carol", kind="user", role="viewer")
    await token_services.revoke_workspace_token(app, workspace.admin, token_id=old.token_id)

    with pytest.raises(ConflictError) as refused:
        await token_services.rotate_workspace_token(app, workspace.admin, token_id=old.token_id)

    assert f"Token {old.token_id} of 'carol' was revoked at 2026-03-02T09:00:00+00:00, so it cannot be rotated" in refused.value.message


async def test_rotate_own_token_needs_grace(database: Database) -> None:
    workspace = await small_workspace(database)
    app = Order3(database, clock=Clock())
    own = workspace.admin.token_id
    assert own is not None

    with pytest.raises(InvalidInputError) as refused:
        await token_services.rotate_workspace_token(app, workspace.admin, token_id=own)
    rotated = await token_services.rotate_workspace_token(app, workspace.admin, token_id=own, grace="5m")

    assert refused.value.message.startswith(f"Token {own} is the token this command runs with; rotate it with a grace period")
    assert rotated.old.expires_at == (T0 + timedelta(minutes=5)).isoformat()


async def test_rotate_unknown_token_is_not_found(database: Database) -> None:
    workspace = await small_workspace(database)
    app = Order3(database, clock=Clock())

    with pytest.raises(NotFoundError) as refused:
        await token_services.rotate_workspace_token(app, workspace.admin, token_id=999)

    assert refused.value.message == "Token 999 does not exist in this workspace; list tokens with `order3 token list`."


def test_rotate_cli_prints_new_secret_once(db: Path, admin_token: str) -> None:
    order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token)
    order3(db, "token", "create", "--principal", "bot", "--kind", "agent", "--role", "agent", "--for", "alice", token=admin_token)

    result = order3(db, "token", "rotate", "3", "--grace", "10m", token=admin_token)

    assert result.exit_code == 0, result.stderr
    assert "Created agent token 4 for 'bot' with role agent, replacing token 3." in result.stdout
    assert "Token 3 (o3_" in result.stdout
    assert "keeps working until" in result.stdout
    assert "Acts for: alice" in result.stdout
    assert sum(line.startswith("o3_") for line in result.stdout.splitlines()) == 1
    assert "Store this token now: it is not shown again." in result.stdout


def test_rotate_cli_rejects_bad_grace(db: Path, admin_token: str) -> None:
    order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token)

    result = order3(db, "token", "rotate", "2", "--grace", "soon", token=admin_token)

    assert result.exit_code == 2
    assert "--grace 'soon' is not a duration; use a whole number followed by d (days)" in result.stderr
    assert len(token_rows(db)) == 2
    assert token_rows(db)[1][3] is None


# The person an agent acts for.


def test_for_unknown_person_is_rejected(db: Path, admin_token: str) -> None:
    order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token)

    result = order3(db, "token", "create", "--principal", "bot", "--kind", "agent", "--role", "agent", "--for", "alcie", token=admin_token)

    assert result.exit_code == 2
    assert result.stderr.replace("\n", " ").strip() == (
        "--for 'alcie' is not a user of this workspace: no user token was ever created for 'alcie' (users: alice, root). "
        "Create that user's token first with `order3 token create --principal alcie --role ROLE`, then create this token again."
    )
    assert len(token_rows(db)) == 2


def test_for_agent_principal_is_rejected(db: Path, admin_token: str) -> None:
    order3(db, "token", "create", "--principal", "bot", "--kind", "agent", "--role", "agent", token=admin_token)

    result = order3(db, "token", "create", "--principal", "bot2", "--kind", "agent", "--role", "agent", "--for", "bot", token=admin_token)

    assert result.exit_code == 2
    assert "--for 'bot' is not a user of this workspace" in result.stderr


def test_for_user_with_revoked_token_is_accepted(db: Path, admin_token: str) -> None:
    order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token)
    order3(db, "token", "revoke", "2", token=admin_token)

    result = order3(db, "token", "create", "--principal", "bot", "--kind", "agent", "--role", "agent", "--for", "alice", token=admin_token)

    assert result.exit_code == 0, result.stderr
    assert "Acts for: alice" in result.stdout


async def test_for_user_of_other_workspace_is_rejected(database: Database) -> None:
    workspace = await small_workspace(database)
    app = Order3(database, clock=Clock())
    from store.workspaces import create_workspace

    async with database.write() as session:
        other = await create_workspace(session, name="other")
        await issue_token(
            session, workspace_id=other.id, principal_kind="user", principal="zoe", role="buyer",  # type: ignore[arg-type]
            scopes=scopes_for(principal_kind="user", role="buyer"),
        )

    with pytest.raises(InvalidInputError) as refused:
        await token_services.create_token(app, workspace.admin, principal="bot", kind="agent", role="agent", on_behalf_of="zoe")

    assert "--for 'zoe' is not a user of this workspace" in refused.value.message
    assert "zoe" not in refused.value.message.split("(users: ")[1].split(")")[0]


# Scopes per role and principal kind.


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("kind", [kind for kind in PRINCIPAL_KINDS if kind != "user"])
def test_non_user_never_holds_approve_or_execute(kind: str, role: str) -> None:
    scopes = scopes_for(principal_kind=kind, role=role)

    assert "approve" not in scopes
    assert "execute" not in scopes
    assert "admin" not in scopes
    assert scopes == ROLES[role] - {"approve", "execute", "admin"}


@pytest.mark.parametrize("role", list(ROLES))
def test_user_holds_whole_role(role: str) -> None:
    assert scopes_for(principal_kind="user", role=role) == ROLES[role]


@pytest.mark.parametrize("role", list(ROLES))
async def test_authenticate_recomputes_agent_scopes(database: Database, role: str) -> None:
    workspace = await small_workspace(database)
    async with database.write() as session:
        # A row written with every scope, as a tampered or outdated database could hold.
        _, secret = await issue_token(
            session, workspace_id=workspace.admin.workspace_id, principal_kind="agent", principal="rogue", role=role,
            scopes=frozenset(ROLES["admin"]),
        )

    caller = await Order3(database).authenticate(secret, channel="mcp")

    assert caller.scopes == ROLES[role] - {"approve", "execute", "admin"}


def documented_roles() -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Return the roles table of docs/tokens.md as {role: (user scopes, agent or integration scopes)}."""
    text = (REPO_ROOT / "docs" / "tokens.md").read_text(encoding="utf-8")
    table = text.split("| Role | User token scopes | Agent or integration token scopes |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.strip().splitlines()[1:]:
        role, user, other = (cell.strip() for cell in line.strip("|").split("|"))
        rows[role] = (frozenset(user.split(", ")), frozenset(other.split(", ")))
    return rows


def test_docs_roles_table_matches_policy() -> None:
    documented = documented_roles()

    assert list(documented) == list(ROLES)
    for role, (user, other) in documented.items():
        assert user == scopes_for(principal_kind="user", role=role), role
        assert other == scopes_for(principal_kind="agent", role=role), role
        assert other == scopes_for(principal_kind="integration", role=role), role


def test_revoke_own_token_is_rejected(db: Path, admin_token: str) -> None:
    result = order3(db, "token", "revoke", "1", token=admin_token)

    assert result.exit_code == 2
    assert result.stderr.replace("\n", " ").strip() == (
        "Token 1 is the token this command runs with; revoke it with another admin token, or replace it with "
        "`order3 token rotate 1 --grace 10m`."
    )
    assert token_rows(db)[0][3] is None


# Refusals of revoked and expired tokens in the activity history.


def denied_events(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT actor, token_id, channel, action, summary FROM activity_event WHERE outcome = 'denied' ORDER BY seq"
        ).fetchall()


def test_revoked_token_refusal_is_recorded(db: Path, admin_token: str) -> None:
    alice = secret_in(order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token).stdout)
    assert order3(db, "token", "revoke", "2", token=admin_token).exit_code == 0

    result = order3(db, "drafts", "approve", "1", token=alice)

    assert result.exit_code == 3
    assert len(denied_events(db)) == 1
    actor, token_id, channel, action, summary = denied_events(db)[0]
    assert (actor, token_id, channel, action) == ("alice", 2, "cli", "drafts approve")
    assert "because it is revoked" in summary


def test_expired_token_refusal_is_recorded(db: Path, admin_token: str) -> None:
    alice = secret_in(order3(db, "token", "create", "--principal", "alice", "--role", "buyer", "--expires-in", "1h", token=admin_token).stdout)
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE token SET expires_at = '2026-01-02 03:04:05.000000' WHERE id = 2")

    result = order3(db, "drafts", "show", "1", token=alice)

    assert result.exit_code == 3
    actor, token_id, channel, action, summary = denied_events(db)[0]
    assert (actor, token_id, channel, action) == ("alice", 2, "cli", "drafts show")
    assert "because it is expired" in summary


def test_unknown_token_refusal_is_not_recorded(db: Path, admin_token: str) -> None:
    with sqlite3.connect(db) as connection:
        before = connection.execute("SELECT count(*) FROM activity_event").fetchone()[0]

    result = order3(db, "drafts", "list", token="o3_no-such-token")

    assert result.exit_code == 3
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT count(*) FROM activity_event").fetchone()[0] == before


async def test_dead_token_refusals_recorded_once_a_minute(database: Database) -> None:
    workspace = await small_workspace(database)
    clock = Clock()
    app = Order3(database, clock=clock)
    created = await token_services.create_token(app, workspace.admin, principal="carol", kind="user", role="viewer")
    await token_services.revoke_workspace_token(app, workspace.admin, token_id=created.token_id)

    for seconds in (0, 30, 59, 60):
        clock.now = T0 + timedelta(seconds=seconds)
        with pytest.raises(PermissionDeniedError):
            await app.authenticate(created.secret, channel="mcp", action="tools/list")

    async with database.read() as session:
        events = (
            await session.execute(select(ActivityEvent).where(ActivityEvent.outcome == "denied").order_by(ActivityEvent.seq))
        ).scalars().all()
    assert [(event.action, event.token_id, event.occurred_at) for event in events] == [
        ("tools/list", created.token_id, T0),
        ("tools/list", created.token_id, T0 + timedelta(seconds=60)),
    ]


async def test_rotate_records_successor(database: Database) -> None:
    workspace = await small_workspace(database)
    app = Order3(database, clock=Clock())
    old = await token_services.create_token(app, workspace.admin, principal="carol", kind="user", role="viewer")

    rotated = await token_services.rotate_workspace_token(app, workspace.admin, token_id=old.token_id, grace="10m")

    assert rotated.old.replaced_by == rotated.new.token_id
    assert rotated.new.replaced_by is None
    assert (await load_token(database, old.token_id)).replaced_by == rotated.new.token_id


def test_rotate_twice_names_successor(db: Path, admin_token: str) -> None:
    order3(db, "token", "create", "--principal", "alice", "--role", "buyer", "--expires-in", "30d", token=admin_token)
    first = order3(db, "token", "rotate", "2", "--grace", "10m", token=admin_token)

    second = order3(db, "token", "rotate", "2", "--grace", "10m", token=admin_token)

    assert first.exit_code == 0, first.stderr
    assert second.exit_code == 5
    assert "Token 2 of 'alice' was already rotated into token 3; rotate token 3 instead." in second.stderr
    assert [row[0] for row in token_rows(db)] == [1, 2, 3]


def test_token_list_keeps_scope_names_whole_at_80_columns(db: Path, admin_token: str) -> None:
    order3(db, "token", "create", "--principal", "shopify-eu", "--kind", "integration", "--role", "integration", token=admin_token)
    order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token)

    result = order3(db, "token", "list", token=admin_token, columns=80)

    assert result.exit_code == 0, result.stderr
    words = result.stdout.split()
    for scope in scopes_for(principal_kind="user", role="admin"):
        assert scope in words, scope
    assert words.count("export") == 2
    assert max(len(line) for line in result.stdout.splitlines()) <= 80

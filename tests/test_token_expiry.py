"""Token expiry: Order3.authenticate refuses a token once its expires_at has come, for every channel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from order3_mcp.app import Order3
from order3_mcp.cli import app as cli
from store.db import Database
from store.errors import PermissionDeniedError
from store.models import Token
from store.tokens import hash_secret
from tests.factory import small_workspace
from tests.http_support import order3, secret_in, set_token_expiry

NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


async def expire_at(database: Database, secret: str, when: datetime) -> None:
    async with database.write() as session:
        await session.execute(update(Token).where(Token.secret_hash == hash_secret(secret)).values(expires_at=when))


@pytest.mark.parametrize(("offset", "accepted"), [(timedelta(seconds=1), True), (timedelta(0), False), (timedelta(seconds=-1), False)])
async def test_authenticate_compares_expiry_with_clock(database: Database, offset: timedelta, accepted: bool) -> None:
    tokens = await small_workspace(database)
    await expire_at(database, tokens.agent_secret, NOON + offset)
    app = Order3(database, clock=lambda: NOON)

    if accepted:
        caller = await app.authenticate(tokens.agent_secret, channel="mcp")
        assert caller.token_id == tokens.agent.token_id
    else:
        with pytest.raises(PermissionDeniedError) as refused:
            await app.authenticate(tokens.agent_secret, channel="mcp")
        assert f"expired at {(NOON + offset).isoformat()}" in refused.value.message
        assert "order3 token create" in refused.value.message


async def test_token_without_expiry_never_expires(database: Database) -> None:
    tokens = await small_workspace(database)
    app = Order3(database, clock=lambda: datetime(2999, 1, 1, tzinfo=UTC))

    caller = await app.authenticate(tokens.buyer_secret, channel="cli")

    assert caller.principal == tokens.buyer.principal


def test_cli_refuses_expired_token(tmp_path: Path) -> None:
    db = tmp_path / "order3.db"
    admin = secret_in(order3(db, "init", "--workspace", "main"))
    anyio.run(set_token_expiry, db, 1, datetime.now(UTC) - timedelta(minutes=1))

    result = CliRunner().invoke(cli, ["--db", str(db), "--token", admin, "token", "list"], env={"ORDER3_TOKEN": None, "ORDER3_DB": None})

    assert result.exit_code == 3
    assert "expired at" in result.stderr

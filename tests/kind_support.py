"""Helpers for end-to-end tests of draft kinds: a workspace in a SQLite file, an agent over MCP, people over the CLI.

Tests that use these are plain functions, because the CLI runner starts its own
event loop. Each async step runs in `anyio.run` against the same file.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
from mcp import Client
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner, Result

from order3_mcp.app import Caller, Order3
from order3_mcp.cli import app as cli
from order3_mcp.server import build_server
from policies import scopes_for
from store.activity import verify_chain
from store.db import Database, open_database
from store.stock import verify_ledger
from store.tokens import issue_token
from tests.conftest import new_database_location
from tests.factory import Tokens, small_workspace

T = TypeVar("T")

runner = CliRunner()


@dataclass
class Workspace:
    """A small workspace in a test database, with the secrets of its people and the callers of its machines."""

    #: The SQLite file, or the PostgreSQL URL on that test run.
    db: Path | str
    tokens: Tokens
    #: Secret of 'carol', a user with the approver role.
    approver_secret: str
    #: Caller of the 'shopify-eu' integration.
    integration: Caller
    #: The test's own directory, for files such as sync batches.
    folder: Path


def on(db: Path, step: Callable[[Database], Awaitable[T]]) -> T:
    """Run one async step against the database file and close it afterwards."""

    async def run() -> T:
        database = await open_database(db)
        try:
            return await step(database)
        finally:
            await database.dispose()

    return anyio.run(run)


def write(db: Path, step: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `step` in one write transaction on the database file."""

    async def run(database: Database) -> T:
        async with database.write() as session:
            return await step(session)

    return on(db, run)


def read(db: Path, step: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `step` in a read session on the database file."""

    async def run(database: Database) -> T:
        async with database.read() as session:
            return await step(session)

    return on(db, run)


def make_workspace(tmp_path: Path) -> Workspace:
    """Create the small test workspace (see `small_workspace`) plus an approver and an integration."""
    db = new_database_location(tmp_path, "order3.db")

    async def build(database: Database) -> Workspace:
        tokens = await small_workspace(database)
        async with database.write() as session:
            _token, approver_secret = await issue_token(
                session, workspace_id=tokens.admin.workspace_id, principal_kind="user", principal="carol",
                role="approver", scopes=scopes_for(principal_kind="user", role="approver"),
            )
            scopes = scopes_for(principal_kind="integration", role="integration")
            token, _secret = await issue_token(
                session, workspace_id=tokens.admin.workspace_id, principal_kind="integration", principal="shopify-eu",
                role="integration", scopes=scopes,
            )
        integration = Caller(
            workspace_id=tokens.admin.workspace_id,
            workspace=tokens.admin.workspace,
            base_currency=tokens.admin.base_currency,
            timezone=tokens.admin.timezone,
            token_id=token.id,
            principal_kind="integration",
            principal="shopify-eu",
            role="integration",
            scopes=scopes,
            channel="sync",
        )
        return Workspace(db=db, tokens=tokens, approver_secret=approver_secret, integration=integration, folder=tmp_path)

    return on(db, build)


def agent_calls(workspace: Workspace, *calls: tuple[str, dict[str, Any]]) -> list[Any]:
    """Call tools in order as the agent 'buyer-bot', over one in-memory JSON-RPC session, and return the results."""

    async def run(database: Database) -> list[Any]:
        async with Client(build_server(Order3(database), workspace.tokens.agent), mode="legacy") as client:
            return [await client.call_tool(name, arguments) for name, arguments in calls]

    return on(workspace.db, run)


def order3(db: Path, *args: str, token: str) -> Result:
    """Run `order3 --db DB --token TOKEN ARGS` through the CLI runner."""
    return runner.invoke(
        cli, ["--db", str(db), "--token", token, *args], env={"ORDER3_TOKEN": None, "ORDER3_DB": None, "COLUMNS": "200"}
    )


def count(db: Path, model: Any) -> int:
    """Return the number of rows of a table."""
    return read(db, lambda session: _count(session, model))


async def _count(session: AsyncSession, model: Any) -> int:
    return (await session.execute(select(func.count()).select_from(model))).scalar_one()


def rows(db: Path, model: Any) -> list[Any]:
    """Return every row of a table in id order."""

    async def load(session: AsyncSession) -> list[Any]:
        return list((await session.execute(select(model).order_by(model.id))).scalars().all())

    return read(db, load)


def ledger_and_chain_clean(workspace: Workspace) -> tuple[int, list[Any], bool]:
    """Return the stock levels checked, the ledger mismatches and whether the activity chain verifies."""
    workspace_id = workspace.tokens.admin.workspace_id

    async def check(session: AsyncSession) -> tuple[int, list[Any], bool]:
        checked, mismatches = await verify_ledger(session, workspace_id=workspace_id)
        chain = await verify_chain(session, workspace_id=workspace_id)
        return checked, mismatches, chain.ok

    return read(workspace.db, check)

"""One activity event per MCP call whatever its outcome, who and which client it names, and rollback with the work."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp_types import Implementation
from sqlalchemy import func, select, text
from typer.testing import CliRunner, Result

from order3_mcp.cli import app as cli_app
from order3_mcp.server import build_server
from order3_mcp.services import tokens as token_services
from store.errors import PermissionDeniedError
from store.models import ActivityEvent, Draft, IdempotencyRecord, Token
from store.tokens import issue_token, revoke_token
from tests.conftest import REPO_ROOT
from tests.factory import last_event, make_app, row_count, small_workspace

RATIONALE = "WIDGET-1 has 5 available against a reorder point of 20."
PURCHASE = {"lines": [{"sku": "WIDGET-1", "quantity": 40}], "rationale": RATIONALE}


async def no_preparation(client: Client) -> dict:
    return {}


async def draft_first(client: Client) -> dict:
    drafted = await client.call_tool("draft_purchase_order", {**PURCHASE, "idempotency_key": "po-1"})
    return {"draft_id": drafted.structured_content["draft_id"]}


async def call_ok(client: Client, prepared: dict) -> object:
    return await client.call_tool("get_item", {"sku": "WIDGET-1"})


async def call_denied(client: Client, prepared: dict) -> object:
    return await client.call_tool("approve_draft", {"draft_id": prepared["draft_id"]})


async def call_not_found(client: Client, prepared: dict) -> object:
    return await client.call_tool("get_item", {"sku": "NO-SUCH-SKU"})


async def call_schema_refused(client: Client, prepared: dict) -> object:
    return await client.call_tool("list_activity", {"limit": 0})


async def call_unknown_tool(client: Client, prepared: dict) -> object:
    return await client.call_tool("delete_everything", {})


async def call_conflict(client: Client, prepared: dict) -> object:
    # The same idempotency key as draft_first with another quantity.
    return await client.call_tool(
        "draft_purchase_order", {**PURCHASE, "lines": [{"sku": "WIDGET-1", "quantity": 60}], "idempotency_key": "po-1"}
    )


async def call_crash(client: Client, prepared: dict) -> object:
    return await client.call_tool("list_reservations", {})


async def drop_reservations(database) -> None:
    """Drop a table a read tool needs, so that its body fails with an unexpected database error."""
    async with database.write() as session:
        await session.execute(text("DROP TABLE reservation"))


@pytest.mark.parametrize(
    ("prepare", "call", "action", "outcome"),
    [
        (no_preparation, call_ok, "get_item", "ok"),
        (draft_first, call_denied, "approve_draft", "denied"),
        (no_preparation, call_not_found, "get_item", "invalid"),
        (no_preparation, call_schema_refused, "list_activity", "invalid"),
        (no_preparation, call_unknown_tool, "unknown_tool", "invalid"),
        (draft_first, call_conflict, "draft_purchase_order", "conflict"),
        (no_preparation, call_crash, "list_reservations", "error"),
    ],
)
async def test_each_call_records_one_event(database, prepare, call, action, outcome):
    tokens = await small_workspace(database)
    if call is call_crash:
        await drop_reservations(database)
    client_info = Implementation(name="test-client", version="1")

    async with Client(build_server(make_app(database), tokens.agent), client_info=client_info) as client:
        prepared = await prepare(client)
        before = await row_count(database, ActivityEvent)
        result = await call(client, prepared)
    after = await row_count(database, ActivityEvent)

    last = await last_event(database)
    assert result.is_error is (outcome != "ok")
    assert after - before == 1
    assert (last.action, last.outcome) == (action, outcome)
    assert last.actor == "buyer-bot"
    assert last.client_name == "test-client"


async def test_crash_event_hides_internals(database):
    tokens = await small_workspace(database)
    await drop_reservations(database)

    async with Client(build_server(make_app(database), tokens.agent)) as client:
        result = await client.call_tool("list_reservations", {})

    assert result.is_error
    assert "no such table" not in result.content[0].text
    assert (await last_event(database)).summary == "Internal error; see the server log."


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_client_name_is_cleaned_and_marked_unverified(database, mode):
    tokens = await small_workspace(database)
    sent = "claude\x1b[31m-desktop\u202e\n" + "x" * 200
    client_info = Implementation(name=sent, version="1")

    async with Client(build_server(make_app(database), tokens.agent), client_info=client_info, mode=mode) as client:
        await client.call_tool("get_item", {"sku": "WIDGET-1"})
        listed = await client.call_tool("list_activity", {"limit": 10})

    stored = (await last_event(database)).client_name
    assert stored == ("claude[31m-desktop" + "x" * 200)[:120]
    assert len(stored) == 120
    shown = listed.structured_content["events"][0]
    assert shown["client_name_unverified"] == stored
    assert "client_name" not in shown


async def test_refused_call_records_client_name(database):
    tokens = await small_workspace(database)
    client_info = Implementation(name="inspector", version="1")

    async with Client(build_server(make_app(database), tokens.agent), client_info=client_info) as client:
        await client.call_tool("get_item", {"sku": 42})

    last = await last_event(database)
    assert (last.action, last.outcome) == ("get_item", "invalid")
    assert last.client_name == "inspector"


async def test_cli_events_have_no_client_name(database):
    tokens = await small_workspace(database)
    app = make_app(database)
    async with Client(build_server(app, tokens.agent), client_info=Implementation(name="inspector", version="1")):
        pass

    await token_services.list_workspace_tokens(app, tokens.admin)

    last = await last_event(database)
    assert last.action == "token_list"
    assert last.client_name == ""


async def test_agent_events_name_person_acted_for(database):
    tokens = await small_workspace(database)
    app = make_app(database)
    async with database.write() as session:
        _, secret = await issue_token(
            session,
            workspace_id=tokens.agent.workspace_id,
            principal_kind="agent",
            principal="helper-bot",
            role="agent",
            scopes=tokens.agent.scopes,
            on_behalf_of="alice",
        )
    caller = await app.authenticate(secret, channel="mcp")

    async with Client(build_server(app, caller)) as client:
        await client.call_tool("get_item", {"sku": "WIDGET-1"})
        refused = await client.call_tool("approve_draft", {"draft_id": 1})
        listed = await client.call_tool("list_activity", {"actor": "helper-bot"})

    assert refused.is_error
    events = listed.structured_content["events"]
    assert [(event["action"], event["on_behalf_of"]) for event in events] == [
        ("get_item", "alice"),
        ("approve_draft", "alice"),
    ]
    assert (await last_event(database)).on_behalf_of == "alice"


async def test_failed_event_append_rolls_back_draft(database):
    tokens = await small_workspace(database)
    app = make_app(database)
    events_before = await row_count(database, ActivityEvent)
    async with Client(build_server(app, tokens.agent)) as client:
        async with database.write() as session:
            await revoke_token(session, workspace_id=tokens.agent.workspace_id, token_id=tokens.agent.token_id)
        result = await client.call_tool("draft_purchase_order", {**PURCHASE, "idempotency_key": "po-revoked"})

    assert result.is_error
    assert "was revoked" in result.content[0].text
    assert await row_count(database, Draft) == 0
    assert await row_count(database, IdempotencyRecord) == 0
    # Only the refusal is recorded, in a transaction of its own.
    assert await row_count(database, ActivityEvent) == events_before + 1
    last = await last_event(database)
    assert (last.action, last.outcome) == ("draft_purchase_order", "denied")


async def test_failed_event_append_rolls_back_token(database):
    tokens = await small_workspace(database)
    app = make_app(database)
    async with database.write() as session:
        await revoke_token(session, workspace_id=tokens.admin.workspace_id, token_id=tokens.admin.token_id)
    tokens_before = await row_count(database, Token)

    with pytest.raises(PermissionDeniedError, match="was revoked"):
        await token_services.create_token(
            app, tokens.admin, principal="dave", kind="user", role="viewer", on_behalf_of="", label=""
        )

    assert await row_count(database, Token) == tokens_before
    async with database.read() as session:
        names = (await session.execute(select(func.count()).where(Token.principal == "dave"))).scalar_one()
    assert names == 0
    assert (await last_event(database)).outcome == "denied"


def order3(db: Path, *args: str, token: str | None = None) -> Result:
    options = ["--db", str(db)] + (["--token", token] if token else [])
    result = CliRunner().invoke(cli_app, [*options, *args], env={"ORDER3_TOKEN": None, "ORDER3_DB": None, "COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    return result


def secret_in(output: str) -> str:
    return next(line.strip() for line in output.splitlines() if line.strip().startswith("o3_"))


def test_stdio_session_records_client_and_person(tmp_path: Path):
    db = tmp_path / "order3.db"
    admin = secret_in(order3(db, "init", "--workspace", "main", "--admin", "root").stdout)
    order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin)
    created = order3(
        db, "token", "create", "--principal", "helper-bot", "--kind", "agent", "--role", "agent", "--for", "alice", token=admin
    )
    env = {key: value for key, value in os.environ.items() if key not in ("ORDER3_TOKEN", "ORDER3_DB")}
    env.update({"ORDER3_DB": str(db), "ORDER3_TOKEN": secret_in(created.stdout)})
    server = StdioServerParameters(command=sys.executable, args=["-m", "order3_mcp.cli", "serve"], env=env, cwd=str(REPO_ROOT))

    async def session() -> list[dict]:
        async with Client(server, client_info=Implementation(name="stdio-test", version="1")) as client:
            await client.call_tool("list_activity", {"limit": 1})
            listed = await client.call_tool("list_activity", {"actor": "agent:helper-bot"})
        return listed.structured_content["events"]

    events = anyio.run(session)
    shown = order3(db, "activity", "show", "4", token=admin).stdout.splitlines()

    assert len(events) == 1
    assert events[0]["client_name_unverified"] == "stdio-test"
    assert events[0]["on_behalf_of"] == "alice"
    assert "client_name (unverified): stdio-test" in shown
    assert "on_behalf_of: alice" in shown

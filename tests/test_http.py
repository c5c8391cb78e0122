"""Streamable HTTP: every request authenticated by its own bearer token, against a real `order3 serve --http`."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.shared.exceptions import MCPError
from sqlalchemy import select

from order3_mcp.http_server.guards import MAX_REQUEST_BODY
from policies import required_scope, scopes_for
from store.db import open_database
from store.models import Location, Workspace
from store.types import utc_now
from tests.http_support import (
    INITIALIZE,
    MCP_HEADERS,
    RunningServer,
    bearer,
    create_token,
    create_token_async,
    error_of,
    initialize,
    mcp_client,
    order3,
    order3_async,
    secret_in,
    serve_http,
    session_request,
    set_token_expiry,
)

WITHHELD = ("approve_draft", "execute_draft", "dismiss_exception")


@dataclass
class Deployment:
    """One database with two workspaces and a running server."""

    db: Path
    server: RunningServer
    admin: str
    agent: str
    agent_id: int
    viewer: str
    buyer: str
    other_admin: str


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    db = tmp_path_factory.mktemp("http") / "order3.db"
    admin = secret_in(order3(db, "init", "--workspace", "main", "--admin", "root"))
    other_admin = secret_in(order3(db, "init", "--workspace", "other", "--admin", "olga"))
    agent_id, agent = create_token(db, admin, "bot", kind="agent", role="agent")
    _, viewer = create_token(db, admin, "vera", kind="user", role="viewer")
    _, buyer = create_token(db, admin, "alice", kind="user", role="buyer")
    with serve_http(db) as server:
        yield Deployment(db, server, admin, agent, agent_id, viewer, buyer, other_admin)


async def tool_names(url: str, secret: str) -> set[str]:
    async with mcp_client(url, secret) as client:
        return {tool.name for tool in (await client.list_tools()).tools}


async def test_tool_list_follows_token_role(deployment: Deployment) -> None:
    url = deployment.server.url
    every_tool = await tool_names(url, deployment.admin)

    for secret, kind, role in (
        (deployment.agent, "agent", "agent"),
        (deployment.viewer, "user", "viewer"),
        (deployment.buyer, "user", "buyer"),
    ):
        allowed = scopes_for(principal_kind=kind, role=role)
        expected = {name for name in every_tool if required_scope(name) in allowed}
        assert await tool_names(url, secret) == expected, role

    assert "approve_draft" in every_tool
    assert not set(WITHHELD) & await tool_names(url, deployment.agent)
    assert not {name for name in await tool_names(url, deployment.viewer) if name.startswith("draft_")}


@pytest.mark.parametrize("tool", WITHHELD)
async def test_agent_withheld_tool_denied_and_recorded(deployment: Deployment, tool: str) -> None:
    arguments = {"draft_id": 1, "exception_id": 1, "reason": "Agent tries to decide."}

    async with mcp_client(deployment.server.url, deployment.agent) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool(tool, arguments)

    assert "Insufficient scope" in str(refused.value)
    with sqlite3.connect(deployment.db) as connection:
        events = connection.execute(
            "SELECT outcome, channel, actor FROM activity_event WHERE token_id = ? AND action = ?",
            (deployment.agent_id, tool),
        ).fetchall()
    assert events == [("denied", "mcp", "bot")]


async def test_viewer_draft_call_gets_403_insufficient_scope(deployment: Deployment) -> None:
    url = deployment.server.url
    async with httpx2.AsyncClient() as http:
        session_id = await initialize(http, url, deployment.viewer)
        response = await session_request(
            http, url, session_id, deployment.viewer, "tools/call",
            {"name": "draft_purchase_order", "arguments": {"lines": [], "rationale": "x"}},
        )

    assert response.status_code == 403
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="draft"' in challenge
    error = error_of(response)
    assert error["data"] == {"status": 403, "error": "insufficient_scope", "scope": "draft", "tool": "draft_purchase_order"}
    assert error["message"].startswith("Insufficient scope: user 'vera' (role viewer) may not call draft_purchase_order")


async def test_viewer_reads_on_same_session_after_403(deployment: Deployment) -> None:
    url = deployment.server.url
    async with httpx2.AsyncClient() as http:
        session_id = await initialize(http, url, deployment.viewer)
        refused = await session_request(http, url, session_id, deployment.viewer, "tools/call", {"name": "withdraw_draft", "arguments": {}})
        listed = await session_request(http, url, session_id, deployment.viewer, "tools/list", {})

    assert refused.status_code == 403
    assert listed.status_code == 200
    assert '"list_drafts"' in listed.text


@pytest.mark.parametrize(
    ("authorization", "error", "fix"),
    [
        (None, "missing_token", "Authorization: Bearer <token>"),
        ("Basic dXNlcjpwYXNz", "invalid_request", "Authorization: Bearer <token>"),
        ("Bearer", "invalid_request", "followed by one token"),
        ("Bearer o3_not-a-real-token", "invalid_token", "order3 token create"),
    ],
)
async def test_bad_credentials_get_401(deployment: Deployment, authorization: str | None, error: str, fix: str) -> None:
    headers = dict(MCP_HEADERS)
    if authorization is not None:
        headers["Authorization"] = authorization

    async with httpx2.AsyncClient() as http:
        response = await http.post(deployment.server.url, json=INITIALIZE, headers=headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="order3"')
    assert error_of(response)["data"]["error"] == error
    assert fix in error_of(response)["message"]


async def test_expired_token_gets_401(deployment: Deployment) -> None:
    token_id, secret = await create_token_async(deployment.db, deployment.admin, "late-bot", kind="agent", role="agent")
    await set_token_expiry(deployment.db, token_id, utc_now() - timedelta(seconds=1))

    async with httpx2.AsyncClient() as http:
        response = await http.post(deployment.server.url, json=INITIALIZE, headers={**MCP_HEADERS, **bearer(secret)})

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert "expired at" in error_of(response)["message"]


async def test_token_revoked_mid_session_gets_401(deployment: Deployment) -> None:
    url = deployment.server.url
    token_id, secret = await create_token_async(deployment.db, deployment.admin, "short-bot", kind="agent", role="agent")

    async with httpx2.AsyncClient() as http:
        session_id = await initialize(http, url, secret)
        before = await session_request(http, url, session_id, secret, "tools/list", {})
        await order3_async(deployment.db, "token", "revoke", str(token_id), token=deployment.admin)
        after = await session_request(http, url, session_id, secret, "tools/list", {})

    assert before.status_code == 200
    assert after.status_code == 401
    assert "was revoked" in error_of(after)["message"]


async def test_token_expiring_mid_session_gets_401(deployment: Deployment) -> None:
    url = deployment.server.url
    token_id, secret = await create_token_async(deployment.db, deployment.admin, "brief-bot", kind="agent", role="agent")

    async with httpx2.AsyncClient() as http:
        session_id = await initialize(http, url, secret)
        before = await session_request(http, url, session_id, secret, "ping")
        await set_token_expiry(deployment.db, token_id, utc_now())
        after = await session_request(http, url, session_id, secret, "ping")

    assert before.status_code == 200
    assert after.status_code == 401
    assert "expired at" in error_of(after)["message"]


async def test_session_of_one_token_is_unreachable_with_another(deployment: Deployment) -> None:
    url = deployment.server.url
    async with httpx2.AsyncClient() as http:
        session_id = await initialize(http, url, deployment.buyer)
        other_token = await session_request(http, url, session_id, deployment.viewer, "tools/list", {})
        other_workspace = await session_request(http, url, session_id, deployment.other_admin, "tools/list", {})
        no_token = await session_request(http, url, session_id, None, "tools/list", {})
        owner = await session_request(http, url, session_id, deployment.buyer, "tools/list", {})

    assert other_token.status_code == 404
    assert other_workspace.status_code == 404
    assert no_token.status_code == 401
    assert owner.status_code == 200
    assert '"approve_draft"' in owner.text


async def test_workspace_token_cannot_read_other_workspace(deployment: Deployment) -> None:
    url = deployment.server.url
    database = await open_database(deployment.db, create=False)
    try:
        async with database.write() as session:
            other = (await session.execute(select(Workspace.id).where(Workspace.name == "other"))).scalar_one()
            session.add(Location(workspace_id=other, code="OTHER-WH", name="Other warehouse"))
    finally:
        await database.dispose()

    async with mcp_client(url, deployment.other_admin) as client:
        theirs = (await client.call_tool("list_locations", {})).structured_content
    async with mcp_client(url, deployment.admin) as client:
        ours = (await client.call_tool("list_locations", {})).structured_content

    assert [row["code"] for row in theirs["locations"]] == ["OTHER-WH"]
    assert ours["locations"] == []


@pytest.mark.parametrize("origin", ["http://evil.example.com", "null", "http://127.0.0.1.evil.example.com:8000"])
async def test_foreign_origin_gets_403(deployment: Deployment, origin: str) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            deployment.server.url, json=INITIALIZE, headers={**MCP_HEADERS, **bearer(deployment.admin), "Origin": origin}
        )

    assert response.status_code == 403
    assert error_of(response)["data"]["error"] == "forbidden_origin"


async def test_loopback_origin_is_accepted(deployment: Deployment) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            deployment.server.url,
            json=INITIALIZE,
            headers={**MCP_HEADERS, **bearer(deployment.admin), "Origin": "http://localhost:6274"},
        )

    assert response.status_code == 200


@pytest.mark.parametrize("host", ["evil.example.com", "127.0.0.1:1", "localhost"])
async def test_foreign_host_header_gets_421(deployment: Deployment, host: str) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            deployment.server.url, json=INITIALIZE, headers={**MCP_HEADERS, **bearer(deployment.admin), "Host": host}
        )

    assert response.status_code == 421
    assert deployment.server.url in error_of(response)["message"]


@pytest.mark.parametrize(
    "query",
    ["access_token=abc", "token=abc", "x=o3_abc", "password=abc", "client_secret=abc", "secret=abc", "api_key=abc"],
)
async def test_token_in_query_string_gets_400(deployment: Deployment, query: str) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            f"{deployment.server.url}?{query}", json=INITIALIZE, headers={**MCP_HEADERS, **bearer(deployment.admin)}
        )

    assert response.status_code == 400
    assert "'Authorization: Bearer <token>' header" in error_of(response)["message"]


async def test_oversized_body_gets_413(deployment: Deployment) -> None:
    padding = "x" * (MAX_REQUEST_BODY + 1)
    message = {**INITIALIZE, "params": {**INITIALIZE["params"], "padding": padding}}

    async with httpx2.AsyncClient() as http:
        response = await http.post(deployment.server.url, json=message, headers={**MCP_HEADERS, **bearer(deployment.admin)})

    assert response.status_code == 413
    assert f"larger than {MAX_REQUEST_BODY} bytes" in error_of(response)["message"]


async def test_unknown_path_gets_404(deployment: Deployment) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.get(deployment.server.url.replace("/mcp", "/admin"), headers=bearer(deployment.admin))

    assert response.status_code == 404
    assert "the MCP endpoint is" in error_of(response)["message"]


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    db = tmp_path / "order3.db"
    admin = secret_in(order3(db, "init", "--workspace", "main"))
    statuses: list[int] = []

    with serve_http(db, "--rate-limit", "0.5", "--rate-burst", "3") as server, httpx2.Client() as http:
        for _ in range(10):
            response = http.post(server.url, json=INITIALIZE, headers={**MCP_HEADERS, **bearer(admin)})
            statuses.append(response.status_code)
            if response.status_code == 429:
                break

    assert statuses[:3] == [200, 200, 200]
    assert statuses[3:] == [429]
    assert response.headers["retry-after"] in ("1", "2")
    error = error_of(response)
    assert error["data"]["error"] == "rate_limited"
    assert 0 < error["data"]["retry_after"] <= 2
    assert "retry after" in error["message"]
    assert json.loads(response.content)["id"] == INITIALIZE["id"]


async def test_revoked_token_stream_is_closed(deployment: Deployment) -> None:
    url = deployment.server.url
    token_id, secret = await create_token_async(deployment.db, deployment.admin, "stream-bot", kind="agent", role="agent")

    async with httpx2.AsyncClient(timeout=httpx2.Timeout(30.0)) as http:
        session_id = await initialize(http, url, secret)
        stream_headers = {
            **bearer(secret), "Accept": "text/event-stream", "Mcp-Session-Id": session_id, "MCP-Protocol-Version": "2025-06-18"
        }
        async with http.stream("GET", url, headers=stream_headers) as stream:
            opened = stream.status_code
            await order3_async(deployment.db, "token", "revoke", str(token_id), token=deployment.admin)
            refused = await session_request(http, url, session_id, secret, "ping")
            with anyio.fail_after(10):
                async for _ in stream.aiter_raw():
                    pass

    assert opened == 200
    assert refused.status_code == 401


def denied_events(db: Path, token_id: int) -> list[tuple[str, str, str, str, str]]:
    """Return (action, outcome, actor, channel, summary) of the denied events of one token, read from the SQLite file."""
    with closing(sqlite3.connect(db)) as connection:
        return connection.execute(
            "SELECT action, outcome, actor, channel, summary FROM activity_event WHERE token_id = ? AND outcome = 'denied' "
            "ORDER BY seq",
            (token_id,),
        ).fetchall()


async def test_query_secret_never_reaches_log(deployment: Deployment) -> None:
    secret = "o3_" + "logged-secret-" * 3

    async with httpx2.AsyncClient() as http:
        response = await http.post(
            f"{deployment.server.url}?access_token={secret}", json=INITIALIZE, headers={**MCP_HEADERS, **bearer(deployment.admin)}
        )

    log = deployment.server.log.read_text()
    assert response.status_code == 400
    assert '"POST /mcp HTTP/1.1" 400' in log
    assert secret not in log
    assert "logged-secret" not in log


@pytest.mark.parametrize("origin", ["http://127.0.0.2", "http://127.1.2.3:9", "https://[::1]:6274"])
async def test_any_loopback_origin_is_accepted(deployment: Deployment, origin: str) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            deployment.server.url, json=INITIALIZE, headers={**MCP_HEADERS, **bearer(deployment.admin), "Origin": origin}
        )

    assert response.status_code == 200, response.text


async def test_wrong_content_type_gets_json_rpc_400(deployment: Deployment) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            deployment.server.url,
            content=json.dumps(INITIALIZE),
            headers={**MCP_HEADERS, **bearer(deployment.admin), "Content-Type": "text/plain"},
        )

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert "'Content-Type: application/json'" in error_of(response)["message"]


async def test_refusal_carries_request_id(deployment: Deployment) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.post(deployment.server.url, json={**INITIALIZE, "id": 77}, headers=MCP_HEADERS)

    assert response.status_code == 401
    assert json.loads(response.content)["id"] == 77


async def test_revoked_token_refusal_recorded_once(deployment: Deployment) -> None:
    url = deployment.server.url
    token_id, secret = await create_token_async(deployment.db, deployment.admin, "gone-bot", kind="agent", role="agent")
    await order3_async(deployment.db, "token", "revoke", str(token_id), token=deployment.admin)
    call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "get_item", "arguments": {"sku": "X"}}}

    async with httpx2.AsyncClient() as http:
        first = await http.post(url, json=call, headers={**MCP_HEADERS, **bearer(secret)})
        second = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, **bearer(secret)})

    assert first.status_code == 401
    assert second.status_code == 401
    events = denied_events(deployment.db, token_id)
    assert len(events) == 1
    action, outcome, actor, channel, summary = events[0]
    assert (action, outcome, actor, channel) == ("get_item", "denied", "gone-bot", "mcp")
    assert "revoked" in summary


async def test_unknown_token_refusal_is_logged_without_secret(deployment: Deployment) -> None:
    secret = "o3_" + "unknown-secret-" * 3

    async with httpx2.AsyncClient() as http:
        response = await http.post(deployment.server.url, json=INITIALIZE, headers={**MCP_HEADERS, **bearer(secret)})

    log = deployment.server.log.read_text()
    assert response.status_code == 401
    assert "initialize refused: the mcp request sent an unknown token" in log
    assert "unknown-secret" not in log

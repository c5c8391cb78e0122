"""Drafting, approval and execution through a real MCP client session against the real store."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from sqlalchemy import func, select

from order3_mcp.app import Order3
from order3_mcp.server import build_server
from order3_mcp.services import approvals
from store.activity import verify_chain
from store.errors import ApprovalRequiredError, ConflictError, InvalidInputError, PermissionDeniedError
from store.models import ActivityEvent, Draft, ExceptionRecord, IdempotencyRecord, PurchaseOrder, PurchaseOrderLine
from store.tokens import revoke_token
from tests.factory import make_app, small_workspace

RATIONALE = "WIDGET-1 has 5 available against a reorder point of 20."
WITHHELD = {"approve_draft", "reject_draft", "execute_draft", "dismiss_exception"}


async def count(database, model) -> int:
    async with database.read() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def events(database) -> list[ActivityEvent]:
    async with database.read() as session:
        return list((await session.execute(select(ActivityEvent).order_by(ActivityEvent.seq))).scalars().all())


async def draft_widgets(client: Client, quantity: object = 40, **extra: object):
    return await client.call_tool(
        "draft_purchase_order", {"lines": [{"sku": "WIDGET-1", "quantity": quantity}], "rationale": RATIONALE, **extra}
    )


async def test_agent_tool_list_withholds_approval_tools(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    assert "draft_purchase_order" in names
    assert "get_item" in names
    assert names.isdisjoint(WITHHELD)


async def test_buyer_tool_list_includes_approve(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.buyer)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    assert {"approve_draft", "reject_draft", "execute_draft"} <= names


async def test_every_tool_declares_annotations_and_output_schema(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.admin)) as client:
        tools = (await client.list_tools()).tools
    for tool in tools:
        assert tool.annotations is not None, tool.name
        assert tool.output_schema is not None, tool.name
        assert tool.description, tool.name


async def test_agent_direct_approve_is_denied_and_recorded(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        drafted = await draft_widgets(client)
        refused = await client.call_tool("approve_draft", {"draft_id": drafted.structured_content["draft_id"]})

    assert refused.is_error
    assert "needs the 'approve' scope" in refused.content[0].text
    last = (await events(database))[-1]
    assert (last.action, last.outcome, last.actor) == ("approve_draft", "denied", "buyer-bot")
    async with database.read() as session:
        draft = (await session.execute(select(Draft))).scalar_one()
    assert draft.status == "pending_approval"


async def test_draft_quantity_not_in_whole_packs_is_refused_with_the_fix(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        result = await draft_widgets(client, quantity=35)

    assert result.is_error
    assert "order 40 (4 packs) instead" in result.content[0].text
    assert await count(database, Draft) == 0


async def test_draft_below_minimum_order_quantity_is_refused(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        result = await draft_widgets(client, quantity=10)

    assert result.is_error
    assert "minimum order quantity of 20" in result.content[0].text
    assert await count(database, Draft) == 0


async def test_draft_records_value_policy_rule_and_owner(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        result = await draft_widgets(client, quantity=100)

    draft = result.structured_content
    # 100 units reach the 2.00 price break.
    assert draft["estimated_value"] == "200"
    assert draft["policy_rule"] == "po-up-to-5000"
    assert draft["approval_owner"] == "1 approver with role buyer or admin (policy rule po-up-to-5000)"
    assert draft["status"] == "pending_approval"
    assert draft["created_by"] == "agent:buyer-bot"


@pytest.mark.parametrize(
    ("quantity", "message"),
    [
        (True, "is a boolean"),
        (" 5 ", "not a plain decimal number"),
        ("1e3", "not a plain decimal number"),
        ("NaN", "not a plain decimal number"),
        (10**30, "above the maximum"),
        (-40, "must be greater than zero"),
        ("0.0000001", "more than 6 decimal places"),
    ],
)
async def test_draft_rejects_malformed_quantity(database, quantity, message):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        result = await draft_widgets(client, quantity=quantity)

    assert result.is_error
    assert message in result.content[0].text
    assert await count(database, Draft) == 0
    last = (await events(database))[-1]
    assert (last.action, last.outcome) == ("draft_purchase_order", "invalid")


async def test_draft_keeps_free_text_exactly_as_sent(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        missing = await client.call_tool("get_item", {"sku": "1E5"})
        drafted = await draft_widgets(client, title='["not", "a list"]')

    assert "Item '1E5' does not exist" in missing.content[0].text
    assert drafted.structured_content["title"] == '["not", "a list"]'


async def test_draft_without_rationale_is_refused(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        result = await client.call_tool(
            "draft_purchase_order", {"lines": [{"sku": "WIDGET-1", "quantity": 40}], "rationale": "   "}
        )

    assert result.is_error
    assert "Rationale" in result.content[0].text
    assert await count(database, Draft) == 0


async def test_retry_with_same_idempotency_key_returns_same_draft(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        first = await draft_widgets(client, idempotency_key="retry-1")
        second = await draft_widgets(client, idempotency_key="retry-1")

    assert second.structured_content == first.structured_content
    assert await count(database, Draft) == 1
    assert await count(database, IdempotencyRecord) == 1
    last = (await events(database))[-1]
    assert "Replayed" in last.summary


async def test_same_idempotency_key_with_other_arguments_conflicts(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        await draft_widgets(client, idempotency_key="retry-2")
        other = await draft_widgets(client, quantity=60, idempotency_key="retry-2")

    assert other.is_error
    assert "Idempotency key 'retry-2' was already used" in other.content[0].text
    assert await count(database, Draft) == 1
    last = (await events(database))[-1]
    assert last.outcome == "conflict"


async def test_approval_executes_draft_into_issued_purchase_order(database):
    tokens = await small_workspace(database)
    app = make_app(database)
    async with Client(build_server(app, tokens.agent)) as client:
        draft_id = (await draft_widgets(client)).structured_content["draft_id"]

    detail = await approvals.approve_draft(app, tokens.buyer, draft_id=draft_id, expected_hash="", reason="")

    assert detail.status == "executed"
    assert detail.result == "purchase_order=PO-000001"
    async with database.read() as session:
        order = (await session.execute(select(PurchaseOrder))).scalar_one()
        line = (await session.execute(select(PurchaseOrderLine))).scalar_one()
    assert (order.number, order.status, order.draft_id) == ("PO-000001", "issued", draft_id)
    assert (line.quantity_ordered, line.quantity_received, line.unit_price) == (Decimal(40), Decimal(0), Decimal("2.5"))
    actions = [(e.action, e.outcome, e.actor) for e in await events(database)]
    assert actions[-2:] == [("approve_draft", "ok", "alice"), ("execute_draft", "ok", "alice")]


async def test_executing_twice_writes_one_purchase_order(database):
    tokens = await small_workspace(database)
    app = make_app(database)
    async with Client(build_server(app, tokens.agent)) as client:
        draft_id = (await draft_widgets(client)).structured_content["draft_id"]
    await approvals.approve_draft(app, tokens.buyer, draft_id=draft_id, expected_hash="", reason="")

    with pytest.raises(ConflictError, match="already executed"):
        await approvals.execute_draft(app, tokens.buyer, draft_id=draft_id)
    assert await count(database, PurchaseOrder) == 1


async def test_concurrent_approvals_issue_one_purchase_order(database):
    tokens = await small_workspace(database)
    app = make_app(database)
    async with Client(build_server(app, tokens.agent)) as client:
        draft_id = (await draft_widgets(client)).structured_content["draft_id"]

    results = await asyncio.gather(
        approvals.approve_draft(app, tokens.buyer, draft_id=draft_id, expected_hash="", reason=""),
        approvals.approve_draft(app, tokens.second_buyer, draft_id=draft_id, expected_hash="", reason=""),
        return_exceptions=True,
    )

    succeeded = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(succeeded) == 1
    assert len(failed) == 1
    assert isinstance(failed[0], PermissionDeniedError | ConflictError)
    assert await count(database, PurchaseOrder) == 1


async def test_drafter_cannot_approve_own_draft(database):
    tokens = await small_workspace(database)
    app = make_app(database)
    async with Client(build_server(app, tokens.buyer)) as client:
        draft_id = (await draft_widgets(client)).structured_content["draft_id"]
        refused = await client.call_tool("approve_draft", {"draft_id": draft_id})

    assert refused.is_error
    assert "alice" in refused.content[0].text
    assert await count(database, PurchaseOrder) == 0


async def test_approval_bound_to_reviewed_hash(database):
    tokens = await small_workspace(database)
    app = make_app(database)
    async with Client(build_server(app, tokens.agent)) as client:
        draft_id = (await draft_widgets(client)).structured_content["draft_id"]

    with pytest.raises(ConflictError, match="not the version you reviewed"):
        await approvals.approve_draft(app, tokens.buyer, draft_id=draft_id, expected_hash="0123456789ab", reason="")
    assert await count(database, PurchaseOrder) == 0


async def test_large_purchase_needs_two_distinct_approvers(database):
    tokens = await small_workspace(database)
    app = make_app(database)
    async with Client(build_server(app, tokens.agent)) as client:
        # 3000 units at 2.00 is 6000 USD, above the 5000 single-approver limit.
        draft = (await draft_widgets(client, quantity=3000)).structured_content
    assert draft["policy_rule"] == "po-above-5000"

    with pytest.raises(PermissionDeniedError, match="role"):
        await approvals.approve_draft(app, tokens.buyer, draft_id=draft["draft_id"], expected_hash="", reason="")
    first = await approvals.approve_draft(app, tokens.admin, draft_id=draft["draft_id"], expected_hash="", reason="")
    assert first.status == "pending_approval"
    with pytest.raises(PermissionDeniedError):
        await approvals.approve_draft(app, tokens.admin, draft_id=draft["draft_id"], expected_hash="", reason="")
    assert await count(database, PurchaseOrder) == 0


async def test_garbage_cursor_is_invalid_params(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        with pytest.raises(MCPError, match="was not issued by this server"):
            await client.call_tool("list_drafts", {"cursor": "not-a-cursor"})
        empty = await client.call_tool("list_drafts", {"cursor": ""})
    assert not empty.is_error


async def test_activity_pages_walk_without_duplicates(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        for _ in range(7):
            await client.call_tool("get_item", {"sku": "WIDGET-1"})
        seen: list[int] = []
        cursor = ""
        for _ in range(20):
            result = await client.call_tool("list_activity", {"cursor": cursor, "limit": 3})
            page = result.structured_content
            seen.extend(event["seq"] for event in page["events"])
            # Each page call is itself an event appended after the page was read.
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert seen == sorted(set(seen))
    assert seen[:7] == [1, 2, 3, 4, 5, 6, 7]


async def test_unknown_tool_and_bad_arguments_are_recorded(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        unknown = await client.call_tool("drop_tables", {})
        bad = await client.call_tool("get_item", {"sku": 42})

    assert unknown.is_error
    assert bad.is_error
    recorded = [(e.action, e.outcome) for e in await events(database)]
    assert recorded == [("unknown_tool", "invalid"), ("get_item", "invalid")]


async def test_json_rpc_mode_serialises_results(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent), mode="legacy") as client:
        drafted = await draft_widgets(client)
        item = await client.call_tool("get_item", {"sku": "widget-1"})

    assert drafted.structured_content["status"] == "pending_approval"
    assert item.structured_content["on_hand"] == "5"
    assert item.structured_content["suppliers"] == [
        "ACME (preferred) sku=AC-W1 price=2.5 USD pack=10 moq=20 lead=7d"
    ]


async def test_activity_chain_verifies_and_detects_tampering(database):
    tokens = await small_workspace(database)
    app = make_app(database)
    async with Client(build_server(app, tokens.agent)) as client:
        draft_id = (await draft_widgets(client)).structured_content["draft_id"]
    await approvals.approve_draft(app, tokens.buyer, draft_id=draft_id, expected_hash="", reason="")
    async with database.read() as session:
        report = await verify_chain(session, workspace_id=tokens.agent.workspace_id)
    assert report.ok
    assert report.events_checked == 3

    async with database.write() as session:
        event = (await session.execute(select(ActivityEvent).where(ActivityEvent.seq == 2))).scalar_one()
        event.summary = "nothing to see"
        session.add(event)
    async with database.read() as session:
        report = await verify_chain(session, workspace_id=tokens.agent.workspace_id)
    assert report.first_broken_seq == 2


async def test_revoked_token_stops_a_running_session(database):
    tokens = await small_workspace(database)
    app = make_app(database)
    async with Client(build_server(app, tokens.agent)) as client:
        before = await client.call_tool("get_item", {"sku": "WIDGET-1"})
        async with database.write() as session:
            await revoke_token(session, workspace_id=tokens.agent.workspace_id, token_id=tokens.agent.token_id)
        after = await draft_widgets(client)

    assert not before.is_error
    assert after.is_error
    assert "was revoked" in after.content[0].text
    assert await count(database, Draft) == 0
    last = (await events(database))[-1]
    assert (last.action, last.outcome) == ("draft_purchase_order", "denied")


async def test_approval_after_window_marks_draft_expired(database):
    tokens = await small_workspace(database)
    now = [datetime(2026, 12, 1, 9, 0, tzinfo=UTC)]
    app = Order3(database, clock=lambda: now[0])
    async with Client(build_server(app, tokens.agent)) as client:
        draft_id = (await draft_widgets(client)).structured_content["draft_id"]
    # The default rule gives 168 hours to approve.
    now[0] += timedelta(hours=168)

    with pytest.raises(ApprovalRequiredError, match="is now expired"):
        await approvals.approve_draft(app, tokens.buyer, draft_id=draft_id, expected_hash="", reason="")

    async with database.read() as session:
        draft = (await session.execute(select(Draft))).scalar_one()
    assert draft.status == "expired"
    assert await count(database, PurchaseOrder) == 0
    last = (await events(database))[-1]
    assert (last.action, last.outcome, last.draft_id) == ("approve_draft", "denied", draft_id)


async def test_idempotency_keys_belong_to_their_principal(database):
    tokens = await small_workspace(database)
    app = make_app(database)
    async with Client(build_server(app, tokens.agent)) as client:
        mine = await draft_widgets(client, idempotency_key="shared-key")
    async with Client(build_server(app, tokens.buyer)) as client:
        theirs = await draft_widgets(client, idempotency_key="shared-key")

    assert mine.structured_content["draft_id"] != theirs.structured_content["draft_id"]
    assert theirs.structured_content["created_by"] == "user:alice"
    assert await count(database, Draft) == 2


@pytest.mark.parametrize("prefix", ["5", "faded0", "not-hex-at-all!"])
async def test_short_or_malformed_hash_is_not_proof_of_review(database, prefix):
    tokens = await small_workspace(database)
    app = make_app(database)
    async with Client(build_server(app, tokens.agent)) as client:
        draft_id = (await draft_widgets(client)).structured_content["draft_id"]

    with pytest.raises(InvalidInputError, match="at least the first 12 characters"):
        await approvals.approve_draft(app, tokens.buyer, draft_id=draft_id, expected_hash=prefix, reason="")
    assert await count(database, PurchaseOrder) == 0


async def test_approving_an_executed_draft_is_a_conflict(database):
    tokens = await small_workspace(database)
    app = make_app(database)
    async with Client(build_server(app, tokens.agent)) as client:
        draft_id = (await draft_widgets(client)).structured_content["draft_id"]
    await approvals.approve_draft(app, tokens.buyer, draft_id=draft_id, expected_hash="", reason="")

    with pytest.raises(ConflictError, match="is executed"):
        await approvals.approve_draft(app, tokens.second_buyer, draft_id=draft_id, expected_hash="", reason="")
    last = (await events(database))[-1]
    assert (last.action, last.outcome, last.draft_id) == ("approve_draft", "conflict", draft_id)


async def test_draft_cannot_link_an_unrelated_exception(database):
    tokens = await small_workspace(database)
    async with database.write() as session:
        session.add(
            ExceptionRecord(
                workspace_id=tokens.agent.workspace_id, kind="low_stock", fingerprint="low_stock:item=2:location=*",
                item_id=2, sku="GADGET-2", reason="GADGET-2 is low.",
            )
        )
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        result = await draft_widgets(client, exception_ids=[1])

    assert result.is_error
    assert "is about item GADGET-2, which this draft does not order" in result.content[0].text
    assert await count(database, Draft) == 0


@pytest.mark.parametrize(
    "cursor",
    [
        "eyJsIjoic2VhcmNoX2l0ZW1zIiwiYSI6OTk5OTk5OTk5OTk5OTk5OTk5OTk5fQ",  # {"l":"search_items","a":999999999999999999999}
        "eyJsIjoic2VhcmNoX2l0ZW1zIiwiYSI6LTF9",  # {"l":"search_items","a":-1}
    ],
)
async def test_forged_cursor_is_invalid_params(database, cursor):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        with pytest.raises(MCPError, match="was not issued by this server"):
            await client.call_tool("search_items", {"cursor": cursor})


async def test_search_with_control_characters_is_refused(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        result = await client.call_tool("search_items", {"query": "\u0000zzz"})

    assert result.is_error
    assert "control characters" in result.content[0].text


async def test_draft_line_names_where_its_price_came_from(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        small = (await draft_widgets(client, quantity=40)).structured_content
        large = (await draft_widgets(client, quantity=100)).structured_content

    assert json.loads(small["payload_json"])["lines"][0]["price_source"] == "supplier item price"
    assert json.loads(large["payload_json"])["lines"][0]["price_source"] == "supplier price break from 100"


async def test_list_drafts_rejects_unknown_kind_and_page_size(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        kind = await client.call_tool("list_drafts", {"kind": "nope"})
        too_big = await client.call_tool("list_drafts", {"limit": 101})
        as_text = await client.call_tool("list_drafts", {"limit": "5"})

    assert "Draft kind 'nope' is unknown" in kind.content[0].text
    assert too_big.is_error
    assert "limit" in too_big.content[0].text
    assert as_text.is_error


async def test_draft_pages_stay_small_and_complete(database):
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        for number in range(12):
            await client.call_tool(
                "draft_purchase_order",
                {"lines": [{"sku": "WIDGET-1", "quantity": 40}], "rationale": f"Draft {number}: " + "x" * 3900},
            )
        seen: list[int] = []
        cursor = ""
        for _ in range(12):
            result = await client.call_tool("list_drafts", {"cursor": cursor, "limit": 100})
            assert len(json.dumps(result.structured_content)) < 32 * 1024
            seen.extend(draft["draft_id"] for draft in result.structured_content["drafts"])
            cursor = result.structured_content["next_cursor"]
            if cursor is None:
                break

    assert seen == list(range(1, 13))

"""Idempotency rules: fingerprints, key scope, calls still in progress, and key retention."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from sqlalchemy import func, select

from order3_mcp.app import Order3
from order3_mcp.server import build_server
from store.db import Database
from store.idempotency import (
    KEY_RETENTION,
    decimal_text,
    derived_key,
    purge_expired,
    request_hash,
)
from store.models import ActivityEvent, Draft, IdempotencyRecord, ReceivingEvent
from tests.factory import make_app, small_workspace
from tests.kind_support import make_workspace, on, order3
from tests.test_idempotency import issued_order

RATIONALE = "WIDGET-1 has 5 available against a reorder point of 20."
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

async def count(database: Database, model: Any) -> int:
    async with database.read() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def outcomes(database: Database) -> list[tuple[str, str]]:
    async with database.read() as session:
        rows = (await session.execute(select(ActivityEvent.action, ActivityEvent.outcome).order_by(ActivityEvent.seq))).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


async def draft_widgets(client: Client, *, key: str, quantity: object = 40, **extra: object) -> Any:
    arguments = {"lines": [{"sku": "WIDGET-1", "quantity": quantity}], "rationale": RATIONALE, "idempotency_key": key}
    return await client.call_tool("draft_purchase_order", {**arguments, **extra})


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal(5), "5"),
        (Decimal("5.0"), "5"),
        (Decimal("5.00"), "5"),
        (Decimal("0.500"), "0.5"),
        (Decimal("1E+2"), "100"),
        (Decimal("-3.10"), "-3.1"),
        (Decimal("-0.0"), "0"),
    ],
)
def test_decimal_text_is_shortest_fixed_point(value: Decimal, text: str) -> None:
    assert decimal_text(value) == text


def test_fingerprint_ignores_key_order_and_decimal_format() -> None:
    first = request_hash("receive", {"quantity": Decimal(5), "lines": [{"sku": "A", "quantity": Decimal("2.50")}]})
    second = request_hash("receive", {"lines": [{"quantity": Decimal("2.5"), "sku": "A"}], "quantity": Decimal("5.00")})

    assert first == second


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ({"sku": "1E5"}, {"sku": "100000"}),
        ({"rationale": "order 5 units"}, {"rationale": "order 5.0 units"}),
        ({"quantity": "5"}, {"quantity": "5.0"}),
        ({"sku": "widget-1"}, {"sku": "WIDGET-1"}),
    ],
)
def test_fingerprint_compares_text_exactly(one: dict[str, Any], other: dict[str, Any]) -> None:
    assert request_hash("draft_purchase_order", one) != request_hash("draft_purchase_order", other)


def test_fingerprint_covers_the_action() -> None:
    assert request_hash("approve_draft", {"draft_id": 1}) != request_hash("execute_draft", {"draft_id": 1})


def test_derived_key_fits_the_key_limit() -> None:
    assert derived_key("k-1", "execute") == "k-1/execute"
    assert len(derived_key("k" * 200, "execute")) <= 200
    assert derived_key("k" * 200, "execute") != derived_key("k" * 199 + "j", "execute")


@pytest.mark.parametrize(
    "retry",
    [
        {"quantity": "40"},
        {"quantity": "40.0"},
        {"quantity": 40.0},
        {"quantity": "40.000"},
        {"lines": [{"quantity": "40.00", "sku": "WIDGET-1"}]},
    ],
    ids=["text", "one-place", "json-float", "three-places", "reordered-line"],
)
async def test_quantity_format_and_key_order_replay(database: Database, retry: dict[str, Any]) -> None:
    tokens = await small_workspace(database)

    async with Client(build_server(make_app(database), tokens.agent)) as client:
        first = await draft_widgets(client, key="po-1", quantity=40)
        again = await draft_widgets(client, key="po-1", **retry)

    assert not first.is_error, first.content[0].text
    assert not again.is_error, again.content[0].text
    assert again.structured_content == first.structured_content
    assert await count(database, Draft) == 1
    assert await outcomes(database) == [("draft_purchase_order", "ok"), ("draft_purchase_order", "replayed")]


async def test_changed_rationale_text_conflicts(database: Database) -> None:
    tokens = await small_workspace(database)

    async with Client(build_server(make_app(database), tokens.agent)) as client:
        await draft_widgets(client, key="po-1")
        changed = await draft_widgets(client, key="po-1", rationale=RATIONALE.replace("5", "5.0"))

    assert changed.is_error
    assert "Idempotency key 'po-1' was already used for draft_purchase_order with other arguments" in changed.content[0].text
    assert await count(database, Draft) == 1


def test_receive_quantity_format_replays(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path)
    issued_order(workspace)

    replies = [
        order3(workspace.db, "receive", "PO-000001", "1", quantity, "--idempotency-key", "rcv-1", token=workspace.tokens.buyer_secret)
        for quantity in ("10", "10.0", "10.00")
    ]

    assert [reply.exit_code for reply in replies] == [0, 0, 0]
    assert replies[0].stdout.startswith("Received 10 WIDGET-1 on PO-000001 line 1")
    assert replies[2].stdout.startswith("Nothing received: idempotency key 'rcv-1' already recorded this receipt")

    async def receipts(database: Database) -> int:
        return await count(database, ReceivingEvent)

    assert on(workspace.db, receipts) == 1


async def test_key_of_another_principal_is_independent(database: Database) -> None:
    tokens = await small_workspace(database)
    app = make_app(database)

    async with Client(build_server(app, tokens.agent)) as agent, Client(build_server(app, tokens.buyer)) as alice:
        by_agent = await draft_widgets(agent, key="shared")
        by_alice = await draft_widgets(alice, key="shared")

    assert not by_agent.is_error
    assert not by_alice.is_error
    assert by_alice.structured_content["draft_id"] != by_agent.structured_content["draft_id"]
    assert await count(database, Draft) == 2
    assert await outcomes(database) == [("draft_purchase_order", "ok"), ("draft_purchase_order", "ok")]


async def test_key_reused_for_another_action_conflicts(database: Database) -> None:
    tokens = await small_workspace(database)

    async with Client(build_server(make_app(database), tokens.agent)) as client:
        await draft_widgets(client, key="k-1")
        count_task = await client.call_tool(
            "draft_count_task",
            {"location": "WH1", "lines": [{"sku": "WIDGET-1"}], "rationale": RATIONALE, "idempotency_key": "k-1"},
        )

    assert count_task.is_error
    assert "Idempotency key 'k-1' was already used for draft_purchase_order" in count_task.content[0].text
    assert await count(database, Draft) == 1
    assert (await outcomes(database))[-1] == ("draft_count_task", "conflict")


async def test_concurrent_duplicate_is_refused_in_progress(database: Database) -> None:
    tokens = await small_workspace(database)
    app = make_app(database)
    entered = asyncio.Event()
    release = asyncio.Event()

    async def hold_first_write(action: str) -> None:
        # Only the first call stops here, between its work and its commit.
        if not entered.is_set():
            entered.set()
            await release.wait()

    app.before_commit = hold_first_write
    async with Client(build_server(app, tokens.agent)) as client:
        first = asyncio.create_task(draft_widgets(client, key="dup"))
        await asyncio.wait_for(entered.wait(), timeout=10)
        duplicate = await asyncio.wait_for(draft_widgets(client, key="dup"), timeout=10)
        release.set()
        first_result = await asyncio.wait_for(first, timeout=10)
        retry = await draft_widgets(client, key="dup")

    assert not first_result.is_error, first_result.content[0].text
    assert duplicate.is_error
    assert "The first call with idempotency key 'dup' is still in progress" in duplicate.content[0].text
    assert "retry shortly" in duplicate.content[0].text
    assert retry.structured_content == first_result.structured_content
    assert await count(database, Draft) == 1
    assert await count(database, IdempotencyRecord) == 1
    assert await outcomes(database) == [("draft_purchase_order", "ok"), ("draft_purchase_order", "replayed")]


async def test_in_progress_key_leaves_other_keys_alone(database: Database) -> None:
    tokens = await small_workspace(database)
    app = make_app(database)
    entered = asyncio.Event()
    release = asyncio.Event()

    async def hold_first_write(action: str) -> None:
        if not entered.is_set():
            entered.set()
            await release.wait()

    app.before_commit = hold_first_write
    async with Client(build_server(app, tokens.agent)) as client:
        first = asyncio.create_task(draft_widgets(client, key="one"))
        await asyncio.wait_for(entered.wait(), timeout=10)
        # Another key waits for the write lock instead of being refused.
        second = asyncio.create_task(draft_widgets(client, key="two", quantity=50))
        release.set()
        results = await asyncio.wait_for(asyncio.gather(first, second), timeout=10)

    assert [result.is_error for result in results] == [False, False]
    assert await count(database, Draft) == 2


async def test_key_older_than_retention_counts_as_new(database: Database) -> None:
    tokens = await small_workspace(database)
    clock = [NOW]
    app = Order3(database, clock=lambda: clock[0])

    async with Client(build_server(app, tokens.agent)) as client:
        first = await draft_widgets(client, key="old", quantity=40)
        clock[0] = NOW + KEY_RETENTION - timedelta(minutes=1)
        within = await draft_widgets(client, key="old", quantity=50)
        clock[0] = NOW + KEY_RETENTION + timedelta(minutes=1)
        after = await draft_widgets(client, key="old", quantity=50)

    assert not first.is_error
    assert within.is_error
    assert "was already used" in within.content[0].text
    assert not after.is_error, after.content[0].text
    assert after.structured_content["draft_id"] != first.structured_content["draft_id"]
    assert await count(database, Draft) == 2
    assert await count(database, IdempotencyRecord) == 1


async def _store_keys(database: Database, workspace_id: int, created: dict[str, datetime]) -> None:
    async with database.write() as session:
        for key, created_at in created.items():
            session.add(
                IdempotencyRecord(
                    workspace_id=workspace_id, key=key, action="draft_purchase_order", principal="buyer-bot",
                    request_hash="0" * 64, response={}, created_at=created_at,
                )
            )


async def _stored_keys(database: Database) -> set[str]:
    async with database.read() as session:
        return set((await session.execute(select(IdempotencyRecord.key))).scalars().all())


async def test_first_keyed_write_purges_expired_keys(database: Database) -> None:
    tokens = await small_workspace(database)
    expired = NOW - KEY_RETENTION - timedelta(hours=1)
    await _store_keys(
        database, tokens.agent.workspace_id, {"a": expired, "b": expired, "fresh": NOW - timedelta(days=1)}
    )
    app = Order3(database, clock=lambda: NOW)

    async with Client(build_server(app, tokens.agent)) as client:
        drafted = await draft_widgets(client, key="new")

    assert not drafted.is_error
    assert await _stored_keys(database) == {"fresh", "new"}


async def test_purge_deletes_one_bounded_batch(database: Database) -> None:
    tokens = await small_workspace(database)
    expired = NOW - KEY_RETENTION - timedelta(hours=1)
    await _store_keys(database, tokens.agent.workspace_id, {f"k{index}": expired for index in range(5)})

    async with database.write() as session:
        purged = await purge_expired(session, workspace_id=tokens.agent.workspace_id, now=NOW, limit=3)

    assert purged == 3
    assert len(await _stored_keys(database)) == 2


def test_activity_list_filters_replayed(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path)
    issued_order(workspace)
    for _ in range(2):
        order3(workspace.db, "receive", "PO-000001", "1", "10", "--idempotency-key", "rcv-1", token=workspace.tokens.buyer_secret)

    listed = order3(workspace.db, "activity", "list", "--outcome", "replayed", token=workspace.tokens.buyer_secret)

    assert listed.exit_code == 0, listed.stderr
    assert "replayed" in listed.stdout
    assert listed.stdout.count("receive") == 1


def test_replay_event_keeps_the_chain_valid(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path)
    issued_order(workspace)
    for _ in range(2):
        order3(workspace.db, "receive", "PO-000001", "1", "10", "--idempotency-key", "rcv-1", token=workspace.tokens.buyer_secret)

    verified = order3(workspace.db, "activity", "verify", token=workspace.tokens.buyer_secret)

    assert verified.exit_code == 0, verified.stdout + verified.stderr

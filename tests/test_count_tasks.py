"""Count tasks end to end: an agent drafts over MCP, a buyer approves with the CLI, an operator submits the count."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from sqlalchemy import delete, func, select, update
from typer.testing import CliRunner, Result

from order3_mcp.app import Order3
from order3_mcp.cli import app as cli
from order3_mcp.server import build_server
from policies import scopes_for
from store.activity import verify_chain
from store.db import Database, open_database
from store.models import (
    ActivityEvent,
    Bin,
    CountResult,
    CountSheet,
    CountSheetLine,
    Draft,
    ExceptionRecord,
    Item,
    Location,
    Movement,
    StockLevel,
)
from store.stock import Place, record_movement, verify_ledger
from store.tokens import issue_token
from tests.conftest import new_database_location
from tests.factory import small_workspace

runner = CliRunner()
RATIONALE = "WIDGET-1 drifted by 4 units at the last count of WH1."


@dataclass
class Shop:
    """A small workspace on a SQLite file, with the secrets of its principals."""

    db: Path
    agent: str
    alice: str
    carol: str


def order3(db: Path, *args: str, token: str) -> Result:
    """Run `order3 --db DB --token TOKEN ARGS` with nothing taken from the environment."""
    return runner.invoke(
        cli, ["--db", str(db), "--token", token, *args], env={"ORDER3_TOKEN": None, "ORDER3_DB": None, "COLUMNS": "200"}
    )


def run(step: Any) -> Any:
    """Run an async function of the Database on a fresh connection to the test file."""

    async def main(db: Path) -> Any:
        database = await open_database(db)
        try:
            return await step(database)
        finally:
            await database.dispose()

    return main


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    """small_workspace (WIDGET-1 has 5 on hand at WH1) plus operator 'carol', who counts."""
    db = new_database_location(tmp_path, "order3.db")

    async def build(database: Database) -> Shop:
        tokens = await small_workspace(database)
        async with database.write() as session:
            _, carol = await issue_token(
                session, workspace_id=tokens.agent.workspace_id, principal_kind="user", principal="carol",
                role="operator", scopes=scopes_for(principal_kind="user", role="operator"),
            )
        return Shop(db=db, agent=tokens.agent_secret, alice=tokens.buyer_secret, carol=carol)

    return anyio.run(run(build), db)


async def agent_call(db: Path, secret: str, tool: str, arguments: dict[str, Any]) -> Any:
    """Call one tool as the token's principal over an MCP client session with JSON-RPC framing."""
    database = await open_database(db)
    try:
        service = Order3(database)
        caller = await service.authenticate(secret, channel="mcp")
        async with Client(build_server(service, caller), mode="legacy") as client:
            return await client.call_tool(tool, arguments)
    finally:
        await database.dispose()


def draft_count(shop: Shop, **arguments: Any) -> Any:
    """Draft a count task as the agent; WIDGET-1 at WH1 unless `arguments` override them."""
    request = {"location": "WH1", "lines": [{"sku": "WIDGET-1"}], "rationale": RATIONALE, **arguments}
    return anyio.run(agent_call, shop.db, shop.agent, "draft_count_task", request)


def rows(db: Path, model: Any, *where: Any) -> list[Any]:
    async def read(database: Database) -> list[Any]:
        async with database.read() as session:
            return list((await session.execute(select(model).where(*where).order_by(model.id))).scalars().all())

    return anyio.run(run(read), db)


def count_of(db: Path, model: Any) -> int:
    async def read(database: Database) -> int:
        async with database.read() as session:
            return (await session.execute(select(func.count()).select_from(model))).scalar_one()

    return anyio.run(run(read), db)


def on_hand(db: Path, sku: str, location: str = "WH1", bin_code: str | None = None) -> Decimal:
    async def read(database: Database) -> Decimal:
        async with database.read() as session:
            statement = (
                select(StockLevel.on_hand)
                .join(Item, Item.id == StockLevel.item_id)
                .join(Location, Location.id == StockLevel.location_id)
                .outerjoin(Bin, Bin.id == StockLevel.bin_id)
                .where(Item.sku == sku, Location.code == location)
            )
            statement = statement.where(Bin.code == bin_code) if bin_code else statement.where(StockLevel.bin_key == 0)
            value = (await session.execute(statement)).scalar_one_or_none()
            return value if value is not None else Decimal(0)

    return anyio.run(run(read), db)


def ledger_mismatches(db: Path) -> list[Any]:
    async def check(database: Database) -> list[Any]:
        async with database.read() as session:
            _, mismatches = await verify_ledger(session, workspace_id=1)
            return mismatches

    return anyio.run(run(check), db)


def move_stock(db: Path, sku: str, quantity: Decimal, *, add: bool, location: str = "WH1", bin_code: str | None = None) -> None:
    """Record a receipt (add) or shipment of `quantity` through the ledger."""

    async def write(database: Database) -> None:
        async with database.write() as session:
            item = (await session.execute(select(Item).where(Item.sku == sku))).scalar_one()
            place = (await session.execute(select(Location).where(Location.code == location))).scalar_one()
            bin_id = None
            if bin_code:
                bin_id = (await session.execute(select(Bin.id).where(Bin.code == bin_code))).scalar_one()
            where = Place(place.id, bin_id)  # type: ignore[arg-type]
            await record_movement(
                session, workspace_id=1, item_id=item.id, kind="receipt" if add else "shipment", quantity=quantity,  # type: ignore[arg-type]
                destination=where if add else None, source=None if add else where, actor="test",
            )

    anyio.run(run(write), db)


def add_bins(db: Path, *codes: str) -> None:
    """Add bins to WH1."""

    async def write(database: Database) -> None:
        async with database.write() as session:
            session.add_all([Bin(workspace_id=1, location_id=1, code=code) for code in codes])

    anyio.run(run(write), db)


def approve(shop: Shop, draft_id: int) -> Result:
    return order3(shop.db, "drafts", "approve", str(draft_id), token=shop.alice)


def test_agent_count_corrects_stock(shop: Shop) -> None:
    drafted = draft_count(shop, assignee="carol", lines=[{"sku": "WIDGET-1"}, {"sku": "gadget-2"}])
    draft = drafted.structured_content

    approved = approve(shop, draft["draft_id"])
    submitted = order3(shop.db, "count", "submit", "1", "--line", "WIDGET-1=3", "--line", "GADGET-2=4", token=shop.carol)

    assert not drafted.is_error, drafted.content[0].text
    assert draft["kind"] == "count_task"
    assert draft["policy_rule"] == "count-task"
    assert draft["approval_owner"] == "1 approver with role buyer or approver or admin (policy rule count-task)"
    assert draft["estimated_value"] == "0"
    assert draft["created_by"] == "agent:buyer-bot"
    assert approved.exit_code == 0, approved.stderr
    assert "Draft 1 is executed." in approved.stdout
    assert "Created count task 1; count it and run `order3 count submit 1`." in approved.stdout
    assert submitted.exit_code == 0, submitted.stderr
    assert "Submitted count task 1 at WH1: 2 line(s) counted, 2 corrected by a count-correction movement." in submitted.stdout
    assert "Expected quantities are hidden for a blind count" in submitted.stdout
    assert on_hand(shop.db, "WIDGET-1") == Decimal(3)
    assert on_hand(shop.db, "GADGET-2") == Decimal(4)
    assert ledger_mismatches(shop.db) == []

    results = rows(shop.db, CountResult)
    assert [(r.counted_quantity, r.system_quantity, r.variance, r.source, r.actor) for r in results] == [
        (Decimal(3), Decimal(5), Decimal(-2), "count_task", "carol"),
        (Decimal(4), Decimal(0), Decimal(4), "count_task", "carol"),
    ]
    corrections = rows(shop.db, Movement, Movement.kind == "count_correction")
    assert [(m.quantity, m.from_location_id, m.to_location_id, m.reference_id) for m in corrections] == [
        (Decimal(2), 1, None, 1),
        (Decimal(4), None, 1, 1),
    ]
    assert [r.applied_movement_id for r in results] == [m.id for m in corrections]
    sheet = rows(shop.db, CountSheet)[0]
    assert (sheet.status, sheet.submitted_by, sheet.assignee, sheet.draft_id) == ("applied", "carol", "carol", 1)


def test_count_task_activity_is_chained(shop: Shop) -> None:
    draft_id = draft_count(shop).structured_content["draft_id"]
    approve(shop, draft_id)
    order3(shop.db, "count", "submit", "1", "--line", "WIDGET-1=5", token=shop.carol)

    events = rows(shop.db, ActivityEvent)

    async def verify(database: Database) -> Any:
        async with database.read() as session:
            return await verify_chain(session, workspace_id=1)

    assert [(e.action, e.outcome, e.actor) for e in events] == [
        ("draft_count_task", "ok", "buyer-bot"),
        ("approve_draft", "ok", "alice"),
        ("execute_draft", "ok", "alice"),
        ("count_submit", "ok", "carol"),
    ]
    assert events[-1].summary == "Submitted count task 1 at WH1: 1 line(s) counted, 0 corrected by a count-correction movement."
    assert anyio.run(run(verify), shop.db).ok


def test_count_after_stock_moved_uses_snapshot(shop: Shop) -> None:
    approve(shop, draft_count(shop).structured_content["draft_id"])
    # Three arrive after the task was created; the shelf counted then still held 4 of the 5 expected.
    move_stock(shop.db, "WIDGET-1", Decimal(3), add=True)

    submitted = order3(shop.db, "count", "submit", "1", "--line", "WIDGET-1=4", "--show-expected", token=shop.carol)

    assert submitted.exit_code == 0, submitted.stderr
    result = rows(shop.db, CountResult)[0]
    assert (result.counted_quantity, result.system_quantity, result.variance) == (Decimal(4), Decimal(5), Decimal(-1))
    assert on_hand(shop.db, "WIDGET-1") == Decimal(7)
    assert ledger_mismatches(shop.db) == []
    assert "│ 1    │ WIDGET-1 │     │ 5        │ 4       │ -1       │" in submitted.stdout


def test_second_submit_is_conflict(shop: Shop) -> None:
    approve(shop, draft_count(shop).structured_content["draft_id"])
    first = order3(shop.db, "count", "submit", "1", "--line", "WIDGET-1=2", token=shop.carol)

    second = order3(shop.db, "count", "submit", "1", "--line", "WIDGET-1=9", token=shop.carol)

    assert first.exit_code == 0, first.stderr
    assert second.exit_code == 5
    assert "Count task 1 was already submitted by carol at" in second.stderr
    assert "a task is counted once" in second.stderr
    assert count_of(shop.db, CountResult) == 1
    assert count_of(shop.db, Movement) == 2
    assert on_hand(shop.db, "WIDGET-1") == Decimal(2)
    assert rows(shop.db, ActivityEvent)[-1].outcome == "conflict"


def test_same_idempotency_key_replays_submission(shop: Shop) -> None:
    approve(shop, draft_count(shop).structured_content["draft_id"])
    args = ("count", "submit", "1", "--line", "WIDGET-1=2", "--idempotency-key", "count-1")

    first = order3(shop.db, *args, token=shop.carol)
    again = order3(shop.db, *args, token=shop.carol)

    assert first.exit_code == 0, first.stderr
    assert again.exit_code == 0, again.stderr
    assert again.stdout == (
        "Replayed: idempotency key 'count-1' was already used for this count submission with the same arguments, "
        "so nothing new was written. The stored result of the first call follows.\n" + first.stdout
    )
    assert count_of(shop.db, CountResult) == 1
    assert on_hand(shop.db, "WIDGET-1") == Decimal(2)


def test_show_is_blind_unless_asked(shop: Shop) -> None:
    approve(shop, draft_count(shop).structured_content["draft_id"])

    blind = order3(shop.db, "count", "show", "1", token=shop.carol)
    seen = order3(shop.db, "count", "show", "1", "--show-expected", token=shop.carol)
    listed = order3(shop.db, "count", "list", "--status", "open", token=shop.carol)

    assert blind.exit_code == 0, blind.stderr
    assert "┃ line ┃ sku      ┃ bin ┃ counted ┃ correction movement ┃" in blind.stdout
    assert "│ 1    │ WIDGET-1 │     │         │                     │" in blind.stdout
    hint = "Expected quantities are hidden for a blind count; pass --show-expected to see them."
    assert "expected" not in blind.stdout.replace(hint, "")
    assert "Expected quantities are hidden for a blind count; pass --show-expected to see them." in blind.stdout
    assert seen.exit_code == 0, seen.stderr
    assert "│ 1    │ WIDGET-1 │     │ 5        │         │          │" in seen.stdout
    assert listed.exit_code == 0, listed.stderr
    assert "1 count tasks" in listed.stdout
    assert "│ 1  │ open   │ WH1      │ 1     │" in listed.stdout
    shown = [e.arguments["show_expected"] for e in rows(shop.db, ActivityEvent, ActivityEvent.action == "count_show")]
    assert shown == [False, True]


def test_submit_from_csv_and_json_files(shop: Shop, tmp_path: Path) -> None:
    csv_file = tmp_path / "counts.csv"
    csv_file.write_text("sku,counted\nWIDGET-1,6.5\nGADGET-2,0\n", encoding="utf-8")
    json_file = tmp_path / "counts.json"
    json_file.write_text(json.dumps({"WIDGET-1": 6.5, "GADGET-2": "1"}), encoding="utf-8")

    approve(shop, draft_count(shop, lines=[{"sku": "WIDGET-1"}, {"sku": "GADGET-2"}]).structured_content["draft_id"])
    from_csv = order3(shop.db, "count", "submit", "1", "--file", str(csv_file), token=shop.carol)
    # The second task is created after the first was applied, so its snapshot is 6.5 and 0.
    approve(shop, draft_count(shop, lines=[{"sku": "WIDGET-1"}, {"sku": "GADGET-2"}]).structured_content["draft_id"])
    from_json = order3(shop.db, "count", "submit", "2", "--file", str(json_file), token=shop.carol)

    assert from_csv.exit_code == 0, from_csv.stderr
    assert from_json.exit_code == 0, from_json.stderr
    results = rows(shop.db, CountResult)
    assert [(r.counted_quantity, r.system_quantity, r.variance) for r in results] == [
        (Decimal("6.5"), Decimal(5), Decimal("1.5")),
        (Decimal(0), Decimal(0), Decimal(0)),
        (Decimal("6.5"), Decimal("6.5"), Decimal(0)),
        (Decimal(1), Decimal(0), Decimal(1)),
    ]
    assert on_hand(shop.db, "WIDGET-1") == Decimal("6.5")
    assert on_hand(shop.db, "GADGET-2") == Decimal(1)
    assert ledger_mismatches(shop.db) == []


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["WIDGET-1=abc"], "--line 'WIDGET-1=abc': counted quantity 'abc' is not a plain decimal number"),
        (["WIDGET-1"], "--line 'WIDGET-1' is not SKU=QTY"),
        (["WIDGET-1=-1"], "counted quantity '-1' is not a plain decimal number"),
        (["WIDGET-1=1", "widget-1=2"], "line 1 (WIDGET-1) was already counted by --line 'WIDGET-1=1'"),
        (["WIDGET-1=1", "NOPE=2"], "--line 'NOPE=2': NOPE is not a line of count task 1; its lines are WIDGET-1, GADGET-2."),
        (["GADGET-2=1"], "Count task 1 has no count for WIDGET-1; count every line, writing 0 for an empty shelf."),
    ],
)
def test_submit_rejects_bad_counts(shop: Shop, lines: list[str], message: str) -> None:
    approve(shop, draft_count(shop, lines=[{"sku": "WIDGET-1"}, {"sku": "GADGET-2"}]).structured_content["draft_id"])
    options = [part for line in lines for part in ("--line", line)]

    result = order3(shop.db, "count", "submit", "1", *options, token=shop.carol)

    assert result.exit_code == 2
    assert message in result.stderr
    assert count_of(shop.db, CountResult) == 0
    assert count_of(shop.db, Movement) == 1
    assert rows(shop.db, CountSheet)[0].status == "open"


def test_agent_cannot_submit_counts(shop: Shop) -> None:
    approve(shop, draft_count(shop).structured_content["draft_id"])

    result = order3(shop.db, "count", "submit", "1", "--line", "WIDGET-1=1", token=shop.agent)

    assert result.exit_code == 3
    assert "needs the 'change' scope" in result.stderr
    assert count_of(shop.db, CountResult) == 0


def test_negative_correction_rejected(shop: Shop) -> None:
    approve(shop, draft_count(shop).structured_content["draft_id"])
    move_stock(shop.db, "WIDGET-1", Decimal(4), add=False)

    result = order3(shop.db, "count", "submit", "1", "--line", "WIDGET-1=2", token=shop.carol)

    assert result.exit_code == 2
    assert "WIDGET-1 at WH1: counted 2 against a snapshot of 5, but only 1 is on hand now" in result.stderr
    assert on_hand(shop.db, "WIDGET-1") == Decimal(1)
    assert count_of(shop.db, CountResult) == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"lines": [{"sku": "NOPE-9"}]}, "lines[0].sku: Item 'NOPE-9' does not exist in this workspace"),
        ({"location": "WH9"}, "location: Location 'WH9' does not exist in this workspace"),
        ({"lines": [{"sku": "WIDGET-1", "bin": "Z9"}]}, "lines[0].bin: bin 'Z9' does not exist at WH1; WH1 has no bins, so leave bin empty."),
        (
            {"lines": [{"sku": "WIDGET-1"}, {"sku": "GADGET-2"}, {"sku": " widget-1 "}]},
            "lines[2]: WIDGET-1 in the location itself at WH1 is already lines[0]; list each item and bin once.",
        ),
        ({"lines": []}, "lines"),
        ({"due_date": "next week"}, "due_date 'next week' is not a date; write it as YYYY-MM-DD"),
        ({"rationale": "count it"}, "Rationale 'count it' is too short"),
        ({"exception_ids": [99]}, "Exception 99 does not exist in this workspace"),
    ],
)
def test_draft_rejects_bad_input(shop: Shop, arguments: dict[str, Any], message: str) -> None:
    result = draft_count(shop, **arguments)

    assert result.is_error
    assert message in result.content[0].text
    assert count_of(shop.db, Draft) == 0
    assert rows(shop.db, ActivityEvent)[-1].outcome == "invalid"


def test_draft_rejects_inactive_item(shop: Shop) -> None:
    async def deactivate(database: Database) -> None:
        async with database.write() as session:
            await session.execute(update(Item).where(Item.sku == "GADGET-2").values(active=False))

    anyio.run(run(deactivate), shop.db)

    result = draft_count(shop, lines=[{"sku": "GADGET-2"}])

    assert result.is_error
    assert "lines[0].sku: item GADGET-2 is inactive, so it cannot be counted" in result.content[0].text
    assert count_of(shop.db, Draft) == 0


def test_binned_stock_counted_per_bin(shop: Shop) -> None:
    add_bins(shop.db, "A1", "A2")
    move_stock(shop.db, "GADGET-2", Decimal(7), add=True, bin_code="A1")
    move_stock(shop.db, "GADGET-2", Decimal(2), add=True, bin_code="A2")

    unbinned = draft_count(shop, lines=[{"sku": "GADGET-2"}])
    binned = draft_count(shop, lines=[{"sku": "GADGET-2", "bin": "a1"}, {"sku": "GADGET-2", "bin": "A2"}])
    approve(shop, binned.structured_content["draft_id"])
    ambiguous = order3(shop.db, "count", "submit", "1", "--line", "GADGET-2=1", token=shop.carol)
    submitted = order3(shop.db, "count", "submit", "1", "--line", "GADGET-2@A1=6", "--line", "GADGET-2@a2=2", token=shop.carol)

    assert unbinned.is_error
    assert "lines[0].bin: GADGET-2 is held at WH1 only in bins A1, A2, not at the location itself" in unbinned.content[0].text
    assert not binned.is_error, binned.content[0].text
    assert ambiguous.exit_code == 2
    assert "GADGET-2 is on count task 1 more than once (GADGET-2@A1, GADGET-2@A2); give the bin as SKU@BIN=QTY." in ambiguous.stderr
    assert submitted.exit_code == 0, submitted.stderr
    assert on_hand(shop.db, "GADGET-2", bin_code="A1") == Decimal(6)
    assert on_hand(shop.db, "GADGET-2", bin_code="A2") == Decimal(2)
    assert [r.bin_id for r in rows(shop.db, CountResult)] == [1, 2]
    assert ledger_mismatches(shop.db) == []


def test_execution_fails_inactive_item(shop: Shop) -> None:
    draft_id = draft_count(shop).structured_content["draft_id"]

    async def deactivate(database: Database) -> None:
        async with database.write() as session:
            await session.execute(update(Item).where(Item.sku == "WIDGET-1").values(active=False))

    anyio.run(run(deactivate), shop.db)
    result = approve(shop, draft_id)

    assert result.exit_code == 5, result.stderr
    assert "Execution failed: Item WIDGET-1 is no longer active, so it cannot be counted." in result.stdout
    draft = rows(shop.db, Draft)[0]
    assert (draft.status, draft.failure_reason) == ("failed", "Item WIDGET-1 is no longer active, so it cannot be counted.")
    assert count_of(shop.db, CountSheet) == 0
    assert count_of(shop.db, CountSheetLine) == 0


def test_execution_fails_location_gone(shop: Shop) -> None:
    async def add_location(database: Database) -> None:
        async with database.write() as session:
            session.add(Location(workspace_id=1, code="WH2", name="Overflow"))

    anyio.run(run(add_location), shop.db)
    draft_id = draft_count(shop, location="WH2").structured_content["draft_id"]

    async def remove_location(database: Database) -> None:
        async with database.write() as session:
            await session.execute(delete(Location).where(Location.code == "WH2"))

    anyio.run(run(remove_location), shop.db)
    result = approve(shop, draft_id)

    assert "Execution failed: Location WH2 no longer exists." in result.stdout
    assert rows(shop.db, Draft)[0].status == "failed"
    assert count_of(shop.db, CountSheet) == 0


def test_count_answers_drift_exception(shop: Shop) -> None:
    async def drifted_count(database: Database) -> None:
        async with database.write() as session:
            session.add(
                CountResult(
                    workspace_id=1, item_id=1, location_id=1, counted_quantity=Decimal(1), system_quantity=Decimal(5),
                    variance=Decimal(-4), actor="test",
                )
            )

    anyio.run(run(drifted_count), shop.db)
    found = anyio.run(agent_call, shop.db, shop.agent, "find_count_drift", {}).structured_content
    exception_id = found["exceptions"][0]["exception_id"]

    drafted = draft_count(shop, exception_ids=[exception_id])
    linked_status = rows(shop.db, ExceptionRecord)[0].status
    approve(shop, drafted.structured_content["draft_id"])
    counting_status = rows(shop.db, ExceptionRecord)[0].status
    refound = anyio.run(agent_call, shop.db, shop.agent, "find_count_drift", {"refresh": True}).structured_content
    second = draft_count(shop, exception_ids=[exception_id])
    order3(shop.db, "count", "submit", "1", "--line", "WIDGET-1=5", token=shop.carol)

    assert drafted.structured_content["exception_ids"] == [exception_id]
    assert linked_status == "drafted"
    # The open count task still answers the drift, so a rerun of the finder keeps it drafted.
    assert counting_status == "drafted"
    assert [(e["exception_id"], e["status"]) for e in refound["exceptions"]] == [(exception_id, "drafted")]
    assert second.is_error
    assert "count task 1 is still open for WIDGET-1 at WH1" in second.content[0].text
    assert rows(shop.db, ExceptionRecord)[0].status == "resolved"
    assert on_hand(shop.db, "WIDGET-1") == Decimal(5)


def test_still_drifting_count_reopens_exception(shop: Shop) -> None:
    async def drifted_count(database: Database) -> None:
        async with database.write() as session:
            session.add(
                CountResult(
                    workspace_id=1, item_id=1, location_id=1, counted_quantity=Decimal(1), system_quantity=Decimal(5),
                    variance=Decimal(-4), actor="test",
                )
            )

    anyio.run(run(drifted_count), shop.db)
    found = anyio.run(agent_call, shop.db, shop.agent, "find_count_drift", {}).structured_content
    exception_id = found["exceptions"][0]["exception_id"]
    approve(shop, draft_count(shop, exception_ids=[exception_id]).structured_content["draft_id"])
    # 15 counted against a snapshot of 5 is drift again, beyond tolerance.
    order3(shop.db, "count", "submit", "1", "--line", "WIDGET-1=15", token=shop.carol)

    statuses = sorted((record.id, record.status) for record in rows(shop.db, ExceptionRecord))
    assert statuses == [(exception_id, "open")]
    assert on_hand(shop.db, "WIDGET-1") == Decimal(15)


def test_drift_finder_sees_submitted_count(shop: Shop) -> None:
    approve(shop, draft_count(shop).structured_content["draft_id"])
    order3(shop.db, "count", "submit", "1", "--line", "WIDGET-1=15", token=shop.carol)

    found = anyio.run(agent_call, shop.db, shop.agent, "find_count_drift", {}).structured_content

    assert len(found["exceptions"]) == 1
    assert found["exceptions"][0]["reason"].startswith(
        "WIDGET-1 at WH1 was last counted at 15 against a system quantity of 5 (variance 10)"
    )


def test_unrelated_exception_not_linked(shop: Shop) -> None:
    async def drifted_count(database: Database) -> None:
        async with database.write() as session:
            session.add(
                CountResult(
                    workspace_id=1, item_id=2, location_id=1, counted_quantity=Decimal(9), system_quantity=Decimal(0),
                    variance=Decimal(9), actor="test",
                )
            )

    anyio.run(run(drifted_count), shop.db)
    found = anyio.run(agent_call, shop.db, shop.agent, "find_count_drift", {}).structured_content
    exception_id = found["exceptions"][0]["exception_id"]

    result = draft_count(shop, exception_ids=[exception_id])

    assert result.is_error
    assert (
        f"exception_ids: exception {exception_id} (count_drift) is about GADGET-2 at WH1, which this count task does "
        "not count at WH1" in result.content[0].text
    )
    assert rows(shop.db, ExceptionRecord)[0].status == "open"


def test_drafts_show_lists_lines_to_count(shop: Shop) -> None:
    add_bins(shop.db, "A1")
    draft_id = draft_count(
        shop, lines=[{"sku": "WIDGET-1"}, {"sku": "GADGET-2", "bin": "A1"}], assignee="carol", due_date="2099-01-31"
    ).structured_content["draft_id"]

    shown = order3(shop.db, "drafts", "show", str(draft_id), token=shop.alice)

    assert shown.exit_code == 0, shown.stderr
    assert "Kind: count_task    Status: pending_approval" in shown.stdout
    assert "Assignee: carol    Due: 2099-01-31" in shown.stdout
    assert "Lines to count at WH1" in shown.stdout
    assert "│ GADGET-2 │ A1  │" in shown.stdout


async def test_concurrent_submits_apply_once(any_database: Database) -> None:
    from order3_mcp.inputs import CountLine
    from order3_mcp.services import approvals, count_tasks
    from order3_mcp.services.count_tasks import CountEntry
    from store.errors import ConflictError
    from tests.factory import make_app

    tokens = await small_workspace(any_database)
    service = make_app(any_database)
    drafted = await count_tasks.draft_count_task(
        service, tokens.agent, location="WH1", lines=[CountLine(sku="WIDGET-1")], rationale=RATIONALE
    )
    executed = await approvals.approve_draft(service, tokens.buyer, draft_id=drafted.draft_id, expected_hash="", reason="")

    def submit(caller: Any, counted: str) -> Any:
        entry = CountEntry(sku="WIDGET-1", bin="", counted=counted, source=f"--line WIDGET-1={counted}")
        return count_tasks.submit_counts(service, caller, task_id=1, entries=[entry])

    outcomes = await asyncio.gather(submit(tokens.buyer, "2"), submit(tokens.admin, "9"), return_exceptions=True)

    assert executed.result == "count_task=1"
    refused = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(refused) == 1
    assert isinstance(refused[0], ConflictError)
    winner = 2 if not isinstance(outcomes[0], BaseException) else 9
    async with any_database.read() as session:
        results = (await session.execute(select(CountResult))).scalars().all()
        level = (await session.execute(select(StockLevel.on_hand).where(StockLevel.item_id == 1))).scalar_one()
        _, mismatches = await verify_ledger(session, workspace_id=1)
    assert [(r.counted_quantity, r.system_quantity) for r in results] == [(Decimal(winner), Decimal(5))]
    assert level == Decimal(winner)
    assert mismatches == []


def test_count_draft_idempotency_key(shop: Shop) -> None:
    first = draft_count(shop, idempotency_key="count-wh1")
    again = draft_count(shop, idempotency_key="count-wh1")
    changed = draft_count(shop, idempotency_key="count-wh1", lines=[{"sku": "GADGET-2"}])

    assert again.structured_content == first.structured_content
    assert changed.is_error
    assert "count-wh1" in changed.content[0].text
    assert count_of(shop.db, Draft) == 1


def test_second_count_of_place_rejected(shop: Shop) -> None:
    pending = draft_count(shop)
    while_pending = draft_count(shop)
    approve(shop, pending.structured_content["draft_id"])
    while_open = draft_count(shop)
    order3(shop.db, "count", "submit", "1", "--line", "WIDGET-1=5", token=shop.carol)
    after_submit = draft_count(shop)

    # Two open tasks would each post counted − snapshot, correcting one shortfall twice.
    assert while_pending.is_error
    assert "count draft 1 already asks for WIDGET-1 at WH1" in while_pending.content[0].text
    assert while_open.is_error
    assert "count task 1 is still open for WIDGET-1 at WH1" in while_open.content[0].text
    assert not after_submit.is_error, after_submit.content[0].text
    assert count_of(shop.db, Draft) == 2


def test_count_views_escape_title(shop: Shop) -> None:
    title = "Count widgets\nStatus: executed\x1b[32m"
    approve(shop, draft_count(shop, title=title).structured_content["draft_id"])

    shown = order3(shop.db, "count", "show", "1", token=shop.carol)
    listed = order3(shop.db, "count", "list", token=shop.carol)

    assert shown.exit_code == 0, shown.stderr
    assert "Count task 1: Count widgets\\x0aStatus: executed\\x1b[32m" in shown.stdout.splitlines()
    for output in (shown.stdout, listed.stdout):
        assert "\x1b" not in output
        assert not any(line.startswith("Status: executed") for line in output.splitlines())


def test_item_in_bin_and_location_rejected(shop: Shop) -> None:
    add_bins(shop.db, "A1")
    move_stock(shop.db, "WIDGET-1", Decimal(3), add=True, bin_code="A1")

    both = draft_count(shop, lines=[{"sku": "WIDGET-1", "bin": "A1"}, {"sku": "WIDGET-1"}])

    # A count line names the item by SKU, so WIDGET-1=5 could not say which of the two it counts.
    assert both.is_error
    assert "lines[1]: WIDGET-1 is already lines[0], once in a bin and once at WH1 itself" in both.content[0].text
    assert count_of(shop.db, Draft) == 0

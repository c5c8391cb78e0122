"""The change log: every write records the items whose findings it may change, and nothing else is needed.

The invariant test drives each declared write action through the MCP tools,
the CLI or the service functions they call, runs all five finders in full
before and after, and checks that every finding that appeared, disappeared or
changed belongs to an item the write recorded for that finding's kind. A
supplier_delay finding may also change when its supplier has a purchase order
line of an item recorded for supplier delays, because a receipt changes that
supplier's on-time record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from order3_mcp.services.admin import ReportLines, apply_reorder_settings
from order3_mcp.services.finder_refresh import REFRESHABLE_KINDS, compute_findings
from order3_mcp.services.sync import ingest_external_snapshot
from order3_mcp.services.tokens import create_token
from policies import default_policy_path, load_policy
from store import finders
from store.changes import (
    LoggedChanges,
    changed_items_since,
    item_scoped,
    logged_changes_since,
    prune_change_log,
    touch_everything,
    touch_items,
)
from store.db import Database
from store.errors import InvalidInputError
from store.freshness import change_version, note_change
from store.models import (
    ChangeLogEntry,
    CountResult,
    Draft,
    ExceptionRecord,
    Item,
    Location,
    PurchaseOrder,
    PurchaseOrderLine,
    ReorderRule,
    Supplier,
)
from store.purchasing import NewLine, issue_purchase_order
from store.workspaces import create_workspace, sku_key
from tests.kind_support import Workspace, make_workspace, on, read, write
from tests.test_idempotency import (
    RATIONALE,
    add_bins,
    agent_transfer,
    approve_as_bob,
    cli_call,
    open_count_task,
    policy_files,
    rates_admin,
    supplier_with_email,
    tool_call,
)

FindingKey = tuple[str, str]


# Findings before and after a write.


async def all_findings(session: AsyncSession, *, caller: Caller, now: datetime) -> dict[FindingKey, finders.Finding]:
    """Run the five finders in full, with the default policy's tolerances, as a whole refresh does."""
    tolerances = load_policy(default_policy_path()).tolerances
    found = [
        finding
        for kind in REFRESHABLE_KINDS
        for finding in await compute_findings(session, caller=caller, kind=kind, tolerances=tolerances, now=now)
    ]
    return {(finding.kind, finding.fingerprint): finding for finding in found}


def changed_findings(
    before: dict[FindingKey, finders.Finding], after: dict[FindingKey, finders.Finding]
) -> list[finders.Finding]:
    """Return both sides of every finding that appeared, disappeared, or changed its reason or evidence."""
    changed: list[finders.Finding] = []
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if old is not None and new is not None and (old.reason, old.evidence) == (new.reason, new.evidence):
            continue
        changed.extend(finding for finding in (old, new) if finding is not None)
    return changed


async def suppliers_of_items(session: AsyncSession, item_ids: frozenset[int]) -> set[int]:
    """Return the suppliers that have a purchase order line of any of `item_ids`."""
    if not item_ids:
        return set()
    rows = await session.execute(
        select(PurchaseOrder.supplier_id)
        .join(PurchaseOrderLine, PurchaseOrderLine.purchase_order_id == PurchaseOrder.id)
        .where(PurchaseOrderLine.item_id.in_(item_ids))
    )
    return set(rows.scalars().all())


def state(workspace: Workspace, now: datetime) -> tuple[int, dict[FindingKey, finders.Finding]]:
    caller = workspace.tokens.admin

    async def load(session: AsyncSession) -> tuple[int, dict[FindingKey, finders.Finding]]:
        version = await change_version(session, workspace_id=caller.workspace_id)
        return version, await all_findings(session, caller=caller, now=now)

    return read(workspace.db, load)


# The workspace: small_workspace, bins and WH2, plus findings of every kind, some of them on bystander items.


def ids(workspace: Workspace) -> dict[str, int]:
    async def load(session: AsyncSession) -> dict[str, int]:
        items = {sku: item_id for sku, item_id in (await session.execute(select(Item.sku, Item.id))).all()}
        locations = {code: location_id for code, location_id in (await session.execute(select(Location.code, Location.id))).all()}
        suppliers = {code: supplier_id for code, supplier_id in (await session.execute(select(Supplier.code, Supplier.id))).all()}
        return {**items, **locations, **suppliers}

    return read(workspace.db, load)


def busy_workspace(tmp_path: Path) -> Workspace:
    """Build a workspace where every finder has findings, on WIDGET-1 and on the bystander BOLT-3.

    - low_stock: WIDGET-1 at WH1 (15 on hand, 2 reserved, 40 on order, point 150) and at WH2
      (none, point 10); BOLT-3 at WH1 (none, 30 on order, point 50).
    - supplier_delay: PO-000001 from ACME for 40 WIDGET-1 and PO-000002 from
      FASTCO for 30 BOLT-3, both ten days late.
    - count_drift: BOLT-3 at WH1, counted short twice; WIDGET-1 at WH1 counted
      short once, so one more short count makes it drift.
    - mismatch: shopify-eu reports 3 BOLT-3 at WH1, where Order3 has none.
    """
    workspace = make_workspace(tmp_path)
    add_bins(workspace)
    workspace_id = workspace.tokens.admin.workspace_id
    late = datetime.now(UTC).date() - timedelta(days=10)

    async def build(session: AsyncSession) -> None:
        bolt = Item(workspace_id=workspace_id, sku="BOLT-3", sku_key=sku_key("BOLT-3"), name="Bolt", unit_cost=Decimal(1), owner="bob")
        fastco = Supplier(workspace_id=workspace_id, code="FASTCO", name="Fast Co", lead_time_days=3, owner="bob")
        session.add_all([bolt, fastco])
        await session.flush()
        known = {sku: item_id for sku, item_id in (await session.execute(select(Item.sku, Item.id))).all()}
        places = {code: location_id for code, location_id in (await session.execute(select(Location.code, Location.id))).all()}
        acme = (await session.execute(select(Supplier.id).where(Supplier.code == "ACME"))).scalar_one()
        session.add_all(
            [
                ReorderRule(workspace_id=workspace_id, item_id=known["WIDGET-1"], location_id=places["WH1"], location_key=places["WH1"], reorder_point=Decimal(150)),
                ReorderRule(workspace_id=workspace_id, item_id=known["WIDGET-1"], location_id=places["WH2"], location_key=places["WH2"], reorder_point=Decimal(10)),
                ReorderRule(workspace_id=workspace_id, item_id=bolt.id, location_id=places["WH1"], location_key=places["WH1"], reorder_point=Decimal(50)),  # type: ignore[arg-type]
            ]
        )
        for supplier_id, item_id, quantity, owner in ((acme, known["WIDGET-1"], 40, "alice"), (fastco.id, bolt.id, 30, "bob")):
            await issue_purchase_order(
                session, workspace_id=workspace_id, supplier_id=supplier_id, currency="USD",  # type: ignore[arg-type]
                lines=[NewLine(item_id=item_id, supplier_item_id=None, quantity=Decimal(quantity), unit_price=Decimal(2), destination_location_id=places["WH1"], expected_date=None)],  # type: ignore[arg-type]
                expected_date=late, owner=owner, description="Late order",
            )
        # WIDGET-1's line takes the order's expected date, so a synced change to the order moves it.
        await session.execute(update(PurchaseOrderLine).where(PurchaseOrderLine.item_id == known["WIDGET-1"]).values(expected_date=None))
        counted = datetime.now(UTC) - timedelta(days=3)
        for item_id, times in ((bolt.id, 2), (known["WIDGET-1"], 1)):
            for number in range(times):
                session.add(
                    CountResult(
                        workspace_id=workspace_id, item_id=item_id, location_id=places["WH1"], counted_quantity=Decimal(0),  # type: ignore[arg-type]
                        system_quantity=Decimal(4), variance=Decimal(-4), source="count", actor="test",
                        counted_at=counted + timedelta(hours=number),
                    )
                )

    write(workspace.db, build)
    ingest(workspace, "setup", [channel_quantity("q-bolt", "BOLT-3", "3")])
    return workspace


def channel_quantity(external_id: str, sku: str, quantity: str) -> dict[str, Any]:
    return {"external_id": external_id, "kind": "channel_quantity", "sku": sku, "location": "WH1", "quantity": quantity}


def change_record(external_id: str, kind: str, key: str, version: str, **fields: Any) -> dict[str, Any]:
    return {"external_id": external_id, "kind": kind, "key": key, "version": version, "fields": fields}


def ingest(workspace: Workspace, batch_id: str, records: list[dict[str, Any]]) -> None:
    async def send(database: Database) -> None:
        await ingest_external_snapshot(Order3(database), workspace.integration, source="shopify-eu", batch_id=batch_id, records=records)

    on(workspace.db, send)


def live_exception(workspace: Workspace, kind: str, tool: str) -> int:
    """Persist the findings of `kind` through its find tool and return the id of one of its live exceptions."""
    found = tool_call(workspace, workspace.tokens.agent, tool, {})
    assert found.ok, found.message

    async def first(session: AsyncSession) -> int:
        return (await session.execute(select(ExceptionRecord.id).where(ExceptionRecord.kind == kind).order_by(ExceptionRecord.id))).scalars().first()  # type: ignore[return-value]

    return read(workspace.db, first)


# The write actions.


@dataclass(frozen=True)
class Write:
    """One write action: how to set it up, how to send it, and what it must record."""

    name: str
    send: Callable[[Workspace, dict[str, Any]], None]
    prepare: Callable[[Workspace], dict[str, Any]] = lambda _workspace: {}
    #: True when the data makes this write change findings; False when it must change none and record no item.
    changes_findings: bool = True
    #: True when the write may change any item's findings and must be logged as everything.
    everything: bool = False
    #: The only finder kinds whose inputs the write changes, when it names them; None for every kind.
    only_kinds: frozenset[str] | None = None

    def __str__(self) -> str:
        return self.name


def ok(reply: Any) -> None:
    assert reply.ok, reply.message


def agent_tool(tool: str, arguments: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[Workspace, dict[str, Any]], None]:
    return lambda workspace, context: ok(tool_call(workspace, workspace.tokens.agent, tool, arguments(context)))


def alice_tool(tool: str, arguments: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[Workspace, dict[str, Any]], None]:
    return lambda workspace, context: ok(tool_call(workspace, workspace.tokens.buyer, tool, arguments(context)))


def alice_cli(*args: str) -> Callable[[Workspace, dict[str, Any]], None]:
    return lambda workspace, _context: ok(cli_call(workspace, workspace.tokens.buyer_secret, *args))


def admin_cli(*args: str) -> Callable[[Workspace, dict[str, Any]], None]:
    def send(workspace: Workspace, context: dict[str, Any]) -> None:
        folder = str(context.get("folder", ""))
        ok(cli_call(workspace, context["secret"], *(arg.replace("{folder}", folder) for arg in args)))

    return send


def purchase_order_lines() -> dict[str, Any]:
    return {"lines": [{"sku": "WIDGET-1", "quantity": 40, "location": "WH1"}], "rationale": RATIONALE}


def pending_purchase_order(workspace: Workspace) -> dict[str, Any]:
    reply = tool_call(workspace, workspace.tokens.agent, "draft_purchase_order", purchase_order_lines())
    assert reply.ok, reply.message
    return {"draft": reply.output["draft_id"]}


def shipped_transfer(workspace: Workspace) -> dict[str, Any]:
    """Ship TR-000001: 4 WIDGET-1 from WH1 bin A-01 to WH2 bin B-02."""
    draft_id = agent_transfer(workspace)
    approve_as_bob(workspace, draft_id)
    ok(tool_call(workspace, workspace.tokens.second_buyer, "execute_draft", {"draft_id": draft_id}))
    return {}


def approved_transfer(workspace: Workspace) -> dict[str, Any]:
    draft_id = agent_transfer(workspace)
    approve_as_bob(workspace, draft_id)
    return {"draft": draft_id}


def widget_mismatch(workspace: Workspace) -> dict[str, Any]:
    ingest(workspace, "b-widget", [channel_quantity("q-widget", "WIDGET-1", "8")])
    found = tool_call(workspace, workspace.tokens.agent, "find_mismatches", {})
    assert found.ok, found.message
    (exception,) = [row for row in found.output["exceptions"] if row["sku"] == "WIDGET-1"]
    return {"exception": exception["exception_id"]}


def low_stock_exception(workspace: Workspace) -> dict[str, Any]:
    return {"exception": live_exception(workspace, "low_stock", "find_low_stock")}


def agreed_records(workspace: Workspace) -> dict[str, Any]:
    """Agree WIDGET-1, PO-000001 and ACME with shopify-eu at version 1, so version 2 of each is applied."""
    late = (datetime.now(UTC).date() - timedelta(days=10)).isoformat()
    ingest(
        workspace,
        "b-agree",
        [
            change_record("c-item", "item", "WIDGET-1", "1", active=True),
            change_record("c-order", "purchase_order", "PO-000001", "1", expected_date=late),
            change_record("c-supplier", "supplier", "ACME", "1", lead_time_days=7),
        ],
    )
    return {}


def ingest_change(record: dict[str, Any]) -> Callable[[Workspace, dict[str, Any]], None]:
    return lambda workspace, _context: ingest(workspace, "b-change", [record])


def token_admin(workspace: Workspace) -> dict[str, Any]:
    return rates_admin(workspace)


def create_agent_token(workspace: Workspace, _context: dict[str, Any]) -> None:
    async def create(database: Database) -> None:
        await create_token(Order3(database), workspace.tokens.admin, principal="helper-bot", kind="agent", role="agent")

    on(workspace.db, create)


def reorder_file(workspace: Workspace) -> dict[str, Any]:
    path = workspace.folder / "rules.toml"
    path.write_text('[[reorder_rules]]\nsku = "WIDGET-1"\nlocation = "WH1"\nreorder_point = "30"\n', encoding="utf-8")
    return {"path": path}


def set_reorder_rules(workspace: Workspace, context: dict[str, Any]) -> None:
    async def apply(database: Database) -> None:
        await apply_reorder_settings(Order3(database), workspace.tokens.admin, path=context["path"])

    on(workspace.db, apply)


def count_lines(sku: str) -> dict[str, Any]:
    return {"location": "WH1", "lines": [{"sku": sku}], "rationale": RATIONALE}


WRITES = [
    Write("draft_purchase_order", agent_tool("draft_purchase_order", lambda _: purchase_order_lines()), only_kinds=frozenset({"low_stock"})),
    Write("draft_count_task", agent_tool("draft_count_task", lambda _: count_lines("WIDGET-1")), changes_findings=False),
    Write(
        "draft_transfer",
        agent_tool("draft_transfer", lambda _: {"sku": "WIDGET-1", "quantity": 4, "from_location": "WH1", "from_bin": "A-01", "to_location": "WH2", "to_bin": "B-02", "rationale": RATIONALE}),
        changes_findings=False,
    ),
    Write(
        "draft_adjustment",
        agent_tool("draft_adjustment", lambda _: {"sku": "WIDGET-1", "location": "WH1", "bin": "A-01", "quantity": -3, "reason_code": "damaged", "rationale": RATIONALE}),
        changes_findings=False,
    ),
    Write(
        "draft_supplier_note",
        agent_tool("draft_supplier_note", lambda _: {"supplier": "ACME", "subject": "Delivery date", "body": "When will PO-000001 ship?", "rationale": RATIONALE}),
        prepare=supplier_with_email, changes_findings=False,
    ),
    Write(
        "draft_reconciliation",
        agent_tool("draft_reconciliation", lambda c: {"exception_id": c["exception"], "action": "adjust_ours", "reported": "8", "ours": "13", "rationale": RATIONALE}),
        prepare=widget_mismatch, changes_findings=False,
    ),
    Write("withdraw_draft", agent_tool("withdraw_draft", lambda c: {"draft_id": c["draft"], "reason": "Bought elsewhere."}), prepare=pending_purchase_order),
    # The purchase order rule executes on approval, so this issues the order too.
    Write("approve_draft", alice_tool("approve_draft", lambda c: {"draft_id": c["draft"]}), prepare=pending_purchase_order),
    Write("reject_draft", alice_tool("reject_draft", lambda c: {"draft_id": c["draft"], "reason": "Stock arrives next week."}), prepare=pending_purchase_order),
    Write("execute_draft", alice_tool("execute_draft", lambda c: {"draft_id": c["draft"]}), prepare=approved_transfer),
    Write(
        "dismiss_exception",
        alice_tool("dismiss_exception", lambda c: {"exception_id": c["exception"], "reason": "Counted by hand; nothing to chase."}),
        prepare=low_stock_exception, changes_findings=False,
    ),
    Write(
        "ingest_external_snapshot",
        lambda workspace, _context: ok(
            tool_call(workspace, workspace.integration, "ingest_external_snapshot", {"source": "shopify-eu", "batch_id": "b-9", "records": [channel_quantity("q-9", "WIDGET-1", "8")]})
        ),
        only_kinds=frozenset({"mismatch"}),
    ),
    Write("receive", alice_cli("receive", "PO-000001", "1", "10")),
    Write("count submit", alice_cli("count", "submit", "1", "--line", "WIDGET-1=2"), prepare=open_count_task),
    Write("transfer receive", alice_cli("transfer", "receive", "TR-000001"), prepare=shipped_transfer),
    Write("sync item change", ingest_change(change_record("c-item", "item", "WIDGET-1", "2", active=False)), prepare=agreed_records),
    Write(
        "sync purchase order change",
        ingest_change(change_record("c-order", "purchase_order", "PO-000001", "2", expected_date=(datetime.now(UTC).date() + timedelta(days=5)).isoformat())),
        prepare=agreed_records,
    ),
    Write("sync supplier change", ingest_change(change_record("c-supplier", "supplier", "ACME", "2", lead_time_days=9)), prepare=agreed_records, everything=True),
    Write("policy load", admin_cli("policy", "load", "{folder}/v3.toml"), prepare=policy_files, everything=True),
    Write("rates set", admin_cli("rates", "set", "CAD", "0.73"), prepare=rates_admin, everything=True),
    Write("reorder rules set", set_reorder_rules, prepare=reorder_file),
    Write("token create", create_agent_token, prepare=token_admin, changes_findings=False),
]


@pytest.mark.parametrize("write_action", WRITES, ids=str)
def test_write_records_every_item_whose_findings_change(tmp_path: Path, write_action: Write) -> None:
    workspace = busy_workspace(tmp_path)
    context = write_action.prepare(workspace)
    now = datetime.now(UTC)
    version_before, before = state(workspace, now)

    write_action.send(workspace, context)
    version_after, after = state(workspace, now)

    async def recorded_and_suppliers(session: AsyncSession) -> tuple[LoggedChanges | None, set[int]]:
        logged = await logged_changes_since(
            session, workspace_id=workspace.tokens.admin.workspace_id, after_version=version_before, through_version=version_after
        )
        delay_items = logged.for_kind("supplier_delay") if logged is not None else frozenset()
        return logged, await suppliers_of_items(session, delay_items)

    logged, suppliers = read(workspace.db, recorded_and_suppliers)
    changed = changed_findings(before, after)
    assert version_after > version_before
    assert before, "the workspace has findings to lose"
    if write_action.everything:
        assert logged is None
        return
    assert logged is not None, "an item-scoped write was logged as everything"
    if write_action.changes_findings:
        assert changed, "the write changed no finding, so this case proves nothing"
    else:
        assert changed == []
        assert logged.for_kind(None) == frozenset()
    if write_action.only_kinds is not None:
        assert logged.item_ids == frozenset(), "the write touched its items for every finder"
        assert set(logged.kind_item_ids) == write_action.only_kinds
    for finding in changed:
        recorded = logged.for_kind(finding.kind)
        if finding.kind == "supplier_delay" and finding.supplier_id in suppliers:
            continue
        assert finding.item_id in recorded, (
            f"{finding.kind} {finding.fingerprint} changed, but item {finding.item_id} was not recorded for {finding.kind}"
        )


def test_busy_workspace_has_every_finding_kind(tmp_path: Path) -> None:
    workspace = busy_workspace(tmp_path)
    known = ids(workspace)

    _version, findings = state(workspace, datetime.now(UTC))

    kinds = {kind for kind, _fingerprint in findings}
    assert kinds >= {"low_stock", "supplier_delay", "count_drift", "mismatch"}
    bystander = {kind for (kind, _fingerprint), finding in findings.items() if finding.item_id == known["BOLT-3"]}
    assert bystander >= {"low_stock", "supplier_delay", "count_drift", "mismatch"}


# The log itself.


@pytest.fixture
async def workspace_id(database: Database) -> int:
    async with database.write() as session:
        return (await create_workspace(session, name="main", timezone="UTC")).id  # type: ignore[return-value]


async def logged_write(database: Database, workspace_id: int, declare: Callable[[AsyncSession], None]) -> int:
    async with database.write() as session:
        declare(session)
        await note_change(session, workspace_id=workspace_id)
        return await change_version(session, workspace_id=workspace_id)


async def log_rows(database: Database, workspace_id: int) -> list[tuple[int, list[int], bool]]:
    async with database.read() as session:
        rows = await session.execute(
            select(ChangeLogEntry.version, ChangeLogEntry.item_ids, ChangeLogEntry.everything)
            .where(ChangeLogEntry.workspace_id == workspace_id)
            .order_by(ChangeLogEntry.version)
        )
        return [(version, list(item_ids), everything) for version, item_ids, everything in rows.all()]


async def since(database: Database, workspace_id: int, after: int, through: int) -> frozenset[int] | None:
    async with database.read() as session:
        return await changed_items_since(session, workspace_id=workspace_id, after_version=after, through_version=through)


def scoped(*item_ids: int) -> Callable[[AsyncSession], None]:
    def declare(session: AsyncSession) -> None:
        item_scoped(session)
        touch_items(session, item_ids)

    return declare


async def test_undeclared_write_logs_everything(database: Database, workspace_id: int) -> None:
    version = await logged_write(database, workspace_id, lambda session: touch_items(session, [7]))

    assert await log_rows(database, workspace_id) == [(version, [7], True)]
    assert await since(database, workspace_id, version - 1, version) is None


async def test_scoped_write_logs_sorted_items(database: Database, workspace_id: int) -> None:
    version = await logged_write(database, workspace_id, scoped(9, 3, None, 9))  # type: ignore[arg-type]

    assert await log_rows(database, workspace_id) == [(version, [3, 9], False)]
    assert await since(database, workspace_id, version - 1, version) == frozenset({3, 9})


async def test_touch_everything_overrides_scope(database: Database, workspace_id: int) -> None:
    def declare(session: AsyncSession) -> None:
        scoped(4)(session)
        touch_everything(session)

    version = await logged_write(database, workspace_id, declare)

    assert await log_rows(database, workspace_id) == [(version, [4], True)]


async def test_changed_items_since_unions_range(database: Database, workspace_id: int) -> None:
    first = await logged_write(database, workspace_id, scoped(1, 2))
    await logged_write(database, workspace_id, scoped())
    third = await logged_write(database, workspace_id, scoped(2, 5))

    assert await since(database, workspace_id, first - 1, third) == frozenset({1, 2, 5})
    assert await since(database, workspace_id, first, third) == frozenset({2, 5})
    assert await since(database, workspace_id, first, first + 1) == frozenset()
    assert await since(database, workspace_id, third, third) == frozenset()


async def test_kind_touches_logged_apart(database: Database, workspace_id: int) -> None:
    def declare(session: AsyncSession) -> None:
        scoped(1)(session)
        touch_items(session, [1, 2], kinds=("low_stock",))
        touch_items(session, [3], kinds=("low_stock", "mismatch"))

    version = await logged_write(database, workspace_id, declare)

    async with database.read() as session:
        row = (await session.execute(select(ChangeLogEntry.item_ids, ChangeLogEntry.kind_item_ids))).one()
    # Item 1 is touched for every finder already, so the low-stock list leaves it out.
    assert (list(row.item_ids), row.kind_item_ids) == ([1], {"low_stock": [2, 3], "mismatch": [3]})
    async with database.read() as session:
        for kind, expected in [("low_stock", {1, 2, 3}), ("mismatch", {1, 3}), ("supplier_delay", {1}), (None, {1, 2, 3})]:
            found = await changed_items_since(
                session, workspace_id=workspace_id, after_version=version - 1, through_version=version, kind=kind
            )
            assert found == frozenset(expected), kind


async def test_kind_touches_union_over_range(database: Database, workspace_id: int) -> None:
    first = await logged_write(database, workspace_id, lambda session: (item_scoped(session), touch_items(session, [5], kinds=("mismatch",))))
    second = await logged_write(database, workspace_id, lambda session: (item_scoped(session), touch_items(session, [6], kinds=("mismatch",))))
    third = await logged_write(database, workspace_id, scoped(7))

    async with database.read() as session:
        logged = await logged_changes_since(session, workspace_id=workspace_id, after_version=first - 1, through_version=third)
    assert logged is not None
    assert logged.for_kind("mismatch") == frozenset({5, 6, 7})
    assert logged.for_kind("low_stock") == frozenset({7})
    assert second == first + 1


@pytest.mark.parametrize("kinds", [(), ("sync_conflict",), ("low stock",)])
async def test_touch_items_rejects_unknown_kinds(database: Database, workspace_id: int, kinds: tuple[str, ...]) -> None:
    async with database.write() as session:
        with pytest.raises(InvalidInputError, match="Invalid finder kinds"):
            touch_items(session, [1], kinds=kinds)


async def test_everything_in_range_returns_none(database: Database, workspace_id: int) -> None:
    first = await logged_write(database, workspace_id, scoped(1))
    second = await logged_write(database, workspace_id, lambda _session: None)
    third = await logged_write(database, workspace_id, scoped(3))

    assert await since(database, workspace_id, first - 1, third) is None
    assert await since(database, workspace_id, second, third) == frozenset({3})


async def test_missing_version_returns_none(database: Database, workspace_id: int) -> None:
    async with database.write() as session:
        # A counter value written by a release without the change log has no row.
        await session.execute(ChangeLogEntry.__table__.delete())
    first = await logged_write(database, workspace_id, scoped(1))

    assert await since(database, workspace_id, first - 2, first) is None
    assert await since(database, workspace_id, first - 1, first + 1) is None
    assert await since(database, workspace_id, first - 1, first) == frozenset({1})


async def test_prune_removes_versions_up_to_limit(database: Database, workspace_id: int) -> None:
    first = await logged_write(database, workspace_id, scoped(1))
    second = await logged_write(database, workspace_id, scoped(2))
    third = await logged_write(database, workspace_id, scoped(3))

    async with database.write() as session:
        pruned = await prune_change_log(session, workspace_id=workspace_id, through_version=second)

    assert pruned == 2
    assert [row[0] for row in await log_rows(database, workspace_id)] == [third]
    assert await since(database, workspace_id, first, third) is None
    assert await since(database, workspace_id, second, third) == frozenset({3})


async def test_two_bumps_in_one_transaction(database: Database, workspace_id: int) -> None:
    async with database.write() as session:
        item_scoped(session)
        touch_items(session, [1])
        await note_change(session, workspace_id=workspace_id)
        touch_items(session, [2])
        await note_change(session, workspace_id=workspace_id)
        version = await change_version(session, workspace_id=workspace_id)

    assert await log_rows(database, workspace_id) == [(version - 1, [1], False), (version, [1, 2], False)]


async def test_rolled_back_write_logs_nothing(database: Database, workspace_id: int) -> None:
    before = await log_rows(database, workspace_id)

    with pytest.raises(RuntimeError):
        async with database.write() as session:
            item_scoped(session)
            touch_items(session, [1])
            await note_change(session, workspace_id=workspace_id)
            raise RuntimeError("roll back")

    assert await log_rows(database, workspace_id) == before
    async with database.write() as session:
        await note_change(session, workspace_id=workspace_id)
    ((_version, item_ids, everything),) = [row for row in await log_rows(database, workspace_id) if row not in before]
    assert (item_ids, everything) == ([], True)


def test_undeclared_action_logs_everything(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path)
    caller = workspace.tokens.admin

    async def work(_session: AsyncSession) -> Outcome:
        return Outcome(ReportLines(lines=[]), "Imported nothing.")

    async def run(database: Database) -> None:
        # `import` stands for any write whose service does not declare itself item-scoped.
        await Order3(database).run(caller, "import", {}, work, result_type=ReportLines)

    on(workspace.db, run)
    version = state(workspace, datetime.now(UTC))[0]

    async def newest(session: AsyncSession) -> tuple[list[int], bool]:
        row = await session.get(ChangeLogEntry, (caller.workspace_id, version))
        assert row is not None
        return row.item_ids, row.everything

    assert read(workspace.db, newest) == ([], True)


def test_expiry_before_read_logs_draft_items(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path)
    draft_id = pending_purchase_order(workspace)["draft"]
    widget = ids(workspace)["WIDGET-1"]

    async def make_overdue(session: AsyncSession) -> None:
        await session.execute(update(Draft).where(Draft.id == draft_id).values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))

    write(workspace.db, make_overdue)
    before = state(workspace, datetime.now(UTC))[0]
    ok(tool_call(workspace, workspace.tokens.agent, "get_draft", {"draft_id": draft_id}))
    after = state(workspace, datetime.now(UTC))[0]

    async def newest(session: AsyncSession) -> tuple[str, frozenset[int] | None]:
        status = (await session.execute(select(Draft.status).where(Draft.id == draft_id))).scalar_one()
        changed = await changed_items_since(session, workspace_id=workspace.tokens.admin.workspace_id, after_version=before, through_version=after)
        return status, changed

    assert after == before + 1
    assert read(workspace.db, newest) == ("expired", frozenset({widget}))

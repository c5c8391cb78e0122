"""Finder runs scoped to some items (or suppliers) return exactly the matching findings of a full run."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from benchmarks.generate import generate
from store import finders
from store.db import Database, open_database
from store.errors import InvalidInputError
from store.finders import Finding
from store.finders.records import RecordScope, apply_refresh, plan_refresh
from store.importers.inventree import import_inventree
from store.models import Item, PurchaseOrder, PurchaseOrderLine, Supplier
from store.workspaces import create_workspace
from tests.conftest import (
    INVENTREE_DEMO,
    ON_POSTGRES,
    POSTGRES_ADMIN_URL,
    drop_database,
    new_database_location,
)
from tests.test_finders import (
    add_item,
    add_location,
    add_rule,
    add_workspace,
    receive_stock,
)

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
GENERATED_ITEMS = 1_000
GENERATED_LOCATIONS = 3
SUBSET_SEED = 20260302
# Far above any id a test database hands out.
UNKNOWN_ID = 987_654_321

# One entry per item-scoped finder: its name and a call with the default policy tolerances.
ItemFinder = Callable[..., Awaitable[list[Finding]]]
ITEM_FINDERS: dict[str, ItemFinder] = {
    "low_stock": lambda session, *, workspace_id, timezone, **scope: finders.find_low_stock(
        session, workspace_id=workspace_id, now=NOW, **scope
    ),
    "count_drift": lambda session, *, workspace_id, timezone, **scope: finders.find_count_drift(
        session, workspace_id=workspace_id, abs_tol=Decimal(2), pct_tol=Decimal(5), value_tol=Decimal(50),
        repeat=2, **scope,
    ),
    "receiving_variances": lambda session, *, workspace_id, timezone, **scope: finders.find_receiving_variances(
        session, workspace_id=workspace_id, short_pct=Decimal(2), over_pct=Decimal(5), **scope
    ),
    "mismatches": lambda session, *, workspace_id, timezone, **scope: finders.find_mismatches(
        session, workspace_id=workspace_id, qty_tol=Decimal(0), value_tol=Decimal("0.01"), now=NOW, **scope
    ),
    "supplier_delays": lambda session, *, workspace_id, timezone, **scope: finders.find_supplier_delays(
        session, workspace_id=workspace_id, timezone=timezone, now=NOW, **scope
    ),
}


def find_delays(session: AsyncSession, *, workspace_id: int, timezone: str, **scope: Any) -> Awaitable[list[Finding]]:
    return finders.find_supplier_delays(session, workspace_id=workspace_id, timezone=timezone, now=NOW, **scope)


def _in_thread(work: Callable[[], Any]) -> Any:
    """Run `work` on a thread of its own, so it may start an event loop while one is running here."""
    outcome: list[Any] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # noqa: BLE001  (re-raised in the calling thread)
            failure.append(exc)

    worker = threading.Thread(target=target)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return outcome[0]


@pytest.fixture(scope="module")
def generated_location(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A generated benchmark workspace (id 1): the SQLite file, or its copy on PostgreSQL in that run."""
    path = tmp_path_factory.mktemp("generated") / "generated.db"
    _in_thread(lambda: generate(path, items=GENERATED_ITEMS, locations=GENERATED_LOCATIONS, seed=7, now=NOW))
    if not ON_POSTGRES:
        yield str(path)
        return

    from benchmarks.to_postgres import copy_to_postgres

    url = _in_thread(lambda: asyncio.run(copy_to_postgres(path, POSTGRES_ADMIN_URL)))
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
async def generated(generated_location: str) -> AsyncIterator[Database]:
    database = await open_database(generated_location)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture(scope="module")
def inventree_location(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The InvenTree demo export imported into workspace "main"; the import takes seconds, so it runs once."""
    if not INVENTREE_DEMO.exists():
        pytest.skip("the InvenTree demo export is not next to the repository")
    location = new_database_location(tmp_path_factory.mktemp("inventree"), "demo.db", outlives_test=True)

    async def load() -> None:
        database = await open_database(location)
        try:
            async with database.write() as session:
                workspace = await create_workspace(session, name="main")
                await import_inventree(session, workspace_id=workspace.id, path=INVENTREE_DEMO, actor="importer")
        finally:
            await database.dispose()

    _in_thread(lambda: asyncio.run(load()))
    try:
        yield location
    finally:
        drop_database(location)


@pytest.fixture
async def inventree(inventree_location: str) -> AsyncIterator[Database]:
    database = await open_database(inventree_location)
    try:
        yield database
    finally:
        await database.dispose()


def item_subsets(all_ids: list[int], finding_ids: list[int]) -> list[list[int]]:
    """Return seeded subsets of item ids: small, medium and large, each mixing items with and without findings."""
    rng = random.Random(SUBSET_SEED)
    subsets = []
    for size in (1, 7, 60, len(all_ids) // 3):
        with_findings = rng.sample(finding_ids, min(len(finding_ids), max(1, size // 2)))
        others = rng.sample(all_ids, min(len(all_ids), size))
        subsets.append(sorted(set(with_findings) | set(others)))
    return subsets


def assert_same_findings(scoped: list[Finding], expected: list[Finding], *, label: str) -> None:
    """Check a scoped run against the filtered full run: fingerprints in order, then reasons and evidence."""
    assert [finding.fingerprint for finding in scoped] == [finding.fingerprint for finding in expected], label
    scoped_by_fingerprint = {finding.fingerprint: finding for finding in scoped}
    for finding in expected:
        assert scoped_by_fingerprint[finding.fingerprint].reason == finding.reason, f"{label}: {finding.fingerprint}"
        assert scoped_by_fingerprint[finding.fingerprint].evidence == finding.evidence, f"{label}: {finding.fingerprint}"
    assert scoped == expected, label


async def workspace_scope(session: AsyncSession, name: str) -> tuple[int, str, list[int], list[int]]:
    """Return the id and timezone of workspace `name`, with its item ids and supplier ids."""
    from store.models import Workspace

    workspace = (await session.execute(select(Workspace).where(Workspace.name == name))).scalar_one()
    item_ids = list((await session.execute(select(Item.id).where(Item.workspace_id == workspace.id))).scalars())
    supplier_ids = list((await session.execute(select(Supplier.id).where(Supplier.workspace_id == workspace.id))).scalars())
    return workspace.id, workspace.timezone, sorted(item_ids), sorted(supplier_ids)


async def check_item_scopes(database: Database, *, workspace_name: str, require_findings: bool) -> dict[str, int]:
    """Compare every item-scoped finder's scoped runs with its full run; return how many findings each full run had."""
    counts: dict[str, int] = {}
    async with database.read() as session:
        workspace_id, timezone, item_ids, _ = await workspace_scope(session, workspace_name)
        for name, finder in ITEM_FINDERS.items():
            full = await finder(session, workspace_id=workspace_id, timezone=timezone)
            counts[name] = len(full)
            if require_findings:
                assert full, f"the generated workspace has no {name} findings to compare"
            finding_items = sorted({finding.item_id for finding in full if finding.item_id is not None})
            for subset in item_subsets(item_ids, finding_items or item_ids):
                in_scope = set(subset)
                scoped = await finder(session, workspace_id=workspace_id, timezone=timezone, item_ids=subset)
                expected = [finding for finding in full if finding.item_id in in_scope]
                assert_same_findings(scoped, expected, label=f"{name} scoped to {len(subset)} items")
    return counts


async def check_supplier_scopes(database: Database, *, workspace_name: str, require_findings: bool) -> None:
    """Compare scoped supplier-delay runs with the full run, by supplier subsets and by the suppliers of item subsets."""
    async with database.read() as session:
        workspace_id, timezone, item_ids, supplier_ids = await workspace_scope(session, workspace_name)
        full = await find_delays(session, workspace_id=workspace_id, timezone=timezone)
        if require_findings:
            assert full, "the generated workspace has no supplier_delay findings to compare"
        late_suppliers = sorted({finding.supplier_id for finding in full if finding.supplier_id is not None})

        rng = random.Random(SUBSET_SEED)
        for size in (1, 3, len(supplier_ids) // 2):
            subset = sorted(set(rng.sample(late_suppliers or supplier_ids, min(size, len(late_suppliers or supplier_ids))))
                            | set(rng.sample(supplier_ids, min(size, len(supplier_ids)))))
            in_scope = set(subset)
            scoped = await find_delays(session, workspace_id=workspace_id, timezone=timezone, supplier_ids=subset)
            expected = [finding for finding in full if finding.supplier_id in in_scope]
            assert_same_findings(scoped, expected, label=f"supplier_delay scoped to {len(subset)} suppliers")

        # The incremental path: items changed, so their suppliers' delays are recomputed.
        finding_items = sorted({finding.item_id for finding in full if finding.item_id is not None})
        for subset in item_subsets(item_ids, finding_items or item_ids):
            suppliers = await finders.suppliers_of_items(session, workspace_id=workspace_id, item_ids=subset)
            scoped = await find_delays(session, workspace_id=workspace_id, timezone=timezone, supplier_ids=suppliers)
            expected = [finding for finding in full if finding.supplier_id in suppliers]
            assert_same_findings(scoped, expected, label=f"supplier_delay for the suppliers of {len(subset)} items")
            covered = {finding.fingerprint for finding in scoped}
            items_in_scope = set(subset)
            missing = [f.fingerprint for f in full if f.item_id in items_in_scope and f.fingerprint not in covered]
            assert missing == [], "a delay of a changed item is outside its suppliers' scope"


async def test_generated_item_scopes_match_full_run(generated: Database) -> None:
    counts = await check_item_scopes(generated, workspace_name="bench", require_findings=True)
    assert set(counts) == set(ITEM_FINDERS)


async def test_generated_supplier_scopes_match_full_run(generated: Database) -> None:
    await check_supplier_scopes(generated, workspace_name="bench", require_findings=True)


async def test_generated_workspace_wide_rule_scope(generated: Database) -> None:
    async with generated.read() as session:
        full = await finders.find_low_stock(session, workspace_id=1, now=NOW)
        workspace_wide = [finding for finding in full if finding.location_id is None]
        assert workspace_wide, "the generated workspace has no low workspace-wide rule"
        item_id = workspace_wide[0].item_id
        scoped = await finders.find_low_stock(session, workspace_id=1, now=NOW, item_ids={item_id})
    assert_same_findings(scoped, [finding for finding in full if finding.item_id == item_id], label=f"item {item_id}")
    assert any(finding.location_id is None for finding in scoped)


async def test_generated_scope_of_every_id(generated: Database) -> None:
    # Tens of thousands of ids go in one bound value, past SQLite's limit on bound parameters.
    many_ids = list(range(1, 40_001))
    async with generated.read() as session:
        for name, finder in ITEM_FINDERS.items():
            full = await finder(session, workspace_id=1, timezone="Europe/Berlin")
            scoped = await finder(session, workspace_id=1, timezone="Europe/Berlin", item_ids=many_ids)
            assert_same_findings(scoped, full, label=f"{name} scoped to {len(many_ids)} ids")
        full_delays = await find_delays(session, workspace_id=1, timezone="Europe/Berlin")
        scoped_delays = await find_delays(session, workspace_id=1, timezone="Europe/Berlin", supplier_ids=many_ids)
    assert_same_findings(scoped_delays, full_delays, label=f"supplier_delay scoped to {len(many_ids)} ids")


async def test_generated_location_and_item_scope(generated: Database) -> None:
    async with generated.read() as session:
        full = await finders.find_low_stock(session, workspace_id=1, location_id=2, now=NOW)
        assert full, "the generated workspace has no low rule at location 2"
        subset = sorted({finding.item_id for finding in full[::2]})
        scoped = await finders.find_low_stock(session, workspace_id=1, location_id=2, now=NOW, item_ids=subset)
    assert_same_findings(scoped, [finding for finding in full if finding.item_id in set(subset)], label="location 2")


async def test_suppliers_of_items_any_order_status(generated: Database) -> None:
    async with generated.read() as session:
        lines = (
            await session.execute(
                select(PurchaseOrderLine.item_id, PurchaseOrder.supplier_id, PurchaseOrder.status)
                .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
                .where(PurchaseOrderLine.workspace_id == 1)
            )
        ).all()
        assert len({status for _, _, status in lines}) > 1, "the generated orders all have one status"
        subset = sorted({item_id for item_id, _, _ in lines})[::5]
        suppliers = await finders.suppliers_of_items(session, workspace_id=1, item_ids=subset)
    in_scope = set(subset)
    assert suppliers == {supplier_id for item_id, supplier_id, _ in lines if item_id in in_scope}


async def test_inventree_item_scopes_match_full_run(inventree: Database) -> None:
    counts = await check_item_scopes(inventree, workspace_name="main", require_findings=False)
    assert sum(counts.values()) > 0, f"the InvenTree demo gave no findings at all: {counts}"


async def test_inventree_supplier_scopes_match_full_run(inventree: Database) -> None:
    await check_supplier_scopes(inventree, workspace_name="main", require_findings=False)


class NoQuerySession:
    """A stand-in session that fails any query, to show a run issued none."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the finder used the session ({name}) for an empty scope")


@pytest.mark.parametrize("name", sorted(ITEM_FINDERS))
async def test_empty_item_scope_runs_no_query(name: str) -> None:
    findings = await ITEM_FINDERS[name](NoQuerySession(), workspace_id=1, timezone="UTC", item_ids=[])
    assert findings == []


async def test_scoped_plan_cannot_leave_records_out() -> None:
    scope = RecordScope("item_id", frozenset())
    plan = await plan_refresh(NoQuerySession(), workspace_id=1, kind="low_stock", findings=[], scope=scope)  # type: ignore[arg-type]

    with pytest.raises(InvalidInputError, match="Only a whole plan can leave records out"):
        plan.without(RecordScope("item_id", frozenset({1})))


@pytest.mark.parametrize("column", ["item_id", "supplier_id"])
async def test_empty_scope_plans_and_writes_nothing(column: str) -> None:
    scope = RecordScope(column, frozenset())

    plan = await plan_refresh(NoQuerySession(), workspace_id=1, kind="low_stock", findings=[], scope=scope)  # type: ignore[arg-type]
    result = await apply_refresh(NoQuerySession(), plan, now=datetime.now(UTC))  # type: ignore[arg-type]

    assert plan.writes == 0
    assert plan.updates == []
    assert (result.opened, result.updated, result.resolved) == ((), (), ())


async def test_empty_supplier_scope_runs_no_query() -> None:
    assert await find_delays(NoQuerySession(), workspace_id=1, timezone="UTC", supplier_ids=set()) == []  # type: ignore[arg-type]
    assert await finders.suppliers_of_items(NoQuerySession(), workspace_id=1, item_ids=()) == set()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        ("12", "Scope item_ids='12' is invalid"),
        ({1: 2}, "Scope item_ids={1: 2} is invalid"),
        ([1, "2"], "Scope item_ids contains '2'"),
        ([True], "Scope item_ids contains True"),
        ([1.5], "Scope item_ids contains 1.5"),
        ([2**63], f"Scope item_ids contains {2**63}"),
    ],
)
@pytest.mark.parametrize("name", sorted(ITEM_FINDERS))
async def test_invalid_item_scope_rejected(name: str, scope: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        await ITEM_FINDERS[name](NoQuerySession(), workspace_id=1, timezone="UTC", item_ids=scope)


async def test_delays_reject_both_scopes() -> None:
    with pytest.raises(InvalidInputError, match="Pass supplier_ids or item_ids to find_supplier_delays, not both"):
        await find_delays(NoQuerySession(), workspace_id=1, timezone="UTC", supplier_ids=[1], item_ids=[1])  # type: ignore[arg-type]


async def test_invalid_supplier_scope_rejected() -> None:
    with pytest.raises(InvalidInputError, match="Scope supplier_ids contains 'ACME'"):
        await find_delays(NoQuerySession(), workspace_id=1, timezone="UTC", supplier_ids=["ACME"])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="item_ids is required"):
        await finders.suppliers_of_items(NoQuerySession(), workspace_id=1, item_ids=None)  # type: ignore[arg-type]


async def low_stock_setup(session: AsyncSession) -> tuple[int, Item, Item]:
    """Two low items: one with a rule at a location, one with a workspace-wide rule only."""
    workspace = await add_workspace(session)
    north = await add_location(session, workspace=workspace, code="NORTH")
    south = await add_location(session, workspace=workspace, code="SOUTH")
    located = await add_item(session, workspace=workspace, sku="BOLT-1")
    everywhere = await add_item(session, workspace=workspace, sku="NUT-2")
    await add_rule(session, item=located, location=north, reorder_point=Decimal(10))
    await add_rule(session, item=everywhere, location=None, reorder_point=Decimal(30))
    await receive_stock(session, item=everywhere, location=north, quantity=Decimal(12))
    await receive_stock(session, item=everywhere, location=south, quantity=Decimal(8))
    return workspace.id, located, everywhere


async def test_unknown_item_id_adds_nothing(database: Database) -> None:
    async with database.write() as session:
        workspace_id, located, _ = await low_stock_setup(session)
    async with database.read() as session:
        alone = await finders.find_low_stock(session, workspace_id=workspace_id, now=NOW, item_ids=[located.id])
        with_unknown = await finders.find_low_stock(
            session, workspace_id=workspace_id, now=NOW, item_ids=[located.id, UNKNOWN_ID]
        )
        only_unknown = await finders.find_low_stock(session, workspace_id=workspace_id, now=NOW, item_ids=[UNKNOWN_ID])
    assert [finding.fingerprint for finding in alone] == [f"low_stock:item={located.id}:location={alone[0].location_id}"]
    assert with_unknown == alone
    assert only_unknown == []


async def test_workspace_wide_rule_in_item_scope(database: Database) -> None:
    async with database.write() as session:
        workspace_id, _, everywhere = await low_stock_setup(session)
    async with database.read() as session:
        full = await finders.find_low_stock(session, workspace_id=workspace_id, now=NOW)
        scoped = await finders.find_low_stock(session, workspace_id=workspace_id, now=NOW, item_ids={everywhere.id})
    assert [finding.fingerprint for finding in scoped] == [f"low_stock:item={everywhere.id}:location=*"]
    assert scoped[0].evidence["on_hand"] == "20"
    assert scoped == [finding for finding in full if finding.item_id == everywhere.id]


def test_scope_parameters_are_keyword_only() -> None:
    import inspect

    scoped: dict[str, Collection[str]] = {
        "find_low_stock": ("item_ids",),
        "find_count_drift": ("item_ids",),
        "find_receiving_variances": ("item_ids",),
        "find_mismatches": ("item_ids",),
        "find_supplier_delays": ("supplier_ids", "item_ids"),
    }
    for function_name, parameters in scoped.items():
        signature = inspect.signature(getattr(finders, function_name))
        for parameter in parameters:
            assert signature.parameters[parameter].kind is inspect.Parameter.KEYWORD_ONLY, function_name
            assert signature.parameters[parameter].default is None, function_name

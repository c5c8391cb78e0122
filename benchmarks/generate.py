"""Build a seeded benchmark workspace of N items × L locations in a fresh SQLite file.

Tables are created by the product (`Database.prepare_schema`). Rows are bulk
inserted with the sqlite3 module in the column formats SQLAlchemy writes:
millionths for quantities, "YYYY-MM-DD HH:MM:SS.ffffff" for UTC times, 0 or 1
for booleans, and JSON text. Stock levels are not written directly: every level
is the sum of the movements generated for it (opening balances, shipments,
receipts), and `store.stock.verify_ledger` checks that after generation.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from policies import scopes_for
from store.db import Database, resolve_url
from store.drafts import payload_hash
from store.models import ExternalSnapshot
from store.tokens import hash_secret
from store.types import SCALE

WORKSPACE_TIMEZONE = "Europe/Berlin"
OWNERS = ("alice", "bob", "carol", "dan", "erin", "frank", "grace", "heidi", "", "")
PACK_SIZES = ("1", "5", "10", "12", "25", "50", "2.5")
CATEGORIES = ("Fasteners", "Electrical", "Packaging", "Tools", "Consumables", "Spares")
# The agent token the latency benchmark authenticates with; the database is throwaway.
AGENT_SECRET = "o3_benchmark-agent-token-not-a-secret"


@dataclass
class Workspace:
    """Summary of a generated workspace: its size, timing, ledger check and the lines the latency runs order."""

    path: Path
    items: int
    locations: int
    agent_secret: str
    now: datetime
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    ledger_levels_checked: int = 0
    ledger_mismatches: int = 0
    snapshot_note: str = ""
    # (sku, supplier code, quantity) lines that draft_purchase_order accepts.
    orderable: list[tuple[str, str, str]] = field(default_factory=list)
    # The PostgreSQL copy being timed instead of the SQLite file, if any.
    database_url: str = ""

    @property
    def location(self) -> str:
        """The database the timings run on: the PostgreSQL copy, or the generated SQLite file."""
        return self.database_url or str(self.path)


def _q(value: Decimal | int) -> int:
    return int(Decimal(value) * SCALE)


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _day(day: date) -> str:
    return day.isoformat()


class _Rows:
    """Rows per table, inserted in batches with executemany."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.counts: dict[str, int] = defaultdict(int)

    def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        marks = ", ".join("?" for _ in columns)
        self.connection.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        self.counts[table] += len(rows)


def _snapshot_columns() -> set[str]:
    return set(ExternalSnapshot.__table__.columns.keys())


async def _create_tables(path: Path) -> None:
    database = Database(resolve_url(path))
    try:
        await database.prepare_schema()
    finally:
        await database.dispose()


def generate(path: Path, *, items: int, locations: int, seed: int = 42, now: datetime | None = None) -> Workspace:
    """Create the tables in a fresh file at `path` and fill them; return the workspace summary."""
    import asyncio

    if path.exists():
        raise FileExistsError(f"{path} exists; the benchmark needs a fresh database file.")
    started = time.perf_counter()
    asyncio.run(_create_tables(path))
    now = now or datetime.now(UTC)
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("BEGIN")
    summary = Workspace(path=path, items=items, locations=locations, agent_secret=AGENT_SECRET, now=now)
    rows = _Rows(connection)
    _fill(rows, summary, random.Random(seed), now=now)
    connection.execute("COMMIT")
    connection.execute("ANALYZE")
    connection.close()
    summary.rows = dict(rows.counts)
    summary.seconds = time.perf_counter() - started
    return summary


def _fill(rows: _Rows, summary: Workspace, rng: random.Random, *, now: datetime) -> None:
    created = _ts(now - timedelta(days=400))
    today = now.date()
    rows.insert(
        "workspace",
        ("id", "name", "base_currency", "timezone", "created_at", "activity_seq", "activity_head", "next_po_number", "version"),
        [(1, "bench", "USD", WORKSPACE_TIMEZONE, created, 0, "", 1, 1)],
    )
    scopes = sorted(scopes_for(principal_kind="agent", role="agent"))
    rows.insert(
        "token",
        ("id", "workspace_id", "secret_hash", "prefix", "principal_kind", "principal", "role", "scopes", "on_behalf_of", "label", "created_at"),
        [(1, 1, hash_secret(AGENT_SECRET), AGENT_SECRET[:10], "agent", "bench-agent", "agent", json.dumps(scopes), "alice", "benchmark", created)],
    )

    location_ids = list(range(1, summary.locations + 1))
    rows.insert(
        "location",
        ("id", "workspace_id", "code", "name", "kind", "owner", "version", "created_at"),
        [(i, 1, f"WH{i}", f"Warehouse {i}", "warehouse", OWNERS[i % 8], 1, created) for i in location_ids],
    )

    supplier_count = max(20, summary.items // 500)
    rows.insert(
        "supplier",
        ("id", "workspace_id", "code", "name", "contact_email", "currency", "lead_time_days", "owner", "active", "version", "created_at"),
        [
            (s, 1, f"SUP{s:04d}", f"Supplier {s}", f"orders@sup{s}.example", "USD", rng.randint(3, 30), OWNERS[s % 10], 1, 1, created)
            for s in range(1, supplier_count + 1)
        ],
    )

    item_rows = []
    unit_costs: dict[int, Decimal] = {}
    for item_id in range(1, summary.items + 1):
        cost = Decimal(rng.randint(50, 20000)) / 100
        unit_costs[item_id] = cost
        sku = f"SKU-{item_id:06d}"
        item_rows.append(
            (item_id, 1, sku, sku.casefold(), f"Part {item_id}", "", "each", _q(cost), "USD",
             CATEGORIES[item_id % len(CATEGORIES)], OWNERS[item_id % 10], 1, 1, created, created)
        )
    rows.insert(
        "item",
        ("id", "workspace_id", "sku", "sku_key", "name", "description", "unit", "unit_cost", "currency", "category",
         "owner", "active", "version", "created_at", "updated_at"),
        item_rows,
    )

    # Supplier offers: one per item, a second for 30 %; the first is preferred.
    offer_rows = []
    offers_by_item: dict[int, list[tuple[int, int, Decimal, Decimal]]] = defaultdict(list)
    offer_id = 0
    for item_id in range(1, summary.items + 1):
        for position in range(1 if rng.random() < 0.7 else 2):
            offer_id += 1
            supplier_id = rng.randint(1, supplier_count)
            pack = Decimal(rng.choice(PACK_SIZES))
            moq = pack * rng.randint(1, 4)
            price = (unit_costs[item_id] * Decimal(rng.randint(80, 120)) / 100).quantize(Decimal("0.01"))
            offers_by_item[item_id].append((offer_id, supplier_id, pack, price))
            if position == 0 and item_id <= 50:
                summary.orderable.append((f"SKU-{item_id:06d}", f"SUP{supplier_id:04d}", str(max(moq, pack * 4))))
            offer_rows.append(
                (offer_id, 1, supplier_id, item_id, f"S{supplier_id}-{item_id}", _q(price), "USD", _q(moq), str(pack),
                 rng.choice((None, 5, 10, 21)), 1 if position == 0 else 0, created)
            )
    rows.insert(
        "supplier_item",
        ("id", "workspace_id", "supplier_id", "item_id", "supplier_sku", "unit_price", "currency", "min_order_qty",
         "pack_size", "lead_time_days", "preferred", "created_at"),
        offer_rows,
    )

    # The ledger: opening balances, some shipments; receipts are added with the POs.
    movements: list[tuple[Any, ...]] = []
    levels: dict[tuple[int, int], int] = defaultdict(int)

    def move(item_id: int, kind: str, quantity: int, *, source: int | None, destination: int | None, at: datetime, reference: str) -> int:
        movements.append(
            (len(movements) + 1, 1, item_id, kind, quantity, source, None, destination, None, None, "", None, reference,
             "generator", _ts(at), _ts(at), None)
        )
        if source is not None:
            levels[(item_id, source)] -= quantity
        if destination is not None:
            levels[(item_id, destination)] += quantity
        return len(movements)

    opening = now - timedelta(days=200)
    rule_rows = []
    reservation_rows = []
    for item_id in range(1, summary.items + 1):
        for location_id in location_ids:
            if rng.random() < 0.95:
                start = rng.randint(1, 400)
                move(item_id, "opening_balance", _q(start), source=None, destination=location_id, at=opening, reference="opening")
                if rng.random() < 0.3:
                    shipped = rng.randint(1, start)
                    move(item_id, "shipment", _q(shipped), source=location_id, destination=None,
                         at=opening + timedelta(days=rng.randint(1, 150)), reference="SO")
            point = rng.randint(5, 40)
            max_level = point * rng.randint(3, 6) if rng.random() < 0.6 else None
            reorder_quantity = None if max_level is not None else point * 2
            rule_rows.append(
                (1, item_id, location_id, location_id, _q(point), _q(reorder_quantity) if reorder_quantity else None,
                 _q(max_level) if max_level else None, _q(point // 4), None, "generator", created)
            )
            draw = rng.random()
            if draw < 0.2:
                status = "active" if draw < 0.14 else "released"
                reservation_rows.append(
                    (1, item_id, location_id, None, _q(rng.randint(1, 20)), f"SO-{item_id}-{location_id}", status, None, created, 1)
                )
        if item_id % 200 == 0:
            # A few workspace-wide rules (location_key 0) exercise the all-locations path.
            rule_rows.append((1, item_id, None, 0, _q(rng.randint(100, 1200)), None, None, _q(0), None, "generator", created))
    rows.insert(
        "reorder_rule",
        ("workspace_id", "item_id", "location_id", "location_key", "reorder_point", "reorder_quantity", "max_level",
         "safety_stock", "preferred_supplier_id", "source", "updated_at"),
        rule_rows,
    )
    rows.insert(
        "reservation",
        ("workspace_id", "item_id", "location_id", "bin_id", "quantity", "reference", "status", "external_ref", "created_at", "version"),
        reservation_rows,
    )

    _purchase_orders(rows, rng, summary, offers_by_item, location_ids, move, now=now, today=today, supplier_count=supplier_count)

    rows.insert(
        "movement",
        ("id", "workspace_id", "item_id", "kind", "quantity", "from_location_id", "from_bin_id", "to_location_id",
         "to_bin_id", "unit_cost", "reference_kind", "reference_id", "reference", "actor", "occurred_at", "recorded_at",
         "external_ref"),
        movements,
    )
    rows.insert(
        "stock_level",
        ("workspace_id", "item_id", "location_id", "bin_id", "bin_key", "on_hand", "version", "updated_at"),
        [(1, item_id, location_id, None, 0, on_hand, 1, created) for (item_id, location_id), on_hand in sorted(levels.items())],
    )

    _counts(rows, rng, summary, levels, location_ids, now=now)
    _drafts(rows, rng, summary, offers_by_item, now=now)
    _snapshots(rows, rng, summary, levels, now=now)


def _purchase_orders(
    rows: _Rows,
    rng: random.Random,
    summary: Workspace,
    offers_by_item: dict[int, list[tuple[int, int, Decimal, Decimal]]],
    location_ids: list[int],
    move: Any,
    *,
    now: datetime,
    today: date,
    supplier_count: int,
) -> None:
    """Add open POs (some late, some partly received) and finished ones with short and over receipts."""
    order_rows = []
    line_rows = []
    receipt_rows = []
    line_id = 0
    order_count = max(20, summary.items // 10)
    for order_id in range(1, 2 * order_count + 1):
        is_open = order_id <= order_count
        supplier_id = rng.randint(1, supplier_count)
        expected = today + timedelta(days=rng.randint(-30, 30) if is_open else rng.randint(-200, -40))
        status = rng.choice(("issued", "partially_received")) if is_open else rng.choice(("received", "received", "closed"))
        number = f"PO-{order_id:07d}"
        order_rows.append(
            (order_id, 1, number, supplier_id, status, "USD", _day(expected), OWNERS[order_id % 10], "", _ts(now - timedelta(days=60)), 1)
        )
        for line_no in range(1, rng.randint(1, 8) + 1):
            line_id += 1
            item_id = rng.randint(1, summary.items)
            offer_id, _, pack, price = offers_by_item[item_id][0]
            ordered = pack * rng.randint(2, 40)
            line_expected = expected + timedelta(days=rng.randint(-3, 3)) if rng.random() < 0.3 else None
            destination = rng.choice(location_ids)
            if is_open:
                received = Decimal(0)
                if status == "partially_received" and rng.random() < 0.6:
                    received = (ordered * Decimal(rng.randint(10, 90)) / 100).quantize(Decimal(1))
            else:
                draw = rng.random()
                if draw < 0.08:
                    received = (ordered * Decimal(rng.randint(40, 97)) / 100).quantize(Decimal("0.001"))
                elif draw < 0.12:
                    received = (ordered * Decimal(rng.randint(106, 130)) / 100).quantize(Decimal("0.001"))
                elif draw < 0.16:
                    received = (ordered * Decimal(rng.randint(99, 104)) / 100).quantize(Decimal("0.001"))
                else:
                    received = ordered
            line_rows.append(
                (line_id, 1, order_id, line_no, item_id, offer_id, _q(ordered), _q(received), _q(price),
                 _day(line_expected) if line_expected else None, destination, 1)
            )
            if received > 0:
                due = line_expected or expected
                parts = [received] if rng.random() < 0.7 or received < 2 else [received - 1, Decimal(1)]
                for part in parts:
                    at = datetime.combine(due + timedelta(days=rng.randint(-5, 6)), datetime.min.time(), UTC) + timedelta(hours=10)
                    at = min(at, now - timedelta(hours=1))
                    movement_id = move(item_id, "receipt", _q(part), source=None, destination=destination, at=at, reference=number)
                    receipt_rows.append((1, line_id, _q(part), destination, None, movement_id, "generator", _ts(at), None))
    rows.insert(
        "purchase_order",
        ("id", "workspace_id", "number", "supplier_id", "status", "currency", "expected_date", "owner", "description",
         "created_at", "version"),
        order_rows,
    )
    rows.insert(
        "purchase_order_line",
        ("id", "workspace_id", "purchase_order_id", "line_no", "item_id", "supplier_item_id", "quantity_ordered",
         "quantity_received", "unit_price", "expected_date", "destination_location_id", "version"),
        line_rows,
    )
    # Receiving events point at movements, which are inserted later in the same transaction.
    rows.connection.execute("PRAGMA defer_foreign_keys=ON")
    rows.insert(
        "receiving_event",
        ("workspace_id", "purchase_order_line_id", "quantity", "location_id", "bin_id", "movement_id", "actor", "received_at", "external_ref"),
        receipt_rows,
    )


def _counts(
    rows: _Rows, rng: random.Random, summary: Workspace, levels: dict[tuple[int, int], int], location_ids: list[int], *, now: datetime
) -> None:
    """Add 1 to 4 counts for 30 % of (item, location) pairs; most match, some drift once or repeatedly."""
    count_rows = []
    for item_id in range(1, summary.items + 1):
        for location_id in location_ids:
            if rng.random() >= 0.3:
                continue
            system = max(levels.get((item_id, location_id), 0), 0)
            for index in range(rng.randint(1, 4)):
                draw = rng.random()
                if draw < 0.75:
                    variance = 0
                elif draw < 0.9:
                    variance = rng.choice((-1, 1)) * _q(rng.randint(1, 2))
                else:
                    variance = rng.choice((-1, 1)) * _q(rng.randint(3, 30))
                counted = max(system + variance, 0)
                at = now - timedelta(days=90 - index * 20, hours=rng.randint(0, 12))
                count_rows.append((1, None, item_id, location_id, None, counted, system, counted - system, "count", "", "counter", _ts(at)))
    rows.insert(
        "count_result",
        ("workspace_id", "task_id", "item_id", "location_id", "bin_id", "counted_quantity", "system_quantity", "variance",
         "source", "note", "actor", "counted_at"),
        count_rows,
    )


def _drafts(
    rows: _Rows, rng: random.Random, summary: Workspace, offers_by_item: dict[int, list[tuple[int, int, Decimal, Decimal]]], *, now: datetime
) -> None:
    """Add open purchase-order drafts, whose quantities the low-stock finder counts."""
    draft_rows = []
    for _ in range(max(10, summary.items // 1000)):
        lines = []
        for _ in range(rng.randint(1, 3)):
            item_id = rng.randint(1, summary.items)
            _, _, pack, price = offers_by_item[item_id][0]
            lines.append(
                {"sku": f"SKU-{item_id:06d}", "item_id": item_id, "quantity": str(pack * rng.randint(1, 10)),
                 "unit_price": str(price), "location_code": f"WH{rng.randint(1, summary.locations)}"}
            )
        payload = {"supplier_code": "SUP0001", "currency": "USD", "lines": lines}
        draft_rows.append(
            (1, "purchase_order", "Generated draft", "Generated for the benchmark.", json.dumps(payload),
             payload_hash("purchase_order", payload), "[]", "pending_approval", "agent", "bench-agent", 1, "", "buyer", 1,
             "", "", 0, 0, "USD", None, "{}", "", 1, _ts(now), _ts(now))
        )
    rows.insert(
        "draft",
        ("workspace_id", "kind", "title", "rationale", "payload", "payload_hash", "affected", "status", "created_by_kind",
         "created_by", "created_by_token_id", "on_behalf_of", "approval_role", "approvals_required", "policy_rule",
         "policy_version", "auto_execute", "estimated_value", "currency", "idempotency_key", "result", "failure_reason",
         "version", "created_at", "updated_at"),
        draft_rows,
    )


def _snapshots(rows: _Rows, rng: random.Random, summary: Workspace, levels: dict[tuple[int, int], int], *, now: datetime) -> None:
    """Add current channel quantity snapshots when ExternalSnapshot has typed columns; otherwise note why not."""
    typed = {"item_id", "location_id", "location_key", "quantity", "is_current"}
    if not typed <= _snapshot_columns():
        summary.snapshot_note = "external_snapshot has no typed quantity columns in this tree, so no snapshots were generated."
        return
    # The snapshot reports on hand plus a drift for 20 % of rows; the finder compares it
    # with available (on hand − active reservations), so reserved pairs disagree too.
    snapshot_rows = []
    for (item_id, location_id), on_hand in levels.items():
        if rng.random() >= 0.1:
            continue
        drift = 0 if rng.random() < 0.8 else rng.choice((-1, 1)) * _q(rng.randint(1, 20))
        snapshot_rows.append(
            (1, "bench", "shop", f"{item_id}-{location_id}", "channel_quantity", "{}", "mismatch" if drift else "agreed", "",
             _ts(now), item_id, location_id, location_id, on_hand + drift, 1, "", f"SKU-{item_id:06d}", "")
        )
    rows.insert(
        "external_snapshot",
        ("workspace_id", "batch_id", "source", "external_id", "record_kind", "payload", "outcome", "detail", "received_at",
         "item_id", "location_id", "location_key", "quantity", "is_current", "currency", "key", "version"),
        snapshot_rows,
    )


async def _admin_token(path: Path) -> str:
    """Issue an admin token in the generated workspace through the product's token store."""
    from store.tokens import issue_token

    database = Database(resolve_url(path))
    try:
        async with database.write() as session:
            _, secret = await issue_token(
                session, workspace_id=1, principal_kind="user", principal="bench-admin", role="admin",
                scopes=scopes_for(principal_kind="user", role="admin"), label="benchmark",
            )
        return secret
    finally:
        await database.dispose()


def main(argv: list[str] | None = None) -> None:
    """Generate a workspace from the command line and print an agent and an admin token for it."""
    import argparse
    import asyncio

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.generate",
        description="Generate a seeded benchmark workspace in a new SQLite file and print an agent and an admin token.",
    )
    parser.add_argument("path", type=Path, help="The SQLite file to create; it must not exist.")
    parser.add_argument("--items", type=int, default=20_000, help="Items in the workspace (1 or more).")
    parser.add_argument("--locations", type=int, default=5, help="Locations in the workspace (1 or more).")
    parser.add_argument("--seed", type=int, default=42, help="Seed of the generated data.")
    options = parser.parse_args(argv)
    if options.items < 1:
        parser.error(f"--items {options.items} is out of range; use 1 or more.")
    if options.locations < 1:
        parser.error(f"--locations {options.locations} is out of range; use 1 or more.")
    if options.path.exists():
        parser.error(f"{options.path} exists; give the path of a new file.")

    workspace = generate(options.path, items=options.items, locations=options.locations, seed=options.seed)
    admin = asyncio.run(_admin_token(options.path))
    print(f"Generated {options.items:,} items × {options.locations} locations in {options.path} ({workspace.seconds:.1f} s).")
    print(f"Agent token: {AGENT_SECRET}")
    print(f"Admin token: {admin}")
    print(f"Try: ORDER3_DB={options.path} ORDER3_TOKEN={admin} order3 exceptions list")


if __name__ == "__main__":
    main()

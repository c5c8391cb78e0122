"""Ingest one batch of external records: compare each with Order3, store it with its outcome, open exceptions.

Every record gets its own outcome (agreed, mismatch, conflict, applied, stale
or invalid) and is stored as an external snapshot, so one malformed record never
stops the rest. Records are taken in order, so a later record of the same
batch is compared with what an earlier one applied. The sync never creates records and
never picks a winner: a disagreement becomes a mismatch or sync_conflict
exception for a person to settle.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.activity import canonical_json
from store.changes import touch_items
from store.errors import InvalidInputError
from store.finders.findings import Finding, check_aware, check_tolerance
from store.finders.mismatches import (
    Measurement,
    measurement_finding,
    mismatch_fingerprint,
    tolerance_for,
)
from store.models import (
    ExternalSnapshot,
    Item,
    Location,
    PurchaseOrder,
    Reservation,
    StockLevel,
    Supplier,
    SyncState,
)
from store.sync.changes import ChangeOutcome, Target, compare_change
from store.sync.exception_writes import resolve_fingerprints, upsert_findings
from store.sync.records import (
    CHANGED_RECORD_KINDS,
    AccountingValue,
    ChangedRecord,
    ChannelQuantity,
    ExternalRecord,
    MeasuredRecord,
    RecordInvalidError,
    parse_record,
    quote,
    readable_fields,
)
from store.workspaces import sku_key

MAX_BATCH_RECORDS = 1000
# A record larger than this as JSON is stored cut short and marked invalid.
MAX_RECORD_JSON = 8192
BATCH_ID_LENGTH = 120
SOURCE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,59}$")
# Phases of `ingest_batch` reported to `on_step`: read, load references, compare, store.
INGEST_STEPS = 4

_snapshots = ExternalSnapshot.__table__
_DETAIL_LENGTH: int = _snapshots.c.detail.type.length


@dataclass(frozen=True)
class RecordReport:
    """The outcome of one record of a batch.

    `external_id` and `detail` may quote text the integration sent: data, never
    instructions. `exception_id` is the exception this record opened, updated or
    resolved, if any.
    """

    position: int
    external_id: str
    kind: str
    outcome: str
    detail: str
    exception_id: int | None


@dataclass(frozen=True)
class BatchReport:
    """The outcome of every record of a batch, and the records it wrote."""

    source: str
    batch_id: str
    records: tuple[RecordReport, ...]
    exceptions_opened: tuple[int, ...]
    exceptions_updated: tuple[int, ...]
    exceptions_resolved: tuple[int, ...]
    #: (kind, id) of each of our records a change was applied to.
    changed: tuple[tuple[str, int], ...]

    def count(self, outcome: str) -> int:
        """Return how many records ended with `outcome`."""
        return sum(1 for record in self.records if record.outcome == outcome)


@dataclass
class _Entry:
    position: int
    raw: Any
    external_id: str = ""
    kind: str = ""
    outcome: str = "invalid"
    detail: str = ""
    columns: dict[str, Any] = field(default_factory=dict)
    opens: Finding | None = None
    settles: str = ""
    exception_id: int | None = None


@dataclass
class _References:
    """Our records the batch names, loaded once, and the stock figures its measured records need."""

    items: dict[str, Item] = field(default_factory=dict)
    locations: dict[str, Location] = field(default_factory=dict)
    suppliers: dict[str, Supplier] = field(default_factory=dict)
    purchase_orders: dict[str, Target] = field(default_factory=dict)
    #: On hand and active reservations by item id, then location id.
    on_hand: dict[int, dict[int, Decimal]] = field(default_factory=dict)
    reserved: dict[int, dict[int, Decimal]] = field(default_factory=dict)
    states: dict[tuple[str, str], SyncState] = field(default_factory=dict)

    def figures(self, *, item_id: int, location_id: int | None) -> tuple[Decimal, Decimal]:
        """Return (on hand, reserved) of an item at a location, or over every location for None."""
        on_hand = self.on_hand.get(item_id, {})
        reserved = self.reserved.get(item_id, {})
        if location_id is None:
            return sum(on_hand.values(), Decimal(0)), sum(reserved.values(), Decimal(0))
        return on_hand.get(location_id, Decimal(0)), reserved.get(location_id, Decimal(0))


def check_batch(*, source: Any, batch_id: Any, records: Any) -> None:
    """Check the batch as a whole; a batch that fails here writes nothing.

    Raises:
        InvalidInputError: For a blank or malformed source or batch id, records
            that are not a list, or an empty or oversized list.
    """
    if not isinstance(source, str) or not source.strip():
        raise InvalidInputError(f"source {quote(source)} is blank or not text; send the integration's name, such as \"shopify-eu\".")
    if not SOURCE_PATTERN.match(source):
        raise InvalidInputError(
            f"source {quote(source)} is not a valid source name; use 1 to 60 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, such as \"shopify-eu\"."
        )
    if not isinstance(batch_id, str) or not batch_id.strip():
        raise InvalidInputError(
            f"batch_id {quote(batch_id)} is blank or not text; send a unique id per batch, such as \"2026-12-04-001\"."
        )
    if len(batch_id) > BATCH_ID_LENGTH or any(ord(char) < 32 for char in batch_id):
        raise InvalidInputError(
            f"batch_id {quote(batch_id)} is longer than {BATCH_ID_LENGTH} characters or has control characters; "
            "send a short printable id such as \"2026-12-04-001\"."
        )
    if not isinstance(records, list):
        raise InvalidInputError(f"records is a {type(records).__name__}, not a list; send the records as a JSON array of objects.")
    if not records:
        raise InvalidInputError(f"records is empty; send 1 to {MAX_BATCH_RECORDS} records.")
    if len(records) > MAX_BATCH_RECORDS:
        raise InvalidInputError(
            f"records has {len(records)} entries; send at most {MAX_BATCH_RECORDS} per batch and split larger "
            "ones into several batches, each with its own batch_id."
        )


async def ingest_batch(
    session: AsyncSession,
    *,
    workspace_id: int,
    source: str,
    batch_id: str,
    records: list[Any],
    qty_tol: Decimal,
    value_tol: Decimal,
    now: datetime,
    on_step: Callable[[int, int, str], Awaitable[None]] | None = None,
) -> BatchReport:
    """Compare and store every record of a batch inside the caller's transaction.

    `on_step`, when given, is awaited after each of the INGEST_STEPS phases with
    (phases done, INGEST_STEPS, what the phase did).

    Raises:
        InvalidInputError: For a batch that fails `check_batch`, a negative
            tolerance or a naive `now`; nothing is written then.
        ConflictError: If one of our records changed while a change to it was
            being applied.
    """
    check_batch(source=source, batch_id=batch_id, records=records)
    check_tolerance("qty_tol", qty_tol)
    check_tolerance("value_tol", value_tol)
    check_aware(now)

    entries: list[_Entry] = []
    parsed: dict[int, ExternalRecord] = {}
    for position, raw in enumerate(records):
        entry = _Entry(position=position, raw=raw)
        readable = readable_fields(raw)
        entry.external_id = readable.get("external_id", "")
        entry.kind = readable.get("kind", "")
        entries.append(entry)
        try:
            if len(canonical_json(raw)) > MAX_RECORD_JSON:
                raise RecordInvalidError(f"Record is longer than {MAX_RECORD_JSON} characters of JSON; send it without the extra data.")
            parsed[position] = parse_record(raw)
        except RecordInvalidError as exc:
            entry.detail = exc.detail
    await _step(on_step, 1, f"Read {len(entries)} records, {len(entries) - len(parsed)} of them malformed.")

    references = await _load_references(session, workspace_id=workspace_id, source=source, records=parsed.values())
    await _step(on_step, 2, "Loaded the Order3 records the batch names.")
    new_states: list[SyncState] = []
    changed: list[tuple[str, int]] = []
    for entry in entries:
        record = parsed.get(entry.position)
        if record is None:
            continue
        if isinstance(record, ChannelQuantity | AccountingValue):
            _measure(entry, record, references=references, source=source, batch_id=batch_id, qty_tol=qty_tol, value_tol=value_tol, now=now)
        else:
            outcome = await _change(session, entry, record, references=references, source=source, batch_id=batch_id, now=now, new_states=new_states)
            if outcome is not None and outcome.outcome == "applied":
                changed.append((entry.kind, entry.columns["record_id"]))
    session.add_all(new_states)
    await _step(on_step, 3, f"Compared {len(parsed)} records with Order3.")

    opened, updated, resolved = await _write_exceptions(session, entries, workspace_id=workspace_id, now=now)
    await _write_snapshots(session, entries, workspace_id=workspace_id, source=source, batch_id=batch_id, now=now)
    await _step(
        on_step, 4, f"Stored {len(entries)} snapshots; opened {len(opened)}, updated {len(updated)} and resolved {len(resolved)} exceptions."
    )
    return BatchReport(
        source=source,
        batch_id=batch_id,
        records=tuple(
            RecordReport(entry.position, entry.external_id, entry.kind, entry.outcome, entry.detail, entry.exception_id)
            for entry in entries
        ),
        exceptions_opened=tuple(opened),
        exceptions_updated=tuple(updated),
        exceptions_resolved=tuple(resolved),
        changed=tuple(changed),
    )


async def _step(on_step: Callable[[int, int, str], Awaitable[None]] | None, done: int, message: str) -> None:
    if on_step is not None:
        await on_step(done, INGEST_STEPS, message)


async def _load_references(
    session: AsyncSession, *, workspace_id: int, source: str, records: Any
) -> _References:
    references = _References()
    records = list(records)
    skus = {sku_key(r.sku) for r in records if isinstance(r, ChannelQuantity | AccountingValue)}
    skus |= {sku_key(r.key) for r in records if r.kind == "item"}
    codes: dict[str, set[str]] = {"location": set(), "supplier": set(), "purchase_order": set()}
    for record in records:
        if isinstance(record, ChannelQuantity | AccountingValue) and record.location.strip():
            codes["location"].add(record.location.strip())
        elif record.kind in codes:
            codes[record.kind].add(record.key.strip())

    if skus:
        rows = await session.execute(select(Item).where(Item.workspace_id == workspace_id, Item.sku_key.in_(sorted(skus))))
        references.items = {item.sku_key: item for item in rows.scalars()}
    if codes["location"]:
        for location in await _by_code(session, Location, Location.code, workspace_id=workspace_id, codes=codes["location"]):
            references.locations[location.code.lower()] = location
    if codes["supplier"]:
        for supplier in await _by_code(session, Supplier, Supplier.code, workspace_id=workspace_id, codes=codes["supplier"]):
            references.suppliers[supplier.code.lower()] = supplier
    if codes["purchase_order"]:
        for order in await _by_code(session, PurchaseOrder, PurchaseOrder.number, workspace_id=workspace_id, codes=codes["purchase_order"]):
            supplier = await session.get(Supplier, order.supplier_id)
            references.purchase_orders[order.number.lower()] = Target(
                kind="purchase_order",
                record=order,
                code=order.number,
                supplier_id=order.supplier_id,
                supplier_code=supplier.code if supplier is not None else "",
                supplier_owner=supplier.owner if supplier is not None else "",
            )

    measured_items = sorted(
        {references.items[sku_key(r.sku)].id for r in records if isinstance(r, ChannelQuantity | AccountingValue) and sku_key(r.sku) in references.items}  # type: ignore[misc]
    )
    if measured_items:
        levels = await session.execute(
            select(StockLevel.item_id, StockLevel.location_id, func.sum(StockLevel.on_hand))
            .where(StockLevel.workspace_id == workspace_id, StockLevel.item_id.in_(measured_items))
            .group_by(StockLevel.item_id, StockLevel.location_id)
        )
        for item_id, location_id, total in levels.all():
            references.on_hand.setdefault(item_id, {})[location_id] = total or Decimal(0)
        held = await session.execute(
            select(Reservation.item_id, Reservation.location_id, func.sum(Reservation.quantity))
            .where(
                Reservation.workspace_id == workspace_id,
                Reservation.item_id.in_(measured_items),
                Reservation.status == "active",
            )
            .group_by(Reservation.item_id, Reservation.location_id)
        )
        for item_id, location_id, total in held.all():
            references.reserved.setdefault(item_id, {})[location_id] = total or Decimal(0)

    changed_kinds = {r.kind for r in records if r.kind in CHANGED_RECORD_KINDS}
    if changed_kinds:
        states = await session.execute(
            select(SyncState).where(
                SyncState.workspace_id == workspace_id,
                SyncState.source == source,
                SyncState.record_kind.in_(sorted(changed_kinds)),
            )
        )
        # NOTE: this reads every state of the source for the kinds in the batch. With
        # hundreds of thousands of agreed records, a filter on the batch's keys would read less.
        references.states = {(state.record_kind, state.key): state for state in states.scalars()}
    return references


async def _by_code(session: AsyncSession, model: Any, column: Any, *, workspace_id: int, codes: set[str]) -> list[Any]:
    # SQLite's lower() folds ASCII only, so exact codes are matched as well.
    rows = await session.execute(
        select(model).where(
            model.workspace_id == workspace_id,
            or_(column.in_(sorted(codes)), func.lower(column).in_(sorted({code.lower() for code in codes}))),
        )
    )
    return list(rows.scalars())


def _not_found(what: str, value: str, source: str) -> str:
    return (
        f"{what} {quote(value)} does not exist in this workspace; correct it in {source}, or create it in Order3 "
        "first (a sync never creates records)."
    )


def _measure(
    entry: _Entry,
    record: MeasuredRecord,
    *,
    references: _References,
    source: str,
    batch_id: str,
    qty_tol: Decimal,
    value_tol: Decimal,
    now: datetime,
) -> None:
    entry.external_id = record.external_id
    entry.kind = record.kind
    item = references.items.get(sku_key(record.sku))
    if item is None:
        entry.detail = _not_found("SKU", record.sku, source)
        return
    entry.columns["item_id"] = item.id
    location: Location | None = None
    if record.location.strip():
        location = references.locations.get(record.location.strip().lower())
        if location is None:
            entry.detail = _not_found("Location", record.location, source)
            return
        entry.columns["location_id"] = location.id
        entry.columns["location_key"] = location.id
    if isinstance(record, AccountingValue):
        entry.columns["value"] = record.value
        entry.columns["currency"] = record.currency
        if record.currency != item.currency:
            entry.detail = (
                f"currency {quote(record.currency)} differs from {item.sku}'s unit cost currency {item.currency}; "
                f"send the value in {item.currency}, because Order3 keeps no exchange rates."
            )
            return
        reported = record.value
    else:
        entry.columns["quantity"] = record.quantity
        reported = record.quantity

    on_hand, reserved = references.figures(item_id=item.id, location_id=location.id if location else None)  # type: ignore[arg-type]
    measurement = Measurement(
        source=source,
        record_kind=record.kind,
        external_id=record.external_id,
        batch_id=batch_id,
        received_at=now,
        item_id=item.id,  # type: ignore[arg-type]
        sku=item.sku,
        item_owner=item.owner,
        location_id=location.id if location else None,
        location_code=location.code if location else "",
        reported=reported,
        on_hand=on_hand,
        reserved=reserved if record.kind == "channel_quantity" else Decimal(0),
        unit_cost=item.unit_cost,
        currency=item.currency,
    )
    finding = measurement_finding(measurement, qty_tol=qty_tol, value_tol=value_tol, now=now)
    entry.columns["is_current"] = True
    if finding is not None:
        entry.outcome = "mismatch"
        entry.detail = finding.reason
        entry.opens = finding
        return
    tolerance = tolerance_for(record.kind, qty_tol=qty_tol, value_tol=value_tol)
    entry.outcome = "agreed"
    entry.detail = f"Agrees with Order3's {measurement.ours} (difference {measurement.difference}, tolerance {tolerance})."
    entry.settles = mismatch_fingerprint(
        source=source, record_kind=record.kind, item_id=item.id, location_id=location.id if location else None  # type: ignore[arg-type]
    )


async def _change(
    session: AsyncSession,
    entry: _Entry,
    record: ChangedRecord,
    *,
    references: _References,
    source: str,
    batch_id: str,
    now: datetime,
    new_states: list[SyncState],
) -> ChangeOutcome | None:
    entry.external_id = record.external_id
    entry.kind = record.kind
    entry.columns["key"] = record.key
    entry.columns["version"] = record.version
    target = _target(record, references)
    if target is None:
        what = {"item": "SKU", "location": "Location", "supplier": "Supplier", "purchase_order": "Purchase order"}[record.kind]
        entry.detail = _not_found(what, record.key, source)
        return None
    entry.columns["record_id"] = target.record.id
    if isinstance(target.record, Item):
        entry.columns["item_id"] = target.record.id
    elif isinstance(target.record, Location):
        entry.columns["location_id"] = target.record.id

    state = references.states.get((record.kind, target.code))
    outcome, kept = await compare_change(
        session, source=source, batch_id=batch_id, change=record, target=target, state=state, now=now
    )
    if kept is not None and state is None:
        new_states.append(kept)
        references.states[(record.kind, target.code)] = kept
    entry.outcome = outcome.outcome
    entry.detail = outcome.detail
    entry.opens = outcome.conflict
    entry.settles = outcome.settles
    return outcome


def _target(record: ChangedRecord, references: _References) -> Target | None:
    key = record.key.strip()
    if record.kind == "item":
        item = references.items.get(sku_key(key))
        return Target("item", item, item.sku) if item is not None else None
    if record.kind == "location":
        location = references.locations.get(key.lower())
        return Target("location", location, location.code) if location is not None else None
    if record.kind == "supplier":
        supplier = references.suppliers.get(key.lower())
        return Target("supplier", supplier, supplier.code) if supplier is not None else None
    return references.purchase_orders.get(key.lower())


async def _write_exceptions(
    session: AsyncSession, entries: list[_Entry], *, workspace_id: int, now: datetime
) -> tuple[list[int], list[int], list[int]]:
    """Open or resolve the exceptions the batch found; the last record of each fingerprint decides."""
    last: dict[str, _Entry] = {}
    for entry in entries:
        fingerprint = entry.opens.fingerprint if entry.opens is not None else entry.settles
        if fingerprint:
            last[fingerprint] = entry
    findings = [entry.opens for entry in last.values() if entry.opens is not None]
    settled = [fingerprint for fingerprint, entry in last.items() if entry.opens is None]

    live_ids: dict[str, int] = {}
    opened: list[int] = []
    updated: list[int] = []
    if findings:
        live_ids, opened, updated = await upsert_findings(session, workspace_id=workspace_id, findings=findings, now=now)
    resolved_ids = await resolve_fingerprints(session, workspace_id=workspace_id, fingerprints=settled, now=now) if settled else {}

    for entry in entries:
        fingerprint = entry.opens.fingerprint if entry.opens is not None else entry.settles
        if not fingerprint or (entry.opens is None) != (last[fingerprint].opens is None):
            # No exception, or a later record of this batch decided the other way.
            continue
        if entry.opens is not None:
            entry.exception_id = live_ids.get(fingerprint)
        else:
            entry.exception_id = resolved_ids.get(fingerprint)
            if entry.exception_id is not None:
                entry.detail += f" Resolved exception {entry.exception_id}."
    return opened, updated, sorted(set(resolved_ids.values()))


async def _write_snapshots(
    session: AsyncSession, entries: list[_Entry], *, workspace_id: int, source: str, batch_id: str, now: datetime
) -> None:
    # Only the last compared record per (kind, item, location) becomes current;
    # the current rows of earlier batches for those pairs stop being current.
    newest: dict[tuple[str, int, int], _Entry] = {}
    for entry in entries:
        if entry.columns.get("is_current"):
            newest[(entry.kind, entry.columns["item_id"], entry.columns.get("location_key", 0))] = entry
    for entry in entries:
        if entry.columns.get("is_current"):
            entry.columns["is_current"] = newest[(entry.kind, entry.columns["item_id"], entry.columns.get("location_key", 0))] is entry
    if newest:
        await session.execute(
            update(_snapshots)
            .where(
                _snapshots.c.workspace_id == workspace_id,
                _snapshots.c.is_current == bindparam("b_current"),
                _snapshots.c.record_kind == bindparam("b_kind"),
                _snapshots.c.source == source,
                _snapshots.c.item_id == bindparam("b_item"),
                _snapshots.c.location_key == bindparam("b_location"),
            )
            .values(is_current=False),
            [{"b_current": True, "b_kind": kind, "b_item": item, "b_location": location} for kind, item, location in newest],
        )

    rows = []
    for entry in entries:
        detail = entry.detail if len(entry.detail) <= _DETAIL_LENGTH else entry.detail[: _DETAIL_LENGTH - 1] + "…"
        payload = entry.raw if isinstance(entry.raw, dict) else {"record": entry.raw}
        text = canonical_json(payload)
        if len(text) > MAX_RECORD_JSON:
            payload = {"truncated": text[:MAX_RECORD_JSON]}
        rows.append(
            {
                "workspace_id": workspace_id,
                "batch_id": batch_id,
                "source": source,
                "external_id": entry.external_id,
                "record_kind": entry.kind,
                "payload": payload,
                "outcome": entry.outcome,
                "detail": detail,
                "received_at": now,
                "item_id": entry.columns.get("item_id"),
                "location_id": entry.columns.get("location_id"),
                "location_key": entry.columns.get("location_key", 0),
                "quantity": entry.columns.get("quantity"),
                "value": entry.columns.get("value"),
                "currency": entry.columns.get("currency", ""),
                "key": entry.columns.get("key", "")[:120],
                "version": entry.columns.get("version", ""),
                "record_id": entry.columns.get("record_id"),
                "is_current": bool(entry.columns.get("is_current", False)),
                "exception_id": entry.exception_id,
            }
        )
    # Snapshots feed the mismatch finder alone, and the ones made not current above share these items.
    touch_items(session, (row["item_id"] for row in rows), kinds=("mismatch",))
    await session.execute(insert(_snapshots), rows)

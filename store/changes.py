"""Record which items each write touched, so findings can be refreshed for those items only.

A write transaction collects what it changed in `session.info`:

- `touch_items` names items whose finder inputs (stock, reservations,
  purchase order lines, open purchase-order drafts, counts, snapshots, reorder
  rules, supplier items, the item record, receipts) changed. Store functions
  that write those rows call it, so no caller can forget. A write whose rows
  feed some finders only names them (`kinds`): open purchase-order drafts
  feed low stock alone and external snapshots feed mismatches alone, so a
  draft or a sync batch reruns those finders and no other.
- `touch_everything` marks the write as one that may change the findings of any item
  (suppliers, locations, policies, exchange rates).
- `item_scoped` is the action's promise that every finder input it changes is
  named by `touch_items` calls (possibly none). An action that never makes it
  is logged as `everything`, so an action nobody reviewed stays safe.

`store.freshness.note_change` bumps the change counter and calls
`log_change`, which writes one `change_log` row for the new counter value.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.errors import InvalidInputError
from store.models import ChangeLogEntry, Item, PurchaseOrder, PurchaseOrderLine

# The exception kinds a finder computes, each of which can be named by `touch_items`.
FINDER_KINDS = frozenset({"low_stock", "supplier_delay", "short_receiving", "count_drift", "mismatch"})

_LOG = ChangeLogEntry.__table__
_INFO_KEY = "order3.changes"


@dataclass
class TouchedItems:
    """The declarations one write transaction has made so far about the finder inputs it changed."""

    #: Items whose inputs to every finder may have changed.
    item_ids: set[int] = field(default_factory=set)
    #: Per finder kind, items whose inputs to that finder alone changed.
    kind_item_ids: dict[str, set[int]] = field(default_factory=dict)
    everything: bool = False
    item_scoped: bool = False

    def for_kind(self, kind: str) -> frozenset[int]:
        """Return the items whose inputs to the finder of `kind` this transaction changed."""
        return frozenset(self.item_ids | self.kind_item_ids.get(kind, set()))


def touched(session: AsyncSession) -> TouchedItems:
    """Return the declarations of the session's current transaction, creating them on first use.

    A new session starts empty, and `Database.run_write` opens a new session
    for every attempt, so a retried transaction does not inherit the touches
    of the attempt that was rolled back.
    """
    declared = session.info.get(_INFO_KEY)
    if declared is None:
        declared = session.info[_INFO_KEY] = TouchedItems()
    return declared


def touch_items(session: AsyncSession, item_ids: Iterable[int | None], *, kinds: Collection[str] | None = None) -> None:
    """Record that this transaction changed finder inputs of `item_ids` (None entries are skipped).

    With `kinds`, the rows changed feed only the finders of those exception
    kinds, and the others need not rerun these items. Without it, every
    finder may have to.

    Raises:
        InvalidInputError: If `kinds` is empty or names a kind no finder computes.
    """
    ids = {item_id for item_id in item_ids if item_id is not None}
    declared = touched(session)
    if kinds is None:
        declared.item_ids.update(ids)
        return
    unknown = sorted(set(kinds) - FINDER_KINDS)
    if unknown or not kinds:
        raise InvalidInputError(
            f"Invalid finder kinds {sorted(kinds)!r} for touch_items: name one or more of {sorted(FINDER_KINDS)}, "
            "or pass kinds=None when the rows feed every finder."
        )
    for kind in kinds:
        declared.kind_item_ids.setdefault(kind, set()).update(ids)


def touch_everything(session: AsyncSession) -> None:
    """Record that this transaction may change the findings of any item."""
    touched(session).everything = True


def item_scoped(session: AsyncSession) -> None:
    """Declare that every finder input the running action changes is named by `touch_items` calls."""
    touched(session).item_scoped = True


async def touch_order_lines(session: AsyncSession, *, purchase_order_id: int) -> None:
    """Record that this transaction changed something every line of a purchase order depends on (its status, dates, supplier)."""
    item_ids = await session.execute(
        select(PurchaseOrderLine.item_id).where(PurchaseOrderLine.purchase_order_id == purchase_order_id)
    )
    touch_items(session, item_ids.scalars().all())


async def touch_record(session: AsyncSession, record: object) -> None:
    """Record a change to an item, purchase order, supplier or location record.

    An item touches itself and a purchase order touches the items of its
    lines. Any other record (a supplier, a location) can feed the findings of
    many items, so it touches everything.
    """
    if isinstance(record, Item):
        touch_items(session, [record.id])
    elif isinstance(record, PurchaseOrder):
        await touch_order_lines(session, purchase_order_id=record.id)  # type: ignore[arg-type]
    else:
        touch_everything(session)


async def log_change(session: AsyncSession, *, workspace_id: int, version: int) -> None:
    """Write the change_log row for counter value `version` from the transaction's declarations so far."""
    declared = touched(session)
    await session.execute(
        insert(_LOG).values(
            workspace_id=workspace_id,
            version=version,
            item_ids=sorted(declared.item_ids),
            kind_item_ids={
                kind: sorted(ids - declared.item_ids)
                for kind, ids in sorted(declared.kind_item_ids.items())
                if ids - declared.item_ids
            },
            everything=declared.everything or not declared.item_scoped,
        )
    )


@dataclass(frozen=True)
class LoggedChanges:
    """The items a run of writes touched, for every finder and per finder kind."""

    item_ids: frozenset[int]
    kind_item_ids: Mapping[str, frozenset[int]]

    def for_kind(self, kind: str | None) -> frozenset[int]:
        """Return the items whose inputs to the finder of `kind` changed, or to any finder when `kind` is None."""
        if kind is None:
            return self.item_ids.union(*self.kind_item_ids.values())
        return self.item_ids | self.kind_item_ids.get(kind, frozenset())


async def logged_changes_since(
    session: AsyncSession, *, workspace_id: int, after_version: int, through_version: int
) -> LoggedChanges | None:
    """Return what the writes that produced counter values after_version+1 .. through_version touched.

    Returns None when any of those writes may have changed everything, or when
    a value in the range has no row: it was pruned, or an older release wrote
    it. The caller must then refresh every item. An empty range touched nothing.
    """
    if through_version <= after_version:
        return LoggedChanges(frozenset(), {})
    rows = (
        await session.execute(
            select(_LOG.c.version, _LOG.c.item_ids, _LOG.c.kind_item_ids, _LOG.c.everything).where(
                _LOG.c.workspace_id == workspace_id,
                _LOG.c.version > after_version,
                _LOG.c.version <= through_version,
            )
        )
    ).all()
    if len(rows) != through_version - after_version:
        return None
    item_ids: set[int] = set()
    kind_item_ids: dict[str, set[int]] = {}
    for _version, logged_ids, logged_kinds, everything in rows:
        if everything:
            return None
        item_ids.update(int(item_id) for item_id in logged_ids)
        for kind, ids in (logged_kinds or {}).items():
            kind_item_ids.setdefault(kind, set()).update(int(item_id) for item_id in ids)
    return LoggedChanges(frozenset(item_ids), {kind: frozenset(ids) for kind, ids in kind_item_ids.items()})


async def changed_items_since(
    session: AsyncSession, *, workspace_id: int, after_version: int, through_version: int, kind: str | None = None
) -> frozenset[int] | None:
    """Return the items touched by the writes that produced counter values after_version+1 .. through_version.

    With `kind`, only the items whose inputs to that kind's finder changed.
    Returns None when the caller must refresh every item (see
    `logged_changes_since`). An empty range returns an empty set.
    """
    logged = await logged_changes_since(
        session, workspace_id=workspace_id, after_version=after_version, through_version=through_version
    )
    return None if logged is None else logged.for_kind(kind)


async def prune_change_log(session: AsyncSession, *, workspace_id: int, through_version: int) -> int:
    """Delete the workspace's change_log rows up to and including `through_version` and return how many were deleted.

    A finder refresh calls it with the oldest version every kind has read, so
    the log holds only the writes some kind has yet to catch up with.
    """
    result = await session.execute(
        delete(_LOG).where(_LOG.c.workspace_id == workspace_id, _LOG.c.version <= through_version)
    )
    return result.rowcount or 0

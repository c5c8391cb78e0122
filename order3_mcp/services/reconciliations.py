"""Reconciliation drafts: one step that settles a mismatch or a sync conflict with an integration.

For a mismatch between an external snapshot and Order3, the agent names the
exception, the action, and both figures it saw: the snapshot's reported figure
and Order3's own. The draft is rejected when either figure differs from the
current one, and execution fails when either changed after the draft, so a
person always approves the numbers that are acted on. Two actions exist:

- `adjust_ours`: change on hand at the exception's location by
  reported − ours with an adjustment movement, so Order3 matches the channel.
  Only for channel quantities: an accounting value can differ through the unit
  cost rather than the quantity, so stock is never moved to match one.
- `accept_ours`: Order3's figure is right. The snapshot is acknowledged and no
  longer compared, so the mismatch resolves. The source's next snapshot for
  the same item and location is compared again.

Sync conflicts use the same two actions on a record's fields, with versions in
place of figures; see `order3_mcp.services.conflict_reconciliations`.
"""

from __future__ import annotations

import decimal
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from order3_mcp.schemas import DraftDetail
from order3_mcp.services.conflict_reconciliations import (
    PreparedStep,
    prepare_conflict_step,
)
from order3_mcp.services.drafts import (
    _check_rationale,
    _policy_fields,
    approval_owner,
    draft_detail,
)
from order3_mcp.services.exception_links import check_text, load_linkable
from order3_mcp.services import policy_routing
from policies import DraftFacts
from store import drafts, finders
from store.changes import item_scoped
from store.codes import find_by_code
from store.errors import InvalidInputError, NotFoundError
from store.finders.mismatches import Measurement, tolerance_for
from store.idempotency import decimal_text
from store.models import Bin, ExceptionRecord, ExternalSnapshot, Item, Location
from store.reconciliations import current_snapshot, measure, on_hand_at
from store.stock import Place
from store.types import MAX_FIXED, from_scaled, to_scaled

RECONCILIATION_ACTIONS = ("adjust_ours", "accept_ours")
MAX_TITLE = 200

# A quantity times a unit cost has up to 24 decimal places and 38 significant
# digits, more than the default Decimal context keeps.
_EXACT = decimal.Context(prec=60)


def figure_name(record_kind: str) -> str:
    """Return what Order3's side of a measured record kind is called."""
    return "available quantity" if record_kind == "channel_quantity" else "inventory value"


def where_text(location_code: str) -> str:
    """Return "at WH1", or "across all locations" for a workspace-wide figure."""
    return f"at {location_code}" if location_code else "across all locations"


def value_change(quantity: Decimal, unit_cost: Decimal) -> Decimal:
    """Return |quantity| × unit cost rounded half up to six decimal places, the precision values are stored at."""
    exact = _EXACT.multiply(abs(quantity), unit_cost)
    rounded = exact.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP, context=_EXACT)
    # Out-of-range values are returned as they are, for the caller to reject.
    return from_scaled(to_scaled(rounded)) if rounded <= MAX_FIXED else rounded


async def _find_bin(session: AsyncSession, *, location: Location, code: str) -> Bin:
    found = await find_by_code(session, Bin, Bin.code, code, Bin.location_id == location.id)
    if found is None:
        raise NotFoundError(
            f"Bin {code.strip()[:60]!r} does not exist at {location.code}; list_locations shows its bins, "
            "or leave bin empty to adjust the stock held at the location itself."
        )
    return found


def _check_kind(record: ExceptionRecord) -> None:
    if record.kind in ("mismatch", "sync_conflict"):
        return
    raise InvalidInputError(
        f"Exception {record.id} is a {record.kind} exception; reconciliation drafts settle mismatch and sync_conflict "
        f"exceptions (its suggested draft is {record.suggested_draft_kind or 'none'})."
    )


def _check_seen(record: ExceptionRecord, measurement: Measurement, *, reported: Decimal, ours: Decimal) -> None:
    """Reject a draft whose figures are not the current ones, naming both."""
    where = where_text(measurement.location_code)
    if reported != measurement.reported:
        raise InvalidInputError(
            f"reported {reported} is not what {measurement.source} reports now for {measurement.sku} {where}: its "
            f"current snapshot says {measurement.reported}. Read exception {record.id} again with get_exception "
            "and draft from its current figures."
        )
    if ours != measurement.ours:
        raise InvalidInputError(
            f"ours {ours} is not Order3's current {figure_name(measurement.record_kind)} of {measurement.sku} {where}: "
            f"it is {measurement.ours}. Read exception {record.id} again with get_exception and draft from its "
            "current figures."
        )


async def draft_reconciliation(
    app: Order3,
    caller: Caller,
    *,
    exception_id: int,
    action: str,
    reported: Decimal | None,
    ours: Decimal | None,
    our_version: str = "",
    their_version: str = "",
    bin: str,
    rationale: str,
    title: str,
    idempotency_key: str | None,
    request_id: str = "",
) -> DraftDetail:
    """Prepare one reconciliation step for a mismatch or sync conflict exception; nothing changes until a person approves it.

    A mismatch step takes the two figures the agent saw (`reported`, `ours`),
    and a sync conflict step the two versions (`our_version`, `their_version`).
    """

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        clean_rationale = _check_rationale(rationale)
        check_text("rationale", rationale, max_length=4000, single_line=False, example="why this step is right")
        if title:
            check_text("title", title, max_length=MAX_TITLE, single_line=False, example="a short title, or leave it empty")
        if action not in RECONCILIATION_ACTIONS:
            raise InvalidInputError(
                f"action {action[:40]!r} is unknown; use adjust_ours (make Order3 match the source) or accept_ours "
                "(keep Order3's figure or values)."
            )

        record = await finders.get_exception(session, workspace_id=caller.workspace_id, exception_id=exception_id)
        _check_kind(record)
        await load_linkable(session, caller, [exception_id], unrelated=lambda _record: "")
        if record.kind == "sync_conflict":
            prepared = await prepare_conflict_step(
                session, caller, record, action=action, our_version=our_version, their_version=their_version,
                reported=reported, ours=ours, bin=bin,
            )
        else:
            if our_version.strip() or their_version.strip():
                raise InvalidInputError(
                    f"our_version and their_version apply to sync conflicts; for mismatch {record.id} pass reported "
                    "and ours from its evidence instead."
                )
            if reported is None or ours is None:
                raise InvalidInputError(
                    f"reported and ours are required for mismatch {record.id}; copy them from the exception evidence."
                )
            prepared = await _prepare_mismatch_step(app, session, caller, record, action=action, reported=reported, ours=ours, bin_code=bin)

        route = await policy_routing.route_draft(
            app,
            session,
            caller,
            DraftFacts(kind="reconciliation", value=prepared.value, location_codes=prepared.location_codes),
        )
        draft = await drafts.create_draft(
            session,
            workspace_id=caller.workspace_id,
            kind="reconciliation",
            title=title.strip() or prepared.title[:MAX_TITLE],
            rationale=clean_rationale,
            payload=prepared.payload,
            affected=prepared.affected,
            created_by_kind=caller.principal_kind,
            created_by=caller.principal,
            created_by_token_id=caller.token_id,
            on_behalf_of=caller.on_behalf_of,
            estimated_value=prepared.value,
            currency=caller.base_currency,
            idempotency_key=idempotency_key,
            exception_ids=[record.id],  # type: ignore[list-item]
            **_policy_fields(app, route.rule, caller, policy=route.policy),
        )
        await policy_routing.record_route(session, draft=draft, route=route, now=app.clock())
        summary = (
            f"Drafted reconciliation draft {draft.id} for exception {record.id} ({action}, value change "
            f"{prepared.value} {caller.base_currency}); {approval_owner(draft)}."
        )
        return Outcome(
            await draft_detail(session, draft),
            summary,
            affected=[{"kind": "draft", "id": draft.id}, {"kind": "exception", "id": record.id}, *prepared.affected],
            draft_id=draft.id,
        )

    arguments = {
        "exception_id": exception_id,
        "action": action,
        "reported": None if reported is None else decimal_text(reported),
        "ours": None if ours is None else decimal_text(ours),
        "our_version": our_version,
        "their_version": their_version,
        "bin": bin,
        "rationale": rationale,
        "title": title,
    }
    return await app.run(
        caller,
        "draft_reconciliation",
        arguments,
        work,
        result_type=DraftDetail,
        idempotency_key=idempotency_key,
        request_id=request_id,
    )


async def _prepare_mismatch_step(
    app: Order3,
    session: AsyncSession,
    caller: Caller,
    record: ExceptionRecord,
    *,
    action: str,
    reported: Decimal,
    ours: Decimal,
    bin_code: str,
) -> PreparedStep:
    """Check a step for a mismatch against the current snapshot and stock, and return what its draft is created from."""
    source = str(record.evidence.get("source", ""))
    record_kind = str(record.evidence.get("record_kind", ""))
    item = (await session.execute(select(Item).where(Item.id == record.item_id))).scalar_one()
    location = await session.get(Location, record.location_id) if record.location_id is not None else None

    snapshot = await current_snapshot(
        session, workspace_id=caller.workspace_id, source=source, record_kind=record_kind,
        item_id=item.id, location_id=record.location_id,  # type: ignore[arg-type]
    )
    if snapshot is None:
        raise InvalidInputError(
            f"Exception {record.id} has no current {source} snapshot to reconcile: it was acknowledged or "
            "replaced. Run find_mismatches to see whether the mismatch is still there."
        )
    measurement = await measure(session, snapshot=snapshot, item=item, location=location)
    _check_seen(record, measurement, reported=reported, ours=ours)
    tolerances = app.policy.tolerances
    tolerance = tolerance_for(record_kind, qty_tol=tolerances.mismatch_qty_abs, value_tol=tolerances.mismatch_value_abs)
    if abs(measurement.difference) <= tolerance:
        raise InvalidInputError(
            f"{source} and Order3 now agree on {item.sku} {where_text(measurement.location_code)} (difference "
            f"{measurement.difference}, tolerance {tolerance}); nothing needs reconciling, and find_mismatches "
            f"resolves exception {record.id}."
        )

    adjustment = Decimal(0)
    value = Decimal(0)
    place_bin: Bin | None = None
    if action == "adjust_ours":
        place_bin = await _check_adjustment(session, caller, record, item=item, location=location, bin_code=bin_code)
        adjustment = measurement.difference
        if adjustment < 0:
            place = Place(location.id, place_bin.id if place_bin else None)  # type: ignore[union-attr,arg-type]
            at_place = await on_hand_at(session, workspace_id=caller.workspace_id, item_id=item.id, place=place)  # type: ignore[arg-type]
            if at_place < -adjustment:
                spot = f"{location.code} bin {place_bin.code}" if place_bin else f"{location.code} outside its bins"  # type: ignore[union-attr]
                raise InvalidInputError(
                    f"{item.sku} has {at_place} on hand at {spot}, so removing {-adjustment} would make stock "
                    "negative; pass bin=CODE of a bin that holds the stock, or use accept_ours."
                )
        value = value_change(adjustment, item.unit_cost)
        if value > MAX_FIXED:
            raise InvalidInputError(f"The value change {value} is out of range; check the figures of exception {record.id}.")
    elif bin_code.strip():
        raise InvalidInputError("bin applies only to adjust_ours; leave it empty for accept_ours, which moves no stock.")

    step = f"adjust ours by {adjustment:+}" if action == "adjust_ours" else "accept ours"
    affected: list[dict[str, Any]] = [{"kind": "item", "id": item.id}, {"kind": "external_snapshot", "id": snapshot.id}]
    if location is not None:
        affected.insert(1, {"kind": "location", "id": location.id})
    return PreparedStep(
        payload=_payload(
            record, snapshot, measurement, action=action, item=item, location=location, place_bin=place_bin,
            adjustment=adjustment, value=value, tolerance=tolerance,
        ),
        value=value,
        title=f"Reconcile {item.sku} {where_text(measurement.location_code)} with {source}: {step}",
        location_codes=(location.code,) if location is not None else (),
        affected=affected,
    )


async def _check_adjustment(
    session: AsyncSession, caller: Caller, record: ExceptionRecord, *, item: Item, location: Location | None, bin_code: str
) -> Bin | None:
    """Check that stock can be adjusted to the external figure, and return the bin to adjust, if any."""
    if record.evidence.get("record_kind") != "channel_quantity":
        raise InvalidInputError(
            f"Exception {record.id} compares an accounting value, which can differ through the unit cost rather "
            "than the quantity, so Order3 does not move stock to match it; use action accept_ours, or correct "
            "the stock with an adjustment draft."
        )
    if location is None:
        raise InvalidInputError(
            f"Exception {record.id} compares {item.sku} across all locations, so there is no one location to adjust; "
            "use accept_ours, or correct the stock at a location with an adjustment draft."
        )
    if not item.active:
        raise InvalidInputError(f"Item {item.sku} is inactive, so its stock is not adjusted; use accept_ours.")
    if item.currency != caller.base_currency:
        raise InvalidInputError(
            f"Item {item.sku} is costed in {item.currency} but the workspace base currency is {caller.base_currency}, "
            "and reconciliations convert no currencies, so the value change cannot be priced for approval; use accept_ours, "
            "or draft an adjustment, which converts with the workspace's exchange rate."
        )
    if not bin_code.strip():
        return None
    return await _find_bin(session, location=location, code=bin_code)


def _payload(
    record: ExceptionRecord,
    snapshot: ExternalSnapshot,
    measurement: Measurement,
    *,
    action: str,
    item: Item,
    location: Location | None,
    place_bin: Bin | None,
    adjustment: Decimal,
    value: Decimal,
    tolerance: Decimal,
) -> dict[str, Any]:
    """Return the payload an approval binds to: the step and both figures it was drafted from."""
    return {
        "exception_kind": "mismatch",
        "action": action,
        "exception_id": record.id,
        "fingerprint": record.fingerprint,
        "source": measurement.source,
        "record_kind": measurement.record_kind,
        "snapshot_id": snapshot.id,
        "external_id": snapshot.external_id,
        "batch_id": snapshot.batch_id,
        "received_at": snapshot.received_at.isoformat(),
        "sku": item.sku,
        "item_id": item.id,
        "location_code": location.code if location else "",
        "location_id": location.id if location else None,
        "bin_code": place_bin.code if place_bin else "",
        "bin_id": place_bin.id if place_bin else None,
        "reported": str(measurement.reported),
        "ours": str(measurement.ours),
        "on_hand": str(measurement.on_hand),
        "reserved": str(measurement.reserved),
        "difference": str(measurement.difference),
        "tolerance": str(tolerance),
        "adjustment": str(adjustment),
        "unit_cost": str(item.unit_cost),
        "currency": item.currency,
        "value_change": str(value),
    }

"""Draft services: preparing drafts, and reading them back."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from order3_mcp.inputs import PurchaseLine
from order3_mcp.pagination import check_limit, decode_cursor, render_page
from order3_mcp.schemas import DraftDetail, DraftOut, DraftPage
from order3_mcp.services import policy_routing
from order3_mcp.services.exception_links import load_linkable
from policies import DraftFacts, Policy, Rule
from store import catalog, drafts
from store import rates as store_rates
from store.activity import canonical_json
from store.changes import item_scoped
from store.errors import InvalidInputError
from store.idempotency import normalized
from store.models import (
    DRAFT_KINDS,
    DRAFT_STATUSES,
    Approval,
    Draft,
    ExceptionRecord,
    Item,
    Supplier,
    SupplierItem,
)
from store.types import from_scaled, to_scaled

MAX_LINES = 100
MIN_RATIONALE = 10


def approval_owner(draft: Draft) -> str:
    """Describe who must approve a draft, or why no one can."""
    if not draft.policy_rule:
        return "No approval rule matches this draft, so no one can approve it (deny by default)."
    roles = draft.approval_role.replace(",", " or ")
    plural = "approver" if draft.approvals_required == 1 else "distinct approvers"
    return f"{draft.approvals_required} {plural} with role {roles} (policy rule {draft.policy_rule})"


def draft_out(draft: Draft) -> dict[str, Any]:
    """Return the DraftOut fields of a draft row."""
    return {
        "draft_id": draft.id,
        "kind": draft.kind,
        "title": draft.title,
        "status": draft.status,
        "rationale": draft.rationale,
        "created_by": f"{draft.created_by_kind}:{draft.created_by}",
        "approval_owner": approval_owner(draft),
        "policy_rule": draft.policy_rule,
        "approvals_required": draft.approvals_required if draft.policy_rule else 0,
        "approver_roles": [role for role in draft.approval_role.split(",") if role],
        "estimated_value": str(draft.estimated_value),
        "currency": draft.currency,
        "payload_hash": draft.payload_hash,
        "created_at": draft.created_at.isoformat(),
        "result": ", ".join(f"{key}={value}" for key, value in sorted(draft.result.items())),
    }


async def draft_detail(session: AsyncSession, draft: Draft, *, new_links: list[int] | None = None) -> DraftDetail:
    """Build the full view of a draft with its links and decisions.

    For a draft created in this transaction, `new_links` are the exceptions it
    was linked to: it has no decisions yet, so nothing needs reading back.
    """
    if new_links is not None:
        decisions: list[Approval] = []
        links = sorted(new_links)
    else:
        decisions = await drafts.draft_approvals(session, draft_id=draft.id)  # type: ignore[arg-type]
        links = await drafts.linked_exception_ids(session, draft_id=draft.id)  # type: ignore[arg-type]
    return DraftDetail(
        **draft_out(draft),
        payload_json=canonical_json(draft.payload),
        exception_ids=links,
        approvals=[
            f"{d.decision} by {d.approver} ({d.role}) at {d.created_at.isoformat()}"
            + (f": {d.reason}" if d.reason else "")
            for d in decisions
        ],
        approvals_recorded=_approvals_counted(draft, decisions),
        expires_at=draft.expires_at.isoformat() if draft.expires_at else None,
        failure_reason=draft.failure_reason,
    )


def _approvals_counted(draft: Draft, decisions: list[Approval]) -> int:
    """Count distinct approvers of the current payload in a role the draft's rule accepts.

    An approval given before the draft was routed to a rule needing other roles
    stays on record but no longer counts, as in policies.decide_approval.
    """
    roles = {role for role in draft.approval_role.split(",") if role}
    return len(
        {
            d.approver.strip().casefold()
            for d in decisions
            if d.decision == "approved" and d.payload_hash == draft.payload_hash and (not roles or d.role in roles)
        }
    )


def stored_value(value: Decimal) -> Decimal:
    """Round a money value to the six decimal places the draft keeps.

    A quantity times a unit price can carry twelve decimal places.

    Raises:
        InvalidInputError: If the value is too large to store.
    """
    try:
        return from_scaled(to_scaled(value.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)))
    except ValueError as exc:
        raise InvalidInputError(f"The draft's value {value:.2f} is too large to store; split the work into smaller drafts.") from exc


def _check_rationale(rationale: str) -> str:
    clean = rationale.strip()
    if len(clean) < MIN_RATIONALE:
        raise InvalidInputError(
            f"Rationale {rationale!r} is too short; say in a sentence why this draft is needed "
            "(for example which exception it answers and the numbers behind it)."
        )
    return clean


async def _live_exceptions(
    session: AsyncSession,
    caller: Caller,
    exception_ids: list[int],
    *,
    item_ids: set[int],
    supplier_id: int | None,
    verb: str = "order",
) -> list[int]:
    """Check that each linked exception is live and concerns this draft, and return their ids (see `_live_records`)."""
    records = await _live_records(session, caller, exception_ids, item_ids=item_ids, supplier_id=supplier_id, verb=verb)
    return [record.id for record in records]  # type: ignore[misc]


async def _live_records(
    session: AsyncSession,
    caller: Caller,
    exception_ids: list[int],
    *,
    item_ids: set[int],
    supplier_id: int | None,
    verb: str = "order",
) -> list[ExceptionRecord]:
    """Check that each linked exception is live and concerns this draft, and return the records.

    An exception about an item must name one of the draft's items; one without
    an item (a supplier-level problem) must name the draft's supplier, so a draft
    without a supplier may link item exceptions only. Otherwise a draft could move
    any exception out of the open list. `verb` names what the draft does to its
    items, for the error message ("order", "transfer", "adjust").
    """

    def unrelated(record: ExceptionRecord) -> str:
        if record.item_id is not None:
            related = record.item_id in item_ids
        else:
            related = supplier_id is not None and record.supplier_id == supplier_id
        if related:
            return ""
        subject = f"item {record.sku}" if record.item_id is not None else f"supplier {record.supplier_code or '-'}"
        return f"is about {subject}, which this draft does not {verb}"

    return await load_linkable(session, caller, exception_ids, unrelated=unrelated)


def _low_stock_destinations(records: list[ExceptionRecord]) -> dict[int, set[str]]:
    """Return, per item, the location codes of its linked low-stock exceptions; "" stands for a workspace-wide one."""
    destinations: dict[int, set[str]] = {}
    for record in records:
        if record.kind == "low_stock" and record.item_id is not None:
            destinations.setdefault(record.item_id, set()).add(record.location_code)
    return destinations


def _line_destinations(lines: list[PurchaseLine], items: list[Item], low_at: dict[int, set[str]]) -> list[str]:
    """Return each line's destination code: its own, else the location of its linked low-stock exception.

    A line without a location goes to the location of its item's linked
    low-stock exception, leaving out locations that other lines of the item
    name. The draft then counts toward that location's stock position, and
    the finder does not suggest the same order again. When other lines name
    every such location, the line may stay unplaced only if the item also
    has a linked workspace-wide low-stock exception, which counts lines
    wherever they go.

    Raises:
        InvalidInputError: If a line without a location could go to several such locations
            or to none, or two lines order one item for the same destination.
    """
    named: dict[int, set[str]] = {}
    for line, item in zip(lines, items, strict=True):
        if line.location.strip():
            named.setdefault(item.id, set()).add(line.location.strip().casefold())  # type: ignore[arg-type]
    destinations: list[str] = []
    seen: set[tuple[int, str]] = set()
    for line, item in zip(lines, items, strict=True):
        destination = line.location.strip()
        taken_from_exception = False
        linked = low_at.get(item.id, set())  # type: ignore[arg-type]
        linked_places = sorted(place for place in linked if place)
        if not destination and linked_places:
            named_by_others = named.get(item.id, set())  # type: ignore[arg-type]
            places = [place for place in linked_places if place.casefold() not in named_by_others]
            if len(places) > 1:
                raise InvalidInputError(
                    f"Item {item.sku} is low at {', '.join(places)} in the linked exceptions, and a line of it "
                    "names no location; give that line a location, or draft one line per location."
                )
            if places:
                destination, taken_from_exception = places[0], True
            elif "" not in linked:
                raise InvalidInputError(
                    f"Item {item.sku} is low at {', '.join(linked_places)} in the linked exceptions, which other "
                    "lines already name, and another line of it names no location; give that line a location, "
                    "or merge it into the line for the same location."
                )
        key = (item.id, destination.casefold())
        if key in seen:
            where = f"destination {destination}" if destination else "no destination"
            source = " (taken from its linked low-stock exception)" if taken_from_exception else ""
            raise InvalidInputError(f"Item {item.sku} appears twice for {where}{source}; merge the lines into one.")
        seen.add(key)  # type: ignore[arg-type]
        destinations.append(destination)
    return destinations


def _policy_fields(app: Order3, rule: Rule | None, caller: Caller, *, policy: Policy | None = None) -> dict[str, Any]:
    # `policy` is the workspace's active policy that `rule` came from; see policy_routing.route_draft.
    return policy_routing.policy_fields(policy or app.policy, rule, now=app.clock())


def _unit_price(offer: SupplierItem, breaks: list[Any], quantity: Decimal, item: Item) -> tuple[Decimal, str, str]:
    """Return the unit price for `quantity`, its currency and where it came from, so approvers can tell a quote from a guess."""
    # The largest price break at or below the quantity applies.
    applicable = [b for b in breaks if b.quantity <= quantity]
    if applicable:
        return applicable[-1].unit_price, applicable[-1].currency, f"supplier price break from {applicable[-1].quantity}"
    if offer.unit_price is not None:
        return offer.unit_price, offer.currency, "supplier item price"
    return item.unit_cost, item.currency, "item unit cost: the supplier has no price on file, so this is an estimate"


def _check_pack(sku: str, supplier: Supplier, offer: SupplierItem, quantity: Decimal) -> None:
    if quantity < offer.min_order_qty:
        raise InvalidInputError(
            f"Quantity {quantity} of {sku} is below {supplier.code}'s minimum order quantity of "
            f"{offer.min_order_qty}; order at least {offer.min_order_qty}."
        )
    if offer.pack_size is not None and offer.pack_size > 0:
        packs = quantity / offer.pack_size
        if packs != packs.to_integral_value():
            whole = int(packs.to_integral_value(rounding="ROUND_CEILING"))
            raise InvalidInputError(
                f"Quantity {quantity} of {sku} is not a whole number of {supplier.code} packs of {offer.pack_size}; "
                f"order {whole * offer.pack_size} ({whole} packs) instead."
            )


async def draft_purchase_order(
    app: Order3,
    caller: Caller,
    *,
    supplier: str,
    lines: list[PurchaseLine],
    rationale: str,
    title: str,
    exception_ids: list[int],
    idempotency_key: str | None,
    request_id: str = "",
) -> DraftDetail:
    """Prepare a purchase order draft for approval; nothing is ordered until a person approves."""

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        clean_rationale = _check_rationale(rationale)
        if not lines:
            raise InvalidInputError("A purchase order draft needs at least one line; pass lines=[{sku, quantity}].")
        if len(lines) > MAX_LINES:
            raise InvalidInputError(f"{len(lines)} lines is too many for one draft; split it into drafts of at most {MAX_LINES}.")

        items = [await catalog.get_item_by_sku(session, workspace_id=caller.workspace_id, sku=line.sku) for line in lines]
        for item in items:
            if not item.active:
                raise InvalidInputError(f"Item {item.sku} is inactive and cannot be ordered; reactivate it or remove the line.")

        if supplier.strip():
            chosen = await catalog.get_supplier_by_code(session, workspace_id=caller.workspace_id, code=supplier)
        else:
            offers = await catalog.supplier_items_for_item(session, workspace_id=caller.workspace_id, item_id=items[0].id)  # type: ignore[arg-type]
            if not offers:
                raise InvalidInputError(f"Item {items[0].sku} has no supplier offer; pass supplier=CODE of one that sells it.")
            chosen = offers[0][1]
        if not chosen.active:
            raise InvalidInputError(f"Supplier {chosen.code} is inactive; choose another supplier.")

        linked_records = await _live_records(
            session, caller, exception_ids, item_ids={item.id for item in items}, supplier_id=chosen.id  # type: ignore[misc]
        )
        linked = [record.id for record in linked_records]
        destinations = _line_destinations(lines, items, _low_stock_destinations(linked_records))

        payload_lines: list[dict[str, Any]] = []
        total = Decimal(0)
        location_codes: list[str] = []
        currency = caller.base_currency
        order_currency = ""
        rates: dict[str, store_rates.RateInUse] | None = None
        rates_used: dict[str, store_rates.RateInUse] = {}
        for line, item, destination in zip(lines, items, destinations, strict=True):
            offers = await catalog.supplier_items_for_item(session, workspace_id=caller.workspace_id, item_id=item.id)  # type: ignore[arg-type]
            match = [offer for offer, offer_supplier in offers if offer_supplier.id == chosen.id]
            if not match:
                others = ", ".join(sorted({s.code for _, s in offers})) or "none"
                raise InvalidInputError(
                    f"Supplier {chosen.code} does not offer item {item.sku}; suppliers that do: {others}."
                )
            offer = match[0]
            _check_pack(item.sku, chosen, offer, line.quantity)
            breaks = await catalog.price_breaks(session, supplier_item_id=offer.id)  # type: ignore[arg-type]
            price, price_currency, price_source = _unit_price(offer, breaks, line.quantity, item)
            if price <= 0:
                # A line valued at 0 would route the whole order to the smallest approval threshold.
                raise InvalidInputError(
                    f"Item {item.sku} has no price from {chosen.code} and no unit cost, so the order cannot be valued "
                    "for approval; record the supplier's price or the item's unit cost first."
                )
            # One purchase order has one currency: the first line's price decides it.
            order_currency = order_currency or price_currency
            if price_currency != order_currency:
                raise InvalidInputError(
                    f"Line {item.sku} is priced in {price_currency} but earlier lines in {order_currency}; a purchase "
                    f"order has one currency, so draft the {price_currency} lines separately."
                )
            location_id = None
            location_code = ""
            if destination:
                place = await catalog.get_location_by_code(session, workspace_id=caller.workspace_id, code=destination)
                if place.kind == "transit":
                    raise InvalidInputError(
                        f"Location {place.code} holds stock in transit between locations; deliver {item.sku} to a "
                        "warehouse location instead."
                    )
                location_id, location_code = place.id, place.code
                location_codes.append(place.code)
            if rates is None and price_currency != caller.base_currency:
                rates = await store_rates.rates_in_use(session, workspace_id=caller.workspace_id)
            line_value, used = store_rates.to_base(
                line.quantity * price,
                price_currency,
                base_currency=caller.base_currency,
                rates=rates or {},
                what=f"The price of {item.sku} from {chosen.code}",
            )
            if used is not None:
                rates_used[used.currency] = used
            total += line_value
            payload_lines.append(
                {
                    "sku": item.sku,
                    "item_id": item.id,
                    "supplier_item_id": offer.id,
                    "supplier_sku": offer.supplier_sku,
                    "quantity": str(line.quantity),
                    "unit_price": str(price),
                    "price_source": price_source,
                    "location_code": location_code,
                    "location_id": location_id,
                }
            )

        total = stored_value(total)
        earlier_spend = await policy_routing.supplier_day_spend(
            session, workspace_id=caller.workspace_id, timezone=caller.timezone, supplier_id=chosen.id,  # type: ignore[arg-type]
            moment=app.clock(), for_new_draft=True,
        )
        facts = DraftFacts(
            kind="purchase_order",
            value=total,
            supplier_code=chosen.code,
            location_codes=tuple(location_codes),
            supplier_day_spend=earlier_spend,
        )
        route = await policy_routing.route_draft(app, session, caller, facts)
        # Line prices stay in the order's currency; the draft's value is in the base currency.
        payload = {"supplier_code": chosen.code, "supplier_id": chosen.id, "currency": order_currency, "lines": payload_lines}
        if rates_used:
            payload["exchange_rates"] = {code: used.as_json() for code, used in sorted(rates_used.items())}
        draft = await drafts.create_draft(
            session,
            workspace_id=caller.workspace_id,
            kind="purchase_order",
            title=title.strip() or f"Purchase {len(lines)} line{'s' if len(lines) != 1 else ''} from {chosen.code}",
            rationale=clean_rationale,
            payload=payload,
            affected=[{"kind": "supplier", "id": chosen.id}] + [{"kind": "item", "id": item.id} for item in items],
            created_by_kind=caller.principal_kind,
            created_by=caller.principal,
            created_by_token_id=caller.token_id,
            on_behalf_of=caller.on_behalf_of,
            estimated_value=total,
            currency=currency,
            idempotency_key=idempotency_key,
            exception_ids=linked,
            created_at=app.clock(),
            **_policy_fields(app, route.rule, caller, policy=route.policy),
        )
        await policy_routing.record_route(session, draft=draft, route=route, now=app.clock())
        detail = await draft_detail(session, draft, new_links=linked)
        converted = "".join(f" at {used.describe(currency)}" for used in rates_used.values())
        summary = (
            f"Drafted purchase order draft {draft.id} from {chosen.code} worth {total} {currency}{converted}; "
            f"{approval_owner(draft)}."
        )
        affected = [{"kind": "draft", "id": draft.id}] + [{"kind": "exception", "id": e} for e in linked]
        return Outcome(detail, summary, affected=affected + draft.affected, draft_id=draft.id)

    arguments = {
        "supplier": supplier,
        "lines": [normalized(line.model_dump()) for line in lines],
        "rationale": rationale,
        "title": title,
        "exception_ids": exception_ids,
    }
    return await app.run(
        caller,
        "draft_purchase_order",
        arguments,
        work,
        result_type=DraftDetail,
        idempotency_key=idempotency_key,
        request_id=request_id,
    )


async def expire_due_drafts(app: Order3, caller: Caller) -> None:
    """Mark the workspace's overdue drafts expired, in a write transaction taken only when one is due.

    Reads run this first, so a listed draft never shows a window that has ended.
    """
    async with app.database.read() as session:
        due = await drafts.has_overdue(session, workspace_id=caller.workspace_id, now=app.clock())
    if due:
        await app.database.run_write(lambda session: _expire_overdue(session, app, caller))


async def _expire_overdue(session: AsyncSession, app: Order3, caller: Caller) -> list[int]:
    # Expiry is the transaction's only write, and expire_overdue touches the items of the drafts it expires.
    item_scoped(session)
    return await drafts.expire_overdue(session, workspace_id=caller.workspace_id, now=app.clock())


async def list_drafts(
    app: Order3, caller: Caller, *, status: str, kind: str, cursor: str | None, limit: int
) -> DraftPage:
    """List drafts, optionally by status and kind."""

    async def work(session: AsyncSession) -> Outcome:
        check_limit(limit)
        after = decode_cursor(cursor, "list_drafts")
        if status and status not in DRAFT_STATUSES:
            raise InvalidInputError(f"Draft status {status!r} is unknown; use one of {', '.join(DRAFT_STATUSES)}.")
        if kind and kind not in DRAFT_KINDS:
            raise InvalidInputError(f"Draft kind {kind!r} is unknown; use one of {', '.join(DRAFT_KINDS)}.")
        rows = await drafts.list_drafts(
            session,
            workspace_id=caller.workspace_id,
            statuses=(status,) if status else None,
            kind=kind or None,
            after_id=after,
            limit=limit + 1,
        )
        listed, next_cursor = render_page("list_drafts", rows, limit, lambda d: d.id, lambda d: DraftOut(**draft_out(d)))
        return Outcome(DraftPage(drafts=listed, next_cursor=next_cursor), f"Listed {len(listed)} drafts.")

    arguments = {"status": status, "kind": kind, "cursor": cursor, "limit": limit}
    return await app.run(
        caller, "list_drafts", arguments, work, result_type=DraftPage, before_read=lambda: expire_due_drafts(app, caller)
    )


async def get_draft(app: Order3, caller: Caller, *, draft_id: int) -> DraftDetail:
    """Return one draft with its payload, links and decisions."""

    async def work(session: AsyncSession) -> Outcome:
        draft = await drafts.get_draft(session, workspace_id=caller.workspace_id, draft_id=draft_id)
        return Outcome(await draft_detail(session, draft), f"Read draft {draft.id}.", draft_id=draft.id)

    return await app.run(
        caller, "get_draft", {"draft_id": draft_id}, work, result_type=DraftDetail,
        before_read=lambda: expire_due_drafts(app, caller),
    )



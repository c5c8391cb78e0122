"""The workspace's active policy, and routing drafts to its rules with the facts the rules need.

The policies package decides without I/O, so this module gathers what it
cannot see: on hand at a draft's locations, and what a supplier has already
been sent in drafts the same business day. Every draft kind prepares its
`DraftFacts` with these helpers, routes through `route_draft`, and stores the
facts with `record_route`, so a later policy is judged on the same facts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3
from policies import (
    DraftFacts,
    Policy,
    PolicyError,
    PriorApproval,
    QuantityChange,
    Rule,
    match_rule,
    parse_policy,
)
from store import drafts, policy_store
from store.errors import InvalidInputError
from store.models import Draft

logger = logging.getLogger(__name__)

# Drafts whose spend counts toward a supplier's day: still live, or already carried out.
SPEND_STATUSES = ("pending_approval", "approved", "executed")

# Parsed stored policies kept in memory, keyed by their text; a workspace loads few versions.
_PARSED_POLICIES = 64


@dataclass(frozen=True)
class Route:
    """The rule a new draft routes to under the workspace's active policy, and the facts it was routed on."""

    policy: Policy
    rule: Rule | None
    facts: DraftFacts


@lru_cache(maxsize=_PARSED_POLICIES)
def _parse_stored(text: str, label: str) -> Policy:
    return parse_policy(text, source=label)


def stored_policy(text: str, *, version: str) -> Policy:
    """Parse a policy text stored in the database.

    Raises:
        InvalidInputError: If the text no longer parses, which happens only when
            this version of Order3 reads the policy format more strictly than the
            one that loaded it.
    """
    try:
        return _parse_stored(text, f"workspace policy version {version!r}")
    except PolicyError as exc:
        raise InvalidInputError(
            f"The workspace's active policy no longer parses: {exc} Load a corrected policy with `order3 policy load FILE`."
        ) from exc


async def active_policy(app: Order3, session: AsyncSession, *, workspace_id: int) -> Policy:
    """Return the workspace's active policy: the latest one loaded, or the app's policy when none was."""
    row = await policy_store.latest_policy_version(session, workspace_id=workspace_id)
    if row is None:
        return app.policy
    return stored_policy(row.text, version=row.version)


def policy_fields(policy: Policy, rule: Rule | None, *, now: datetime) -> dict[str, Any]:
    """Return the draft columns that record a routing: approvers, rule, policy fingerprint and expiry."""
    if rule is None:
        return {
            "approval_role": "",
            "approvals_required": 0,
            "policy_rule": "",
            "policy_version": policy.fingerprint,
            "auto_execute": False,
            "expires_at": None,
        }
    expires = now + timedelta(hours=rule.expires_after_hours) if rule.expires_after_hours else None
    return {
        "approval_role": ",".join(rule.approver_roles),
        "approvals_required": rule.approvals,
        "policy_rule": rule.id,
        "policy_version": policy.fingerprint,
        "auto_execute": rule.auto_execute,
        "expires_at": expires,
    }


async def route_draft(app: Order3, session: AsyncSession, caller: Caller, facts: DraftFacts) -> Route:
    """Match a new draft's facts against the workspace's active policy."""
    policy = await active_policy(app, session, workspace_id=caller.workspace_id)
    return Route(policy=policy, rule=match_rule(policy, facts), facts=facts)


async def record_route(session: AsyncSession, *, draft: Draft, route: Route, now: datetime) -> None:
    """Store the facts a new draft was routed on."""
    await policy_store.record_draft_facts(
        session,
        workspace_id=draft.workspace_id,
        draft_id=draft.id,  # type: ignore[arg-type]
        facts=facts_to_json(route.facts),
        recorded_at=now,
    )


def business_day_bounds(moment: datetime, *, timezone: str) -> tuple[datetime, datetime]:
    """Return the UTC start and end of the business day, in the workspace timezone, that contains `moment`."""
    zone = ZoneInfo(timezone)
    day = moment.astimezone(zone).date()
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


async def supplier_day_spend(
    session: AsyncSession,
    *,
    workspace_id: int,
    timezone: str,
    supplier_id: int,
    moment: datetime,
    before_draft_id: int | None = None,
    for_new_draft: bool = False,
) -> Decimal:
    """Return the value of the supplier's live or executed purchase-order drafts on `moment`'s business day.

    With `before_draft_id`, only drafts prepared before that one count, so a
    draft judged again later counts the same earlier drafts it was routed with.
    Pass `for_new_draft` inside the transaction that adds a draft for this
    supplier: the supplier row stays locked until it commits, so concurrent
    drafts for one supplier are summed one after another.
    """
    start, end = business_day_bounds(moment, timezone=timezone)
    return await policy_store.supplier_spend(
        session,
        workspace_id=workspace_id,
        supplier_id=supplier_id,
        start=start,
        end=end,
        statuses=SPEND_STATUSES,
        before_draft_id=before_draft_id,
        lock_supplier=for_new_draft,
    )


async def quantity_changes(
    session: AsyncSession, *, workspace_id: int, changes: Sequence[tuple[str, int, str, int, Decimal]]
) -> tuple[QuantityChange, ...]:
    """Return each stock change with the on hand at its location, for max_quantity_share.

    Args:
        changes: (sku, item_id, location_code, location_id, signed change) per line;
            a transfer passes its quantity as a negative change at the source.
    """
    facts: list[QuantityChange] = []
    for sku, item_id, location_code, location_id, change in changes:
        on_hand = await policy_store.on_hand_at(
            session, workspace_id=workspace_id, item_id=item_id, location_id=location_id
        )
        facts.append(QuantityChange(sku=sku, location_code=location_code, change=change, on_hand=on_hand))
    return tuple(facts)


def facts_to_json(facts: DraftFacts) -> dict[str, Any]:
    """Return routing facts as JSON, with decimals as strings so they stay exact."""
    return {
        "kind": facts.kind,
        "value": str(facts.value),
        "supplier_code": facts.supplier_code,
        "location_codes": list(facts.location_codes),
        "quantity_changes": [
            {"sku": c.sku, "location_code": c.location_code, "change": str(c.change), "on_hand": str(c.on_hand)}
            for c in facts.quantity_changes
        ],
        "supplier_day_spend": None if facts.supplier_day_spend is None else str(facts.supplier_day_spend),
    }


def facts_from_json(stored: dict[str, Any]) -> DraftFacts:
    """Rebuild routing facts stored by `facts_to_json`."""
    spend = stored.get("supplier_day_spend")
    return DraftFacts(
        kind=stored["kind"],
        value=Decimal(stored["value"]),
        supplier_code=stored.get("supplier_code"),
        location_codes=tuple(stored.get("location_codes", ())),
        quantity_changes=tuple(
            QuantityChange(
                sku=change["sku"],
                location_code=change["location_code"],
                change=Decimal(change["change"]),
                on_hand=Decimal(change["on_hand"]),
            )
            for change in stored.get("quantity_changes", ())
        ),
        supplier_day_spend=None if spend is None else Decimal(spend),
    )


async def facts_for_draft(session: AsyncSession, *, draft: Draft, timezone: str) -> DraftFacts:
    """Return the facts a stored draft was routed on.

    A draft prepared before routing facts were stored gets them rebuilt from
    its payload: value, supplier, destinations, and for a purchase order the
    supplier's earlier spend that business day.
    """
    stored = await policy_store.draft_facts(session, draft_id=draft.id)  # type: ignore[arg-type]
    if stored is not None:
        return facts_from_json(stored)

    # NOTE: stock changes cannot be rebuilt from an unknown payload shape, so a
    # rebuilt draft has none, and a max_quantity_share rule does not match it.
    payload = draft.payload
    supplier_code = payload.get("supplier_code") if isinstance(payload.get("supplier_code"), str) else None
    lines = payload.get("lines") if isinstance(payload.get("lines"), list) else []
    location_codes = tuple(
        line["location_code"] for line in lines if isinstance(line, dict) and isinstance(line.get("location_code"), str) and line["location_code"]
    )
    spend = None
    if draft.kind == "purchase_order" and isinstance(payload.get("supplier_id"), int):
        spend = await supplier_day_spend(
            session,
            workspace_id=draft.workspace_id,
            timezone=timezone,
            supplier_id=payload["supplier_id"],
            moment=draft.created_at,
            before_draft_id=draft.id,
        )
    return DraftFacts(
        kind=draft.kind,
        value=abs(draft.estimated_value),
        supplier_code=supplier_code,
        location_codes=location_codes,
        supplier_day_spend=spend,
    )


async def prior_approvals(session: AsyncSession, *, draft: Draft) -> list[PriorApproval]:
    """Return the approvals recorded on a draft, with the payload hash and role of each."""
    return [
        PriorApproval(approver=decision.approver, payload_hash=decision.payload_hash, role=decision.role)
        for decision in await drafts.draft_approvals(session, draft_id=draft.id)  # type: ignore[arg-type]
        if decision.decision == "approved"
    ]


async def reroute_pending(
    app: Order3, session: AsyncSession, *, draft: Draft, policy: Policy, timezone: str
) -> bool:
    """Route a pending draft again when it was routed under another policy; return whether its rule changed.

    The approval window set at creation stays, so a new policy cannot extend or
    cut short the time people were given.

    Raises:
        ConflictError: If the draft changed while this request ran.
    """
    if draft.status != "pending_approval" or draft.policy_version == policy.fingerprint:
        return False
    facts = await facts_for_draft(session, draft=draft, timezone=timezone)
    fields = policy_fields(policy, match_rule(policy, facts), now=app.clock())
    del fields["expires_at"]
    changed = any(getattr(draft, name) != value for name, value in fields.items() if name != "policy_version")
    await drafts.change_status(session, draft=draft, from_statuses=("pending_approval",), to_status="pending_approval", **fields)
    if changed:
        logger.info("draft %s rerouted to rule %r under policy %s", draft.id, draft.policy_rule, policy.fingerprint)
    return changed

"""Policy services: load a policy into a workspace, show the active one or a past version, and check a file."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from order3_mcp.services.policy_routing import (
    active_policy,
    facts_for_draft,
    reroute_pending,
    stored_policy,
)
from policies import (
    DraftFacts,
    Policy,
    PolicyError,
    Rule,
    RuleCheck,
    describe_requirement,
    explain_routing,
    parse_policy,
    policy_warnings,
)
from store import drafts, policy_store
from store.errors import ConflictError, InvalidInputError, NotFoundError
from store.models import PolicyVersion

logger = logging.getLogger(__name__)

# Largest policy text accepted, in bytes of UTF-8; real policies are a few kilobytes.
MAX_POLICY_BYTES = 256 * 1024
# Most loaded versions `policy list` returns.
MAX_LISTED_VERSIONS = 100
# Pending drafts read per query while a load routes them again.
_REROUTE_PAGE = 100


class PolicyRuleOut(BaseModel):
    """One rule of a policy, as `policy show` prints it."""

    position: int = Field(description="Place of the rule in file order, from 1; the first matching rule wins.")
    id: str = Field(description="Rule id, recorded on drafts it matches.")
    kinds: list[str] = Field(description="Draft kinds the rule applies to.")
    conditions: str = Field(description="Conditions besides the kind, as key=value pairs; empty when there are none.")
    approver_roles: list[str] = Field(description="Roles whose users may approve.")
    approvals: int = Field(description="Distinct approvers needed.")
    auto_execute: bool = Field(description="Whether the draft executes once the last approval lands.")
    expires_after_hours: int | None = Field(description="Approval window from draft creation, in hours; null for none.")


class PolicyOut(BaseModel):
    """A policy with its identity, origin and rules."""

    name: str = Field(description="Policy name from the [policy] table.")
    version: str = Field(description="Version label from the [policy] table, used once per workspace.")
    sha256: str = Field(description="SHA-256 of the policy text.")
    fingerprint: str = Field(description="name:version:first 12 hex digits of sha256, as recorded on drafts.")
    origin: str = Field(description="'loaded' for a policy loaded into the workspace, 'shipped default' otherwise.")
    source: str = Field(description="File the policy was read from.")
    loaded_at: str | None = Field(description="When the policy was loaded, ISO 8601 UTC; null for the shipped default.")
    loaded_by: str = Field(description="Principal who loaded it; empty for the shipped default.")
    active: bool = Field(description="Whether this is the workspace's active policy.")
    rules: list[PolicyRuleOut] = Field(description="Rules in file order.")
    tolerances: dict[str, str] = Field(description="Exception finder thresholds from the [tolerances] table.")
    warnings: list[str] = Field(description="Problems that do not make the policy invalid, such as kinds no rule covers.")


class PolicyLoaded(BaseModel):
    """The result of loading a policy into a workspace."""

    policy: PolicyOut
    changed: bool = Field(description="False when the same text was already the active policy, so nothing was stored.")
    rerouted_drafts: list[int] = Field(description="Pending drafts whose approval rule changed under the new policy.")


class PolicyVersionOut(BaseModel):
    """One policy loaded into the workspace."""

    name: str
    version: str
    sha256: str
    source: str
    rule_count: int
    loaded_at: str
    loaded_by: str
    active: bool


class PolicyVersionList(BaseModel):
    """Policies loaded into the workspace, newest first."""

    versions: list[PolicyVersionOut]
    default_active: bool = Field(description="True when no policy was loaded, so the shipped default is active.")


class RuleCheckOut(BaseModel):
    """One rule checked against a draft."""

    id: str
    result: str = Field(description="'matches', 'no match' or 'not reached' (an earlier rule matched).")
    reason: str = Field(description="The condition the draft breaks, for 'no match'.")


class PolicyCheckOut(BaseModel):
    """A policy file checked without loading it, and optionally a draft routed under it."""

    policy: PolicyOut
    draft_id: int | None = None
    facts: str = Field(default="", description="The draft facts the rules were checked against.")
    checks: list[RuleCheckOut] = Field(default_factory=list)
    matched_rule: str = Field(default="", description="Rule the draft would route to; empty when none matches.")
    requirement: str = Field(default="", description="Who would have to approve the draft under the file.")
    current_rule: str = Field(default="", description="Rule the draft is routed to now.")
    current_policy: str = Field(default="", description="Fingerprint of the policy the draft is routed under now.")


def validate_policy_text(text: str, *, source: str) -> Policy:
    """Parse and validate a policy text.

    Raises:
        InvalidInputError: If the text is too large or breaks the policy format;
            the message names the rule, the key and the fix.
    """
    size = len(text.encode("utf-8"))
    if size > MAX_POLICY_BYTES:
        raise InvalidInputError(
            f"{source}: the policy is {size} bytes, more than the {MAX_POLICY_BYTES} allowed; split long "
            "supplier or location lists into fewer rules."
        )
    try:
        return parse_policy(text, source=source)
    except PolicyError as exc:
        raise InvalidInputError(f"{exc} Nothing was loaded.") from exc


def policy_out(
    policy: Policy, *, origin: str, active: bool, row: PolicyVersion | None = None, source: str = ""
) -> PolicyOut:
    """Describe a parsed policy for output."""
    return PolicyOut(
        name=policy.name,
        version=policy.version,
        sha256=policy.sha256,
        fingerprint=policy.fingerprint,
        origin=origin,
        source=row.source if row is not None else source or policy.source,
        loaded_at=row.loaded_at.isoformat() if row is not None else None,
        loaded_by=row.loaded_by if row is not None else "",
        active=active,
        rules=[_rule_out(position, rule) for position, rule in enumerate(policy.rules, start=1)],
        tolerances={name: str(value) for name, value in vars(policy.tolerances).items()},
        warnings=policy_warnings(policy),
    )


def _rule_out(position: int, rule: Rule) -> PolicyRuleOut:
    conditions = [
        f"{name}={value}"
        for name, value in (
            ("min_value", rule.min_value),
            ("max_value", rule.max_value),
            ("max_supplier_daily_spend", rule.max_supplier_daily_spend),
            ("max_quantity_share", rule.max_quantity_share),
        )
        if value is not None
    ]
    if rule.suppliers is not None:
        conditions.append("suppliers=" + ",".join(rule.suppliers))
    if rule.locations is not None:
        conditions.append("locations=" + ",".join(rule.locations))
    return PolicyRuleOut(
        position=position,
        id=rule.id,
        kinds=list(rule.kinds),
        conditions="; ".join(conditions),
        approver_roles=list(rule.approver_roles),
        approvals=rule.approvals,
        auto_execute=rule.auto_execute,
        expires_after_hours=rule.expires_after_hours,
    )


def describe_facts(facts: DraftFacts, *, currency: str) -> str:
    """Describe the facts a draft is routed on, in one line."""
    parts = [f"kind {facts.kind}", f"value {facts.value} {currency}"]
    if facts.supplier_code is not None:
        parts.append(f"supplier {facts.supplier_code}")
    if facts.supplier_day_spend is not None:
        parts.append(f"supplier spend in earlier drafts that business day {facts.supplier_day_spend} {currency}")
    if facts.location_codes:
        parts.append("locations " + ", ".join(facts.location_codes))
    for change in facts.quantity_changes:
        parts.append(change.describe())
    return "; ".join(parts)


async def show_policy(app: Order3, caller: Caller, *, version: str | None = None) -> PolicyOut:
    """Return the workspace's active policy, or the loaded policy with `version`.

    Raises:
        NotFoundError: If no loaded policy, nor the shipped default, has that version.
    """

    async def work(session: AsyncSession) -> Outcome:
        latest = await policy_store.latest_policy_version(session, workspace_id=caller.workspace_id)
        if version is None:
            described = await _describe_active(app, latest)
        else:
            described = await _describe_version(app, session, caller, version=version.strip(), latest=latest)
        return Outcome(described, f"Showed policy {described.fingerprint} ({'active' if described.active else 'inactive'}).")

    return await app.run(caller, "policy_show", {"version": version}, work, result_type=PolicyOut)


async def _describe_active(app: Order3, latest: PolicyVersion | None) -> PolicyOut:
    if latest is None:
        return policy_out(app.policy, origin="shipped default", active=True)
    return policy_out(stored_policy(latest.text, version=latest.version), origin="loaded", active=True, row=latest)


async def _describe_version(
    app: Order3, session: AsyncSession, caller: Caller, *, version: str, latest: PolicyVersion | None
) -> PolicyOut:
    row = await policy_store.get_policy_version(session, workspace_id=caller.workspace_id, version=version)
    if row is not None:
        active = latest is not None and latest.id == row.id
        return policy_out(stored_policy(row.text, version=row.version), origin="loaded", active=active, row=row)
    if version == app.policy.version:
        return policy_out(app.policy, origin="shipped default", active=latest is None)

    loaded = await policy_store.list_policy_versions(session, workspace_id=caller.workspace_id, limit=MAX_LISTED_VERSIONS)
    known = ", ".join(repr(other.version) for other in loaded) or "none"
    raise NotFoundError(
        f"No policy version {version!r} in this workspace (loaded versions: {known}; shipped default: "
        f"{app.policy.version!r}); run `order3 policy list` to see them."
    )


async def list_policies(app: Order3, caller: Caller) -> PolicyVersionList:
    """Return the policies loaded into the workspace, newest first."""

    async def work(session: AsyncSession) -> Outcome:
        rows = await policy_store.list_policy_versions(session, workspace_id=caller.workspace_id, limit=MAX_LISTED_VERSIONS)
        listed = [
            PolicyVersionOut(
                name=row.name,
                version=row.version,
                sha256=row.sha256,
                source=row.source,
                rule_count=row.rule_count,
                loaded_at=row.loaded_at.isoformat(),
                loaded_by=row.loaded_by,
                active=index == 0,
            )
            for index, row in enumerate(rows)
        ]
        return Outcome(PolicyVersionList(versions=listed, default_active=not rows), f"Listed {len(listed)} policy versions.")

    return await app.run(caller, "policy_list", {}, work, result_type=PolicyVersionList)


async def load_policy(
    app: Order3, caller: Caller, *, text: str, source: str, idempotency_key: str | None = None
) -> PolicyLoaded:
    """Validate a policy text and store it as the workspace's active policy.

    Pending drafts are routed again under the new policy in the same
    transaction; approved drafts are checked again when they execute.

    Raises:
        InvalidInputError: If the text is invalid; nothing is written.
        ConflictError: If the version was loaded before with other text, or was
            superseded by a later load.
    """
    arguments: dict[str, Any] = {"source": source}
    try:
        policy = validate_policy_text(text, source=source)
    except InvalidInputError:
        policy = None
    else:
        arguments.update(name=policy.name, version=policy.version, sha256=policy.sha256)

    async def work(session: AsyncSession) -> Outcome:
        checked = policy if policy is not None else validate_policy_text(text, source=source)
        latest = await policy_store.latest_policy_version(session, workspace_id=caller.workspace_id)
        same_version = await policy_store.get_policy_version(
            session, workspace_id=caller.workspace_id, version=checked.version
        )
        if same_version is not None:
            _check_reload(checked, same_version, latest=latest)
            described = policy_out(checked, origin="loaded", active=True, row=same_version)
            return Outcome(
                PolicyLoaded(policy=described, changed=False, rerouted_drafts=[]),
                f"Policy {checked.name!r} version {checked.version!r} is already the active policy; nothing changed.",
            )
        shipped = (app.policy.name, app.policy.version)
        if (checked.name, checked.version) == shipped and checked.sha256 != app.policy.sha256:
            raise ConflictError(
                f"Policy {checked.name!r} version {checked.version!r} is the shipped default, and this text "
                "differs from it; bump version in the [policy] table and load again. Nothing was loaded."
            )

        row = await policy_store.add_policy_version(
            session,
            workspace_id=caller.workspace_id,
            name=checked.name,
            version=checked.version,
            sha256=checked.sha256,
            text=text,
            source=source,
            rule_count=len(checked.rules),
            loaded_by=caller.principal,
            token_id=caller.token_id,
            loaded_at=app.clock(),
        )
        rerouted = await _reroute_all_pending(app, session, caller, checked)

        described = policy_out(checked, origin="loaded", active=True, row=row)
        summary = (
            f"Loaded policy {checked.name!r} version {checked.version!r} (sha256 {checked.sha256[:12]}, "
            f"{len(checked.rules)} rules) from {source}; it is now the active policy."
        )
        if rerouted:
            summary += f" Pending drafts with a new approval rule: {', '.join(map(str, rerouted))}."
        affected = [{"kind": "policy_version", "id": row.id}] + [{"kind": "draft", "id": draft_id} for draft_id in rerouted]
        return Outcome(PolicyLoaded(policy=described, changed=True, rerouted_drafts=rerouted), summary, affected=affected)

    loaded = await app.run(
        caller, "policy_load", arguments, work, result_type=PolicyLoaded, idempotency_key=idempotency_key
    )
    logger.info("policy %s loaded into workspace %s by %s", loaded.policy.fingerprint, caller.workspace, caller.principal)
    return loaded


def _check_reload(policy: Policy, stored: PolicyVersion, *, latest: PolicyVersion | None) -> None:
    """Allow loading a version again only when it is the same text and still the active policy.

    Raises:
        ConflictError: Otherwise.
    """
    if stored.sha256 != policy.sha256:
        raise ConflictError(
            f"Policy version {policy.version!r} was already loaded on {stored.loaded_at.date().isoformat()} by "
            f"{stored.loaded_by!r} with different text (sha256 {stored.sha256[:12]}, this file {policy.sha256[:12]}); "
            "bump version in the [policy] table and load again. Nothing was loaded."
        )
    if latest is not None and latest.id != stored.id:
        raise ConflictError(
            f"Policy version {policy.version!r} was superseded by version {latest.version!r}; to make this text "
            "active again, give it a new version in the [policy] table and load it. Nothing was loaded."
        )


async def _reroute_all_pending(app: Order3, session: AsyncSession, caller: Caller, policy: Policy) -> list[int]:
    rerouted: list[int] = []
    after: int | None = None
    while True:
        page = await drafts.list_drafts(
            session, workspace_id=caller.workspace_id, statuses=("pending_approval",), after_id=after, limit=_REROUTE_PAGE
        )
        for draft in page:
            if await reroute_pending(app, session, draft=draft, policy=policy, timezone=caller.timezone):
                rerouted.append(draft.id)  # type: ignore[arg-type]
        if len(page) < _REROUTE_PAGE:
            return rerouted
        after = page[-1].id


def _check_result(check: RuleCheck) -> str:
    if not check.reached:
        return "not reached"
    return "matches" if check.matched else "no match"


async def check_policy(app: Order3, caller: Caller, *, text: str, source: str, draft_id: int) -> PolicyCheckOut:
    """Validate a policy text without loading it, and show which of its rules a stored draft would route to.

    Raises:
        InvalidInputError: If the text is invalid.
        NotFoundError: If the draft does not exist in this workspace.
    """

    async def work(session: AsyncSession) -> Outcome:
        policy = validate_policy_text(text, source=source)
        draft = await drafts.get_draft(session, workspace_id=caller.workspace_id, draft_id=draft_id)
        facts = await facts_for_draft(session, draft=draft, timezone=caller.timezone)
        routing = explain_routing(policy, facts)
        checks = [RuleCheckOut(id=check.rule.id, result=_check_result(check), reason=check.unmet) for check in routing.checks]
        active = await active_policy(app, session, workspace_id=caller.workspace_id)
        result = PolicyCheckOut(
            policy=policy_out(policy, origin="file", active=policy.sha256 == active.sha256, source=source),
            draft_id=draft.id,
            facts=describe_facts(facts, currency=draft.currency),
            checks=checks,
            matched_rule=routing.rule.id if routing.rule is not None else "",
            requirement=describe_requirement(routing.rule),
            current_rule=draft.policy_rule,
            current_policy=draft.policy_version,
        )
        matched = repr(routing.rule.id) if routing.rule is not None else "no rule"
        return Outcome(result, f"Checked {source} against draft {draft.id}: it would route to {matched}.", draft_id=draft.id)

    arguments = {"source": source, "draft_id": draft_id}
    return await app.run(caller, "policy_check", arguments, work, result_type=PolicyCheckOut)

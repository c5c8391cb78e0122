"""Explaining which rule a draft routes to, checking approvals again at execution, and policy warnings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from policies.approvals import DraftState, PriorApproval
from policies.rules import DRAFT_KINDS, DraftFacts, Policy, Rule


@dataclass(frozen=True)
class RuleCheck:
    """One rule checked against a draft: whether it matched, and the condition that failed if not."""

    rule: Rule
    #: The first condition the draft breaks; "" when the rule matches.
    unmet: str
    #: False for rules after the first match, which routing never reaches.
    reached: bool = True

    @property
    def matched(self) -> bool:
        """Whether this rule is the one the draft routes to."""
        return self.reached and not self.unmet


@dataclass(frozen=True)
class Routing:
    """The rule a draft routes to under a policy, with every rule's check in file order."""

    rule: Rule | None
    checks: tuple[RuleCheck, ...]


@dataclass(frozen=True)
class ExecutionCheck:
    """Whether an approved draft's approvals still satisfy the rule the active policy routes it to."""

    allowed: bool
    reason: str
    #: Distinct approvals of the current payload, in a role the rule accepts.
    qualifying: int


def explain_routing(policy: Policy, facts: DraftFacts) -> Routing:
    """Check every rule in file order and return the first match with the reason each earlier rule failed."""
    checks: list[RuleCheck] = []
    chosen: Rule | None = None
    for rule in policy.rules:
        if chosen is not None:
            checks.append(RuleCheck(rule=rule, unmet="", reached=False))
            continue
        unmet = rule.unmet_condition(facts)
        checks.append(RuleCheck(rule=rule, unmet=unmet))
        if not unmet:
            chosen = rule
    return Routing(rule=chosen, checks=tuple(checks))


def describe_requirement(rule: Rule | None) -> str:
    """Describe who must approve under a rule, such as "2 approvals from role approver or admin"."""
    if rule is None:
        return "no rule, so the draft cannot be approved (deny by default)"
    plural = "approval" if rule.approvals == 1 else "approvals"
    return f"{rule.approvals} {plural} from role {' or '.join(rule.approver_roles)} (rule {rule.id!r})"


def decide_execution(
    *,
    draft: DraftState,
    rule: Rule | None,
    prior: Sequence[PriorApproval],
    policy_fingerprint: str,
    policy_changed: bool,
) -> ExecutionCheck:
    """Decide whether an approved draft may execute under `rule`, the rule the active policy routes it to.

    The draft may execute when its recorded approvals of the current payload,
    counting each person once and only in a role the rule accepts, reach the
    number the rule needs. A looser or unchanged rule therefore lets it run,
    while a rule that now needs more approvers or another role stops it, and so
    does a payload changed after its approvals. `policy_changed` is true when the
    policy differs from the one the draft was approved under, and selects the
    message.
    """
    if rule is None:
        return ExecutionCheck(
            allowed=False,
            reason=(
                f"No rule in the active policy {policy_fingerprint!r} matches this draft any more, so it "
                "cannot be executed (deny by default); add a matching rule, or reject or withdraw the draft."
            ),
            qualifying=0,
        )

    excluded = {_person_key(draft.created_by)}
    if draft.on_behalf_of.strip():
        excluded.add(_person_key(draft.on_behalf_of))
    qualifying = {
        _person_key(approval.approver)
        for approval in prior
        if approval.payload_hash == draft.payload_hash
        and (approval.role is None or approval.role in rule.approver_roles)
        and _person_key(approval.approver) not in excluded
    }
    if len(qualifying) >= rule.approvals:
        return ExecutionCheck(
            allowed=True,
            reason=(
                f"The active policy {policy_fingerprint!r} routes the draft to rule {rule.id!r}, and "
                f"{len(qualifying)} recorded approval(s) satisfy it."
            ),
            qualifying=len(qualifying),
        )

    missing = rule.approvals - len(qualifying)
    if policy_changed:
        cause = f"The policy changed after approval: the active policy {policy_fingerprint!r} needs"
    else:
        cause = (
            f"The draft's payload (hash {draft.payload_hash[:12]}) is not the one its approvals were given for: "
            "it needs"
        )
    return ExecutionCheck(
        allowed=False,
        reason=(
            f"{cause} {describe_requirement(rule)}, and {len(qualifying)} of the recorded approvals qualify. "
            f"The draft is back to pending approval; {missing} more approval(s) from role "
            f"{' or '.join(rule.approver_roles)} are needed before it can execute."
        ),
        qualifying=len(qualifying),
    )


def policy_warnings(policy: Policy) -> list[str]:
    """Return problems a valid policy may still have: kinds no rule covers, and rules never reached."""
    warnings: list[str] = []
    covered = {kind for rule in policy.rules for kind in rule.kinds}
    for kind in DRAFT_KINDS:
        if kind not in covered:
            warnings.append(f"No rule lists kind {kind}, so drafts of that kind can never be approved.")

    for index, rule in enumerate(policy.rules):
        for earlier in policy.rules[:index]:
            if _is_unconditional(earlier) and set(rule.kinds) <= set(earlier.kinds):
                warnings.append(
                    f"Rule {rule.id!r} is never reached: rule {earlier.id!r} before it has no conditions and "
                    "matches every draft of its kinds; move the narrower rule first."
                )
                break
    return warnings


def _is_unconditional(rule: Rule) -> bool:
    return (
        rule.min_value is None
        and rule.max_value is None
        and rule.suppliers is None
        and rule.locations is None
        and rule.max_quantity_share is None
        and rule.max_supplier_daily_spend is None
    )


def _person_key(principal: str) -> str:
    # Same comparison as approvals use, so "Alice" and "alice " are one person.
    return principal.strip().casefold()

"""Approval decisions: who may approve or reject a draft, and when its approvals are complete."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from policies.errors import PolicyError


@dataclass(frozen=True)
class ApproverFacts:
    """The principal asking to approve or reject, as their token describes them."""

    principal: str
    principal_kind: str
    role: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class DraftState:
    """The parts of a stored draft that an approval decision depends on."""

    status: str
    created_by: str
    #: The person an agent drafted for; "" when a person drafted directly.
    on_behalf_of: str
    payload_hash: str
    approval_roles: tuple[str, ...]
    approvals_required: int
    expires_at: datetime | None
    #: Whether a policy rule matched the draft when it was created.
    has_rule: bool
    #: Fingerprint of the policy that was checked, named in the deny-by-default message.
    policy_version: str = ""

    def __post_init__(self) -> None:
        # With zero required approvals, a draft would count as approved before anyone looked.
        if self.has_rule and self.approvals_required < 1:
            raise PolicyError(
                f"Draft state has approvals_required = {self.approvals_required}; a draft with a "
                "matching rule needs 1 or more."
            )


@dataclass(frozen=True)
class PriorApproval:
    """An approval already recorded on the draft, with the payload hash it was given for."""

    approver: str
    payload_hash: str
    #: Role the approver held; an approval counts only while the draft's rule accepts that role.
    #: None when the role is unknown, and then it counts.
    role: str | None = None


@dataclass(frozen=True)
class ApprovalDecision:
    """Whether an approval may be recorded, why, and where it leaves the draft."""

    allowed: bool
    reason: str
    #: Distinct approvals of the current payload after this decision, counting this one if allowed.
    approvals_after: int
    #: True when approvals_after reaches the number the rule requires.
    complete: bool


@dataclass(frozen=True)
class RejectionDecision:
    """Whether a rejection may be recorded, and why."""

    allowed: bool
    reason: str


def decide_approval(
    *,
    draft: DraftState,
    approver: ApproverFacts,
    seen_payload_hash: str,
    prior: Sequence[PriorApproval],
    now: datetime,
) -> ApprovalDecision:
    """Decide whether `approver` may approve the draft as it is now.

    Only approvals of the current payload hash count, and each person counts once.

    Raises:
        PolicyError: If `now` or the draft's expiry is a naive datetime.
    """
    _require_aware(now, name="now")
    roles = _format_roles(draft.approval_roles)
    current = _distinct_approvers(prior, payload_hash=draft.payload_hash, roles=draft.approval_roles)
    approved_before = _distinct_approvers(prior, payload_hash=draft.payload_hash, roles=None)
    approver_key = _person_key(approver.principal)

    def deny(reason: str) -> ApprovalDecision:
        return ApprovalDecision(allowed=False, reason=reason, approvals_after=len(current), complete=False)

    denial_reason = _check_decider(draft=draft, decider=approver, verb="approve", roles=roles, now=now)
    if denial_reason:
        return deny(denial_reason)

    if _is_drafter(draft, approver):
        return deny(
            f"{approver.principal!r} created this draft and cannot approve it (separation of duties); "
            f"ask another user with {roles} to approve it."
        )
    if _is_requester(draft, approver):
        return deny(
            f"{approver.principal!r} is the person the agent drafted for and cannot approve it "
            f"(separation of duties); ask another user with {roles} to approve it."
        )

    if seen_payload_hash != draft.payload_hash:
        return deny(
            f"The draft changed after {approver.principal!r} reviewed it (payload hash "
            f"{seen_payload_hash[:12]!r} reviewed, {draft.payload_hash[:12]!r} now); "
            "review the current draft and approve it again."
        )
    if approver_key in approved_before:
        remaining = draft.approvals_required - len(current)
        return deny(
            f"{approver.principal!r} already approved this version of the draft; it needs "
            f"{max(remaining, 0)} more approval(s) from other users with {roles}."
        )

    approvals_after = len(current) + 1
    complete = approvals_after >= draft.approvals_required
    if complete:
        outcome = "the draft is fully approved."
    else:
        outcome = f"{draft.approvals_required - approvals_after} more approval(s) needed from other users with {roles}."
    return ApprovalDecision(
        allowed=True,
        reason=f"Approved by {approver.principal!r} ({approvals_after} of {draft.approvals_required}); {outcome}",
        approvals_after=approvals_after,
        complete=complete,
    )


def decide_rejection(*, draft: DraftState, approver: ApproverFacts, now: datetime) -> RejectionDecision:
    """Decide whether `approver` may reject the draft.

    The same people who could approve may reject. A draft that no rule matches can
    be rejected by any user with the approve scope, so it does not stay pending
    forever. The drafter withdraws instead. The person an agent drafted for may
    reject it: only the agent can withdraw it, and stopping work needs no
    second pair of eyes the way starting it does.

    Raises:
        PolicyError: If `now` or the draft's expiry is a naive datetime.
    """
    _require_aware(now, name="now")
    roles = _format_roles(draft.approval_roles)

    denial_reason = _check_decider(draft=draft, decider=approver, verb="reject", roles=roles, now=now)
    if denial_reason:
        return RejectionDecision(allowed=False, reason=denial_reason)

    if _is_drafter(draft, approver):
        return RejectionDecision(
            allowed=False,
            reason=(
                f"{approver.principal!r} created this draft and cannot reject it; "
                "use withdraw_draft to take back your own draft."
            ),
        )

    return RejectionDecision(allowed=True, reason=f"Rejected by {approver.principal!r}.")


def _check_decider(*, draft: DraftState, decider: ApproverFacts, verb: str, roles: str, now: datetime) -> str:
    """Return why `decider` may not approve or reject the draft, or "" if the shared checks pass."""
    done = {"approve": "approved", "reject": "rejected"}[verb]
    if decider.principal_kind != "user":
        return (
            f"{decider.principal_kind.capitalize()} {decider.principal!r} cannot {verb} drafts because "
            f"only user principals may; ask a person with {roles} to {verb} it."
        )
    if "approve" not in decider.scopes:
        return (
            f"{decider.principal!r} (role {decider.role!r}) lacks the approve scope; "
            f"ask a user with {roles} to {verb} it."
        )

    if not draft.has_rule and verb == "approve":
        policy = repr(draft.policy_version) if draft.policy_version else "the workspace policy"
        return (
            f"No approval rule in {policy} matches this draft, so it cannot be approved (deny by "
            "default); add a matching rule to the policy file, or reject or withdraw the draft."
        )
    if draft.status != "pending_approval":
        return f"The draft is {draft.status}, not pending_approval; only a pending draft can be {done}."
    if draft.expires_at is not None:
        _require_aware(draft.expires_at, name="expires_at")
        if now >= draft.expires_at:
            return (
                f"The draft expired at {draft.expires_at.isoformat()} and can no longer be {done}; "
                "ask for a new draft if the work is still needed."
            )

    # A draft without a rule has no approver roles, so any user with the approve scope may reject it.
    if draft.has_rule and decider.role not in draft.approval_roles:
        return f"{decider.principal!r} has role {decider.role!r}, but this draft's rule needs {roles}."
    return ""


def _person_key(principal: str) -> str:
    # Principals compare case- and space-insensitively so that "Alice" and "alice "
    # cannot pass as two people for separation of duties or distinct approvals.
    return principal.strip().casefold()


def _is_drafter(draft: DraftState, decider: ApproverFacts) -> bool:
    return _person_key(decider.principal) == _person_key(draft.created_by)


def _is_requester(draft: DraftState, decider: ApproverFacts) -> bool:
    return bool(draft.on_behalf_of.strip()) and _person_key(decider.principal) == _person_key(draft.on_behalf_of)


def _distinct_approvers(
    prior: Sequence[PriorApproval], *, payload_hash: str, roles: Sequence[str] | None
) -> set[str]:
    # An approval counts only for the payload hash it was given for, so an edited draft starts again.
    # With `roles`, it also counts only if given in a role the draft's current rule accepts, so a
    # rule tightened to another role after the approval does not inherit it.
    return {
        _person_key(approval.approver)
        for approval in prior
        if approval.payload_hash == payload_hash
        and (roles is None or approval.role is None or approval.role in roles)
    }


def _format_roles(roles: Sequence[str]) -> str:
    if not roles:
        return "an approving role"
    if len(roles) == 1:
        return f"role {roles[0]!r}"
    return "one of the roles " + ", ".join(repr(role) for role in roles)


def _require_aware(moment: datetime, *, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise PolicyError(f"{name} = {moment.isoformat()} has no time zone; pass an aware UTC datetime.")

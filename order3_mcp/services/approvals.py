"""The one approve path, the one reject path and the one execute path for drafts."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from order3_mcp.schemas import DraftDetail
from order3_mcp.services.drafts import draft_detail
from order3_mcp.services.finder_refresh import REFRESHABLE_KINDS, refresh_kind
from order3_mcp.services.kinds import Performed, executors
from order3_mcp.services.policy_routing import (
    active_policy,
    facts_for_draft,
    policy_fields,
    prior_approvals,
    reroute_pending,
)
from policies import (
    ApproverFacts,
    DraftState,
    Rule,
    decide_approval,
    decide_execution,
    decide_rejection,
    match_rule,
)
from store import drafts
from store.changes import item_scoped
from store.errors import (
    ApprovalRequiredError,
    ConflictError,
    InvalidInputError,
    PermissionDeniedError,
)
from store.idempotency import derived_key
from store.models import (
    Draft,
    ExceptionRecord,
)


def _draft_state(draft: Draft, policy_version: str) -> DraftState:
    return DraftState(
        status=draft.status,
        created_by=draft.created_by,
        on_behalf_of=draft.on_behalf_of,
        payload_hash=draft.payload_hash,
        approval_roles=tuple(role for role in draft.approval_role.split(",") if role),
        approvals_required=max(draft.approvals_required, 1) if draft.policy_rule else 0,
        expires_at=draft.expires_at,
        has_rule=bool(draft.policy_rule),
        policy_version=policy_version,
    )


def _approver(caller: Caller) -> ApproverFacts:
    return ApproverFacts(
        principal=caller.principal, principal_kind=caller.principal_kind, role=caller.role, scopes=caller.scopes
    )


# Shortest payload hash prefix accepted as proof of review: the length `drafts show` prints.
MIN_HASH_PREFIX = 12


async def _open_draft(
    app: Order3, caller: Caller, session: AsyncSession, *, draft_id: int, allowed: tuple[str, ...], verb: str
) -> Draft | Outcome:
    """Load a draft that must be in one of `allowed` statuses.

    A draft whose approval window has ended is marked expired here and an
    Outcome carrying the refusal is returned, so the expiry is committed and the
    caller still gets an error.

    Raises:
        ConflictError: If the draft is in another status.
    """
    draft = await drafts.get_draft(session, workspace_id=caller.workspace_id, draft_id=draft_id)
    now = app.clock()
    if draft.status in ("pending_approval", "approved") and draft.expires_at is not None and now >= draft.expires_at:
        await drafts.expire_overdue(session, workspace_id=caller.workspace_id, now=now)
        await session.refresh(draft)
        error = ApprovalRequiredError(
            f"Draft {draft.id}'s approval window ended at {draft.expires_at.isoformat()}, so it is now expired "
            "and cannot be {verb}; prepare a new draft if the work is still needed.".replace("{verb}", verb)
        )
        detail = await draft_detail(session, draft)
        return Outcome(detail, error.message, affected=[{"kind": "draft", "id": draft.id}], draft_id=draft.id, error=error)
    if draft.status not in allowed:
        result = f" ({_result_text(draft)})" if draft.status == "executed" else ""
        raise ConflictError(
            f"Draft {draft.id} is {draft.status}{result}; only {' or '.join(allowed)} drafts can be {verb}."
        )
    return draft


def _check_seen_hash(draft: Draft, expected_hash: str) -> str:
    clean = expected_hash.strip().lower()
    if clean and (len(clean) < MIN_HASH_PREFIX or any(char not in "0123456789abcdef" for char in clean)):
        raise InvalidInputError(
            f"Payload hash {expected_hash!r} is too short or not hexadecimal; pass at least the first "
            f"{MIN_HASH_PREFIX} characters shown by `order3 drafts show {draft.id}`."
        )
    if clean and not draft.payload_hash.startswith(clean):
        raise ConflictError(
            f"Draft {draft.id} is not the version you reviewed: its payload hash is {draft.payload_hash[:12]}, "
            f"not {expected_hash[:12]}. Review it again with `order3 drafts show {draft.id}`."
        )
    return draft.payload_hash


async def approve_draft(
    app: Order3, caller: Caller, *, draft_id: int, expected_hash: str, reason: str, idempotency_key: str | None = None
) -> DraftDetail:
    """Record one approval, and approve the draft once the rule's approvals are complete.

    When the matching rule sets auto_execute, the approved draft is executed at
    once through `execute_draft`. With an idempotency key, that execution is
    keyed `KEY/execute`, so a retry replays both steps and returns the executed draft.
    """

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        draft = await _open_draft(app, caller, session, draft_id=draft_id, allowed=("pending_approval",), verb="approved")
        if isinstance(draft, Outcome):
            return draft
        seen = _check_seen_hash(draft, expected_hash)
        # A draft routed under an earlier policy follows the active one from now on.
        policy = await active_policy(app, session, workspace_id=caller.workspace_id)
        rerouted = await reroute_pending(app, session, draft=draft, policy=policy, timezone=caller.timezone)
        decision = decide_approval(
            draft=_draft_state(draft, policy.fingerprint),
            approver=_approver(caller),
            seen_payload_hash=seen,
            prior=await prior_approvals(session, draft=draft),
            now=app.clock(),
        )
        if not decision.allowed:
            error = PermissionDeniedError(decision.reason)
            if not rerouted:
                raise error
            # Keep the new routing so `drafts show` names the approvers the policy now needs.
            return Outcome(
                await draft_detail(session, draft), decision.reason, affected=[{"kind": "draft", "id": draft.id}],
                draft_id=draft.id, error=error,
            )

        await drafts.record_decision(
            session, draft=draft, approver=caller.principal, token_id=caller.token_id, role=caller.role,
            decision="approved", reason=reason.strip(),
        )
        if decision.complete:
            await drafts.change_status(session, draft=draft, from_statuses=("pending_approval",), to_status="approved", decided_at=app.clock())
            summary = f"Approved draft {draft.id} ({decision.approvals_after} of {draft.approvals_required}); it is ready to execute."
        else:
            summary = (
                f"Recorded approval {decision.approvals_after} of {draft.approvals_required} for draft {draft.id}; "
                "another distinct approver is needed."
            )
        if rerouted:
            summary = f"Routed draft {draft.id} to rule {draft.policy_rule!r} of policy {policy.fingerprint}. {summary}"
        return Outcome(await draft_detail(session, draft), summary, affected=[{"kind": "draft", "id": draft.id}], draft_id=draft.id)

    arguments = {"draft_id": draft_id, "expected_hash": expected_hash, "reason": reason}
    detail = await app.run(caller, "approve_draft", arguments, work, result_type=DraftDetail, idempotency_key=idempotency_key)
    if detail.status == "approved":
        async with app.database.read() as session:
            draft = await drafts.get_draft(session, workspace_id=caller.workspace_id, draft_id=draft_id)
        if draft.auto_execute:
            execute_key = derived_key(idempotency_key, "execute") if idempotency_key is not None else None
            detail = await execute_draft(app, caller, draft_id=draft_id, automatic=True, idempotency_key=execute_key)
    return detail


async def reject_draft(
    app: Order3, caller: Caller, *, draft_id: int, reason: str, idempotency_key: str | None = None
) -> DraftDetail:
    """Reject a pending draft with a reason; it can no longer be approved or executed."""

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        if not reason.strip():
            raise InvalidInputError("A rejection needs a reason the drafter can act on; pass --reason TEXT.")
        draft = await _open_draft(app, caller, session, draft_id=draft_id, allowed=("pending_approval",), verb="rejected")
        if isinstance(draft, Outcome):
            return draft
        policy = await active_policy(app, session, workspace_id=caller.workspace_id)
        decision = decide_rejection(draft=_draft_state(draft, policy.fingerprint), approver=_approver(caller), now=app.clock())
        if not decision.allowed:
            raise PermissionDeniedError(decision.reason)
        await drafts.record_decision(
            session, draft=draft, approver=caller.principal, token_id=caller.token_id, role=caller.role,
            decision="rejected", reason=reason.strip(),
        )
        await drafts.change_status(session, draft=draft, from_statuses=("pending_approval",), to_status="rejected", decided_at=app.clock())
        await _reopen_exceptions(session, draft)
        return Outcome(
            await draft_detail(session, draft),
            f"Rejected draft {draft.id}: {reason.strip()}",
            affected=[{"kind": "draft", "id": draft.id}],
            draft_id=draft.id,
        )

    return await app.run(
        caller, "reject_draft", {"draft_id": draft_id, "reason": reason}, work, result_type=DraftDetail,
        idempotency_key=idempotency_key,
    )


async def withdraw_draft(
    app: Order3, caller: Caller, *, draft_id: int, reason: str, idempotency_key: str | None = None
) -> DraftDetail:
    """Withdraw a draft the caller prepared, before it is executed."""

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        draft = await _open_draft(
            app, caller, session, draft_id=draft_id, allowed=("pending_approval", "approved"), verb="withdrawn"
        )
        if isinstance(draft, Outcome):
            return draft
        if draft.created_by.strip().casefold() != caller.principal.strip().casefold():
            raise PermissionDeniedError(
                f"Draft {draft.id} was prepared by {draft.created_by!r}; only its drafter may withdraw it. "
                "An approver can reject it instead."
            )
        await drafts.change_status(
            session, draft=draft, from_statuses=("pending_approval", "approved"), to_status="withdrawn",
            failure_reason=reason.strip()[:2000],
        )
        await _reopen_exceptions(session, draft)
        return Outcome(
            await draft_detail(session, draft),
            f"Withdrew draft {draft.id}" + (f": {reason.strip()}" if reason.strip() else "."),
            affected=[{"kind": "draft", "id": draft.id}],
            draft_id=draft.id,
        )

    return await app.run(
        caller, "withdraw_draft", {"draft_id": draft_id, "reason": reason}, work, result_type=DraftDetail,
        idempotency_key=idempotency_key,
    )


async def _settle_exceptions(app: Order3, caller: Caller, session: AsyncSession, draft: Draft) -> None:
    """Re-run the finders behind a draft's exceptions: cleared ones resolve, the rest reopen."""
    linked = await drafts.linked_exception_ids(session, draft_id=draft.id)  # type: ignore[arg-type]
    if not linked:
        return
    kinds = (
        await session.execute(select(ExceptionRecord.kind).where(ExceptionRecord.id.in_(linked)).distinct())
    ).scalars().all()
    for kind in sorted(kinds):
        if kind in REFRESHABLE_KINDS:
            await refresh_kind(app, caller, session, kind)
    await _reopen_exceptions(session, draft)


async def _reopen_exceptions(session: AsyncSession, draft: Draft) -> None:
    # An exception whose draft will not happen needs a next action again.
    linked = await drafts.linked_exception_ids(session, draft_id=draft.id)  # type: ignore[arg-type]
    if linked:
        await drafts.reopen_unanswered(session, linked=linked, excluding_draft_id=draft.id)


async def execute_draft(
    app: Order3, caller: Caller, *, draft_id: int, automatic: bool = False, idempotency_key: str | None = None
) -> DraftDetail:
    """Execute an approved draft once, through the normal inventory flow for its kind.

    The records execution depends on are checked again first, for example an
    item deactivated or a supplier offer withdrawn since approval. If a check
    fails, the draft is marked failed with the reason and nothing else is written.
    """

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        loaded = await drafts.get_draft(session, workspace_id=caller.workspace_id, draft_id=draft_id)
        if loaded.status == "executed":
            raise ConflictError(f"Draft {loaded.id} was already executed ({_result_text(loaded)}); it runs only once.")
        if loaded.status == "pending_approval" and (loaded.expires_at is None or app.clock() < loaded.expires_at):
            raise ApprovalRequiredError(
                f"Draft {loaded.id} is still pending approval; approve it with `order3 drafts approve {loaded.id}` first."
            )
        draft = await _open_draft(app, caller, session, draft_id=draft_id, allowed=("approved",), verb="executed")
        if isinstance(draft, Outcome):
            return draft
        refusal = await _hold_if_approvals_fall_short(app, caller, session, draft)
        if refusal is not None:
            return refusal

        problem = await _revalidate(session, draft)
        if problem:
            await drafts.change_status(session, draft=draft, from_statuses=("approved",), to_status="failed", failure_reason=problem)
            # A failed draft answers nothing, so its exceptions need a next action again.
            await _reopen_exceptions(session, draft)
            outcome = Outcome(
                await draft_detail(session, draft),
                f"Execution of draft {draft.id} failed: {problem}",
                affected=[{"kind": "draft", "id": draft.id}],
                draft_id=draft.id,
            )
            outcome.outcome = "invalid"
            return outcome

        result, affected = await _perform(session, app, caller, draft)
        await drafts.change_status(
            session, draft=draft, from_statuses=("approved",), to_status="executed", executed_at=app.clock(), result=result
        )
        await _settle_exceptions(app, caller, session, draft)
        how = " automatically after the final approval" if automatic else ""
        return Outcome(
            await draft_detail(session, draft),
            f"Executed draft {draft.id}{how}: {_result_text(draft)}.",
            affected=[{"kind": "draft", "id": draft.id}] + affected,
            draft_id=draft.id,
        )

    return await app.run(
        caller, "execute_draft", {"draft_id": draft_id, "automatic": automatic}, work, result_type=DraftDetail,
        idempotency_key=idempotency_key,
    )


async def _hold_if_approvals_fall_short(app: Order3, caller: Caller, session: AsyncSession, draft: Draft) -> Outcome | None:
    """Check an approved draft's approvals against the active policy and its current payload.

    When the policy changed since the draft was routed, the draft is routed
    again on the facts it was prepared with. Otherwise its recorded rule applies.
    If the approvals of the current payload do not satisfy that rule (it now
    needs more approvers or another role, or the payload changed), the draft goes
    back to pending_approval under the rule and the returned Outcome carries the
    refusal. The approvals already given stay on the draft and count where the
    rule accepts their role. Nothing else is written. Returns None when the
    draft may execute.
    """
    policy = await active_policy(app, session, workspace_id=caller.workspace_id)
    policy_changed = draft.policy_version != policy.fingerprint
    if policy_changed:
        rule = match_rule(policy, await facts_for_draft(session, draft=draft, timezone=caller.timezone))
    else:
        rule = _recorded_rule(draft)
    check = decide_execution(
        draft=_draft_state(draft, policy.fingerprint),
        rule=rule,
        prior=await prior_approvals(session, draft=draft),
        policy_fingerprint=policy.fingerprint,
        policy_changed=policy_changed,
    )
    if check.allowed:
        return None

    fields = policy_fields(policy, rule, now=app.clock())
    # The approval window set when the draft was prepared stays as it was.
    del fields["expires_at"]
    await drafts.change_status(
        session, draft=draft, from_statuses=("approved",), to_status="pending_approval", decided_at=None, **fields
    )
    message = f"Draft {draft.id} was not executed. {check.reason}"
    error = ApprovalRequiredError(message)
    return Outcome(await draft_detail(session, draft), message, affected=[{"kind": "draft", "id": draft.id}], draft_id=draft.id, error=error)


def _recorded_rule(draft: Draft) -> Rule | None:
    """Return the approval requirement recorded on the draft when it was routed, as a rule."""
    if not draft.policy_rule:
        return None
    return Rule(
        id=draft.policy_rule,
        kinds=(draft.kind,),
        approver_roles=tuple(role for role in draft.approval_role.split(",") if role),
        approvals=max(draft.approvals_required, 1),
        auto_execute=draft.auto_execute,
    )


def _result_text(draft: Draft) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(draft.result.items())) or "no result recorded"


async def _revalidate(session: AsyncSession, draft: Draft) -> str:
    executor = executors().get(draft.kind)
    if executor is None:
        return f"Drafts of kind {draft.kind} cannot be executed by this version of Order3."
    return await executor.revalidate(session, draft)


async def _perform(session: AsyncSession, app: Order3, caller: Caller, draft: Draft) -> Performed:
    return await executors()[draft.kind].perform(session, app, caller, draft)

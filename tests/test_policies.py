"""Tests for scopes, roles, policy files, rule matching and approval decisions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from policies import (
    ACTION_SCOPES,
    DRAFT_KINDS,
    PRINCIPAL_KINDS,
    ROLES,
    SCOPES,
    WITHHELD_FROM_AGENTS,
    ApproverFacts,
    DraftFacts,
    DraftState,
    PolicyError,
    PriorApproval,
    Tolerances,
    allowed_actions,
    decide_approval,
    decide_rejection,
    default_policy_path,
    load_policy,
    match_rule,
    parse_policy,
    required_scope,
    scopes_for,
)
from store.models.access import PRINCIPAL_KINDS as STORE_PRINCIPAL_KINDS
from store.models.drafts import DRAFT_KINDS as STORE_DRAFT_KINDS

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
HASH = "a" * 64
OLD_HASH = "b" * 64

MCP_TOOLS = (
    "search_items",
    "get_item",
    "list_locations",
    "get_stock",
    "list_movements",
    "list_counts",
    "list_suppliers",
    "get_supplier",
    "list_purchase_orders",
    "get_purchase_order",
    "list_receiving_events",
    "list_reservations",
    "list_drafts",
    "get_draft",
    "list_activity",
    "find_low_stock",
    "find_count_drift",
    "find_short_receiving",
    "find_supplier_delays",
    "find_mismatches",
    "find_exceptions",
    "draft_purchase_order",
    "draft_transfer",
    "draft_count_task",
    "draft_supplier_note",
    "draft_reconciliation",
    "draft_adjustment",
    "withdraw_draft",
    "approve_draft",
    "reject_draft",
    "execute_draft",
    "dismiss_exception",
    "ingest_external_snapshot",
    "list_outbox",
)
CLI_ACTIONS = (
    "receive",
    "count_submit",
    "count_list",
    "count_show",
    "activity_export",
    "activity_list",
    "activity_show",
    "token_create",
    "token_revoke",
    "token_rotate",
    "token_list",
    "import",
    "init",
    "reorder_rules_set",
    "get_exception",
    "ledger_verify",
    "activity_verify",
    "activity_checkpoint",
    "policy_show",
    "policy_list",
    "policy_check",
    "policy_load",
    "transfer_receive",
    "transfer_list",
    "get_outbox_message",
    "rates_set",
    "rates_list",
)
# MCP requests besides tool calls that read data.
PROTOCOL_ACTIONS = ("complete_argument", "get_prompt")

HEADER = '[policy]\nname = "test"\nversion = "1"\n'
VALID_RULE = """
[[rules]]
id = "po"
kinds = ["purchase_order"]
approver_roles = ["buyer"]
approvals = 1
"""


def user(principal: str = "bob", role: str = "buyer", kind: str = "user") -> ApproverFacts:
    return ApproverFacts(principal=principal, principal_kind=kind, role=role, scopes=ROLES[role])


def pending_draft(**changes: object) -> DraftState:
    draft = DraftState(
        status="pending_approval",
        created_by="alice",
        on_behalf_of="",
        payload_hash=HASH,
        approval_roles=("buyer", "admin"),
        approvals_required=1,
        expires_at=NOW + timedelta(hours=1),
        has_rule=True,
        policy_version="default:1:0123456789ab",
    )
    return replace(draft, **changes)


def approve(
    draft: DraftState,
    approver: ApproverFacts,
    *,
    seen: str = HASH,
    prior: tuple[PriorApproval, ...] = (),
    now: datetime = NOW,
):
    return decide_approval(draft=draft, approver=approver, seen_payload_hash=seen, prior=prior, now=now)


def policy_with(rules: str, extra: str = ""):
    return parse_policy(HEADER + rules + extra, source="test.toml")


# Scopes and roles


@pytest.mark.parametrize(
    ("role", "scopes"),
    [
        ("viewer", {"read", "export"}),
        ("agent", {"read", "draft"}),
        ("operator", {"read", "draft", "change"}),
        ("buyer", {"read", "draft", "approve", "execute", "change", "export"}),
        ("approver", {"read", "approve", "execute", "export"}),
        ("integration", {"read", "sync"}),
        ("admin", set(SCOPES)),
    ],
)
def test_user_role_scopes(role: str, scopes: set[str]) -> None:
    assert scopes_for(principal_kind="user", role=role) == frozenset(scopes)


@pytest.mark.parametrize("role", sorted(ROLES))
def test_agent_role_never_gets_approve_scope(role: str) -> None:
    scopes = scopes_for(principal_kind="agent", role=role)

    assert "approve" not in scopes
    assert "execute" not in scopes
    assert "admin" not in scopes


@pytest.mark.parametrize("role", sorted(ROLES))
def test_integration_never_gets_withheld_scopes(role: str) -> None:
    assert not scopes_for(principal_kind="integration", role=role) & WITHHELD_FROM_AGENTS


def test_agent_with_admin_role_keeps_other_scopes() -> None:
    assert scopes_for(principal_kind="agent", role="admin") == frozenset(
        {"read", "draft", "export", "change", "sync"}
    )


def test_unknown_role_lists_valid_roles() -> None:
    with pytest.raises(PolicyError) as caught:
        scopes_for(principal_kind="user", role="superuser")

    assert "'superuser'" in str(caught.value)
    assert "viewer, agent, operator, buyer, approver, integration, admin" in str(caught.value)


def test_unknown_principal_kind_lists_valid_kinds() -> None:
    with pytest.raises(PolicyError) as caught:
        scopes_for(principal_kind="robot", role="viewer")

    assert "'robot'" in str(caught.value)
    assert "user, agent, integration" in str(caught.value)


def test_principal_kinds_match_store() -> None:
    assert PRINCIPAL_KINDS == STORE_PRINCIPAL_KINDS


def test_policy_error_is_value_error() -> None:
    assert issubclass(PolicyError, ValueError)


# Actions


def test_action_scopes_cover_every_tool_and_cli_action() -> None:
    assert set(ACTION_SCOPES) == set(MCP_TOOLS) | set(CLI_ACTIONS) | set(PROTOCOL_ACTIONS)


def test_action_scopes_use_known_scopes() -> None:
    assert set(ACTION_SCOPES.values()) <= set(SCOPES)


@pytest.mark.parametrize(
    ("action", "scope"),
    [
        ("search_items", "read"),
        ("find_exceptions", "read"),
        ("list_activity", "read"),
        ("draft_adjustment", "draft"),
        ("withdraw_draft", "draft"),
        ("approve_draft", "approve"),
        ("reject_draft", "approve"),
        ("dismiss_exception", "approve"),
        ("execute_draft", "execute"),
        ("ingest_external_snapshot", "sync"),
        ("receive", "change"),
        ("transfer_receive", "change"),
        ("transfer_list", "read"),
        ("count_submit", "change"),
        ("activity_export", "export"),
        ("token_create", "admin"),
        ("token_revoke", "admin"),
        ("token_rotate", "admin"),
        ("token_list", "admin"),
        ("import", "admin"),
        ("rates_set", "admin"),
        ("rates_list", "read"),
    ],
)
def test_required_scope_per_action(action: str, scope: str) -> None:
    assert required_scope(action) == scope


def test_required_scope_rejects_unknown_action() -> None:
    with pytest.raises(PolicyError, match="Unknown action 'launch_rockets'"):
        required_scope("launch_rockets")


def test_agent_token_sees_no_approval_tools() -> None:
    actions = allowed_actions(scopes_for(principal_kind="agent", role="buyer"))

    assert "draft_purchase_order" in actions
    assert "search_items" in actions
    assert not actions & {"approve_draft", "reject_draft", "execute_draft", "dismiss_exception"}


def test_viewer_actions_are_read_and_export() -> None:
    actions = allowed_actions(ROLES["viewer"])

    assert actions == {a for a, s in ACTION_SCOPES.items() if s in {"read", "export"}}


def test_admin_user_may_call_every_action() -> None:
    assert allowed_actions(scopes_for(principal_kind="user", role="admin")) == set(ACTION_SCOPES)


def test_allowed_actions_rejects_unknown_scope() -> None:
    with pytest.raises(PolicyError, match="Unknown scope"):
        allowed_actions(frozenset({"read", "raed"}))


# Rule matching


TIERED_RULES = """
[[rules]]
id = "po-small"
kinds = ["purchase_order"]
max_value = "5000"
approver_roles = ["buyer", "admin"]
approvals = 1

[[rules]]
id = "po-large"
kinds = ["purchase_order"]
min_value = "5000"
approver_roles = ["approver", "admin"]
approvals = 2
"""


@pytest.mark.parametrize(
    ("value", "rule_id"),
    [
        ("0", "po-small"),
        ("4999.99", "po-small"),
        ("5000", "po-small"),
        ("5000.00", "po-small"),
        ("5000.01", "po-large"),
        ("1000000", "po-large"),
    ],
)
def test_value_bounds_pick_tier(value: str, rule_id: str) -> None:
    policy = policy_with(TIERED_RULES)

    rule = match_rule(policy, DraftFacts(kind="purchase_order", value=Decimal(value)))

    assert rule is not None
    assert rule.id == rule_id


def test_min_value_is_exclusive() -> None:
    policy = policy_with(VALID_RULE + 'min_value = "5000"\n')

    assert match_rule(policy, DraftFacts(kind="purchase_order", value=Decimal("5000"))) is None
    assert match_rule(policy, DraftFacts(kind="purchase_order", value=Decimal("5000.01"))) is not None


def test_kind_without_rule_matches_nothing() -> None:
    policy = policy_with(TIERED_RULES)

    assert match_rule(policy, DraftFacts(kind="adjustment", value=Decimal("1"))) is None


def test_empty_policy_denies_everything() -> None:
    policy = parse_policy(HEADER, source="empty.toml")

    assert policy.rules == ()
    assert match_rule(policy, DraftFacts(kind="purchase_order", value=Decimal("1"))) is None


def test_first_matching_rule_wins() -> None:
    rules = VALID_RULE + VALID_RULE.replace('id = "po"', 'id = "po-second"')
    policy = policy_with(rules)

    rule = match_rule(policy, DraftFacts(kind="purchase_order", value=Decimal("1")))

    assert rule is not None
    assert rule.id == "po"


SUPPLIER_RULE = """
[[rules]]
id = "digikey"
kinds = ["purchase_order"]
suppliers = ["DIGIKEY", "MOUSER"]
approver_roles = ["buyer"]
approvals = 1
"""


@pytest.mark.parametrize(
    ("supplier_code", "matches"),
    [("DIGIKEY", True), ("MOUSER", True), ("ARROW", False), ("digikey", False), (None, False)],
)
def test_supplier_condition(supplier_code: str | None, matches: bool) -> None:
    policy = policy_with(SUPPLIER_RULE)
    facts = DraftFacts(kind="purchase_order", value=Decimal("10"), supplier_code=supplier_code)

    assert (match_rule(policy, facts) is not None) is matches


LOCATION_RULE = """
[[rules]]
id = "factory-moves"
kinds = ["transfer"]
locations = ["FACTORY", "WH1"]
approver_roles = ["buyer"]
approvals = 1
"""


@pytest.mark.parametrize(
    ("locations", "matches"),
    [
        (("FACTORY",), True),
        (("FACTORY", "WH1"), True),
        (("FACTORY", "STORE"), False),
        (("STORE",), False),
        ((), False),
    ],
)
def test_location_condition_needs_every_location(locations: tuple[str, ...], matches: bool) -> None:
    policy = policy_with(LOCATION_RULE)
    facts = DraftFacts(kind="transfer", value=Decimal("0"), location_codes=locations)

    assert (match_rule(policy, facts) is not None) is matches


@pytest.mark.parametrize("value", [Decimal("-1"), Decimal("NaN"), Decimal("Infinity"), 10.5])
def test_draft_facts_reject_invalid_value(value: object) -> None:
    with pytest.raises(PolicyError, match="Draft value"):
        DraftFacts(kind="purchase_order", value=value)  # type: ignore[arg-type]


def test_draft_kinds_match_store() -> None:
    assert DRAFT_KINDS == STORE_DRAFT_KINDS


def test_draft_facts_reject_unknown_kind() -> None:
    with pytest.raises(PolicyError, match="Unknown draft kind 'invoice'"):
        DraftFacts(kind="invoice", value=Decimal("1"))


def test_rule_expiry_counts_from_creation() -> None:
    policy = policy_with(VALID_RULE + "expires_after_hours = 72\n")

    assert policy.rules[0].expires_at(NOW) == NOW + timedelta(hours=72)


def test_rule_without_expiry_never_expires() -> None:
    assert policy_with(VALID_RULE).rules[0].expires_at(NOW) is None


# Parsing policy files


def test_parse_policy_reads_rule_fields() -> None:
    policy = policy_with(
        VALID_RULE
        + 'max_value = "100.50"\nmin_value = "10"\nsuppliers = ["ACME"]\nlocations = ["WH1"]\n'
        + "auto_execute = true\nexpires_after_hours = 24\n"
    )
    rule = policy.rules[0]

    assert policy.name == "test"
    assert policy.version == "1"
    assert rule.kinds == ("purchase_order",)
    assert rule.approver_roles == ("buyer",)
    assert rule.approvals == 1
    assert rule.max_value == Decimal("100.50")
    assert rule.min_value == Decimal("10")
    assert rule.suppliers == ("ACME",)
    assert rule.locations == ("WH1",)
    assert rule.auto_execute is True
    assert rule.expires_after_hours == 24


def test_auto_execute_defaults_to_false() -> None:
    assert policy_with(VALID_RULE).rules[0].auto_execute is False


def test_fingerprint_names_policy_and_changes_with_file() -> None:
    first = policy_with(VALID_RULE)
    edited = policy_with(VALID_RULE.replace("approvals = 1", "approvals = 2"))

    assert first.fingerprint.startswith("test:1:")
    assert len(first.fingerprint.rsplit(":", 1)[1]) == 12
    assert first.fingerprint != edited.fingerprint


@pytest.mark.parametrize(
    ("rule_text", "expected"),
    [
        (VALID_RULE + 'approverroles = ["admin"]\n', "unknown key 'approverroles'"),
        (VALID_RULE + "max_value = 5000.5\n", 'max_value = 5000.5 is a float'),
        (VALID_RULE + "max_value = 0.1\n", 'write it as a string: max_value = "0.1"'),
        (VALID_RULE + 'max_value = "lots"\n', "max_value = 'lots' is not a decimal number"),
        (VALID_RULE + 'min_value = "-5"\n', "min_value = '-5' is negative"),
        (VALID_RULE + 'max_value = "10"\nmin_value = "10"\n', "min_value 10 (exclusive) is not below max_value 10"),
        (VALID_RULE.replace("approvals = 1", "approvals = 0"), "approvals = 0 is invalid"),
        (VALID_RULE.replace("approvals = 1", 'approvals = "2"'), "approvals = '2' is invalid"),
        (VALID_RULE.replace("approvals = 1", "approvals = true"), "approvals = True is invalid"),
        (VALID_RULE.replace("approvals = 1\n", ""), "missing required field 'approvals'"),
        (VALID_RULE.replace('approver_roles = ["buyer"]\n', ""), "missing required field 'approver_roles'"),
        (VALID_RULE.replace('kinds = ["purchase_order"]\n', ""), "missing required field 'kinds'"),
        (
            VALID_RULE.replace('["buyer"]', '["operator"]'),
            "approver_roles lists 'operator', a role without the approve scope",
        ),
        (VALID_RULE.replace('["buyer"]', '["boss"]'), "approver_roles contains unknown value 'boss'"),
        (VALID_RULE.replace('["buyer"]', "[]"), "approver_roles = [] must be a non-empty list"),
        (VALID_RULE.replace('["purchase_order"]', '["invoice"]'), "kinds contains unknown value 'invoice'"),
        (VALID_RULE + "suppliers = []\n", "suppliers = [] must be a non-empty list"),
        (VALID_RULE + 'auto_execute = "yes"\n', "auto_execute = 'yes' must be true or false"),
        (VALID_RULE + "expires_after_hours = 0\n", "expires_after_hours = 0 is invalid"),
        (VALID_RULE + VALID_RULE, "rule #2 reuses id 'po' from rule #1"),
    ],
)
def test_parse_error_names_field(rule_text: str, expected: str) -> None:
    with pytest.raises(PolicyError) as caught:
        policy_with(rule_text)

    assert "test.toml" in str(caught.value)
    assert expected in str(caught.value)


def test_parse_error_names_rule_id() -> None:
    with pytest.raises(PolicyError, match="test.toml rule 'po': unknown key 'max_valeu'"):
        policy_with(VALID_RULE + 'max_valeu = "10"\n')


def test_parse_error_names_rule_index_without_id() -> None:
    with pytest.raises(PolicyError, match=r"test.toml rule #1: missing required field 'id'"):
        policy_with(VALID_RULE.replace('id = "po"\n', ""))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[policy]\nname = "x"\n', "missing version"),
        ('[policy]\nname = "x"\nversion = 1\n', "version = 1 must be a quoted string"),
        ('[policy]\nname = ""\nversion = "1"\n', "name = '' is invalid"),
        ('[policy]\nname = "x"\nversion = "1"\nowner = "me"\n', "unknown key 'owner'"),
        ('[[rules]]\nid = "a"\n', "missing the [policy] table"),
        (HEADER + "[extra]\n", "unknown key 'extra'"),
        ('rules = "none"\n' + HEADER, "rules must be an array of tables"),
        ("[policy\n", "invalid TOML"),
    ],
)
def test_policy_header_errors(text: str, expected: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, source="test.toml")

    assert expected in str(caught.value)


def test_load_policy_names_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    with pytest.raises(PolicyError, match="Cannot read policy file"):
        load_policy(missing)


def test_load_policy_fingerprint_matches_parse(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(HEADER + VALID_RULE, encoding="utf-8")

    loaded = load_policy(path)

    assert loaded.fingerprint == parse_policy(HEADER + VALID_RULE, source="x").fingerprint
    assert loaded.source == str(path)


# The default policy


def test_default_policy_loads() -> None:
    policy = load_policy(default_policy_path())

    assert policy.name == "default"
    assert policy.fingerprint.startswith("default:2:")
    assert policy.tolerances == Tolerances()


@pytest.mark.parametrize(
    ("kind", "value", "roles", "approvals", "auto_execute"),
    [
        ("purchase_order", "5000", ("buyer", "admin"), 1, True),
        ("purchase_order", "5000.01", ("approver", "admin"), 2, True),
        ("transfer", "0", ("buyer", "approver", "admin"), 1, False),
        ("count_task", "0", ("buyer", "approver", "admin"), 1, True),
        ("supplier_note", "0", ("buyer", "admin"), 1, True),
        ("adjustment", "500", ("approver", "admin"), 1, True),
        ("adjustment", "500.01", ("approver", "admin"), 2, True),
        ("reconciliation", "20", ("approver", "admin"), 1, True),
        ("reconciliation", "9000", ("approver", "admin"), 2, True),
    ],
)
def test_default_policy_rules(
    kind: str, value: str, roles: tuple[str, ...], approvals: int, auto_execute: bool
) -> None:
    policy = load_policy(default_policy_path())

    facts = DraftFacts(kind=kind, value=Decimal(value), supplier_code="ACME", supplier_day_spend=Decimal(0))
    rule = match_rule(policy, facts)

    assert rule is not None
    assert rule.approver_roles == roles
    assert rule.approvals == approvals
    assert rule.auto_execute is auto_execute


def test_default_policy_small_po_expires_after_a_week() -> None:
    policy = load_policy(default_policy_path())

    facts = DraftFacts(kind="purchase_order", value=Decimal(10), supplier_code="ACME", supplier_day_spend=Decimal(0))
    rule = match_rule(policy, facts)

    assert rule is not None
    assert rule.expires_after_hours == 168


# Approval decisions


def test_buyer_approves_pending_draft() -> None:
    decision = approve(pending_draft(), user("bob"))

    assert decision.allowed
    assert decision.complete
    assert decision.approvals_after == 1
    assert "Approved by 'bob' (1 of 1)" in decision.reason


def test_drafter_cannot_approve_own_draft() -> None:
    decision = approve(pending_draft(created_by="bob"), user("bob"))

    assert not decision.allowed
    assert "'bob' created this draft and cannot approve it" in decision.reason


def test_drafter_match_ignores_case_and_spaces() -> None:
    decision = approve(pending_draft(created_by="Bob "), user("bob"))

    assert not decision.allowed


def test_admin_drafter_cannot_approve_own_draft() -> None:
    decision = approve(pending_draft(created_by="root"), user("root", role="admin"))

    assert not decision.allowed
    assert "'root' created this draft" in decision.reason


def test_requester_cannot_approve_agent_draft() -> None:
    draft = pending_draft(created_by="claude-agent", on_behalf_of="bob")

    decision = approve(draft, user("bob"))

    assert not decision.allowed
    assert "'bob' is the person the agent drafted for" in decision.reason


def test_admin_requester_cannot_approve_agent_draft() -> None:
    draft = pending_draft(created_by="claude-agent", on_behalf_of="root")

    decision = approve(draft, user("root", role="admin"))

    assert not decision.allowed
    assert "separation of duties" in decision.reason


def test_empty_on_behalf_of_blocks_nobody() -> None:
    assert approve(pending_draft(on_behalf_of=""), user("bob")).allowed


@pytest.mark.parametrize("kind", ["agent", "integration"])
def test_non_user_principal_cannot_approve(kind: str) -> None:
    # Scopes passed straight through: the decision must not trust a token that kept approve.
    approver = ApproverFacts(principal="bot", principal_kind=kind, role="admin", scopes=ROLES["admin"])

    decision = approve(pending_draft(), approver)

    assert not decision.allowed
    assert f"{kind.capitalize()} 'bot' cannot approve drafts because only user principals may" in decision.reason


def test_approver_without_scope_is_denied() -> None:
    approver = ApproverFacts(principal="bob", principal_kind="user", role="buyer", scopes=frozenset({"read"}))

    decision = approve(pending_draft(), approver)

    assert not decision.allowed
    assert "'bob' (role 'buyer') lacks the approve scope" in decision.reason


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_role_without_approve_scope_is_denied(role: str) -> None:
    decision = approve(pending_draft(), user("carol", role=role))

    assert not decision.allowed
    assert "lacks the approve scope" in decision.reason


def test_wrong_role_is_denied() -> None:
    decision = approve(pending_draft(approval_roles=("approver",)), user("bob", role="buyer"))

    assert not decision.allowed
    assert "'bob' has role 'buyer', but this draft's rule needs role 'approver'" in decision.reason


def test_draft_without_rule_is_denied_by_default() -> None:
    draft = pending_draft(has_rule=False, approval_roles=(), approvals_required=0)

    decision = approve(draft, user("root", role="admin"))

    assert not decision.allowed
    assert "No approval rule in 'default:1:0123456789ab' matches this draft" in decision.reason


@pytest.mark.parametrize("status", ["approved", "executed", "rejected", "withdrawn", "expired", "failed"])
def test_only_pending_draft_can_be_approved(status: str) -> None:
    decision = approve(pending_draft(status=status), user("bob"))

    assert not decision.allowed
    assert f"The draft is {status}, not pending_approval" in decision.reason


def test_expired_draft_cannot_be_approved() -> None:
    decision = approve(pending_draft(expires_at=NOW), user("bob"))

    assert not decision.allowed
    assert "expired at 2025-03-10T12:00:00+00:00" in decision.reason


def test_draft_just_before_expiry_can_be_approved() -> None:
    assert approve(pending_draft(expires_at=NOW + timedelta(seconds=1)), user("bob")).allowed


def test_draft_without_expiry_can_be_approved() -> None:
    assert approve(pending_draft(expires_at=None), user("bob")).allowed


def test_naive_now_is_rejected() -> None:
    with pytest.raises(PolicyError, match="has no time zone"):
        approve(pending_draft(), user("bob"), now=NOW.replace(tzinfo=None))


def test_changed_payload_needs_new_review() -> None:
    decision = approve(pending_draft(), user("bob"), seen=OLD_HASH)

    assert not decision.allowed
    assert "The draft changed after 'bob' reviewed it" in decision.reason


def test_same_approver_cannot_approve_twice() -> None:
    draft = pending_draft(approvals_required=2)

    decision = approve(draft, user("bob"), prior=(PriorApproval(approver="bob", payload_hash=HASH),))

    assert not decision.allowed
    assert "'bob' already approved this version of the draft; it needs 1 more approval(s)" in decision.reason
    assert decision.approvals_after == 1


def test_first_of_two_approvals_is_incomplete() -> None:
    decision = approve(pending_draft(approvals_required=2), user("bob"))

    assert decision.allowed
    assert not decision.complete
    assert decision.approvals_after == 1
    assert "1 more approval(s) needed" in decision.reason


def test_two_distinct_approvers_complete() -> None:
    draft = pending_draft(approvals_required=2)

    decision = approve(draft, user("dana"), prior=(PriorApproval(approver="bob", payload_hash=HASH),))

    assert decision.allowed
    assert decision.complete
    assert decision.approvals_after == 2
    assert "the draft is fully approved" in decision.reason


def test_stale_prior_approval_is_not_counted() -> None:
    draft = pending_draft(approvals_required=2)

    decision = approve(draft, user("dana"), prior=(PriorApproval(approver="bob", payload_hash=OLD_HASH),))

    assert decision.allowed
    assert not decision.complete
    assert decision.approvals_after == 1


def test_approver_of_old_payload_may_approve_again() -> None:
    prior = (PriorApproval(approver="bob", payload_hash=OLD_HASH),)

    decision = approve(pending_draft(), user("bob"), prior=prior)

    assert decision.allowed
    assert decision.complete


def test_duplicate_prior_approvals_count_once() -> None:
    draft = pending_draft(approvals_required=3)
    prior = (
        PriorApproval(approver="bob", payload_hash=HASH),
        PriorApproval(approver="Bob", payload_hash=HASH),
    )

    decision = approve(draft, user("dana"), prior=prior)

    assert decision.allowed
    assert decision.approvals_after == 2
    assert not decision.complete


def test_draft_state_with_rule_needs_an_approval() -> None:
    with pytest.raises(PolicyError, match="approvals_required = 0"):
        pending_draft(approvals_required=0)


# Rejection decisions


def test_approver_may_reject_pending_draft() -> None:
    decision = decide_rejection(draft=pending_draft(), approver=user("bob"), now=NOW)

    assert decision.allowed
    assert decision.reason == "Rejected by 'bob'."


def test_drafter_rejection_points_to_withdraw() -> None:
    decision = decide_rejection(draft=pending_draft(created_by="bob"), approver=user("bob"), now=NOW)

    assert not decision.allowed
    assert "use withdraw_draft" in decision.reason


def test_requester_may_reject_the_agents_draft() -> None:
    draft = pending_draft(created_by="claude-agent", on_behalf_of="bob")

    decision = decide_rejection(draft=draft, approver=user("bob"), now=NOW)

    assert decision.allowed


def test_agent_cannot_reject() -> None:
    approver = user("bot", role="agent", kind="agent")

    decision = decide_rejection(draft=pending_draft(), approver=approver, now=NOW)

    assert not decision.allowed
    assert "Agent 'bot' cannot reject drafts" in decision.reason


def test_rejection_needs_approve_scope() -> None:
    decision = decide_rejection(draft=pending_draft(), approver=user("carol", role="operator"), now=NOW)

    assert not decision.allowed
    assert "lacks the approve scope" in decision.reason


def test_only_pending_draft_can_be_rejected() -> None:
    decision = decide_rejection(draft=pending_draft(status="executed"), approver=user("bob"), now=NOW)

    assert not decision.allowed
    assert "only a pending draft can be rejected" in decision.reason


def test_rejection_needs_rule_role() -> None:
    draft = pending_draft(approval_roles=("approver",))

    decision = decide_rejection(draft=draft, approver=user("bob", role="buyer"), now=NOW)

    assert not decision.allowed
    assert "needs role 'approver'" in decision.reason


def test_draft_without_rule_can_be_rejected() -> None:
    draft = pending_draft(has_rule=False, approval_roles=(), approvals_required=0)

    decision = decide_rejection(draft=draft, approver=user("bob"), now=NOW)

    assert decision.allowed


# Tolerances


def test_tolerances_default_when_table_missing() -> None:
    tolerances = policy_with(VALID_RULE).tolerances

    assert tolerances.count_drift_abs == Decimal("2")
    assert tolerances.count_drift_pct == Decimal("5")
    assert tolerances.count_drift_value == Decimal("50")
    assert tolerances.count_drift_repeat == 2
    assert tolerances.receiving_short_pct == Decimal("2")
    assert tolerances.receiving_over_pct == Decimal("5")
    assert tolerances.mismatch_qty_abs == Decimal("0")
    assert tolerances.mismatch_value_abs == Decimal("0.01")


def test_tolerances_override_some_keys() -> None:
    tolerances = policy_with(VALID_RULE, '[tolerances]\ncount_drift_abs = "0.5"\ncount_drift_repeat = 3\n').tolerances

    assert tolerances.count_drift_abs == Decimal("0.5")
    assert tolerances.count_drift_repeat == 3
    assert tolerances.count_drift_pct == Decimal("5")


def test_tolerances_accept_integers() -> None:
    tolerances = policy_with(VALID_RULE, "[tolerances]\nreceiving_over_pct = 10\n").tolerances

    assert tolerances.receiving_over_pct == Decimal("10")


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("count_drift_pct = 5.0", "count_drift_pct = 5.0 is a float"),
        ('mismatch_value_abs = "-0.01"', "mismatch_value_abs = '-0.01' is negative"),
        ('count_drift_abs = "two"', "count_drift_abs = 'two' is not a decimal number"),
        ('count_drift_abs = "Infinity"', "count_drift_abs = 'Infinity' is not a finite number"),
        ("count_drift_repeat = 1", "count_drift_repeat = 1 is invalid"),
        ('count_drift_repeat = "2"', "count_drift_repeat = '2' is invalid"),
        ('count_drift_tolerance = "2"', "unknown key 'count_drift_tolerance'"),
    ],
)
def test_tolerance_errors(table: str, expected: str) -> None:
    with pytest.raises(PolicyError) as caught:
        policy_with(VALID_RULE, f"[tolerances]\n{table}\n")

    assert "test.toml [tolerances]" in str(caught.value)
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("approvals = 99999999999999999999", "approvals = 99999999999999999999 is invalid; write a whole number from 1 to 20"),
        ("expires_after_hours = 99999999999", "expires_after_hours = 99999999999 is invalid; write a whole number from 1 to 87840"),
    ],
)
def test_out_of_range_counts_are_refused(line: str, message: str) -> None:
    rule = VALID_RULE.replace("approvals = 1\n", "") + line + "\n"
    if not line.startswith("approvals"):
        rule += "approvals = 1\n"

    with pytest.raises(PolicyError) as caught:
        policy_with(rule)

    assert message in str(caught.value)

"""Scopes, roles and approval rules; pure decisions over records, with no I/O of their own."""

from policies.approvals import (
    ApprovalDecision,
    ApproverFacts,
    DraftState,
    PriorApproval,
    RejectionDecision,
    decide_approval,
    decide_rejection,
)
from policies.conditions import QuantityChange
from policies.errors import PolicyError
from policies.routing import (
    ExecutionCheck,
    Routing,
    RuleCheck,
    decide_execution,
    describe_requirement,
    explain_routing,
    policy_warnings,
)
from policies.rules import (
    DRAFT_KINDS,
    DraftFacts,
    Policy,
    Rule,
    default_policy_path,
    load_policy,
    match_rule,
    parse_policy,
)
from policies.scopes import (
    ACTION_SCOPES,
    PRINCIPAL_KINDS,
    ROLES,
    SCOPES,
    WITHHELD_FROM_AGENTS,
    allowed_actions,
    required_scope,
    scopes_for,
)
from policies.tolerances import Tolerances, parse_tolerances

__all__ = [
    "ACTION_SCOPES",
    "DRAFT_KINDS",
    "PRINCIPAL_KINDS",
    "ROLES",
    "SCOPES",
    "WITHHELD_FROM_AGENTS",
    "ApprovalDecision",
    "ApproverFacts",
    "DraftFacts",
    "DraftState",
    "ExecutionCheck",
    "Policy",
    "PolicyError",
    "PriorApproval",
    "QuantityChange",
    "RejectionDecision",
    "Routing",
    "Rule",
    "RuleCheck",
    "Tolerances",
    "allowed_actions",
    "decide_approval",
    "decide_execution",
    "decide_rejection",
    "default_policy_path",
    "describe_requirement",
    "explain_routing",
    "load_policy",
    "match_rule",
    "parse_policy",
    "parse_tolerances",
    "policy_warnings",
    "required_scope",
    "scopes_for",
]

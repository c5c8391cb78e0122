"""Scopes, the roles that bundle them, and the scope each action requires."""

from __future__ import annotations

from policies.errors import PolicyError

SCOPES = ("read", "draft", "approve", "execute", "export", "change", "sync", "admin")

ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read", "export"}),
    "agent": frozenset({"read", "draft"}),
    "operator": frozenset({"read", "draft", "change"}),
    "buyer": frozenset({"read", "draft", "approve", "execute", "change", "export"}),
    # A finance approver reviews and executes spend but prepares no drafts.
    "approver": frozenset({"read", "approve", "execute", "export"}),
    "integration": frozenset({"read", "sync"}),
    "admin": frozenset(SCOPES),
}

PRINCIPAL_KINDS = ("user", "agent", "integration")

# Only a person may approve, execute or administer. An agent or integration token
# loses these scopes whatever role it was created with, so a mistaken
# `--role admin` on an agent token cannot hand an LLM the approve path.
WITHHELD_FROM_AGENTS = frozenset({"approve", "execute", "admin"})

_READ_ACTIONS = (
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
    "activity_list",
    "activity_show",
    "find_low_stock",
    "find_count_drift",
    "find_short_receiving",
    "find_supplier_delays",
    "find_mismatches",
    "find_exceptions",
    "get_exception",
    "ledger_verify",
    "activity_verify",
    "activity_checkpoint",
    "transfer_list",
    "list_outbox",
    "get_outbox_message",
    # The MCP protocol surface besides tools: argument completion and prompts.
    "complete_argument",
    "get_prompt",
)
_DRAFT_ACTIONS = (
    "draft_purchase_order",
    "draft_transfer",
    "draft_count_task",
    "draft_supplier_note",
    "draft_reconciliation",
    "draft_adjustment",
    "withdraw_draft",
)

# Required scope per MCP tool name and CLI action.
ACTION_SCOPES: dict[str, str] = {
    **{action: "read" for action in _READ_ACTIONS},
    **{action: "draft" for action in _DRAFT_ACTIONS},
    "approve_draft": "approve",
    "reject_draft": "approve",
    "dismiss_exception": "approve",
    "execute_draft": "execute",
    "ingest_external_snapshot": "sync",
    "receive": "change",
    "transfer_receive": "change",
    "count_submit": "change",
    "count_list": "read",
    "count_show": "read",
    "activity_export": "export",
    "token_create": "admin",
    "token_revoke": "admin",
    "token_rotate": "admin",
    "token_list": "admin",
    "import": "admin",
    "init": "admin",
    "reorder_rules_set": "admin",
    "rates_set": "admin",
    "rates_list": "read",
    "policy_show": "read",
    "policy_list": "read",
    "policy_check": "read",
    "policy_load": "admin",
}


def scopes_for(*, principal_kind: str, role: str) -> frozenset[str]:
    """Return the scopes a token of this principal kind and role carries.

    Agent and integration principals never get the scopes in WITHHELD_FROM_AGENTS.

    Raises:
        PolicyError: If the principal kind or the role is unknown.
    """
    if principal_kind not in PRINCIPAL_KINDS:
        raise PolicyError(
            f"Unknown principal kind {principal_kind!r}; use one of {', '.join(PRINCIPAL_KINDS)}."
        )
    if role not in ROLES:
        raise PolicyError(f"Unknown role {role!r}; use one of {', '.join(ROLES)}.")

    scopes = ROLES[role]
    if principal_kind != "user":
        scopes = scopes - WITHHELD_FROM_AGENTS
    return scopes


def allowed_actions(scopes: frozenset[str]) -> frozenset[str]:
    """Return the actions that a token with these scopes may call.

    Raises:
        PolicyError: If a scope is not one of SCOPES, because a misspelt scope
            stored on a token would otherwise silently grant nothing.
    """
    unknown = sorted(scopes - frozenset(SCOPES))
    if unknown:
        raise PolicyError(
            f"Unknown scope(s) {', '.join(map(repr, unknown))}; valid scopes are {', '.join(SCOPES)}."
        )
    return frozenset(action for action, scope in ACTION_SCOPES.items() if scope in scopes)


def required_scope(action: str) -> str:
    """Return the scope required to call an MCP tool or CLI action.

    Raises:
        PolicyError: If the action is not in ACTION_SCOPES.
    """
    try:
        return ACTION_SCOPES[action]
    except KeyError:
        raise PolicyError(
            f"Unknown action {action!r}; add it to ACTION_SCOPES with the scope it requires."
        ) from None

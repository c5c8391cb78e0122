"""Workspace policies end to end: loading and versions, routing on spend and stock share, and re-checks at execution."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from mcp import Client
from sqlalchemy import delete, func, select
from typer.testing import CliRunner, Result

from order3_mcp.app import Caller, Order3
from order3_mcp.cli import app as cli_app
from order3_mcp.inputs import PurchaseLine
from order3_mcp.server import build_server
from order3_mcp.services import approvals, drafts, policy_routing
from order3_mcp.services import policy as policy_service
from order3_mcp.services.sync import ingest_external_snapshot
from policies import (
    DraftFacts,
    PolicyError,
    QuantityChange,
    match_rule,
    parse_policy,
    policy_warnings,
    scopes_for,
)
from store import drafts as draft_store
from store.db import Database, open_database
from store.errors import (
    ApprovalRequiredError,
    ConflictError,
    PermissionDeniedError,
)
from store.models import (
    ActivityEvent,
    Draft,
    DraftPolicyFacts,
    Item,
    Location,
    PolicyVersion,
    PurchaseOrder,
    PurchaseOrderLine,
    Supplier,
    SupplierItem,
)
from store.tokens import issue_token
from store.workspaces import sku_key
from tests.conftest import new_database_location, run_sql
from tests.factory import Tokens, small_workspace

runner = CliRunner()

RATIONALE = "WIDGET-1 is below its reorder point at WH1."

TEAM_V1 = """\
[policy]
name = "team"
version = "1"

[[rules]]
id = "po-small"
kinds = ["purchase_order"]
max_value = "5000"
max_supplier_daily_spend = "5000"
approver_roles = ["buyer", "admin"]
approvals = 1

[[rules]]
id = "po-large"
kinds = ["purchase_order"]
approver_roles = ["approver", "admin"]
approvals = 2
"""
# Version 2 tightens po-small: two people with the approver or admin role.
TEAM_V2 = TEAM_V1.replace('version = "1"', 'version = "2"').replace(
    'approver_roles = ["buyer", "admin"]\napprovals = 1', 'approver_roles = ["approver", "admin"]\napprovals = 2'
)


# Helpers


async def add_user(database: Database, tokens: Tokens, principal: str, role: str, *, kind: str = "user", for_person: str = "") -> Caller:
    """Issue a token in the small workspace and return its caller."""
    base = tokens.admin
    scopes = scopes_for(principal_kind=kind, role=role)
    async with database.write() as session:
        token, _ = await issue_token(
            session, workspace_id=base.workspace_id, principal_kind=kind, principal=principal, role=role,
            scopes=scopes, on_behalf_of=for_person,
        )
    return Caller(
        workspace_id=base.workspace_id, workspace=base.workspace, base_currency=base.base_currency,
        timezone=base.timezone, token_id=token.id, principal_kind=kind, principal=principal, role=role,
        scopes=scopes, on_behalf_of=for_person, channel="mcp" if kind == "agent" else "cli",
    )


async def draft_widgets(app: Order3, caller: Caller, quantity: int = 1000):
    """Draft a purchase of WIDGET-1 from ACME; from 100 units they cost 2.00, so 1000 are worth 2000.00."""
    return await drafts.draft_purchase_order(
        app, caller, supplier="ACME", lines=[PurchaseLine(sku="WIDGET-1", quantity=Decimal(quantity))],
        rationale=RATIONALE, title="", exception_ids=[], idempotency_key=None,
    )


async def stored_draft(database: Database, draft_id: int) -> Draft:
    async with database.read() as session:
        return (await session.execute(select(Draft).where(Draft.id == draft_id))).scalar_one()


async def count(database: Database, model: type) -> int:
    async with database.read() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def last_event(database: Database) -> ActivityEvent:
    async with database.read() as session:
        return (await session.execute(select(ActivityEvent).order_by(ActivityEvent.seq.desc()).limit(1))).scalar_one()


def clock_at(moment: list[datetime]):
    return lambda: moment[0]


# Rule conditions, decided without I/O


SHARE_POLICY = """\
[policy]
name = "stock"
version = "1"

[[rules]]
id = "small-correction"
kinds = ["adjustment", "transfer"]
max_quantity_share = "0.10"
approver_roles = ["approver"]
approvals = 1

[[rules]]
id = "large-correction"
kinds = ["adjustment", "transfer"]
approver_roles = ["approver", "admin"]
approvals = 2
"""


@pytest.mark.parametrize(
    ("change", "on_hand", "rule_id"),
    [
        ("-10", "100", "small-correction"),
        ("10", "100", "small-correction"),
        ("-10.01", "100", "large-correction"),
        ("11", "100", "large-correction"),
        ("0", "0", "small-correction"),
        ("1", "0", "large-correction"),
    ],
)
def test_quantity_share_routes_by_on_hand(change: str, on_hand: str, rule_id: str) -> None:
    policy = parse_policy(SHARE_POLICY, source="stock.toml")
    facts = DraftFacts(
        kind="adjustment",
        value=Decimal(5),
        quantity_changes=(QuantityChange(sku="W-1", location_code="WH1", change=Decimal(change), on_hand=Decimal(on_hand)),),
    )

    rule = match_rule(policy, facts)

    assert rule is not None
    assert rule.id == rule_id


def test_quantity_share_checks_every_line() -> None:
    policy = parse_policy(SHARE_POLICY, source="stock.toml")
    within = QuantityChange(sku="W-1", location_code="WH1", change=Decimal(-5), on_hand=Decimal(100))
    beyond = QuantityChange(sku="G-2", location_code="WH2", change=Decimal(3), on_hand=Decimal(20))
    facts = DraftFacts(kind="transfer", value=Decimal(0), quantity_changes=(within, beyond))

    unmet = policy.rules[0].unmet_condition(facts)

    assert unmet == "G-2 at WH2 changes by 3 against 20 on hand, a share of 0.1500, above max_quantity_share 0.10"


def test_share_without_facts_fails() -> None:
    policy = parse_policy(SHARE_POLICY, source="stock.toml")

    rule = match_rule(policy, DraftFacts(kind="transfer", value=Decimal(0)))

    assert rule is not None
    assert rule.id == "large-correction"


@pytest.mark.parametrize(
    ("earlier", "value", "rule_id"),
    [("0", "2000", "po-small"), ("3000", "2000", "po-small"), ("4000", "2000", "po-large"), ("0", "5000.01", "po-large")],
)
def test_daily_spend_counts_earlier_drafts(earlier: str, value: str, rule_id: str) -> None:
    policy = parse_policy(TEAM_V1, source="team.toml")
    facts = DraftFacts(kind="purchase_order", value=Decimal(value), supplier_code="ACME", supplier_day_spend=Decimal(earlier))

    rule = match_rule(policy, facts)

    assert rule is not None
    assert rule.id == rule_id


def test_daily_spend_reason_names_sum() -> None:
    policy = parse_policy(TEAM_V1, source="team.toml")
    facts = DraftFacts(kind="purchase_order", value=Decimal(2000), supplier_code="ACME", supplier_day_spend=Decimal(4000))

    assert policy.rules[0].unmet_condition(facts) == (
        "supplier ACME spend on the draft's business day would be 6000 (4000 in earlier drafts + 2000 in this one), "
        "above max_supplier_daily_spend 5000"
    )


@pytest.mark.parametrize(
    ("rule_text", "expected"),
    [
        ('kinds = ["adjustment"]\nmax_quantity_share = "10"\n', "max_quantity_share = '10' is out of range"),
        ('kinds = ["adjustment"]\nmax_quantity_share = "0"\n', "max_quantity_share = '0' is out of range"),
        ('kinds = ["adjustment"]\nmax_quantity_share = 0.1\n', 'write it as a string: max_quantity_share = "0.1"'),
        ('kinds = ["purchase_order"]\nmax_quantity_share = "0.1"\n', "max_quantity_share applies only to kinds transfer, adjustment, reconciliation, but kinds also lists purchase_order"),
        ('kinds = ["transfer"]\nmax_supplier_daily_spend = "100"\n', "max_supplier_daily_spend applies only to kinds purchase_order, but kinds also lists transfer"),
        ('kinds = ["purchase_order"]\nmax_supplier_daily_spend = "0"\n', "max_supplier_daily_spend = '0' would match no purchase"),
    ],
)
def test_condition_errors_name_fix(rule_text: str, expected: str) -> None:
    text = f'[policy]\nname = "x"\nversion = "1"\n\n[[rules]]\nid = "r"\n{rule_text}approver_roles = ["admin"]\napprovals = 1\n'

    with pytest.raises(PolicyError) as caught:
        parse_policy(text, source="bad.toml")

    assert str(caught.value).startswith("bad.toml rule 'r': ")
    assert expected in str(caught.value)


def test_warnings_name_shadowed_rule() -> None:
    text = TEAM_V1.replace('max_value = "5000"\nmax_supplier_daily_spend = "5000"\n', "")

    warnings = policy_warnings(parse_policy(text, source="team.toml"))

    assert warnings[-1] == (
        "Rule 'po-large' is never reached: rule 'po-small' before it has no conditions and matches every draft "
        "of its kinds; move the narrower rule first."
    )
    assert len(warnings) == 6


@pytest.mark.parametrize(
    ("moment", "timezone", "start", "end"),
    [
        ("2026-12-01T10:00:00+00:00", "Pacific/Auckland", "2026-11-30T11:00:00+00:00", "2026-12-01T11:00:00+00:00"),
        ("2026-12-01T11:30:00+00:00", "Pacific/Auckland", "2026-12-01T11:00:00+00:00", "2026-12-02T11:00:00+00:00"),
        # Clocks in Berlin go forward on 29 March 2026, so that business day lasts 23 hours.
        ("2026-03-29T12:00:00+00:00", "Europe/Berlin", "2026-03-28T23:00:00+00:00", "2026-03-29T22:00:00+00:00"),
        ("2026-12-01T23:59:59+00:00", "UTC", "2026-12-01T00:00:00+00:00", "2026-12-02T00:00:00+00:00"),
    ],
)
def test_business_day_bounds(moment: str, timezone: str, start: str, end: str) -> None:
    bounds = policy_routing.business_day_bounds(datetime.fromisoformat(moment), timezone=timezone)

    assert bounds == (datetime.fromisoformat(start), datetime.fromisoformat(end))


# Routing through the store


async def test_on_hand_facts_come_from_the_store(database: Database) -> None:
    await small_workspace(database)
    async with database.read() as session:
        widget = (await session.execute(select(Item).where(Item.sku == "WIDGET-1"))).scalar_one()
        wh1 = (await session.execute(select(Location).where(Location.code == "WH1"))).scalar_one()
        changes = await policy_routing.quantity_changes(
            session, workspace_id=widget.workspace_id, changes=[("WIDGET-1", widget.id, "WH1", wh1.id, Decimal(-1))]
        )

    assert changes == (QuantityChange(sku="WIDGET-1", location_code="WH1", change=Decimal(-1), on_hand=Decimal(5)),)


async def test_split_purchase_reaches_stricter_rule(any_database: Database) -> None:
    # 10:00 UTC is 23:00 in Auckland (UTC+13 in December); 11:30 UTC is already the next day there.
    tokens = await small_workspace(any_database, timezone="Pacific/Auckland")
    now = [datetime(2026, 12, 1, 10, 0, tzinfo=UTC)]
    app = Order3(any_database, clock=clock_at(now))

    first = await draft_widgets(app, tokens.agent)
    second = await draft_widgets(app, tokens.agent)
    third = await draft_widgets(app, tokens.agent)
    now[0] = datetime(2026, 12, 1, 11, 30, tzinfo=UTC)
    next_day = await draft_widgets(app, tokens.agent)

    assert [d.estimated_value for d in (first, second, third, next_day)] == ["2000", "2000", "2000", "2000"]
    assert [d.policy_rule for d in (first, second, third, next_day)] == [
        "po-up-to-5000", "po-up-to-5000", "po-above-5000", "po-up-to-5000",
    ]
    assert third.approvals_required == 2
    assert third.approver_roles == ["approver", "admin"]


async def test_concurrent_split_drafts_are_summed(any_database: Database) -> None:
    tokens = await small_workspace(any_database)
    app = Order3(any_database, clock=lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC))

    results = await asyncio.gather(*(draft_widgets(app, tokens.agent) for _ in range(3)))

    assert sorted(result.policy_rule for result in results) == ["po-above-5000", "po-up-to-5000", "po-up-to-5000"]


async def test_split_purchase_over_mcp(database: Database) -> None:
    tokens = await small_workspace(database)
    app = Order3(database, clock=lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    arguments = {"supplier": "ACME", "lines": [{"sku": "WIDGET-1", "quantity": 1000}], "rationale": RATIONALE}

    async with Client(build_server(app, tokens.agent)) as client:
        results = [await client.call_tool("draft_purchase_order", arguments) for _ in range(3)]

    assert [result.is_error for result in results] == [False, False, False]
    assert [result.structured_content["policy_rule"] for result in results] == ["po-up-to-5000", "po-up-to-5000", "po-above-5000"]
    assert results[2].structured_content["approval_owner"] == (
        "2 distinct approvers with role approver or admin (policy rule po-above-5000)"
    )


async def test_withdrawn_draft_leaves_the_day_total(database: Database) -> None:
    tokens = await small_workspace(database)
    app = Order3(database, clock=lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC))

    await draft_widgets(app, tokens.agent)
    second = await draft_widgets(app, tokens.agent)
    await approvals.withdraw_draft(app, tokens.agent, draft_id=second.draft_id, reason="Ordered by phone instead.")
    third = await draft_widgets(app, tokens.agent)

    assert third.policy_rule == "po-up-to-5000"


async def test_facts_rebuilt_for_draft_without_record(database: Database) -> None:
    tokens = await small_workspace(database)
    app = Order3(database, clock=lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    for _ in range(2):
        await draft_widgets(app, tokens.agent)
    third = await draft_widgets(app, tokens.agent)
    await draft_widgets(app, tokens.agent)
    async with database.write() as session:
        await session.execute(delete(DraftPolicyFacts).where(DraftPolicyFacts.draft_id == third.draft_id))

    async with database.read() as session:
        draft = (await session.execute(select(Draft).where(Draft.id == third.draft_id))).scalar_one()
        facts = await policy_routing.facts_for_draft(session, draft=draft, timezone="UTC")

    # Only the two drafts prepared before it count, not the fourth one.
    assert facts == DraftFacts(
        kind="purchase_order", value=Decimal(2000), supplier_code="ACME", supplier_day_spend=Decimal(4000)
    )


async def test_threshold_routes_to_two_approvers(database: Database) -> None:
    tokens = await small_workspace(database)
    carol = await add_user(database, tokens, "carol", "approver")
    app = Order3(database, clock=lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    drafted = await draft_widgets(app, tokens.agent, quantity=2600)

    first = await approvals.approve_draft(app, tokens.admin, draft_id=drafted.draft_id, expected_hash="", reason="")
    second = await approvals.approve_draft(app, carol, draft_id=drafted.draft_id, expected_hash="", reason="")

    assert drafted.estimated_value == "5200"
    assert drafted.policy_rule == "po-above-5000"
    assert (first.status, first.approvals_recorded) == ("pending_approval", 1)
    assert second.status == "executed"
    assert await count(database, PurchaseOrder) == 1


async def test_buyer_cannot_approve_large_purchase(database: Database) -> None:
    tokens = await small_workspace(database)
    app = Order3(database, clock=lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    drafted = await draft_widgets(app, tokens.agent, quantity=2600)

    with pytest.raises(PermissionDeniedError, match="'alice' has role 'buyer', but this draft's rule needs one of the roles 'approver', 'admin'"):
        await approvals.approve_draft(app, tokens.buyer, draft_id=drafted.draft_id, expected_hash="", reason="")


# Loading policies through the service


async def test_loaded_policy_routes_new_drafts(database: Database) -> None:
    tokens = await small_workspace(database)
    app = Order3(database, clock=lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC))

    loaded = await policy_service.load_policy(app, tokens.admin, text=TEAM_V1, source="team.toml")
    drafted = await draft_widgets(app, tokens.agent)

    assert loaded.changed is True
    assert loaded.policy.fingerprint == f"team:1:{loaded.policy.sha256[:12]}"
    assert drafted.policy_rule == "po-small"
    assert (await stored_draft(database, drafted.draft_id)).policy_version == loaded.policy.fingerprint


async def test_same_version_other_text_rejected(database: Database) -> None:
    tokens = await small_workspace(database)
    app = Order3(database)
    await policy_service.load_policy(app, tokens.admin, text=TEAM_V1, source="team.toml")
    edited = TEAM_V1.replace('max_value = "5000"', 'max_value = "9000"')

    with pytest.raises(ConflictError, match="Policy version '1' was already loaded on .* with different text"):
        await policy_service.load_policy(app, tokens.admin, text=edited, source="team.toml")

    assert await count(database, PolicyVersion) == 1
    active = await policy_service.show_policy(app, tokens.admin)
    assert active.rules[0].conditions == "max_value=5000; max_supplier_daily_spend=5000"


async def test_superseded_version_cannot_be_reloaded(database: Database) -> None:
    tokens = await small_workspace(database)
    app = Order3(database)
    await policy_service.load_policy(app, tokens.admin, text=TEAM_V1, source="team.toml")
    await policy_service.load_policy(app, tokens.admin, text=TEAM_V2, source="team.toml")

    with pytest.raises(ConflictError, match="Policy version '1' was superseded by version '2'"):
        await policy_service.load_policy(app, tokens.admin, text=TEAM_V1, source="team.toml")

    assert await count(database, PolicyVersion) == 2


async def test_edited_shipped_default_needs_new_version(database: Database) -> None:
    tokens = await small_workspace(database)
    app = Order3(database)
    shipped = Path(app.policy.source).read_text(encoding="utf-8")
    edited = shipped.replace('max_value = "500"', 'max_value = "800"')

    with pytest.raises(ConflictError, match="Policy 'default' version '2' is the shipped default"):
        await policy_service.load_policy(app, tokens.admin, text=edited, source="default.toml")

    assert edited != shipped
    assert await count(database, PolicyVersion) == 0


async def test_load_reroutes_pending_drafts(database: Database) -> None:
    tokens = await small_workspace(database)
    app = Order3(database, clock=lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    await policy_service.load_policy(app, tokens.admin, text=TEAM_V1, source="team.toml")
    drafted = await draft_widgets(app, tokens.agent)

    loaded = await policy_service.load_policy(app, tokens.admin, text=TEAM_V2, source="team.toml")

    draft = await stored_draft(database, drafted.draft_id)
    assert loaded.rerouted_drafts == [drafted.draft_id]
    assert (draft.policy_rule, draft.approval_role, draft.approvals_required) == ("po-small", "approver,admin", 2)
    assert draft.policy_version == loaded.policy.fingerprint
    with pytest.raises(PermissionDeniedError, match="this draft's rule needs one of the roles 'approver', 'admin'"):
        await approvals.approve_draft(app, tokens.buyer, draft_id=drafted.draft_id, expected_hash="", reason="")


async def test_loaded_tolerances_apply_to_sync(database: Database) -> None:
    tokens = await small_workspace(database)
    shop = await add_user(database, tokens, "shop-eu", "integration", kind="integration")
    app = Order3(database)
    # The channel reports 7 WIDGET-1 at WH1, where Order3 has 5 available.
    record = {"external_id": "q-1", "kind": "channel_quantity", "sku": "WIDGET-1", "location": "WH1", "quantity": "7"}

    before = await ingest_external_snapshot(app, shop, source="shop-eu", batch_id="b-1", records=[record])
    await policy_service.load_policy(app, tokens.admin, text=TEAM_V1 + '\n[tolerances]\nmismatch_qty_abs = "3"\n', source="team.toml")
    after = await ingest_external_snapshot(app, shop, source="shop-eu", batch_id="b-2", records=[record])

    assert (before.mismatch, before.agreed) == (1, 0)
    assert (after.mismatch, after.agreed) == (0, 1)


def fixed_clock() -> datetime:
    return datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def test_new_fallback_policy_reroutes_at_approval(database: Database) -> None:
    tokens = await small_workspace(database)
    carol = await add_user(database, tokens, "carol", "approver")
    drafted = await draft_widgets(Order3(database, clock=fixed_clock), tokens.agent)
    # The same workspace served by a release whose shipped policy is TEAM_V2.
    upgraded = Order3(database, clock=fixed_clock, policy=parse_policy(TEAM_V2, source="team.toml"))

    first = await approvals.approve_draft(upgraded, carol, draft_id=drafted.draft_id, expected_hash="", reason="")

    assert drafted.policy_rule == "po-up-to-5000"
    assert (first.policy_rule, first.approvals_required, first.status, first.approvals_recorded) == (
        "po-small", 2, "pending_approval", 1,
    )
    event = await last_event(database)
    assert event.summary == (
        f"Routed draft {drafted.draft_id} to rule 'po-small' of policy {upgraded.policy.fingerprint}. "
        f"Recorded approval 1 of 2 for draft {drafted.draft_id}; another distinct approver is needed."
    )


async def test_denied_approval_keeps_new_routing(database: Database) -> None:
    tokens = await small_workspace(database)
    drafted = await draft_widgets(Order3(database, clock=fixed_clock), tokens.agent)
    upgraded = Order3(database, clock=fixed_clock, policy=parse_policy(TEAM_V2, source="team.toml"))

    with pytest.raises(PermissionDeniedError, match="'alice' has role 'buyer', but this draft's rule needs"):
        await approvals.approve_draft(upgraded, tokens.buyer, draft_id=drafted.draft_id, expected_hash="", reason="")

    draft = await stored_draft(database, drafted.draft_id)
    assert (draft.policy_rule, draft.approvals_required, draft.status) == ("po-small", 2, "pending_approval")
    assert draft.policy_version == upgraded.policy.fingerprint
    event = await last_event(database)
    assert (event.action, event.outcome) == ("approve_draft", "denied")


# Approvals checked again at execution


async def test_tightened_policy_holds_approved_draft(database: Database) -> None:
    tokens = await small_workspace(database)
    carol = await add_user(database, tokens, "carol", "approver")
    dave = await add_user(database, tokens, "dave", "approver")
    app = Order3(database, clock=lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    await policy_service.load_policy(app, tokens.admin, text=TEAM_V1, source="team.toml")
    drafted = await draft_widgets(app, tokens.agent)
    approved = await approvals.approve_draft(app, tokens.second_buyer, draft_id=drafted.draft_id, expected_hash="", reason="")
    tightened = await policy_service.load_policy(app, tokens.admin, text=TEAM_V2, source="team.toml")

    with pytest.raises(ApprovalRequiredError) as refused:
        await approvals.execute_draft(app, tokens.buyer, draft_id=drafted.draft_id)

    assert approved.status == "approved"
    assert tightened.rerouted_drafts == []
    assert str(refused.value) == (
        f"Draft {drafted.draft_id} was not executed. The policy changed after approval: the active policy "
        f"'{tightened.policy.fingerprint}' needs 2 approvals from role approver or admin (rule 'po-small'), and 0 of "
        "the recorded approvals qualify. The draft is back to pending approval; 2 more approval(s) from role "
        "approver or admin are needed before it can execute."
    )
    draft = await stored_draft(database, drafted.draft_id)
    assert (draft.status, draft.approvals_required, draft.approval_role) == ("pending_approval", 2, "approver,admin")
    assert draft.decided_at is None
    assert await count(database, PurchaseOrder) == 0
    event = await last_event(database)
    assert (event.action, event.outcome, event.draft_id) == ("execute_draft", "denied", drafted.draft_id)
    detail = await drafts.get_draft(app, tokens.buyer, draft_id=drafted.draft_id)
    assert detail.approvals_recorded == 0
    assert len(detail.approvals) == 1

    await approvals.approve_draft(app, carol, draft_id=drafted.draft_id, expected_hash="", reason="")
    await approvals.approve_draft(app, dave, draft_id=drafted.draft_id, expected_hash="", reason="")
    executed = await approvals.execute_draft(app, tokens.buyer, draft_id=drafted.draft_id)

    assert executed.status == "executed"
    assert await count(database, PurchaseOrder) == 1


async def test_tightened_policy_holds_over_mcp(database: Database) -> None:
    tokens = await small_workspace(database)
    app = Order3(database, clock=fixed_clock)
    await policy_service.load_policy(app, tokens.admin, text=TEAM_V1, source="team.toml")
    drafted = await draft_widgets(app, tokens.agent)
    await approvals.approve_draft(app, tokens.second_buyer, draft_id=drafted.draft_id, expected_hash="", reason="")
    await policy_service.load_policy(app, tokens.admin, text=TEAM_V2, source="team.toml")

    async with Client(build_server(app, tokens.buyer)) as client:
        result = await client.call_tool("execute_draft", {"draft_id": drafted.draft_id})

    assert result.is_error
    assert result.content[0].text.startswith(
        f"Error executing tool execute_draft: Draft {drafted.draft_id} was not executed. The policy changed after approval"
    )
    assert (await stored_draft(database, drafted.draft_id)).status == "pending_approval"
    assert await count(database, PurchaseOrder) == 0


async def test_loosened_policy_lets_approved_draft_execute(database: Database) -> None:
    tokens = await small_workspace(database)
    carol = await add_user(database, tokens, "carol", "approver")
    app = Order3(database, clock=lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    await policy_service.load_policy(app, tokens.admin, text=TEAM_V2, source="team.toml")
    drafted = await draft_widgets(app, tokens.agent)
    await approvals.approve_draft(app, carol, draft_id=drafted.draft_id, expected_hash="", reason="")
    await approvals.approve_draft(app, tokens.admin, draft_id=drafted.draft_id, expected_hash="", reason="")
    looser = TEAM_V1.replace('version = "1"', 'version = "3"')
    await policy_service.load_policy(app, tokens.admin, text=looser, source="team.toml")

    executed = await approvals.execute_draft(app, tokens.buyer, draft_id=drafted.draft_id)

    assert executed.status == "executed"
    assert await count(database, PurchaseOrder) == 1


async def test_changed_payload_voids_approval(database: Database) -> None:
    tokens = await small_workspace(database)
    app = Order3(database, clock=lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    await policy_service.load_policy(app, tokens.admin, text=TEAM_V1, source="team.toml")
    drafted = await draft_widgets(app, tokens.agent)
    await approvals.approve_draft(app, tokens.second_buyer, draft_id=drafted.draft_id, expected_hash="", reason="")
    # The draft is edited after approval: 2000 widgets instead of 1000.
    async with database.write() as session:
        draft = (await session.execute(select(Draft).where(Draft.id == drafted.draft_id))).scalar_one()
        payload = {**draft.payload, "lines": [{**draft.payload["lines"][0], "quantity": "2000"}]}
        draft.payload = payload
        draft.payload_hash = draft_store.payload_hash("purchase_order", payload)
        new_hash = draft.payload_hash

    with pytest.raises(ApprovalRequiredError, match=rf"payload \(hash {new_hash[:12]}\) is not the one its approvals were given for"):
        await approvals.execute_draft(app, tokens.buyer, draft_id=drafted.draft_id)
    with pytest.raises(ConflictError, match=f"is not the version you reviewed: its payload hash is {new_hash[:12]}"):
        await approvals.approve_draft(app, tokens.second_buyer, draft_id=drafted.draft_id, expected_hash=drafted.payload_hash, reason="")

    assert (await stored_draft(database, drafted.draft_id)).status == "pending_approval"
    assert await count(database, PurchaseOrder) == 0
    again = await approvals.approve_draft(app, tokens.second_buyer, draft_id=drafted.draft_id, expected_hash=new_hash, reason="")
    executed = await approvals.execute_draft(app, tokens.buyer, draft_id=drafted.draft_id)
    assert again.status == "approved"
    assert executed.status == "executed"
    async with database.read() as session:
        ordered = (await session.execute(select(PurchaseOrderLine.quantity_ordered))).scalars().all()
    assert ordered == [Decimal(2000)]


async def test_changed_payload_restarts_approval_count(database: Database) -> None:
    tokens = await small_workspace(database)
    carol = await add_user(database, tokens, "carol", "approver")
    app = Order3(database, clock=lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    drafted = await draft_widgets(app, tokens.agent, quantity=2600)
    await approvals.approve_draft(app, tokens.admin, draft_id=drafted.draft_id, expected_hash="", reason="")
    async with database.write() as session:
        draft = (await session.execute(select(Draft).where(Draft.id == drafted.draft_id))).scalar_one()
        payload = {**draft.payload, "currency": draft.payload["currency"], "lines": [{**draft.payload["lines"][0], "quantity": "2700"}]}
        draft.payload = payload
        draft.payload_hash = draft_store.payload_hash("purchase_order", payload)

    second = await approvals.approve_draft(app, carol, draft_id=drafted.draft_id, expected_hash="", reason="")

    assert (second.status, second.approvals_recorded) == ("pending_approval", 1)
    assert await count(database, PurchaseOrder) == 0


# Separation of duties through the service


@pytest.mark.parametrize("who", ["drafter", "requester"])
async def test_admin_cannot_approve_own_request(database: Database, who: str) -> None:
    tokens = await small_workspace(database)
    app = Order3(database, clock=lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    agent_for_root = await add_user(database, tokens, "root-bot", "agent", kind="agent", for_person="root")
    drafter = tokens.admin if who == "drafter" else agent_for_root
    drafted = await draft_widgets(app, drafter)

    with pytest.raises(PermissionDeniedError, match="separation of duties"):
        await approvals.approve_draft(app, tokens.admin, draft_id=drafted.draft_id, expected_hash="", reason="")

    assert (await stored_draft(database, drafted.draft_id)).status == "pending_approval"
    assert await count(database, PurchaseOrder) == 0


# The CLI


def order3(db: Path, *args: str, token: str | None = None) -> Result:
    options = ["--db", str(db)] + (["--token", token] if token else [])
    return runner.invoke(cli_app, [*options, *args], env={"ORDER3_TOKEN": None, "ORDER3_DB": None, "COLUMNS": "200"})


def secret_in(output: str) -> str:
    return next(line.strip() for line in output.splitlines() if line.strip().startswith("o3_"))


def rows(db: Path | str, sql: str) -> list[tuple]:
    return run_sql(db, sql)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return new_database_location(tmp_path)


@pytest.fixture
def admin_token(db: Path) -> str:
    result = order3(db, "init", "--workspace", "main", "--admin", "root")
    assert result.exit_code == 0, result.stderr
    return secret_in(result.stdout)


@pytest.fixture
def team_file(tmp_path: Path) -> Path:
    path = tmp_path / "team.toml"
    path.write_text(TEAM_V1, encoding="utf-8")
    return path


def test_cli_show_prints_shipped_default(db: Path, admin_token: str) -> None:
    result = order3(db, "policy", "show", token=admin_token)

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Policy 'default' version '2' (shipped default, active)"
    assert lines[1].startswith("SHA-256: ")
    assert len(lines[1]) == len("SHA-256: ") + 64
    assert "po-up-to-5000" in result.stdout
    assert "max_supplier_daily_spend=5000" in result.stdout


def test_cli_load_then_show(db: Path, admin_token: str, team_file: Path) -> None:
    loaded = order3(db, "policy", "load", str(team_file), token=admin_token)
    show_result = order3(db, "policy", "show", token=admin_token)
    listed = order3(db, "policy", "list", token=admin_token)

    assert loaded.exit_code == 0, loaded.stderr
    assert loaded.stdout.startswith("Loaded policy 'team' version '1' (2 rules, sha256 ")
    assert "it is now the active policy." in loaded.stdout
    assert show_result.exit_code == 0, show_result.stderr
    assert show_result.stdout.splitlines()[0] == "Policy 'team' version '1' (loaded, active)"
    assert "by root from team.toml" in show_result.stdout
    assert "po-large" in show_result.stdout
    assert listed.exit_code == 0, listed.stderr
    assert "1 policy versions" in listed.stdout
    assert rows(db, "SELECT name, version, source, rule_count, loaded_by FROM policy_version") == [("team", "1", "team.toml", 2, "root")]
    assert rows(db, "SELECT action, outcome FROM activity_event ORDER BY seq DESC LIMIT 3")[2] == ("policy_load", "ok")


def test_cli_load_same_text_again_changes_nothing(db: Path, admin_token: str, team_file: Path) -> None:
    order3(db, "policy", "load", str(team_file), token=admin_token)

    again = order3(db, "policy", "load", str(team_file), token=admin_token)

    assert again.exit_code == 0, again.stderr
    assert again.stdout == "Policy 'team' version '1' is already the active policy; nothing changed.\n"
    assert rows(db, "SELECT COUNT(*) FROM policy_version") == [(1,)]


def test_cli_load_version_clash_rejected(db: Path, admin_token: str, team_file: Path, tmp_path: Path) -> None:
    order3(db, "policy", "load", str(team_file), token=admin_token)
    edited = tmp_path / "edited.toml"
    edited.write_text(TEAM_V1.replace("approvals = 2", "approvals = 3"), encoding="utf-8")

    result = order3(db, "policy", "load", str(edited), token=admin_token)

    assert result.exit_code == 5
    assert "Policy version '1' was already loaded on" in result.stderr
    assert "bump version in the [policy] table and load again. Nothing was loaded." in result.stderr
    assert rows(db, "SELECT COUNT(*) FROM policy_version") == [(1,)]
    assert rows(db, "SELECT action, outcome FROM activity_event ORDER BY seq DESC LIMIT 1") == [("policy_load", "conflict")]


def test_cli_load_bad_file_writes_nothing(db: Path, admin_token: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(TEAM_V1.replace('max_value = "5000"', "max_value = 5000.0"), encoding="utf-8")

    result = order3(db, "policy", "load", str(bad), token=admin_token)

    assert result.exit_code == 2
    assert result.stderr.replace("\n", "") == (
        "bad.toml rule 'po-small': max_value = 5000.0 is a float, which cannot hold money or quantities exactly; "
        'write it as a string: max_value = "5000.0". Nothing was loaded.'
    )
    assert rows(db, "SELECT COUNT(*) FROM policy_version") == [(0,)]
    assert rows(db, "SELECT action, outcome FROM activity_event ORDER BY seq DESC LIMIT 1") == [("policy_load", "invalid")]


def test_cli_load_names_rule_index_without_id(db: Path, admin_token: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(TEAM_V1.replace('id = "po-large"\n', ""), encoding="utf-8")

    result = order3(db, "policy", "load", str(bad), token=admin_token)

    assert result.exit_code == 2
    assert "bad.toml rule #2: missing required field 'id'" in result.stderr
    assert rows(db, "SELECT COUNT(*) FROM policy_version") == [(0,)]


def test_cli_load_needs_admin(db: Path, admin_token: str, team_file: Path) -> None:
    buyer = secret_in(order3(db, "token", "create", "--principal", "alice", "--role", "buyer", token=admin_token).stdout)

    result = order3(db, "policy", "load", str(team_file), token=buyer)

    assert result.exit_code == 3
    assert "may not call policy_load: it needs the 'admin' scope" in result.stderr
    assert rows(db, "SELECT COUNT(*) FROM policy_version") == [(0,)]


def test_cli_load_missing_file(db: Path, admin_token: str, tmp_path: Path) -> None:
    result = order3(db, "policy", "load", str(tmp_path / "nope.toml"), token=admin_token)

    assert result.exit_code == 4
    assert "does not exist; pass the path of a TOML policy file." in result.stderr


def test_cli_show_past_version(db: Path, admin_token: str, team_file: Path, tmp_path: Path) -> None:
    second = tmp_path / "team2.toml"
    second.write_text(TEAM_V2, encoding="utf-8")
    order3(db, "policy", "load", str(team_file), token=admin_token)
    order3(db, "policy", "load", str(second), token=admin_token)

    old = order3(db, "policy", "show", "--version", "1", token=admin_token)
    missing = order3(db, "policy", "show", "--version", "7", token=admin_token)

    assert old.exit_code == 0, old.stderr
    assert old.stdout.splitlines()[0] == "Policy 'team' version '1' (loaded, not active)"
    assert missing.exit_code == 4
    assert "No policy version '7' in this workspace (loaded versions: '2', '1'; shipped default: '2')" in missing.stderr


def test_cli_check_validates_without_loading(db: Path, admin_token: str, team_file: Path) -> None:
    result = order3(db, "policy", "check", str(team_file))

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "team.toml is valid: policy 'team' version '1', 2 rules."
    assert "Warning: No rule lists kind transfer, so drafts of that kind can never be approved." in result.stdout
    assert rows(db, "SELECT COUNT(*) FROM policy_version") == [(0,)]


def test_cli_check_reports_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(TEAM_V1.replace('approver_roles = ["buyer", "admin"]', 'approver_roles = ["operator"]'), encoding="utf-8")

    result = order3(tmp_path / "unused.db", "policy", "check", str(bad))

    assert result.exit_code == 2
    assert "bad.toml rule 'po-small': approver_roles lists 'operator', a role without the approve scope" in result.stderr
    assert not (tmp_path / "unused.db").exists()


def test_cli_check_explains_draft_routing(db: Path, admin_token: str, team_file: Path) -> None:
    draft_id = _seed_split_purchase(db, admin_token)

    result = order3(db, "policy", "check", str(team_file), "--draft", str(draft_id), token=admin_token)

    assert result.exit_code == 0, result.stderr
    assert (
        f"Draft {draft_id}: kind purchase_order; value 2000 USD; supplier ACME; "
        "supplier spend in earlier drafts that business day 4000 USD"
    ) in result.stdout
    assert "spend on the draft's business day would be 6000 (4000 in earlier drafts + 2000 in this one)" in result.stdout
    assert "Would route to 2 approvals from role approver or admin (rule 'po-large')." in result.stdout
    assert "Routed now to 'po-above-5000' under policy default:2:" in result.stdout
    assert rows(db, "SELECT action, outcome, draft_id FROM activity_event ORDER BY seq DESC LIMIT 1") == [("policy_check", "ok", draft_id)]


def _seed_split_purchase(db: Path, admin_token: str) -> int:
    """Add ACME selling WIDGET-1 and draft three purchases of 2000.00 in one day; return the third draft's id."""

    async def seed() -> int:
        database = await open_database(db)
        try:
            async with database.write() as session:
                workspace_id = 1
                supplier = Supplier(workspace_id=workspace_id, code="ACME", name="Acme Parts")
                item = Item(workspace_id=workspace_id, sku="WIDGET-1", sku_key=sku_key("WIDGET-1"), name="Widget", unit_cost=Decimal(2))
                session.add_all([supplier, item])
                await session.flush()
                session.add(
                    SupplierItem(
                        workspace_id=workspace_id, supplier_id=supplier.id, item_id=item.id, supplier_sku="AC-W1",
                        unit_price=Decimal("2.00"), min_order_qty=Decimal(20), pack_size=Decimal(10),
                    )
                )
            service = Order3(database, clock=lambda: datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
            caller = await service.authenticate(admin_token, channel="cli")
            last = None
            for _ in range(3):
                last = await draft_widgets(service, caller)
            return last.draft_id  # type: ignore[union-attr]
        finally:
            await database.dispose()

    return anyio.run(seed)


def test_cli_execute_held_after_tightening(db: Path, admin_token: str, team_file: Path, tmp_path: Path) -> None:
    strict = tmp_path / "team2.toml"
    strict.write_text(TEAM_V2, encoding="utf-8")
    bob = secret_in(order3(db, "token", "create", "--principal", "bob", "--role", "buyer", token=admin_token).stdout)
    order3(db, "policy", "load", str(team_file), token=admin_token)
    draft_id = _seed_split_purchase(db, admin_token) - 2
    approved = order3(db, "drafts", "approve", str(draft_id), token=bob)
    order3(db, "policy", "load", str(strict), token=admin_token)

    result = order3(db, "drafts", "execute", str(draft_id), token=bob)

    assert approved.exit_code == 0, approved.stderr
    assert approved.stdout == f"Draft {draft_id} is approved.\n"
    assert result.exit_code == 6
    assert result.stderr.replace("\n", "").startswith(f"Draft {draft_id} was not executed. The policy changed after approval")
    assert rows(db, f"SELECT status, approvals_required FROM draft WHERE id = {draft_id}") == [("pending_approval", 2)]
    assert rows(db, "SELECT COUNT(*) FROM purchase_order") == [(0,)]

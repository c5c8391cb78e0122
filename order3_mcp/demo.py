"""The end-to-end demo: a fresh workspace, the InvenTree import, an agent drafting one draft of each kind over MCP, people deciding."""

from __future__ import annotations

import contextlib
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.rule import Rule
from rich.text import Text
from sqlalchemy.engine import make_url

from order3_mcp.agent_script import AgentScriptError, run_agent
from order3_mcp.app import Order3
from order3_mcp.commands.activity import print_timeline, read_timeline
from order3_mcp.commands.drafts import parse_result
from order3_mcp.demo_kinds import (
    check_ledger,
    decide_count_task,
    decide_stock_corrections,
    decide_supplier_note,
    decide_transfer,
    send_channel_snapshot,
)
from order3_mcp.services import admin, approvals, drafts, tokens
from order3_mcp.services.history import ActivityQuery
from store.db import Database, open_database
from store.errors import ConflictError, NotFoundError
from store.pg_scratch import create_scratch_database, drop_scratch_database, server_url

REPO_ROOT = Path(__file__).resolve().parent.parent
# NOTE: both paths are found relative to a source checkout (an editable install);
# a wheel install has neither, and the demo then requires --data.
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "inventree-demo.json"
DEMO_SETTINGS = REPO_ROOT / "fixtures" / "demo" / "reorder-settings.toml"
DEMO_DB_NAME = "order3-demo.db"
# Name prefix of the database the demo creates on a PostgreSQL server.
DEMO_PG_PREFIX = "order3_demo"
WORKSPACE = "demo"


@dataclass(frozen=True)
class DemoResult:
    """Outcome of a demo run."""

    #: The SQLite file or PostgreSQL URL of the demo database.
    location: str
    draft_id: int
    purchase_order: str
    refusal: str
    # Status of each draft by kind after the people's decisions.
    statuses: dict[str, str]
    transfer: str
    transfer_status: str
    count_task_status: str
    outbox_messages: int
    levels_checked: int
    ledger_mismatches: int


async def run_demo(
    *, keep: Path | None, data: Path | None, postgres: str | None = None, console: Console | None = None
) -> DemoResult:
    """Run the demo on a new database: a SQLite file in a temporary directory unless `keep` names one,
    or with `postgres`, a new database on that PostgreSQL server, dropped afterwards unless `keep` is set.

    Raises:
        NotFoundError: If the InvenTree export or the demo settings are missing.
        ConflictError: If `keep` already contains a demo database.
        InvalidInputError: If `postgres` is not a PostgreSQL URL.
        AgentScriptError: If the agent or the approval does not do what the demo expects.
    """
    console = console or Console(highlight=False)
    if postgres is not None:
        server_url(postgres)
    data_path = (data or DEFAULT_DATA).expanduser().resolve()
    if not data_path.is_file():
        raise NotFoundError(f"InvenTree export {str(data_path)!r} does not exist; pass --data FILE.")
    if not DEMO_SETTINGS.is_file():
        raise NotFoundError(f"Demo settings {str(DEMO_SETTINGS)!r} do not exist; run the demo from a source checkout.")

    async with contextlib.AsyncExitStack() as stack:
        if keep is not None:
            directory = keep.expanduser().resolve()
            directory.mkdir(parents=True, exist_ok=True)
        else:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="order3-demo-")))
        if postgres is None:
            db_path = directory / DEMO_DB_NAME
            if db_path.exists():
                raise ConflictError(f"{db_path} already exists; the demo needs a fresh database, so pick an empty --keep directory.")
            location = str(db_path)
        else:
            location = await create_scratch_database(postgres, prefix=DEMO_PG_PREFIX)
            if keep is None:
                admin_database = make_url(server_url(postgres)).database or "postgres"
                stack.push_async_callback(drop_scratch_database, location, admin_database=admin_database)

        database = await open_database(location)
        try:
            return await _run_steps(database=database, location=location, work_dir=directory, data_path=data_path, keep=keep is not None, console=console)
        finally:
            await database.dispose()
    raise AssertionError("unreachable: the block returns or raises")


def _heading(console: Console, title: str) -> None:
    console.print(Rule(Text(title, style="bold")))


async def _run_steps(
    *, database: Database, location: str, work_dir: Path, data_path: Path, keep: bool, console: Console
) -> DemoResult:
    _heading(console, "1. order3 init")
    created = await admin.init_workspace(database, workspace=WORKSPACE, base_currency="USD", timezone="UTC", admin="admin")
    console.print(f"Workspace {created.workspace!r} ({created.base_currency}, {created.timezone}); admin token {created.token_id} created.")
    app = Order3(database)
    admin_caller = await app.authenticate(created.secret, channel="cli")

    _heading(console, f"2. order3 import inventree {data_path.name}")
    report = await admin.import_inventree_file(app, admin_caller, path=data_path)
    for line in report.lines:
        console.print(Text(line), soft_wrap=True)

    _heading(console, f"3. Demo reorder settings ({DEMO_SETTINGS.name})")
    settings = await admin.apply_reorder_settings(app, admin_caller, path=DEMO_SETTINGS)
    for line in settings.lines:
        console.print(Text(line), soft_wrap=True)

    _heading(console, "4. order3 token create")
    buyer = await tokens.create_token(
        app, admin_caller, principal="alice", kind="user", role="buyer", on_behalf_of="", label="demo buyer"
    )
    console.print(f"User token {buyer.token_id} for 'alice', role buyer: {', '.join(buyer.scopes)}.")
    agent = await tokens.create_token(
        app, admin_caller, principal="buyer-bot", kind="agent", role="agent", on_behalf_of="", label="demo agent"
    )
    console.print(f"Agent token {agent.token_id} for 'buyer-bot', role agent: {', '.join(agent.scopes)}.")
    approver = await tokens.create_token(
        app, admin_caller, principal="carol", kind="user", role="approver", on_behalf_of="", label="demo finance approver"
    )
    console.print(f"User token {approver.token_id} for 'carol', role approver: {', '.join(approver.scopes)}.")
    integration = await tokens.create_token(
        app, admin_caller, principal="webshop", kind="integration", role="integration", on_behalf_of="", label="demo channel"
    )
    console.print(f"Integration token {integration.token_id} for 'webshop', role integration: {', '.join(integration.scopes)}.")

    _heading(console, "5. webshop sends a channel quantity snapshot (order3 sync ingest)")
    webshop = await app.authenticate(integration.secret, channel="sync")
    await send_channel_snapshot(app, webshop, directory=work_dir, console=console)

    _heading(console, "6. buyer-bot connects over MCP (stdio: order3 serve)")
    run = await run_agent(db_location=location, token=agent.secret, console=console)

    _heading(console, f"7. alice reviews and approves draft {run.draft_id} (order3 drafts approve)")
    alice = await app.authenticate(buyer.secret, channel="cli")
    review = await drafts.get_draft(app, alice, draft_id=run.draft_id)
    console.print(Text(f"Rationale: {review.rationale}"), soft_wrap=True)
    console.print(Text(f"Approval owner: {review.approval_owner}. Payload hash: {review.payload_hash[:12]}…"), soft_wrap=True)
    decided = await approvals.approve_draft(
        app, alice, draft_id=run.draft_id, expected_hash=review.payload_hash[:12], reason="Checked against the low-stock exception."
    )
    purchase_order = parse_result(decided.result).get("purchase_order", "")
    if decided.status != "executed" or not purchase_order:
        raise AgentScriptError(
            f"Draft {run.draft_id} is {decided.status} after alice's approval, with no purchase order issued"
            + (f": {decided.failure_reason}" if decided.failure_reason else ".")
        )
    console.print(Text(f"Draft {run.draft_id} executed: issued purchase order {purchase_order}.", style="bold green"))

    kinds = run.kinds
    _heading(console, f"8. alice ships and receives transfer draft {kinds.transfer}")
    transfer, transfer_number, transfer_status = await decide_transfer(app, alice, kinds.transfer, console=console)

    _heading(console, f"9. alice approves count task draft {kinds.count_task}, then counts")
    count_task, _, count_task_status = await decide_count_task(app, alice, kinds.count_task, console=console)

    _heading(console, f"10. alice approves supplier note draft {kinds.supplier_note}")
    supplier_note, outbox_messages = await decide_supplier_note(app, alice, kinds.supplier_note, console=console)

    _heading(console, f"11. carol approves drafts {kinds.adjustment} and {kinds.reconciliation} (stock corrections)")
    carol = await app.authenticate(approver.secret, channel="cli")
    adjustment, reconciliation = await decide_stock_corrections(app, carol, kinds, console=console)

    statuses = {
        "purchase_order": decided.status,
        **{detail.kind: detail.status for detail in (transfer, count_task, supplier_note, adjustment, reconciliation)},
    }

    _heading(console, "12. order3 activity list")
    timeline = await read_timeline(app, alice, query=ActivityQuery(), limit=1000)
    print_timeline(console, timeline.events, title=f"Activity history of workspace {WORKSPACE!r}")
    chain = await admin.check_activity_chain(app, alice)
    console.print(f"Activity chain verified: {chain.events_checked} events, first broken seq: {chain.first_broken_seq or 'none'}.")

    _heading(console, "13. order3 verify")
    levels_checked, ledger_mismatches = await check_ledger(app, alice, console=console)

    if keep:
        _print_continue(console, location=location, tokens=[
            ("alice, the buyer who approves drafts", buyer.secret),
            ("carol, the approver of stock corrections", approver.secret),
            ("admin, who creates and revokes tokens", created.secret),
            ("buyer-bot, the agent (for order3 serve)", agent.secret),
            ("webshop, the integration (for order3 sync ingest)", integration.secret),
        ])
    return DemoResult(
        location=location,
        draft_id=run.draft_id,
        purchase_order=purchase_order,
        refusal=run.refusal,
        statuses=statuses,
        transfer=transfer_number,
        transfer_status=transfer_status,
        count_task_status=count_task_status,
        outbox_messages=outbox_messages,
        levels_checked=levels_checked,
        ledger_mismatches=ledger_mismatches,
    )


def _print_continue(console: Console, *, location: str, tokens: list[tuple[str, str]]) -> None:
    """Print the kept database's tokens with the shell lines to continue as each principal."""
    console.print(Text(f"The demo database is kept at {location}.", style="bold"))
    console.print(
        Text("Store these tokens now: they are not shown again, and the database keeps only their hashes.", style="yellow"),
        soft_wrap=True,
    )
    for principal, secret in tokens:
        console.print(Text(f"To continue as {principal}:"))
        console.print(Text(f"  export ORDER3_DB={shlex.quote(location)}\n  export ORDER3_TOKEN={secret}"), soft_wrap=True)

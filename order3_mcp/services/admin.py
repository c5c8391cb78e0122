"""Administration services: workspace setup, imports, reorder settings, activity export and integrity checks."""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from order3_mcp.services.finder_refresh import check_stored_findings
from order3_mcp.services.history import ActivityQuery, matching_events
from order3_mcp.services.tokens import check_principal
from policies import scopes_for
from store import catalog
from store.activity import append_event, canonical_json, verify_chain
from store.activity_checkpoint import (
    CHECKPOINT_PREFIX,
    parse_checkpoint,
    read_checkpoint,
    verify_against_checkpoint,
)
from store.changes import item_scoped, touch_items
from store.db import Database
from store.errors import ChainBrokenError, InvalidInputError, NotFoundError, Order3Error
from store.models import ActivityEvent, Bin, Item, Location, ReorderRule
from store.stock import verify_ledger
from store.tokens import issue_token
from store.types import utc_now
from store.workspaces import create_workspace

logger = logging.getLogger(__name__)

# Events read per query while exporting the activity history.
EXPORT_BATCH = 1000
# Characters read from a checkpoint file.
MAX_CHECKPOINT_FILE = 64 * 1024
REORDER_SETTINGS_SOURCE = "settings:"


class InitResult(BaseModel):
    """A new workspace and its first admin token."""

    workspace: str = Field(description="Workspace name.")
    base_currency: str = Field(description="ISO 4217 base currency.")
    timezone: str = Field(description="IANA timezone for business dates.")
    admin: str = Field(description="Name of the first admin user.")
    token_id: int = Field(description="Id of the admin token.")
    secret: str = Field(description="The admin token secret; it is shown once and stored only as a hash.")


class ReportLines(BaseModel):
    """A plain report: one line per fact."""

    lines: list[str] = Field(description="Report lines in order.")


class ActivityDetail(BaseModel):
    """Every stored field of one activity event."""

    workspace_id: int = Field(description="Id of the workspace; covered by the hash.")
    seq: int = Field(description="Sequence number within the workspace.")
    occurred_at: str = Field(description="When (ISO 8601, UTC).")
    actor_kind: str = Field(description="user, agent or integration.")
    actor: str = Field(description="Principal name.")
    token_id: int | None = Field(description="Token used, if any.")
    on_behalf_of: str = Field(description="Person the agent or integration token acts for; empty for user tokens.")
    client_name_unverified: str = Field(
        description="Name the MCP client gave for itself when connecting; any client can send any name. "
        "Stored and hashed as client_name."
    )
    channel: str = Field(description="mcp, cli or sync.")
    action: str = Field(description="Tool or command name.")
    outcome: str = Field(description="ok, replayed, denied, invalid, conflict, error or cancelled.")
    draft_id: int | None = Field(description="Draft involved, if any.")
    request_id: str = Field(description="Request id, if the client sent one.")
    idempotency_key: str = Field(description="Idempotency key, if one was given.")
    arguments: dict[str, Any] = Field(description="Arguments with secrets redacted.")
    affected: list[dict[str, Any]] = Field(description="Records touched.")
    summary: str = Field(description="Short description.")
    prev_hash: str = Field(description="Hash of the event before this one.")
    hash: str = Field(description="SHA-256 over prev_hash and this event's fields.")


class ActivityExport(BaseModel):
    """The whole activity history of a workspace, oldest first."""

    events: list[ActivityDetail] = Field(description="Events in sequence order.")


class ChainCheck(BaseModel):
    """Result of recomputing the activity hash chain, and of comparing it with a checkpoint."""

    events_checked: int = Field(description="Events whose hash matched.")
    first_broken_seq: int | None = Field(description="First event whose link does not match, or null.")
    problem: str = Field(description="What is wrong at that event, empty when the chain is intact.")
    kind: str = Field(
        default="",
        description="Kind of break: edited, missing, broken_link, head_mismatch, truncated or rewritten; empty when intact.",
    )
    checkpoint: str = Field(default="", description="Checkpoint the chain was compared with, empty when none.")


class ActivityCheckpoint(BaseModel):
    """The head of the activity chain, to keep outside the database."""

    workspace: str = Field(description="Workspace name.")
    seq: int = Field(description="Sequence number of the last event.")
    hash: str = Field(description="Hash of the last event.")
    taken_at: str = Field(description="When the checkpoint was taken (ISO 8601, UTC).")
    checkpoint: str = Field(description="The checkpoint as one string, for `order3 activity verify --checkpoint`.")
    events_verified: int = Field(description="Events whose hashes were verified before the checkpoint was taken.")


class LedgerCheck(BaseModel):
    """Result of comparing stock levels with the movement ledger."""

    levels_checked: int = Field(description="Stock level rows compared.")
    mismatches: list[str] = Field(description="One line per level whose on hand differs from its ledger sum.")
    findings_checked: dict[str, int] = Field(
        default_factory=dict, description="Exception kinds whose stored records were compared with a recomputation, with the findings counted."
    )
    findings_skipped: list[str] = Field(
        default_factory=list, description="Exception kinds not compared because writes since their last run make a rerun due."
    )
    findings_differences: list[str] = Field(
        default_factory=list, description="One line per stored exception record that differs from the recomputation."
    )


def detail_of(event: ActivityEvent) -> ActivityDetail:
    """Convert an activity event row to its full view."""
    return ActivityDetail(
        workspace_id=event.workspace_id,
        seq=event.seq,
        occurred_at=event.occurred_at.isoformat(),
        actor_kind=event.actor_kind,
        actor=event.actor,
        token_id=event.token_id,
        on_behalf_of=event.on_behalf_of,
        client_name_unverified=event.client_name,
        channel=event.channel,
        action=event.action,
        outcome=event.outcome,
        draft_id=event.draft_id,
        request_id=event.request_id,
        idempotency_key=event.idempotency_key,
        arguments=event.arguments,
        affected=event.affected,
        summary=event.summary,
        prev_hash=event.prev_hash,
        hash=event.hash,
    )


async def init_workspace(
    database: Database, *, workspace: str, base_currency: str, timezone: str, admin: str, clock: Callable[[], datetime] = utc_now
) -> InitResult:
    """Create a workspace with its first admin token and record the "init" event, in one transaction.

    There is no caller yet, so this is the one action that does not go through
    `Order3.run`; the event names the admin as its actor.

    Raises:
        ConflictError: If the workspace exists; nothing is written.
        InvalidInputError: For an empty name, unknown timezone or malformed currency.
    """
    admin_name = check_principal(principal=admin, kind="user", role="admin")
    async with database.write() as session:
        created = await create_workspace(session, name=workspace, base_currency=base_currency, timezone=timezone)
        token, secret = await issue_token(
            session,
            workspace_id=created.id,  # type: ignore[arg-type]
            principal_kind="user",
            principal=admin_name,
            role="admin",
            scopes=scopes_for(principal_kind="user", role="admin"),
            label="first admin token, created by order3 init",
        )
        await append_event(
            session,
            workspace_id=created.id,  # type: ignore[arg-type]
            actor_kind="user",
            actor=admin_name,
            token_id=token.id,
            channel="cli",
            action="init",
            outcome="ok",
            affected=[{"kind": "workspace", "id": created.id}, {"kind": "token", "id": token.id}],
            arguments={"workspace": created.name, "currency": created.base_currency, "timezone": created.timezone, "admin": admin_name},
            summary=f"Created workspace {created.name!r} ({created.base_currency}, {created.timezone}) with admin {admin_name!r}.",
            occurred_at=clock(),
        )
    return InitResult(
        workspace=created.name,
        base_currency=created.base_currency,
        timezone=created.timezone,
        admin=admin_name,
        token_id=token.id,  # type: ignore[arg-type]
        secret=secret,
    )


async def import_inventree_file(app: Order3, caller: Caller, *, path: Path) -> ReportLines:
    """Import an InvenTree fixture export in one write transaction and return its summary lines."""
    from store.importers.inventree import import_inventree

    async def work(session: AsyncSession) -> Outcome:
        summary = await import_inventree(session, workspace_id=caller.workspace_id, path=path, actor=caller.principal)
        lines = summary.lines()
        return Outcome(ReportLines(lines=lines), f"Imported InvenTree export {path.name}: {summary.imported} records written.")

    return await app.run(caller, "import", {"source": "inventree", "file": str(path)}, work, result_type=ReportLines)


def _setting_decimal(value: Any, *, what: str, optional: bool = False) -> Decimal | None:
    if value is None and optional:
        return None
    # TOML floats are binary; quantities must arrive as strings or integers to stay exact.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInputError(f"{what} is {value!r}; write it as a quoted decimal string such as \"25\" or an integer.")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise InvalidInputError(f"{what} is {value!r}, which is not a decimal number.") from exc
    if not number.is_finite() or number < 0:
        raise InvalidInputError(f"{what} is {value!r}; it must be zero or more.")
    return number


def _load_reorder_settings(path: Path) -> list[dict[str, Any]]:
    try:
        settings = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InvalidInputError(f"Settings file {str(path)!r} does not exist; pass the path of a TOML file.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"Settings file {str(path)!r} is not valid TOML: {exc}.") from exc
    rules = settings.get("reorder_rules")
    if not isinstance(rules, list) or not rules:
        raise InvalidInputError(f"Settings file {str(path)!r} has no [[reorder_rules]] tables; add at least one.")
    allowed = {"sku", "location", "reorder_point", "reorder_quantity", "max_level", "safety_stock", "preferred_supplier", "note"}
    for number, rule in enumerate(rules, start=1):
        unknown = sorted(set(rule) - allowed)
        if unknown:
            # An unknown key is an error so that a misspelt setting is never silently ignored.
            raise InvalidInputError(
                f"Reorder rule {number} in {path.name} has unknown key(s) {', '.join(unknown)}; "
                f"allowed keys are {', '.join(sorted(allowed))}."
            )
        if not str(rule.get("sku", "")).strip():
            raise InvalidInputError(f"Reorder rule {number} in {path.name} has no sku.")
    return rules


async def apply_reorder_settings(app: Order3, caller: Caller, *, path: Path) -> ReportLines:
    """Create or update reorder rules from a TOML settings file, in one transaction.

    Each `[[reorder_rules]]` table names a `sku`, an optional `location` (empty for
    workspace-wide), `reorder_point`, optional `reorder_quantity`, `max_level`,
    `safety_stock` and `preferred_supplier` (supplier code). Quantities are
    quoted decimal strings or integers.
    """

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        rules = _load_reorder_settings(path)
        lines: list[str] = []
        affected: list[dict[str, Any]] = []
        for number, entry in enumerate(rules, start=1):
            what = f"Reorder rule {number} ({entry['sku']})"
            item = await catalog.get_item_by_sku(session, workspace_id=caller.workspace_id, sku=str(entry["sku"]))
            location_id = None
            if str(entry.get("location", "")).strip():
                location = await catalog.get_location_by_code(
                    session, workspace_id=caller.workspace_id, code=str(entry["location"])
                )
                location_id = location.id
            supplier_id = None
            if str(entry.get("preferred_supplier", "")).strip():
                supplier = await catalog.get_supplier_by_code(
                    session, workspace_id=caller.workspace_id, code=str(entry["preferred_supplier"])
                )
                supplier_id = supplier.id
            values = {
                "reorder_point": _setting_decimal(entry.get("reorder_point"), what=f"{what} reorder_point"),
                "reorder_quantity": _setting_decimal(entry.get("reorder_quantity"), what=f"{what} reorder_quantity", optional=True),
                "max_level": _setting_decimal(entry.get("max_level"), what=f"{what} max_level", optional=True),
                "safety_stock": _setting_decimal(entry.get("safety_stock", 0), what=f"{what} safety_stock"),
                "preferred_supplier_id": supplier_id,
                "source": (REORDER_SETTINGS_SOURCE + path.name)[:120],
                "updated_at": app.clock(),
            }

            rule = (
                await session.execute(
                    select(ReorderRule).where(
                        ReorderRule.workspace_id == caller.workspace_id,
                        ReorderRule.item_id == item.id,
                        ReorderRule.location_key == (location_id or 0),
                    )
                )
            ).scalar_one_or_none()
            verb = "Updated" if rule is not None else "Created"
            if rule is None:
                rule = ReorderRule(workspace_id=caller.workspace_id, item_id=item.id, location_id=location_id, location_key=location_id or 0, **values)  # type: ignore[arg-type]
            else:
                for name, value in values.items():
                    setattr(rule, name, value)
            session.add(rule)
            await session.flush()
            touch_items(session, [item.id])

            where = f"at {entry['location']}" if location_id else "workspace-wide"
            lines.append(f"{verb} reorder rule for {item.sku} {where}: reorder point {values['reorder_point']}.")
            affected.append({"kind": "reorder_rule", "id": rule.id})
        return Outcome(ReportLines(lines=lines), f"Applied {len(lines)} reorder rules from {path.name}.", affected=affected)

    return await app.run(caller, "reorder_rules_set", {"file": str(path)}, work, result_type=ReportLines)


async def get_activity_event(app: Order3, caller: Caller, *, seq: int) -> ActivityDetail:
    """Return every stored field of one activity event; recorded as an `activity_show` read."""

    async def work(session: AsyncSession) -> Outcome:
        event = (
            await session.execute(
                select(ActivityEvent).where(ActivityEvent.workspace_id == caller.workspace_id, ActivityEvent.seq == seq)
            )
        ).scalar_one_or_none()
        if event is None:
            raise NotFoundError(f"Activity event {seq} does not exist in this workspace; list events with `order3 activity list`.")
        return Outcome(detail_of(event), f"Read activity event {seq}.", draft_id=event.draft_id)

    return await app.run(caller, "activity_show", {"seq": seq}, work, result_type=ActivityDetail)


async def export_activity(app: Order3, caller: Caller, *, query: ActivityQuery | None = None) -> ActivityExport:
    """Return the workspace's activity events that match `query`, oldest first; all of them without one."""
    query = query or ActivityQuery()

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        statement = await matching_events(session, caller, query)
        events: list[ActivityDetail] = []
        after = 0
        while True:
            batch = (
                await session.execute(statement.where(ActivityEvent.seq > after).order_by(ActivityEvent.seq).limit(EXPORT_BATCH))
            ).scalars().all()
            if not batch:
                break
            events.extend(detail_of(event) for event in batch)
            after = batch[-1].seq
        return Outcome(ActivityExport(events=events), f"Exported {len(events)} activity events.")

    return await app.run(caller, "activity_export", query.arguments(), work, result_type=ActivityExport)


def load_checkpoint(value: str) -> str:
    """Return the checkpoint string in `value`, or in the file it names.

    The file may be the JSON that `order3 activity checkpoint --output` writes,
    or a text file whose content is the checkpoint string.

    Raises:
        InvalidInputError: If `value` is neither a checkpoint string nor a readable file with one.
    """
    text = value.strip()
    if text.startswith(CHECKPOINT_PREFIX + ":"):
        return text
    try:
        with Path(text).open(encoding="utf-8") as file:
            # A checkpoint file is a few hundred bytes, so a large file is not one.
            content = file.read(MAX_CHECKPOINT_FILE).strip()
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError):
            reason = exc.strerror or str(exc)
        elif isinstance(exc, UnicodeDecodeError):
            reason = "it is not UTF-8 text"
        else:
            reason = "it is not a valid file path"
        raise InvalidInputError(
            f"Checkpoint {text[:100]!r} is neither a checkpoint string ('{CHECKPOINT_PREFIX}:…') nor a readable file: "
            f"{reason}. Pass the string or the file that `order3 activity checkpoint` printed or wrote."
        ) from exc
    if content.startswith("{"):
        try:
            document = json.loads(content)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"Checkpoint file {text!r} is not valid JSON: {exc.msg} at line {exc.lineno}.") from exc
        found = document.get("checkpoint") if isinstance(document, dict) else None
        if not isinstance(found, str):
            raise InvalidInputError(
                f"Checkpoint file {text!r} has no \"checkpoint\" string; use a file written by "
                "`order3 activity checkpoint --output`."
            )
        return found
    return content


async def take_activity_checkpoint(app: Order3, caller: Caller) -> ActivityCheckpoint:
    """Verify the activity chain and return its head as a checkpoint to keep outside the database.

    The checkpoint names the last event before this action's own event, which
    the next checkpoint covers.

    Raises:
        ChainBrokenError: If the chain does not verify, because a checkpoint of
            a changed log would vouch for the change.
    """

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        report = await verify_chain(session, workspace_id=caller.workspace_id)
        if not report.ok:
            raise ChainBrokenError(
                f"Activity chain broken at seq {report.first_broken_seq} ({report.kind}): {report.problem}. "
                "No checkpoint was taken; run `order3 activity verify` and investigate first."
            )
        head = await read_checkpoint(session, workspace_id=caller.workspace_id)
        result = ActivityCheckpoint(
            workspace=head.workspace,
            seq=head.seq,
            hash=head.hash,
            taken_at=app.clock().isoformat(),
            checkpoint=head.encode(),
            events_verified=report.events_checked,
        )
        return Outcome(result, f"Took checkpoint {head.encode()} after verifying {report.events_checked} events.")

    return await app.run(caller, "activity_checkpoint", {}, work, result_type=ActivityCheckpoint)


async def check_activity_chain(app: Order3, caller: Caller, *, checkpoint: str = "") -> ChainCheck:
    """Recompute the workspace's activity hash chain and report the first broken link.

    With `checkpoint` (a checkpoint string or a file holding one), the event at
    the checkpoint's sequence number must also still carry the checkpoint's
    hash, which detects a truncated tail and a log rehashed after an edit.

    The check reads the chain before its own event is appended, so that event is
    covered by the next check, not this one. A check that finds the chain broken
    appends no event at all, so the evidence stays as it was found.

    Raises:
        InvalidInputError: If the checkpoint is malformed or belongs to another workspace.
    """

    arguments = {"checkpoint": checkpoint.strip()} if checkpoint.strip() else {}

    async def verify(session: AsyncSession) -> tuple[ChainCheck, str, bool]:
        expected = parse_checkpoint(load_checkpoint(checkpoint)) if checkpoint.strip() else None
        if expected is None:
            report = await verify_chain(session, workspace_id=caller.workspace_id)
        else:
            report = await verify_against_checkpoint(session, workspace_id=caller.workspace_id, checkpoint=expected)
        result = ChainCheck(
            events_checked=report.events_checked,
            first_broken_seq=report.first_broken_seq,
            problem=report.problem,
            kind=report.kind,
            checkpoint=expected.encode() if expected else "",
        )
        against = f" against checkpoint seq {expected.seq}" if expected else ""
        if report.ok:
            return result, f"Activity chain intact{against}: {report.events_checked} events verified.", True
        return result, f"Activity chain broken at seq {report.first_broken_seq} ({report.kind}){against}: {report.problem}.", False

    async def work(session: AsyncSession) -> Outcome:
        result, summary, _ = await verify(session)
        return Outcome(result, summary)

    try:
        app.check_scope(caller, "activity_verify")
        async with app.database.read() as session:
            result, summary, intact = await verify(session)
    except Order3Error:
        # A refusal or a malformed checkpoint is recorded like any failed action.
        return await app.run(caller, "activity_verify", arguments, work, result_type=ChainCheck)

    if not intact:
        # The one action that writes no event: appending to a broken chain would
        # chain the new event onto the damaged head and change the evidence, so a
        # second verify would report a different break.
        logger.warning("activity chain of workspace %d is broken; nothing recorded: %s", caller.workspace_id, summary)
        return result

    async def record(session: AsyncSession) -> Outcome:
        return Outcome(result, summary)

    return await app.run(caller, "activity_verify", arguments, record, result_type=ChainCheck)


async def check_stock_ledger(app: Order3, caller: Caller) -> LedgerCheck:
    """Compare every stock level with the sum of its movements."""

    async def work(session: AsyncSession) -> Outcome:
        checked, mismatches = await verify_ledger(session, workspace_id=caller.workspace_id)
        skus = await _codes_by_id(session, Item.id, Item.sku, {m.item_id for m in mismatches})
        locations = await _codes_by_id(session, Location.id, Location.code, {m.location_id for m in mismatches})
        bins = await _codes_by_id(session, Bin.id, Bin.code, {m.bin_id for m in mismatches if m.bin_id})
        lines: list[str] = []
        for m in mismatches:
            place = f"{skus.get(m.item_id, f'item {m.item_id}')} at {locations.get(m.location_id, f'location {m.location_id}')}"
            if m.bin_id:
                place += f" bin {bins.get(m.bin_id, m.bin_id)}"
            lines.append(f"{place}: on hand {m.on_hand}, ledger sum {m.ledger_sum}")
        stored = await check_stored_findings(app, caller, session)
        summary = (
            f"Checked {checked} stock levels against the ledger: {len(lines)} mismatches. Compared the stored "
            f"exceptions of {len(stored.checked)} finder kinds with a recomputation: {len(stored.differences)} differences."
        )
        result = LedgerCheck(
            levels_checked=checked,
            mismatches=lines,
            findings_checked=stored.checked,
            findings_skipped=stored.skipped,
            findings_differences=stored.differences,
        )
        return Outcome(result, summary)

    return await app.run(caller, "ledger_verify", {}, work, result_type=LedgerCheck)


async def _codes_by_id(session: AsyncSession, id_column: Any, code_column: Any, ids: set[int]) -> dict[int, str]:
    """Return the SKU or code of each id, for messages that name records the way people do."""
    if not ids:
        return {}
    rows = await session.execute(select(id_column, code_column).where(id_column.in_(ids)))
    return {row_id: code for row_id, code in rows.all()}


def export_line(event: ActivityDetail) -> str:
    """Return one event as a canonical JSON line."""
    return canonical_json(event.model_dump(mode="json"))

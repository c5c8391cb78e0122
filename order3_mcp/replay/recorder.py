"""The session recorder: a workspace's activity history turned back into a replay scenario.

Each recorded tool call, CLI decision and sync batch becomes a step with the
arguments it was called with, its outcome as the expected error or success, and
the activity events it wrote. Draft ids that an earlier step created are
rewritten into `$steps.` references, so the scenario does not depend on ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from order3_mcp.app import Caller, Order3
from order3_mcp.replay.dataset import SETUP_ADMIN
from order3_mcp.server import build_server
from order3_mcp.services.sync import records_digest
from policies import scopes_for
from store.db import Database
from store.errors import InvalidInputError
from store.models import ActivityEvent, ExternalSnapshot, Token
from store.workspaces import get_workspace

# Actions that set a workspace up rather than use it; the dataset and the scenario's tokens stand for them.
SETUP_ACTIONS = frozenset(
    {"init", "import", "token_create", "token_list", "token_revoke", "token_rotate", "reorder_rules_set", "policy_load"}
)
# Recorded times closer than this to the clock are replayed without moving it.
CLOCK_SLACK_SECONDS = 60
NOT_FOUND_TEXT = "does not exist"


@dataclass
class Recording:
    """A scenario document and the events that could not become steps, each with the reason."""

    document: dict[str, Any]
    skipped: list[str] = field(default_factory=list)


def _error_kind(event: ActivityEvent) -> str:
    if event.outcome == "invalid" and NOT_FOUND_TEXT in event.summary:
        return "not_found"
    return {"denied": "denied", "conflict": "conflict", "invalid": "invalid"}.get(event.outcome, "error")


def _failed(event: ActivityEvent) -> bool:
    """Return True when the event records a refusal the caller saw as an error.

    A failed execution is recorded as "invalid" but returns the failed draft, so it is a result, not an error.
    """
    if event.outcome in ("ok", "replayed"):
        return False
    return not (event.action == "execute_draft" and event.summary.startswith("Execution of draft"))


def _expected_status(event: ActivityEvent, folded: list[ActivityEvent]) -> str | None:
    """Return the draft status a decision left, from the events it wrote."""
    if folded and folded[-1].action == "execute_draft":
        return "executed" if folded[-1].outcome == "ok" else "failed"
    if event.action == "approve_draft":
        # A rerouted approval's summary starts with the new route, so the text is searched, not matched at the start.
        return "approved" if "Approved draft" in event.summary else "pending_approval"
    return {"execute_draft": "executed", "reject_draft": "rejected", "withdraw_draft": "withdrawn"}.get(event.action)


async def tool_parameters(database: Database) -> dict[str, set[str]]:
    """Return every MCP tool's argument names, read from the tools an admin caller would see."""
    caller = Caller(
        workspace_id=0, workspace="", base_currency="USD", timezone="UTC", token_id=None, principal_kind="user",
        principal=SETUP_ADMIN, role="admin", scopes=scopes_for(principal_kind="user", role="admin"),
    )
    server = build_server(Order3(database), caller)
    return {tool.name: set(tool.input_schema.get("properties", {})) for tool in await server.list_tools()}


class _Recorder:
    def __init__(self, tools: dict[str, set[str]], tokens: dict[int, Token]) -> None:
        self.tools = tools
        self.tokens = tokens
        self.names: dict[int, str] = {}
        self.drafts: dict[int, str] = {}
        self.steps: list[dict[str, Any]] = []
        self.skipped: list[str] = []

    def token_name(self, token_id: int) -> str:
        if token_id not in self.names:
            token = self.tokens[token_id]
            name = token.principal if token.principal not in self.names.values() else f"{token.principal}-{token_id}"
            self.names[token_id] = name
        return self.names[token_id]

    def reference(self, value: Any) -> Any:
        """Return a `$steps.` reference for a draft id an earlier step created, else the value."""
        if isinstance(value, int) and not isinstance(value, bool) and value in self.drafts:
            return self.drafts[value]
        return value

    def tool_arguments(self, event: ActivityEvent) -> dict[str, Any]:
        allowed = self.tools[event.action]
        arguments = {name: value for name, value in event.arguments.items() if name in allowed and value is not None}
        if "draft_id" in arguments:
            arguments["draft_id"] = self.reference(arguments["draft_id"])
        if event.idempotency_key and "idempotency_key" in allowed:
            arguments["idempotency_key"] = event.idempotency_key
        return arguments

    def cli_argv(self, event: ActivityEvent) -> list[Any] | None:
        arguments = event.arguments
        draft = self.reference(arguments.get("draft_id"))
        if event.action == "approve_draft":
            argv: list[Any] = ["drafts", "approve", draft]
            if arguments.get("expected_hash"):
                argv += ["--hash", arguments["expected_hash"]]
            if arguments.get("reason"):
                argv += ["--reason", arguments["reason"]]
            return argv
        if event.action == "reject_draft":
            return ["drafts", "reject", draft, "--reason", arguments.get("reason", "")]
        if event.action == "execute_draft":
            return ["drafts", "execute", draft]
        return None


def _expectations(step: dict[str, Any], event: ActivityEvent, folded: list[ActivityEvent], draft: Any) -> None:
    """Add the expected error or result, the draft status left behind, and the events the step wrote."""
    if _failed(event):
        step["error"] = {"kind": _error_kind(event)}
    else:
        status = _expected_status(event, folded)
        if event.action.startswith("draft_") and event.draft_id is not None:
            step["result"] = {"draft_id": {"$type": "integer"}, "status": "pending_approval"}
        elif status is not None and event.channel != "cli":
            step["result"] = {"status": status}
        if status is not None and event.draft_id is not None and "id" not in step:
            step["state"] = [{"draft": draft, "expect": {"status": status}}]
    step["events"] = [{"action": item.action, "outcome": item.outcome, "actor": item.actor} for item in (event, *folded)]


async def _sync_batch(database: Database, event: ActivityEvent) -> dict[str, Any] | None:
    """Rebuild a sync batch from its stored snapshots, or return None when they no longer match the logged digest."""
    arguments = event.arguments
    async with database.read() as session:
        rows = (
            await session.execute(
                select(ExternalSnapshot.payload)
                .where(
                    ExternalSnapshot.workspace_id == event.workspace_id,
                    ExternalSnapshot.source == arguments.get("source"),
                    ExternalSnapshot.batch_id == arguments.get("batch_id"),
                )
                .order_by(ExternalSnapshot.id)
            )
        ).scalars().all()
    records = list(rows)
    if not records or records_digest(records) != arguments.get("records_sha256"):
        return None
    return {"source": arguments["source"], "batch_id": arguments["batch_id"], "records": records}


def _add_represented_users(section: dict[str, dict[str, Any]], tokens: dict[int, Token]) -> None:
    """Add a user token for each person a recorded agent acts for, because such a token may only be created for an existing user."""
    principals = {spec.get("principal", name) for name, spec in section.items()}
    for spec in list(section.values()):
        person = spec.get("for")
        if not person or person in principals:
            continue
        user = next((token for token in tokens.values() if token.principal == person and token.principal_kind == "user"), None)
        name = person if person not in section else f"{person}-user"
        section[name] = {"kind": "user", "role": user.role if user else "viewer"}
        if name != person:
            section[name]["principal"] = person
        principals.add(person)


async def record_session(
    database: Database,
    *,
    workspace: str,
    dataset: str,
    start: datetime | None = None,
    end: datetime | None = None,
    token_id: int | None = None,
    name: str = "",
) -> Recording:
    """Turn the activity of a workspace, optionally limited to a time range and one token, into a scenario document.

    Raises:
        NotFoundError: If the workspace does not exist.
        InvalidInputError: If no recorded event falls in the selection.
    """
    async with database.read() as session:
        found = await get_workspace(session, workspace)
        statement = select(ActivityEvent).where(ActivityEvent.workspace_id == found.id)
        if start is not None:
            statement = statement.where(ActivityEvent.occurred_at >= start)
        if end is not None:
            statement = statement.where(ActivityEvent.occurred_at <= end)
        if token_id is not None:
            statement = statement.where(ActivityEvent.token_id == token_id)
        events = [event for event in (await session.execute(statement.order_by(ActivityEvent.seq))).scalars().all() if event.action not in SETUP_ACTIONS]
        tokens = {token.id: token for token in (await session.execute(select(Token).where(Token.workspace_id == found.id))).scalars().all()}
    if not events:
        raise InvalidInputError(
            f"Workspace {workspace!r} has no recorded tool call, CLI decision or sync in that selection; widen --from/--to or drop --token."
        )

    recorder = _Recorder(await tool_parameters(database), tokens)  # type: ignore[arg-type]
    clock = events[0].occurred_at
    index = 0
    while index < len(events):
        event = events[index]
        folded: list[ActivityEvent] = []
        # An approval that completes an auto-executing rule writes the execution event too.
        while index + 1 < len(events) and events[index + 1].action == "execute_draft" and events[index + 1].arguments.get("automatic"):
            folded.append(events[index + 1])
            index += 1
        index += 1
        where = f"event {event.seq} ({event.action} by {event.actor})"
        if event.token_id is None or event.token_id not in tokens:
            recorder.skipped.append(f"{where}: it was made without a token")
            continue
        if (event.occurred_at - clock).total_seconds() > CLOCK_SLACK_SECONDS:
            recorder.steps.append({"to": event.occurred_at.isoformat()})
            clock = event.occurred_at

        step: dict[str, Any] = {}
        if event.channel == "sync" and event.action == "ingest_external_snapshot":
            batch = await _sync_batch(database, event)
            if batch is None:
                recorder.skipped.append(f"{where}: its records are no longer stored as sent")
                continue
            step = {"sync": {"batch": batch}, "as": recorder.token_name(event.token_id)}
        elif event.channel == "cli" and (argv := recorder.cli_argv(event)) is not None:
            step = {"cli": argv, "as": recorder.token_name(event.token_id)}
        elif event.action in recorder.tools:
            step = {"tool": event.action, "as": recorder.token_name(event.token_id), "arguments": recorder.tool_arguments(event)}
        else:
            recorder.skipped.append(f"{where}: no tool or replayable CLI command matches action {event.action!r}")
            continue

        retried = event.draft_id in recorder.drafts
        if event.action.startswith("draft_") and event.draft_id is not None and event.outcome == "ok" and not retried:
            step_id = f"draft{event.draft_id}"
            step = {"id": step_id, **step}
            recorder.drafts[event.draft_id] = f"$steps.{step_id}.result.draft_id"
        _expectations(step, event, folded, recorder.reference(event.draft_id))
        if retried and event.action.startswith("draft_") and "result" in step:
            # A retry with the same idempotency key returns the draft the first call created.
            step["result"]["draft_id"] = recorder.reference(event.draft_id)
        recorder.steps.append(step)

    tokens_section = {}
    for recorded_id, token_name in recorder.names.items():
        token = tokens[recorded_id]
        spec: dict[str, Any] = {"kind": token.principal_kind, "role": token.role}
        if token.on_behalf_of:
            spec["for"] = token.on_behalf_of
        if token_name != token.principal:
            spec["principal"] = token.principal
        tokens_section[token_name] = spec
    _add_represented_users(tokens_section, tokens)
    document = {
        "format": 1,
        "name": name or f"recorded session of workspace {workspace}",
        "description": f"Recorded from the activity history of workspace {workspace!r}, events {events[0].seq} to {events[-1].seq}.",
        "dataset": dataset,
        "now": events[0].occurred_at.isoformat(),
        "timezone": found.timezone,
        "tokens": tokens_section,
        "steps": recorder.steps,
    }
    return Recording(document=document, skipped=recorder.skipped)

"""The replay runner: a scenario on a fresh SQLite file, step by step through the real MCP server and CLI, with every expectation compared."""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from order3_mcp.app import Caller, Order3
from order3_mcp.replay.clock import FixedClock, parse_duration, parse_moment
from order3_mcp.replay.dataset import SETUP_ADMIN, load_workspace
from order3_mcp.replay.format import (
    STEP_KINDS,
    Problem,
    Scenario,
    ScenarioFileError,
    read_batch,
)
from order3_mcp.replay.matchers import Mismatch, first_difference, render
from order3_mcp.replay.references import UnresolvedReference, resolve
from order3_mcp.replay.sessions import TokenHandle, ToolSessions, run_cli
from order3_mcp.replay.state import (
    STATE_TARGETS,
    events_after,
    last_event_id,
    read_state,
)
from order3_mcp.services import admin
from order3_mcp.services import policy as policy_service
from order3_mcp.services import tokens as tokens_service
from store.db import Database, open_database
from store.drafts import payload_hash
from store.errors import InvalidInputError, Order3Error
from store.models import Draft
from store.pg_scratch import create_scratch_database, drop_scratch_database, server_url

# Error kinds a step can expect, from the activity outcome of a tool call or the exit code of a CLI action.
EXIT_CODE_KINDS = {1: "error", 2: "invalid", 3: "denied", 4: "not_found", 5: "conflict", 6: "denied"}
OUTCOME_KINDS = {"denied": "denied", "conflict": "conflict", "invalid": "invalid", "error": "error"}
# A not-found refusal is recorded with the outcome "invalid", and its message states that the record does not exist.
NOT_FOUND_TEXT = "does not exist"
# Scratch databases of `replay --postgres` are named this plus a random suffix.
REPLAY_PG_PREFIX = "order3_replay"
# Result fields, in order, whose value becomes a step's `id`.
ID_FIELDS = ("draft_id", "exception_id", "task_id", "message_id", "token_id", "id")
EXPECTATION_KEYS = ("id", "note", "result", "error", "events", "state")


@dataclass(frozen=True)
class Difference:
    """The first disagreement in a step: which step, which field, what was expected and what happened."""

    step_index: int
    step_id: str
    step_label: str
    mismatch: Mismatch

    def headline(self) -> str:
        """Return one line naming the step and the field: step 3 (approve1) result.status: ..."""
        name = f"step {self.step_index}" + (f" ({self.step_id})" if self.step_id else "")
        reason = f" ({self.mismatch.reason})" if self.mismatch.reason else ""
        return (
            f"{name} {self.step_label}: {self.mismatch.path or 'value'}{reason}: expected {render(self.mismatch.expected)}, "
            f"actual {render(self.mismatch.actual)}"
        )


@dataclass
class StepReport:
    """One step's label and its first difference, if it had one."""

    index: int
    step_id: str
    label: str
    difference: Difference | None = None


@dataclass
class ScenarioReport:
    """The outcome of one scenario: passed, failed or skipped, with its steps."""

    label: str
    name: str
    status: str
    steps: list[StepReport] = field(default_factory=list)
    skip_reason: str = ""
    seconds: float = 0.0

    @property
    def differences(self) -> list[Difference]:
        """The first difference of each failing step, in step order."""
        return [step.difference for step in self.steps if step.difference is not None]


def step_kind(step: dict[str, Any]) -> str:
    """Return which of tool, cli, sync, advance, to or tamper a validated step is."""
    return next(kind for kind in STEP_KINDS if kind in step)


def step_label(step: dict[str, Any]) -> str:
    """Return a short description of a step for reports."""
    kind = step_kind(step)
    if kind == "tool":
        return f"{step['tool']} as {step['as']}"
    if kind == "cli":
        return f"order3 {' '.join(str(part) for part in step['cli'])} as {step['as']}"
    if kind == "sync":
        return f"sync batch as {step['as']}"
    if kind == "advance":
        return f"advance the clock {step['advance']}"
    if kind == "to":
        return f"set the clock to {step['to']}"
    return "tamper with a draft's payload"


def _primary_id(result: Any) -> Any:
    if not isinstance(result, dict):
        return None
    return next((result[name] for name in ID_FIELDS if isinstance(result.get(name), int)), None)


def _error_kind(message: str, events: list[dict[str, Any]]) -> str:
    refusals = [event for event in events if event["outcome"] not in ("ok", "replayed")]
    if not refusals:
        return "invalid"
    kind = OUTCOME_KINDS.get(refusals[-1]["outcome"], "error")
    return "not_found" if kind == "invalid" and NOT_FOUND_TEXT in message else kind


def _set_path(document: dict[str, Any], dotted: str, value: Any) -> None:
    """Set a value inside a payload at a dotted path such as lines.0.quantity.

    Raises:
        InvalidInputError: If a part of the path does not exist.
    """
    parts = dotted.split(".")
    target: Any = document
    for part in parts[:-1]:
        if isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        elif isinstance(target, dict) and part in target:
            target = target[part]
        else:
            raise InvalidInputError(f"The draft's payload has no {part!r} on the path {dotted!r}.")
    last = parts[-1]
    if isinstance(target, list) and last.isdigit() and int(last) < len(target):
        target[int(last)] = value
    elif isinstance(target, dict):
        target[last] = value
    else:
        raise InvalidInputError(f"The draft's payload has no {last!r} on the path {dotted!r}.")


async def _tamper(database: Database, *, workspace_id: int, draft_id: Any, changes: dict[str, Any]) -> dict[str, Any]:
    """Change a stored draft's payload outside every Order3 flow, as an edit to the database would, and rehash it."""
    async with database.write() as session:
        draft = await session.get(Draft, draft_id) if isinstance(draft_id, int) else None
        if draft is None or draft.workspace_id != workspace_id:
            raise InvalidInputError(f"Draft {draft_id!r} does not exist in the scenario's workspace.")
        payload = json.loads(json.dumps(draft.payload))
        for dotted, value in changes.items():
            _set_path(payload, dotted, value)
        draft.payload = payload
        draft.payload_hash = payload_hash(draft.kind, payload)
        session.add(draft)
        return {"draft_id": draft.id, "payload_hash": draft.payload_hash}


class _Run:
    """The state of one scenario run: database, clock, tokens, sessions and the outputs of earlier steps."""

    def __init__(self, scenario: Scenario, *, database: Database, db_path: str, clock: FixedClock, workspace_id: int,
                 tokens: dict[str, TokenHandle], token_names: dict[int, str], transport: str) -> None:
        self.scenario = scenario
        self.database = database
        self.db_path = db_path
        self.clock = clock
        self.workspace_id = workspace_id
        self.tokens = tokens
        self.token_names = token_names
        self.sessions = ToolSessions(transport=transport, database=database, db_path=db_path, clock=clock, tokens=tokens)
        self.outputs: dict[str, dict[str, Any]] = {}

    async def perform(self, step: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
        """Run a step's action and return (result, error); references are resolved first.

        Raises:
            UnresolvedReference: If the step refers to an output that does not exist.
        """
        kind = step_kind(step)
        action = resolve({key: value for key, value in step.items() if key not in EXPECTATION_KEYS}, self.outputs)
        if kind == "tool":
            call = await self.sessions.call(action["as"], action["tool"], action.get("arguments", {}))
            return call.result, None if call.error is None else {"message": call.error}
        if kind == "sync":
            batch = action["sync"].get("batch")
            if batch is None:
                batch = read_batch(self.scenario.path.resolve().parent, action["sync"]["file"])
            call = await self.sessions.call(action["as"], "ingest_external_snapshot", batch)
            return call.result, None if call.error is None else {"message": call.error}
        if kind == "cli":
            run = await run_cli(
                [str(part) for part in action["cli"]], db_path=self.db_path, secret=self.tokens[action["as"]].secret, clock=self.clock
            )
            result = {"exit_code": run.exit_code, "output": run.output, "stderr": run.stderr}
            if run.exit_code == 0:
                return result, None
            return result, {"kind": EXIT_CODE_KINDS.get(run.exit_code, "error"), "message": run.stderr.strip()}
        if kind == "advance":
            self.clock.advance(parse_duration(action["advance"]))
            await self.sessions.clock_moved()
            return {"now": self.clock.now.isoformat()}, None
        if kind == "to":
            self.clock.move_to(parse_moment(action["to"], what="to"))
            await self.sessions.clock_moved()
            return {"now": self.clock.now.isoformat()}, None
        try:
            return await _tamper(self.database, workspace_id=self.workspace_id, draft_id=action["tamper"]["draft"], changes=action["tamper"]["payload"]), None
        except InvalidInputError as exc:
            return None, {"kind": "invalid", "message": exc.message}

    async def check_state(self, checks: list[dict[str, Any]]) -> Mismatch | None:
        """Compare each state check with the database and return the first mismatch."""
        for index, check in enumerate(checks):
            path = f"state[{index}]"
            target = next(name for name in STATE_TARGETS if name in check)
            try:
                selector = resolve(check[target], self.outputs)
                expect = resolve(check["expect"], self.outputs)
            except UnresolvedReference as exc:
                return Mismatch(path, exc.reference, None, f"the reference cannot be resolved: {exc.reason}")
            try:
                actual = await read_state(self.database, workspace_id=self.workspace_id, target=target, selector=selector)
            except InvalidInputError as exc:
                return Mismatch(f"{path}.{target}", selector, None, exc.message)
            found = first_difference(expect, actual, f"{path}")
            if found is not None:
                return found
        return None

    async def run_step(self, index: int, step: dict[str, Any]) -> StepReport:
        """Run one step and compare its expectations in this order: error, result, events, state."""
        report = StepReport(index=index, step_id=step.get("id", ""), label=step_label(step))
        before = await last_event_id(self.database)
        try:
            result, error = await self.perform(step)
        except UnresolvedReference as exc:
            mismatch = Mismatch("arguments", exc.reference, None, f"the reference cannot be resolved: {exc.reason}")
            report.difference = Difference(index, report.step_id, report.label, mismatch)
            return report
        events = await events_after(self.database, before, token_names=self.token_names)
        if error is not None and "kind" not in error:
            error["kind"] = _error_kind(error["message"], events)
        if report.step_id:
            self.outputs[report.step_id] = {"id": _primary_id(result), "result": result, "error": error, "events": events}

        mismatch = await self._compare(step, result, error, events)
        if mismatch is not None:
            report.difference = Difference(index, report.step_id, report.label, mismatch)
        return report

    async def _compare(self, step: dict[str, Any], result: Any, error: dict[str, Any] | None, events: list[dict[str, Any]]) -> Mismatch | None:
        try:
            expected_error = resolve(step.get("error"), self.outputs)
            expected_result = resolve(step.get("result"), self.outputs)
            expected_events = resolve(step.get("events"), self.outputs)
        except UnresolvedReference as exc:
            return Mismatch("expectations", exc.reference, None, f"the reference cannot be resolved: {exc.reason}")

        if expected_error is None and error is not None:
            return Mismatch("error", None, error, "the step failed")
        if expected_error is not None:
            if error is None:
                return Mismatch("error", expected_error, None, "the step succeeded")
            found = first_difference(expected_error, error, "error")
            if found is not None:
                return found
        if "result" in step:
            found = first_difference(expected_result, result, "result")
            if found is not None:
                return found
        if "events" in step:
            found = first_difference(expected_events, events, "events")
            if found is not None:
                return found
        if "state" in step:
            return await self.check_state(step["state"])
        return None


def _setup_problem(scenario: Scenario, pointer: str, exc: Order3Error, fix: str) -> ScenarioFileError:
    return ScenarioFileError([Problem(scenario.label, pointer, exc.message.rstrip("."), fix)])


async def _create_tokens(app: Order3, database: Database, scenario: Scenario, setup_admin: Caller, clock: FixedClock) -> dict[str, TokenHandle]:
    """Create each scenario token; a token in another workspace gets that workspace, created empty.

    User tokens are created first, in the order declared, because an agent or
    integration token may act only for a user the workspace already has.

    Raises:
        ScenarioFileError: If a token's role or kind is refused.
    """
    admins = {setup_admin.workspace: setup_admin}
    handles: dict[str, TokenHandle] = {}
    ordered = sorted(scenario.tokens.items(), key=lambda entry: entry[1].kind != "user")
    for name, spec in ordered:
        workspace = spec.workspace or setup_admin.workspace
        try:
            if workspace not in admins:
                created = await admin.init_workspace(
                    database, workspace=workspace, base_currency=setup_admin.base_currency, timezone=setup_admin.timezone,
                    admin=SETUP_ADMIN, clock=clock,
                )
                admins[workspace] = await app.authenticate(created.secret, channel="cli")
            token = await tokens_service.create_token(
                app, admins[workspace], principal=spec.principal, kind=spec.kind, role=spec.role, on_behalf_of=spec.on_behalf_of,
                label=f"replay token {name}",
            )
        except Order3Error as exc:
            raise _setup_problem(scenario, f"/tokens/{name}", exc, "use a kind, role and principal that `order3 token create` accepts") from exc
        handles[name] = TokenHandle(secret=token.secret, caller=await app.authenticate(token.secret, channel="mcp"))
    return handles


def skip_reason(scenario: Scenario) -> str:
    """Return why a scenario cannot run here, or "" when it can: today only a missing InvenTree export."""
    inventree = scenario.dataset.inventree
    if inventree is not None and not inventree.is_file():
        return (
            f"the InvenTree export {scenario.dataset.document['inventree']} named by dataset {scenario.dataset.source} "
            "is not present on this machine"
        )
    return ""


async def run_scenario(
    scenario: Scenario, *, transport: str = "memory", keep_in: Path | None = None, postgres: str | None = None
) -> ScenarioReport:
    """Run a scenario on a fresh database and return its report.

    The database is a temporary SQLite file unless `keep_in` names an empty
    directory, where replay.db is created and kept, for example to record it
    again. With `postgres` (a URL of a PostgreSQL server), it is a new database
    on that server, dropped afterwards.

    Raises:
        ScenarioFileError: If the dataset, the policy file or a token is refused while setting up.
    """
    started = time.perf_counter()
    reason = skip_reason(scenario)
    if reason:
        return ScenarioReport(label=scenario.label, name=scenario.name, status="skipped", skip_reason=reason)

    async with contextlib.AsyncExitStack() as stack:
        location: str
        if postgres is not None:
            location = await create_scratch_database(postgres, prefix=REPLAY_PG_PREFIX)
            admin_database = make_url(server_url(postgres)).database or "postgres"
            stack.push_async_callback(drop_scratch_database, location, admin_database=admin_database)
        else:
            directory = keep_in or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="order3-replay-")))
            db_path = directory / "replay.db"
            if db_path.exists():
                raise InvalidInputError(f"{db_path} already exists; a replay needs a fresh database, so pick an empty directory.")
            location = str(db_path)
        database = await open_database(location)
        try:
            report = await _run_on(database, location, scenario, transport)
        finally:
            await database.dispose()
    report.seconds = time.perf_counter() - started
    return report


async def _run_on(database: Database, db_path: str, scenario: Scenario, transport: str) -> ScenarioReport:
    clock = FixedClock(scenario.now)
    try:
        setup = await load_workspace(database, scenario.dataset, timezone=scenario.timezone, clock=clock)
    except ScenarioFileError:
        raise
    except Order3Error as exc:
        raise _setup_problem(scenario, "/dataset", exc, "correct the dataset or the files it names") from exc
    app = Order3(database, clock=clock)
    if scenario.policy is not None:
        try:
            await policy_service.load_policy(app, setup.admin, text=scenario.policy.read_text(encoding="utf-8"), source=scenario.policy.name)
        except Order3Error as exc:
            raise _setup_problem(scenario, "/policy", exc, "correct the policy file; `order3 policy check` shows the problems") from exc
    tokens = await _create_tokens(app, database, scenario, setup.admin, clock)
    token_names = {handle.caller.token_id or 0: name for name, handle in tokens.items()}

    run = _Run(scenario, database=database, db_path=db_path, clock=clock, workspace_id=setup.admin.workspace_id,
               tokens=tokens, token_names=token_names, transport=transport)
    steps = []
    try:
        for index, step in enumerate(scenario.steps, start=1):
            steps.append(await run.run_step(index, step))
    finally:
        await run.sessions.close()
    failed = any(step.difference is not None for step in steps)
    return ScenarioReport(label=scenario.label, name=scenario.name, status="failed" if failed else "passed", steps=steps)

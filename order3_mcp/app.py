"""The service root: authenticates callers and runs every action with its activity event.

MCP tools and CLI commands both go through `Order3.run`, so there is one place
that checks scopes, applies idempotency keys, writes the activity event in the
action's own transaction, and records refusals and failures.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from policies import Policy, default_policy_path, load_policy, required_scope
from store.activity import append_event, canonical_json
from store.changes import item_scoped
from store.db import SQLITE_BUSY_TIMEOUT_MS, Database
from store.errors import ConflictError, Order3Error, PermissionDeniedError
from store.freshness import note_change
from store.idempotency import (
    KeyInProgressError,
    check_key,
    find_replay,
    in_progress_error,
    purge_expired,
    remember,
    request_hash,
)
from store.sqlite_inline import is_busy
from store.tokens import (
    DeadTokenError,
    find_live_token,
    needs_use_noted,
    note_token_use,
)
from store.types import utc_now

if TYPE_CHECKING:
    from order3_mcp.services.background_runs import BackgroundRuns
    from order3_mcp.services.scan_workers import ScanWorkers

logger = logging.getLogger(__name__)

ResultT = TypeVar("ResultT", bound=BaseModel)

# Argument names whose values never reach the activity log.
SECRET_ARGUMENTS = ("token", "secret", "password")
# Maximum length of an argument value, as JSON, kept verbatim in an activity event.
MAX_LOGGED_ARGUMENT = 4000
# Most argument names kept in one activity event.
MAX_LOGGED_ARGUMENTS = 50

# Set while an action records its own activity event, so the MCP layer does not
# record a second one for the same call.
activity_recorded: contextvars.ContextVar[bool] = contextvars.ContextVar("activity_recorded", default=False)
# Installed by the MCP server for each tool call and marked by `Order3.run` once the
# action's transaction has committed, so a cancellation that arrives later is not
# recorded as a rollback. It is a mutable object because the SDK may run the tool
# body in a copy of the caller's context, where a plain value set would stay.
call_commits: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("call_commits", default=None)
# Installed by the MCP server for each tool call: work that goes on after the call
# is stopped (such as a finder rerun) adds its description, so the stopped call's
# message can state what will still be written.
call_continuing: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("call_continuing", default=None)
# `clientInfo.name` of the MCP client behind the current tool call, set by the
# MCP server for the length of the call; empty for CLI actions.
client_name: contextvars.ContextVar[str] = contextvars.ContextVar("client_name", default="")

# The idempotency key of the last action run in this context when it replayed a
# stored result, else None; the CLI reads it to label a replay as one.
replayed_key: contextvars.ContextVar[str | None] = contextvars.ContextVar("replayed_key", default=None)

# A revoked or expired token's refusals are recorded at most once per token in this interval, per Order3
# instance, so a client retrying with a dead token cannot turn its retries into a flood of writes.
DEAD_TOKEN_RECORD_INTERVAL = timedelta(minutes=1)

# Keyed writes of one Order3 between purges of expired key records; the first keyed write purges too.
PURGE_KEYS_EVERY = 100

@dataclass(frozen=True)
class Caller:
    """The caller of an action: principal, token, scopes, channel and workspace."""

    workspace_id: int
    workspace: str
    base_currency: str
    timezone: str
    token_id: int | None
    principal_kind: str
    principal: str
    role: str
    scopes: frozenset[str]
    on_behalf_of: str = ""
    channel: str = "mcp"

    def describe(self) -> str:
        """Return a short label such as "agent 'buyer-bot' (role agent)"."""
        return f"{self.principal_kind} {self.principal!r} (role {self.role})"


@dataclass
class Outcome:
    """The result of an action, for its caller and for its activity event."""

    result: BaseModel
    summary: str
    affected: list[dict[str, Any]] = field(default_factory=list)
    draft_id: int | None = None
    #: Activity outcome; "invalid" records a handled failure that still commits, such as a failed execution.
    outcome: str = "ok"
    #: Raised to the caller after the work and its event are committed: for a refusal
    #: that must still change state, such as marking an expired draft expired.
    error: Order3Error | None = None


def _draft_id(arguments: dict[str, Any]) -> int | None:
    # A refused call about a draft still belongs in that draft's history.
    value = arguments.get("draft_id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def redact(arguments: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of `arguments` fit for the activity log.

    Secret-looking values are replaced, and a value whose JSON is longer than
    MAX_LOGGED_ARGUMENT characters is replaced by its size and SHA-256, so a
    refused call with megabytes of arguments cannot bloat the log.
    """
    clean: dict[str, Any] = {}
    for name, value in list(arguments.items())[:MAX_LOGGED_ARGUMENTS]:
        if any(marker in str(name).lower() for marker in SECRET_ARGUMENTS):
            clean[name] = "[redacted]"
            continue
        text = canonical_json(value)
        if len(text) > MAX_LOGGED_ARGUMENT:
            digest = hashlib.sha256(text.encode()).hexdigest()
            clean[name] = f"[{len(text)} characters, sha256 {digest}]"
        else:
            clean[name] = value
    return clean


def _mark_on_commit(session: AsyncSession, action: str) -> None:
    # Closing the session after the commit still awaits, and a cancellation can
    # arrive there, so the mark is made by the commit itself.
    commits = call_commits.get()
    if commits is not None:
        event.listen(session.sync_session, "after_commit", lambda _session: commits.append(action), once=True)


def _busy_conflict(error: BaseException) -> ConflictError | None:
    """Return the conflict to raise when SQLite stayed locked by another process past the busy timeout."""
    cause = getattr(error, "orig", None) or error
    if not is_busy(cause):
        return None
    return ConflictError(
        f"The database stayed locked by another process for over {SQLITE_BUSY_TIMEOUT_MS // 1000} s, so nothing was "
        "written; retry when that process (an import, another order3 command) has finished."
    )


class Order3:
    """Service root shared by the MCP server and the CLI."""

    def __init__(
        self,
        database: Database,
        *,
        policy: Policy | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.database = database
        self.policy = policy or load_policy(default_policy_path())
        self.clock = clock
        # (workspace id, key owner, key) of keyed writes between their start and commit.
        self._keys_in_flight: set[tuple[int, str, str]] = set()
        self._keyed_writes = 0
        # Token id -> when this instance last recorded a refusal of that revoked or expired token.
        self._dead_token_recorded: dict[int, datetime] = {}
        #: Worker processes that plan whole-workspace finder runs off the event loop; None plans them in process.
        self.scan_workers: ScanWorkers | None = None
        #: Whole finder reruns that only their age calls for, run beside the calls of a server;
        #: None reruns them in the call that finds them due.
        self.background_runs: BackgroundRuns | None = None
        #: Test hook awaited with the action name after a write's work, before its commit.
        self.before_commit: Callable[[str], Awaitable[None]] | None = None

    async def authenticate(self, secret: str, *, channel: str, action: str = "authenticate", request_id: str = "") -> Caller:
        """Return the caller for a token secret, noting the token's use at most once a minute.

        A revoked or expired token's refusal is recorded as a "denied" event of
        `action` in the token's workspace, at most once per token every
        DEAD_TOKEN_RECORD_INTERVAL. An unknown secret has no workspace, so its
        refusal is only logged.

        Raises:
            PermissionDeniedError: If the token is unknown, revoked or expired.
        """
        from policies import scopes_for

        now = self.clock()
        try:
            async with self.database.read() as session:
                token = await find_live_token(session, secret=secret, now=now)
        except DeadTokenError as exc:
            logger.info("%s refused: token %s is %s", action, exc.token.id, exc.reason)
            await self._record_dead_token(exc, channel=channel, action=action, request_id=request_id, now=now)
            raise
        except PermissionDeniedError:
            logger.info("%s refused: the %s request sent an unknown token", action, channel)
            raise
        if needs_use_noted(token, now=now):
            async with self.database.write() as session:
                await note_token_use(session, token_id=token.id, now=now)  # type: ignore[arg-type]
        # Scopes are recomputed from the role so an agent token can never carry
        # approve or execute, whatever was stored.
        scopes = scopes_for(principal_kind=token.principal_kind, role=token.role) & frozenset(token.scopes)
        return Caller(
            workspace_id=token.workspace_id,
            workspace=token.workspace,
            base_currency=token.base_currency,
            timezone=token.timezone,
            token_id=token.id,
            principal_kind=token.principal_kind,
            principal=token.principal,
            role=token.role,
            scopes=scopes,
            on_behalf_of=token.on_behalf_of,
            channel=channel,
        )

    async def _record_dead_token(
        self, error: DeadTokenError, *, channel: str, action: str, request_id: str, now: datetime
    ) -> None:
        """Record the refusal of a revoked or expired token, unless one was recorded for it recently."""
        token = error.token
        last = self._dead_token_recorded.get(token.id)  # type: ignore[arg-type]
        if last is not None and now - last < DEAD_TOKEN_RECORD_INTERVAL:
            return
        self._dead_token_recorded[token.id] = now  # type: ignore[index]
        caller = Caller(
            workspace_id=token.workspace_id,
            workspace="",
            base_currency="",
            timezone="",
            token_id=token.id,
            principal_kind=token.principal_kind,
            principal=token.principal,
            role=token.role,
            scopes=frozenset(),
            on_behalf_of=token.on_behalf_of,
            channel=channel,
        )
        summary = f"Refused token {token.id} of {token.principal!r} because it is {error.reason}: {error.message}"
        await self.record_failure(caller, action, "denied", {}, "", request_id, summary)

    async def run(
        self,
        caller: Caller,
        action: str,
        arguments: dict[str, Any],
        work: Callable[[AsyncSession], Awaitable[Outcome]],
        *,
        result_type: type[ResultT],
        idempotency_key: str | None = None,
        idempotency_owner: str | None = None,
        request_id: str = "",
        before_read: Callable[[], Awaitable[None]] | None = None,
    ) -> ResultT:
        """Check the caller's scope, run `work` in one write transaction and record the event.

        A failure rolls the work back and records the refusal or error in a
        transaction of its own, then re-raises.

        An action of the read scope runs `work` in a read-only transaction, which
        takes no write lock, and then records its event in a short write
        transaction of its own. Upkeep that a read needs first, such as expiring
        overdue drafts or rerunning a finder, is `before_read`: it runs before the
        read and commits on its own.

        Idempotency keys belong to the calling principal unless `idempotency_owner`
        names another owner, such as the source of a sync batch. The fingerprint
        covers `action` and `arguments`, so services pass validated, normalised
        values there (Decimals, or text from `store.idempotency.decimal_text`).
        A replay records one event with outcome "replayed" and sets
        `replayed_key`. A result that carries an error (`Outcome.error`) is not
        stored, so retrying with the key runs the action again.

        Raises:
            PermissionDeniedError: If the caller lacks the action's scope.
            KeyInProgressError: If a call of this process with the same key has
                not committed yet; nothing is written or recorded, because
                recording would wait for the write lock that call holds.
            Order3Error: Whatever `work` raises on bad input or conflicts.
        """
        activity_recorded.set(True)
        replayed_key.set(None)
        key_owner = idempotency_owner or caller.principal
        logged_arguments = redact(arguments)
        key = idempotency_key or ""
        in_flight: tuple[int, str, str] | None = None
        try:
            scope = self.check_scope(caller, action)
            if scope == "read" and idempotency_key is None:
                return await self._run_read(
                    caller, action, logged_arguments, work, result_type=result_type, request_id=request_id,
                    before_read=before_read,
                )
            if idempotency_key is not None:
                check_key(idempotency_key)
                slot = (caller.workspace_id, key_owner, idempotency_key)
                if slot in self._keys_in_flight:
                    raise in_progress_error(idempotency_key)
                self._keys_in_flight.add(slot)
                in_flight = slot

            async def in_transaction(session: AsyncSession) -> tuple[ResultT | None, Outcome | None]:
                # Runs again from the start if PostgreSQL reports a serialization failure or deadlock.
                if idempotency_key is not None:
                    fingerprint = request_hash(action, logged_arguments)
                    stored = await find_replay(
                        session,
                        workspace_id=caller.workspace_id,
                        principal=key_owner,
                        key=idempotency_key,
                        action=action,
                        fingerprint=fingerprint,
                        now=self.clock(),
                    )
                    if stored is not None:
                        result = result_type.model_validate(stored["result"])
                        await self._record(
                            session,
                            caller,
                            action,
                            "replayed",
                            logged_arguments,
                            key,
                            request_id,
                            summary=f"Replayed the stored result for idempotency key {idempotency_key!r}; nothing new was written.",
                            affected=stored.get("affected", []),
                            draft_id=stored.get("draft_id"),
                        )
                        replayed_key.set(idempotency_key)
                        _mark_on_commit(session, action)
                        return result, None

                if scope == "read":
                    # A read sent with an idempotency key takes this path, and writes no finder input.
                    item_scoped(session)
                outcome = await work(session)
                if scope != "read":
                    # Finders skip a refresh while this counter does not change.
                    await note_change(session, workspace_id=caller.workspace_id)

                if idempotency_key is not None and outcome.error is None:
                    await remember(
                        session,
                        workspace_id=caller.workspace_id,
                        key=idempotency_key,
                        action=action,
                        principal=key_owner,
                        fingerprint=fingerprint,
                        response={
                            "result": outcome.result.model_dump(mode="json"),
                            "affected": outcome.affected,
                            "draft_id": outcome.draft_id,
                        },
                        now=self.clock(),
                    )
                    await self._purge_keys_now_and_then(session, caller.workspace_id)
                await self._record(
                    session,
                    caller,
                    action,
                    outcome.error.outcome if outcome.error else outcome.outcome,
                    logged_arguments,
                    key,
                    request_id,
                    summary=outcome.error.message if outcome.error else outcome.summary,
                    affected=outcome.affected,
                    draft_id=outcome.draft_id,
                )
                _mark_on_commit(session, action)
                if self.before_commit is not None:
                    await self.before_commit(action)
                return None, outcome

            replayed, outcome = await self.database.run_write(in_transaction)
            if replayed is not None:
                return replayed
        except KeyInProgressError:
            logger.info("%s by %s refused: its idempotency key is still in progress", action, caller.principal)
            raise
        except Order3Error as exc:
            logger.info("%s by %s failed: %s", action, caller.principal, exc.outcome)
            await self.record_failure(
                caller, action, exc.outcome, logged_arguments, key, request_id, exc.message, draft_id=_draft_id(arguments)
            )
            raise
        except Exception as exc:
            busy = _busy_conflict(exc)
            if busy is not None:
                logger.warning("%s by %s found the database busy: %s", action, caller.principal, exc)
                await self.record_failure(
                    caller, action, busy.outcome, logged_arguments, key, request_id, busy.message, draft_id=_draft_id(arguments)
                )
                raise busy from exc
            logger.exception("%s by %s crashed", action, caller.principal)
            await self.record_failure(
                caller, action, "error", logged_arguments, key, request_id, "Internal error; see the server log.",
                draft_id=_draft_id(arguments),
            )
            raise
        finally:
            if in_flight is not None:
                self._keys_in_flight.discard(in_flight)
        if outcome.error is not None:
            logger.info("%s by %s failed after committing: %s", action, caller.principal, outcome.error.outcome)
            raise outcome.error
        return outcome.result  # type: ignore[return-value]

    async def _run_read(
        self,
        caller: Caller,
        action: str,
        logged_arguments: dict[str, Any],
        work: Callable[[AsyncSession], Awaitable[Outcome]],
        *,
        result_type: type[ResultT],
        request_id: str,
        before_read: Callable[[], Awaitable[None]] | None,
    ) -> ResultT:
        """Run a read action: upkeep, then `work` on a snapshot without the write lock, then its event."""
        if before_read is not None:
            await before_read()
        async with self.database.read_only() as session:
            outcome = await work(session)

        async def record(session: AsyncSession) -> None:
            await self._record(
                session,
                caller,
                action,
                outcome.error.outcome if outcome.error else outcome.outcome,
                logged_arguments,
                "",
                request_id,
                summary=outcome.error.message if outcome.error else outcome.summary,
                affected=outcome.affected,
                draft_id=outcome.draft_id,
            )
            _mark_on_commit(session, action)

        await self.database.run_write(record)
        if outcome.error is not None:
            raise outcome.error
        return outcome.result  # type: ignore[return-value]

    def check_scope(self, caller: Caller, action: str) -> str:
        """Return the scope `action` requires, if the caller has it.

        Raises:
            PermissionDeniedError: If the caller lacks that scope.
        """
        scope = required_scope(action)
        if scope not in caller.scopes:
            raise PermissionDeniedError(
                f"{caller.describe()} may not call {action}: it needs the {scope!r} scope, which this token "
                f"does not have. {self._who_can(scope)}"
            )
        return scope

    async def _purge_keys_now_and_then(self, session: AsyncSession, workspace_id: int) -> None:
        """Purge one batch of expired idempotency records on every PURGE_KEYS_EVERY-th keyed write."""
        due = self._keyed_writes % PURGE_KEYS_EVERY == 0
        self._keyed_writes += 1
        if due:
            purged = await purge_expired(session, workspace_id=workspace_id, now=self.clock())
            if purged:
                logger.info("purged %d expired idempotency keys of workspace %d", purged, workspace_id)

    async def record_failure(
        self,
        caller: Caller,
        action: str,
        outcome: str,
        arguments: dict[str, Any],
        idempotency_key: str,
        request_id: str,
        summary: str,
        *,
        draft_id: int | None = None,
    ) -> None:
        """Record a refused or failed action in its own transaction."""
        try:
            async with self.database.write() as session:
                await self._record(
                    session, caller, action, outcome, arguments, idempotency_key, request_id, summary=summary,
                    draft_id=draft_id, require_live_token=False,
                )
        except Exception:
            # The caller still gets the original error; the lost event is logged loudly.
            logger.exception("could not record the %s outcome of %s by %s", outcome, action, caller.principal)

    async def _record(
        self,
        session: AsyncSession,
        caller: Caller,
        action: str,
        outcome: str,
        arguments: dict[str, Any],
        idempotency_key: str,
        request_id: str,
        *,
        summary: str,
        affected: list[dict[str, Any]] | None = None,
        draft_id: int | None = None,
        require_live_token: bool = True,
    ) -> None:
        # The token is checked on every successful call, so revoking it also stops
        # a server already running with it; refusals are recorded either way.
        await append_event(
            session,
            workspace_id=caller.workspace_id,
            actor_kind=caller.principal_kind,
            actor=caller.principal,
            token_id=caller.token_id,
            channel=caller.channel,
            action=action,
            outcome=outcome,
            affected=affected,
            draft_id=draft_id,
            request_id=request_id,
            idempotency_key=idempotency_key,
            arguments=arguments,
            summary=summary,
            occurred_at=self.clock(),
            on_behalf_of=caller.on_behalf_of,
            client_name=client_name.get(),
            require_live_token=require_live_token,
        )

    @staticmethod
    def _who_can(scope: str) -> str:
        if scope == "approve":
            return (
                "Approvals, rejections and dismissals are for people: a user with a buyer or approver token "
                "runs `order3 drafts approve|reject` or `order3 exceptions dismiss`."
            )
        if scope == "execute":
            return "Execution is for people: a user with a buyer or approver token runs `order3 drafts execute`."
        if scope == "admin":
            return "Ask a workspace admin to run the matching `order3` command."
        return f"Create a token whose role includes {scope!r} with `order3 token create`."

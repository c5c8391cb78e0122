"""The `policy` commands: show the active approval policy, list loaded versions, check a file and load it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from order3_mcp.commands._runtime import (
    IdempotencyKeyOption,
    execute,
    keyed,
    out,
    say,
    say_replayed,
    settings_of,
    signed_in,
)
from order3_mcp.services import policy as policy_service
from order3_mcp.services.policy import (
    MAX_POLICY_BYTES,
    PolicyCheckOut,
    PolicyLoaded,
    PolicyOut,
    PolicyVersionList,
)
from store.errors import InvalidInputError, NotFoundError

policy_app = typer.Typer(
    help="Show, check and load the workspace's approval policy (loading needs an admin token).", no_args_is_help=True
)

PolicyFile = Annotated[Path, typer.Argument(help="Policy file in TOML; see docs/policies.md for the format.")]


def read_policy_file(path: Path) -> str:
    """Return the text of a policy file.

    Raises:
        NotFoundError: If the file does not exist.
        InvalidInputError: If it is a directory, too large, unreadable or not UTF-8.
    """
    if not path.exists():
        raise NotFoundError(f"Policy file {str(path)!r} does not exist; pass the path of a TOML policy file.")
    if path.is_dir():
        raise InvalidInputError(f"Policy file {str(path)!r} is a directory; pass the path of a TOML policy file.")
    try:
        size = path.stat().st_size
        if size > MAX_POLICY_BYTES:
            raise InvalidInputError(
                f"Policy file {str(path)!r} is {size} bytes, more than the {MAX_POLICY_BYTES} allowed; "
                "pass a policy file, not another document."
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"Cannot read policy file {str(path)!r}: {exc.strerror}.") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"Policy file {str(path)!r} is not UTF-8 ({exc.reason} at byte {exc.start}); save it as UTF-8."
        ) from exc


def print_policy(policy: PolicyOut) -> None:
    """Print a policy's identity, its rules as a table, its tolerances and any warnings."""
    state = "active" if policy.active else "not active"
    say(f"Policy {policy.name!r} version {policy.version!r} ({policy.origin}, {state})", style="bold")
    say(f"SHA-256: {policy.sha256}")
    say(f"Fingerprint: {policy.fingerprint}")
    if policy.loaded_at:
        say(f"Loaded: {policy.loaded_at} by {policy.loaded_by} from {policy.source}")
    else:
        say(f"Source: {policy.source}")

    table = Table(title=f"{len(policy.rules)} rules, first match wins", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    # Rule ids never wrap, so a reader can copy them. Lists go one entry per line, and
    # narrow terminals fold long values instead of cutting them off.
    table.add_column("#")
    table.add_column("id", no_wrap=True)
    for column in ("kinds", "conditions", "approvers", "approvals", "auto", "expires"):
        table.add_column(column, overflow="fold")
    for rule in policy.rules:
        table.add_row(
            str(rule.position),
            rule.id,
            "\n".join(rule.kinds),
            rule.conditions.replace("; ", "\n") or "-",
            "\n".join(rule.approver_roles),
            str(rule.approvals),
            "yes" if rule.auto_execute else "no",
            f"{rule.expires_after_hours} h" if rule.expires_after_hours else "never",
        )
    out().print(table)
    say("Tolerances: " + ", ".join(f"{name} {value}" for name, value in policy.tolerances.items()))
    print_warnings(policy.warnings)


def print_warnings(warnings: list[str]) -> None:
    """Print each policy warning on its own line."""
    for warning in warnings:
        say(f"Warning: {warning}", style="yellow")


@policy_app.command("show")
def show(
    ctx: typer.Context,
    version: Annotated[
        str | None, typer.Option("--version", help="Show this loaded version instead of the active policy.")
    ] = None,
) -> None:
    """Show the workspace's active policy, or a loaded version: name, version, hash and rules."""
    settings = settings_of(ctx)

    async def step() -> PolicyOut:
        async with signed_in(settings) as (app, caller):
            return await policy_service.show_policy(app, caller, version=version)

    print_policy(execute(step))


@policy_app.command("list")
def list_(ctx: typer.Context) -> None:
    """List the policies loaded into the workspace, newest (active) first."""
    settings = settings_of(ctx)

    async def step() -> PolicyVersionList:
        async with signed_in(settings) as (app, caller):
            return await policy_service.list_policies(app, caller)

    listing = execute(step)
    if listing.default_active:
        say("No policy was loaded into this workspace; the shipped default is active (`order3 policy show`).")
        return
    table = Table(title=f"{len(listing.versions)} policy versions", box=box.SIMPLE_HEAD)
    for column in ("version", "name", "sha256", "rules", "loaded", "by", "source", "active"):
        table.add_column(column)
    for row in listing.versions:
        table.add_row(
            row.version,
            row.name,
            row.sha256[:12],
            str(row.rule_count),
            row.loaded_at,
            row.loaded_by,
            row.source,
            "yes" if row.active else "",
        )
    out().print(table)


@policy_app.command("load")
def load(ctx: typer.Context, file: PolicyFile, idempotency_key: IdempotencyKeyOption = None) -> None:
    """Validate a policy file and make it the workspace's active policy (admin scope).

    Nothing is written when the file is invalid, or when its version was loaded
    before with other text.
    """
    settings = settings_of(ctx)

    async def step() -> tuple[PolicyLoaded, str | None]:
        text = read_policy_file(file)
        async with signed_in(settings) as (app, caller):
            return await keyed(
                policy_service.load_policy(app, caller, text=text, source=file.name, idempotency_key=idempotency_key)
            )

    loaded, replayed = execute(step)
    say_replayed(replayed, "policy load")
    policy = loaded.policy
    if not loaded.changed:
        say(f"Policy {policy.name!r} version {policy.version!r} is already the active policy; nothing changed.")
        return
    say(
        f"Loaded policy {policy.name!r} version {policy.version!r} ({len(policy.rules)} rules, sha256 "
        f"{policy.sha256[:12]}); it is now the active policy.",
        style="green",
    )
    if loaded.rerouted_drafts:
        drafts = ", ".join(str(draft_id) for draft_id in loaded.rerouted_drafts)
        say(f"Pending drafts now routed to another rule: {drafts}. Review them with `order3 drafts show ID`.")
    print_warnings(policy.warnings)


@policy_app.command("check")
def check(
    ctx: typer.Context,
    file: PolicyFile,
    draft: Annotated[
        int | None, typer.Option("--draft", help="Also show which rule of the file this draft would route to, and why.")
    ] = None,
) -> None:
    """Validate a policy file without loading it; with --draft, route a stored draft under it (needs a token)."""
    settings = settings_of(ctx)

    if draft is None:

        async def validate() -> PolicyOut:
            text = read_policy_file(file)
            policy = policy_service.validate_policy_text(text, source=file.name)
            return policy_service.policy_out(policy, origin="file", active=False, source=str(file))

        checked = execute(validate)
        say(f"{file.name} is valid: policy {checked.name!r} version {checked.version!r}, {len(checked.rules)} rules.")
        print_policy(checked)
        return

    async def step() -> PolicyCheckOut:
        text = read_policy_file(file)
        async with signed_in(settings) as (app, caller):
            return await policy_service.check_policy(app, caller, text=text, source=file.name, draft_id=draft)

    result = execute(step)
    policy = result.policy
    say(f"{file.name} is valid: policy {policy.name!r} version {policy.version!r}, {len(policy.rules)} rules.")
    print_warnings(policy.warnings)
    say(f"Draft {result.draft_id}: {result.facts}")
    table = Table(title="Rules in file order", box=box.SIMPLE_HEAD)
    for column in ("rule", "result", "reason"):
        table.add_column(column)
    for rule_check in result.checks:
        table.add_row(rule_check.id, rule_check.result, rule_check.reason)
    out().print(table)
    say(f"Would route to {result.requirement}.", style="bold")
    current = repr(result.current_rule) if result.current_rule else "no rule"
    say(f"Routed now to {current} under policy {result.current_policy}.")

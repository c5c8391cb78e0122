"""Tampering with the activity log on a real SQLite file, and how verification and checkpoints name each break."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from mcp import Client
from sqlalchemy import bindparam, select, text
from typer.testing import CliRunner, Result

from order3_mcp.cli import app
from order3_mcp.server import build_server
from store.activity import HASHED_FIELDS, ChainReport, event_hash, verify_chain
from store.activity_checkpoint import (
    Checkpoint,
    parse_checkpoint,
    read_checkpoint,
    verify_against_checkpoint,
)
from store.db import Database, open_database
from store.errors import InvalidInputError
from store.models import ActivityEvent
from tests.factory import make_app, small_workspace

RATIONALE = "WIDGET-1 has 5 available against a reorder point of 20."
runner = CliRunner()


async def seed_events(database: Database) -> int:
    """Record eight events through a real MCP session and return the workspace id.

    Seq 3 is the purchase order draft and seq 4 the agent's denied approval of it.
    """
    tokens = await small_workspace(database)
    async with Client(build_server(make_app(database), tokens.agent)) as client:
        await client.call_tool("get_item", {"sku": "WIDGET-1"})
        await client.call_tool("get_item", {"sku": "GADGET-2"})
        drafted = await client.call_tool(
            "draft_purchase_order", {"lines": [{"sku": "WIDGET-1", "quantity": 40}], "rationale": RATIONALE}
        )
        await client.call_tool("approve_draft", {"draft_id": drafted.structured_content["draft_id"]})
        for _ in range(4):
            await client.call_tool("list_activity", {"limit": 2})
    return tokens.agent.workspace_id


async def tamper(database: Database, sql: str, **params: object) -> None:
    """Run raw SQL in a write transaction, as someone with write access to the file would."""
    async with database.write() as session:
        await session.execute(text(sql), params)


async def check(database: Database, workspace_id: int, checkpoint: Checkpoint | None = None) -> ChainReport:
    async with database.read() as session:
        if checkpoint is None:
            return await verify_chain(session, workspace_id=workspace_id)
        return await verify_against_checkpoint(session, workspace_id=workspace_id, checkpoint=checkpoint)


async def checkpoint_at(database: Database, workspace_id: int, seq: int) -> Checkpoint:
    """Return the checkpoint that `order3 activity checkpoint` would have printed when `seq` was the last event."""
    async with database.read() as session:
        head = await read_checkpoint(session, workspace_id=workspace_id)
        digest = (await session.execute(select(ActivityEvent.hash).where(ActivityEvent.seq == seq))).scalar_one()
    return Checkpoint(workspace=head.workspace, seq=seq, hash=digest)


async def rehash_from(database: Database, workspace_id: int, seq: int) -> None:
    """Recompute every hash from `seq` on and move the chain head, as an attacker who knows the scheme would."""
    async with database.write() as session:
        events = (
            await session.execute(
                select(ActivityEvent).where(ActivityEvent.workspace_id == workspace_id).order_by(ActivityEvent.seq)
            )
        ).scalars().all()
        prev_hash = ""
        for event in events:
            if event.seq >= seq:
                digest = event_hash(prev_hash, {name: getattr(event, name) for name in HASHED_FIELDS})
                await session.execute(
                    text("UPDATE activity_event SET prev_hash = :prev, hash = :digest WHERE id = :id"),
                    {"prev": prev_hash, "digest": digest, "id": event.id},
                )
                prev_hash = digest
            else:
                prev_hash = event.hash
        await session.execute(
            text("UPDATE workspace SET activity_head = :head WHERE id = :id"), {"head": prev_hash, "id": workspace_id}
        )


async def swap_rows(database: Database, first: int, second: int, *, with_hashes: bool) -> None:
    """Swap the stored contents of two events while each keeps its sequence number."""
    unchanged = {"id", "seq"} if with_hashes else {"id", "seq", "prev_hash", "hash"}
    columns = [column.name for column in ActivityEvent.__table__.columns if column.name not in unchanged]
    listed = ", ".join(columns)
    async with database.write() as session:
        rows = {
            row.seq: row._mapping
            for row in (
                await session.execute(
                    text(f"SELECT seq, {listed} FROM activity_event WHERE seq IN (:a, :b)").columns(
                        *(ActivityEvent.__table__.c[name] for name in ["seq", *columns])
                    ),
                    {"a": first, "b": second},
                )
            ).all()
        }
        assignments = ", ".join(f"{name} = :{name}" for name in columns)
        # Typed parameters, so JSON columns are encoded on PostgreSQL as well as SQLite.
        update = text(f"UPDATE activity_event SET {assignments} WHERE seq = :target").bindparams(
            *(bindparam(name, type_=ActivityEvent.__table__.c[name].type) for name in columns)
        )
        for target, source in ((first, second), (second, first)):
            values = {name: rows[source][name] for name in columns}
            await session.execute(update, {**values, "target": target})


async def test_untouched_log_verifies(database):
    workspace_id = await seed_events(database)

    report = await check(database, workspace_id)

    assert report.ok
    assert report.events_checked == 8
    assert report.kind == ""


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("summary", "Nothing happened."),
        ("outcome", "ok"),
        ("arguments", '{"draft_id": 99}'),
        ("actor", "alice"),
        ("actor_kind", "user"),
        ("on_behalf_of", "alice"),
        ("client_name", "trusted-console"),
    ],
)
async def test_edited_field_breaks_chain_at_that_event(database, column, value):
    workspace_id = await seed_events(database)

    await tamper(database, f"UPDATE activity_event SET {column} = :value WHERE seq = 4", value=value)
    report = await check(database, workspace_id)

    assert report.first_broken_seq == 4
    assert report.kind == "edited"
    assert report.events_checked == 3
    assert report.problem == "event 4 was changed after it was written"


async def test_deleted_middle_event_is_missing(database):
    workspace_id = await seed_events(database)

    await tamper(database, "DELETE FROM activity_event WHERE seq = 4")
    report = await check(database, workspace_id)

    assert report.first_broken_seq == 4
    assert report.kind == "missing"
    assert report.problem == "event 4 is missing"


async def test_swapped_events_break_link_at_first(database):
    workspace_id = await seed_events(database)

    await swap_rows(database, 3, 4, with_hashes=True)
    report = await check(database, workspace_id)

    assert report.first_broken_seq == 3
    assert report.kind == "broken_link"
    assert "event 3 does not point at the hash of event 2" in report.problem


async def test_swapped_contents_under_old_hashes_are_edited(database):
    workspace_id = await seed_events(database)

    await swap_rows(database, 3, 4, with_hashes=False)
    report = await check(database, workspace_id)

    assert report.first_broken_seq == 3
    assert report.kind == "edited"


async def test_truncated_tail_with_old_head_is_head_mismatch(database):
    workspace_id = await seed_events(database)

    await tamper(database, "DELETE FROM activity_event WHERE seq > 5")
    report = await check(database, workspace_id)

    assert report.first_broken_seq == 6
    assert report.kind == "head_mismatch"
    assert report.problem == "the chain head says 8 events but 5 were found"


async def test_changed_head_hash_is_head_mismatch(database):
    workspace_id = await seed_events(database)

    await tamper(database, "UPDATE workspace SET activity_head = :head WHERE id = :id", head="0" * 64, id=workspace_id)
    report = await check(database, workspace_id)

    assert report.first_broken_seq == 8
    assert report.kind == "head_mismatch"
    assert report.problem == "the chain head's hash is not the hash of the last event, 8"


async def test_truncated_tail_with_moved_head_fails_checkpoint(database):
    workspace_id = await seed_events(database)
    async with database.read() as session:
        checkpoint = await read_checkpoint(session, workspace_id=workspace_id)

    await tamper(database, "DELETE FROM activity_event WHERE seq > 5")
    await tamper(
        database,
        "UPDATE workspace SET activity_seq = 5, activity_head = (SELECT hash FROM activity_event WHERE seq = 5) WHERE id = :id",
        id=workspace_id,
    )
    alone = await check(database, workspace_id)
    against = await check(database, workspace_id, checkpoint)

    assert checkpoint.seq == 8
    assert alone.ok
    assert against.first_broken_seq == 6
    assert against.kind == "truncated"
    assert against.problem == "the checkpoint names event 8, but the log ends at event 5, so events 6 to 8 were removed"


async def test_rehashed_log_fails_checkpoint_at_edited_event(database):
    workspace_id = await seed_events(database)
    checkpoint = await checkpoint_at(database, workspace_id, 5)

    await tamper(database, "UPDATE activity_event SET summary = 'Nothing happened.' WHERE seq = 5")
    await rehash_from(database, workspace_id, 5)
    alone = await check(database, workspace_id)
    against = await check(database, workspace_id, checkpoint)

    assert alone.ok
    assert against.first_broken_seq == 5
    assert against.kind == "rewritten"
    assert "event 5 no longer has the checkpoint's hash" in against.problem


async def test_rehashed_log_fails_later_checkpoint_at_its_seq(database):
    workspace_id = await seed_events(database)
    async with database.read() as session:
        latest = await read_checkpoint(session, workspace_id=workspace_id)
    earlier = await checkpoint_at(database, workspace_id, 4)

    await tamper(database, "UPDATE activity_event SET arguments = '{\"limit\": 100}' WHERE seq = 5")
    await rehash_from(database, workspace_id, 5)
    against_latest = await check(database, workspace_id, latest)
    against_earlier = await check(database, workspace_id, earlier)

    assert against_latest.first_broken_seq == 8
    assert against_latest.kind == "rewritten"
    assert "the first changed event is 8 or an earlier one" in against_latest.problem
    # A checkpoint taken before the edited event cannot see the edit.
    assert against_earlier.ok


async def test_chain_break_is_reported_before_checkpoint(database):
    workspace_id = await seed_events(database)
    async with database.read() as session:
        checkpoint = await read_checkpoint(session, workspace_id=workspace_id)

    await tamper(database, "UPDATE activity_event SET summary = 'Nothing happened.' WHERE seq = 2")
    report = await check(database, workspace_id, checkpoint)

    assert report.first_broken_seq == 2
    assert report.kind == "edited"


async def test_checkpoint_of_other_workspace_is_refused(database):
    workspace_id = await seed_events(database)
    async with database.read() as session:
        checkpoint = await read_checkpoint(session, workspace_id=workspace_id)
    foreign = Checkpoint(workspace="elsewhere", seq=checkpoint.seq, hash=checkpoint.hash)

    with pytest.raises(InvalidInputError, match="Checkpoint is for workspace 'elsewhere'"):
        await check(database, workspace_id, foreign)


def test_checkpoint_string_round_trips_with_colons_in_workspace():
    checkpoint = Checkpoint(workspace="eu:north", seq=42, hash="a" * 64)

    assert parse_checkpoint(checkpoint.encode()) == checkpoint
    assert checkpoint.encode() == "o3cp1:eu:north:42:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("o3cp2:main:4:" + "a" * 64, "is not a checkpoint string"),
        ("o3cp1:main:" + "a" * 64, "is not a checkpoint string"),
        ("o3cp1:main:0:" + "a" * 64, "has sequence number '0'"),
        ("o3cp1:main:x4:" + "a" * 64, "has sequence number 'x4'"),
        ("o3cp1:main:4:" + "A" * 64, "must be 64 lowercase hex digits"),
        ("o3cp1:main:4:abc", "must be 64 lowercase hex digits"),
    ],
)
def test_malformed_checkpoint_string_is_refused(text, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_checkpoint(text)


# The CLI: checkpoint, verify --checkpoint and their exit codes.


def order3(db: Path, *args: str, token: str | None = None) -> Result:
    options = ["--db", str(db)] + (["--token", token] if token else [])
    return runner.invoke(app, [*options, *args], env={"ORDER3_TOKEN": None, "ORDER3_DB": None, "COLUMNS": "200"})


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "order3.db"


@pytest.fixture
def admin_token(db: Path) -> str:
    result = order3(db, "init", "--workspace", "main", "--admin", "root")
    assert result.exit_code == 0, result.stderr
    secret = next(line.strip() for line in result.stdout.splitlines() if line.strip().startswith("o3_"))
    for principal in ("alice", "bob", "carol"):
        assert order3(db, "token", "create", "--principal", principal, "--role", "buyer", token=secret).exit_code == 0
    return secret


def checkpoint_line(output: str) -> str:
    return next(line.removeprefix("Checkpoint:").strip() for line in output.splitlines() if line.startswith("Checkpoint:"))


def on_file(db: Path, step) -> object:
    """Run `step(database)` against the SQLite file at `db`."""

    async def run() -> object:
        database = await open_database(db)
        try:
            return await step(database)
        finally:
            await database.dispose()

    return anyio.run(run)


def test_cli_checkpoint_prints_head(db: Path, admin_token: str):
    result = order3(db, "activity", "checkpoint", token=admin_token)

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Workspace:  main"
    assert lines[1] == "Last seq:   4"
    head_hash = lines[2].removeprefix("Head hash:  ")
    assert len(head_hash) == 64
    assert lines[3].startswith("Taken at:   20")
    assert lines[4] == f"Checkpoint: o3cp1:main:4:{head_hash}"
    assert "Keep it outside this database" in lines[5]


def test_cli_checkpoint_writes_json_file(db: Path, admin_token: str, tmp_path: Path):
    output = tmp_path / "checkpoint.json"

    result = order3(db, "activity", "checkpoint", "--output", str(output), token=admin_token)

    assert result.exit_code == 0, result.stderr
    written = json.loads(output.read_text())
    assert written["workspace"] == "main"
    assert written["seq"] == 4
    assert written["checkpoint"] == checkpoint_line(result.stdout)
    assert written["checkpoint"] == f"o3cp1:main:4:{written['hash']}"
    assert written["events_verified"] == 4
    assert f"Wrote the checkpoint to {output}." in result.stdout


def test_cli_verify_accepts_checkpoint_string_and_file(db: Path, admin_token: str, tmp_path: Path):
    output = tmp_path / "checkpoint.json"
    taken = order3(db, "activity", "checkpoint", "--output", str(output), token=admin_token)

    by_string = order3(db, "activity", "verify", "--checkpoint", checkpoint_line(taken.stdout), token=admin_token)
    by_file = order3(db, "activity", "verify", "--checkpoint", str(output), token=admin_token)

    assert by_string.exit_code == 0, by_string.stderr
    assert "Activity chain intact: 5 events verified, and event 4 still has the checkpoint's hash." in by_string.stdout
    assert by_file.exit_code == 0, by_file.stderr
    assert "event 4 still has the checkpoint's hash" in by_file.stdout


def test_cli_verify_exits_7_on_truncated_tail(db: Path, admin_token: str):
    checkpoint = checkpoint_line(order3(db, "activity", "checkpoint", token=admin_token).stdout)

    async def truncate(database: Database) -> None:
        await tamper(database, "DELETE FROM activity_event WHERE seq > 2")
        await tamper(
            database,
            "UPDATE workspace SET activity_seq = 2, activity_head = (SELECT hash FROM activity_event WHERE seq = 2)",
        )

    on_file(db, truncate)
    against = order3(db, "activity", "verify", "--checkpoint", checkpoint, token=admin_token)
    # The failed verify appended nothing; these two intact checks append events 3
    # and 4, so the checkpoint's sequence number exists again, but with another hash.
    alone = order3(db, "activity", "verify", token=admin_token)
    again = order3(db, "activity", "verify", token=admin_token)
    refilled = order3(db, "activity", "verify", "--checkpoint", checkpoint, token=admin_token)

    assert against.exit_code == 7
    assert against.stderr == (
        "Activity chain broken at seq 3 (truncated): the checkpoint names event 4, but the log ends at event 2, "
        "so events 3 to 4 were removed.\n"
    )
    assert alone.exit_code == 0
    assert "2 events verified" in alone.stdout
    assert again.exit_code == 0
    assert refilled.exit_code == 7
    assert refilled.stderr.startswith("Activity chain broken at seq 4 (rewritten)")


def test_cli_verify_exits_7_on_rehashed_log(db: Path, admin_token: str):
    checkpoint = checkpoint_line(order3(db, "activity", "checkpoint", token=admin_token).stdout)

    async def rewrite(database: Database) -> None:
        await tamper(database, "UPDATE activity_event SET summary = 'Created no token.' WHERE seq = 4")
        await rehash_from(database, 1, 4)

    on_file(db, rewrite)
    alone = order3(db, "activity", "verify", token=admin_token)
    against = order3(db, "activity", "verify", "--checkpoint", checkpoint, token=admin_token)

    assert alone.exit_code == 0
    assert against.exit_code == 7
    assert against.stderr.startswith("Activity chain broken at seq 4 (rewritten): event 4 no longer has the checkpoint's hash")


def test_cli_checkpoint_refuses_broken_chain(db: Path, admin_token: str):
    on_file(db, lambda database: tamper(database, "UPDATE activity_event SET actor = 'mallory' WHERE seq = 2"))

    result = order3(db, "activity", "checkpoint", token=admin_token)

    assert result.exit_code == 7
    assert "Activity chain broken at seq 2 (edited)" in result.stderr
    assert "No checkpoint was taken" in result.stderr
    assert "o3cp1:" not in result.stdout


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("o3cp1:main:x:" + "a" * 64, "has sequence number 'x'"),
        ("o3cp1:other:1:" + "a" * 64, "Checkpoint is for workspace 'other'"),
        ("no-such-checkpoint.json", "is neither a checkpoint string"),
    ],
)
def test_cli_verify_refuses_bad_checkpoint(db: Path, admin_token: str, value: str, message: str):
    result = order3(db, "activity", "verify", "--checkpoint", value, token=admin_token)

    assert result.exit_code == 2
    assert message in result.stderr


def test_cli_verify_refuses_json_file_without_checkpoint(db: Path, admin_token: str, tmp_path: Path):
    document = tmp_path / "other.json"
    document.write_text('{"seq": 4}')

    result = order3(db, "activity", "verify", "--checkpoint", str(document), token=admin_token)

    assert result.exit_code == 2
    assert 'has no "checkpoint" string' in result.stderr


def event_count(db: Path) -> int:
    async def count(database: Database) -> int:
        async with database.read() as session:
            return len((await session.execute(select(ActivityEvent.seq))).all())

    return on_file(db, count)  # type: ignore[return-value]


def test_cli_failed_verify_writes_no_event(db: Path, admin_token: str):
    on_file(db, lambda database: tamper(database, "UPDATE workspace SET activity_head = :forged", forged="f" * 64))
    before = event_count(db)

    first = order3(db, "activity", "verify", token=admin_token)
    after_first = event_count(db)
    second = order3(db, "activity", "verify", token=admin_token)

    assert first.exit_code == 7
    assert second.exit_code == 7
    assert first.stderr.startswith("Activity chain broken at seq 4 (head_mismatch)")
    assert second.stderr == first.stderr
    assert after_first == before
    assert event_count(db) == before

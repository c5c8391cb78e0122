"""Checkpoints of the activity chain: a digest kept outside the database to detect a rewritten or truncated log.

The hash chain alone shows that events were changed, but not that someone with
write access recomputed every hash after a change, or cut off the newest events
and moved the chain head back. A checkpoint taken earlier and kept elsewhere
records the sequence number and hash of the head at that time. While the event
at that sequence number still has that hash, no event up to it was changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.activity import BREAK_REWRITTEN, BREAK_TRUNCATED, ChainReport, verify_chain
from store.errors import InvalidInputError, NotFoundError
from store.models import ActivityEvent, Workspace

CHECKPOINT_PREFIX = "o3cp1"
_HASH = re.compile(r"^[0-9a-f]{64}$")
_SEQ = re.compile(r"^[1-9][0-9]{0,18}$")


@dataclass(frozen=True)
class Checkpoint:
    """The head of a workspace's activity chain at one moment."""

    workspace: str
    seq: int
    hash: str

    def encode(self) -> str:
        """Return the checkpoint as one string, `o3cp1:<workspace>:<seq>:<hash>`."""
        return f"{CHECKPOINT_PREFIX}:{self.workspace}:{self.seq}:{self.hash}"


def parse_checkpoint(text: str) -> Checkpoint:
    """Read a checkpoint string written by `Checkpoint.encode`.

    The workspace name may itself contain colons, so the sequence number and
    hash are taken from the right.

    Raises:
        InvalidInputError: If `text` is not a checkpoint string.
    """
    value = text.strip()
    shown = value if len(value) <= 100 else value[:100] + "…"
    prefix, _, rest = value.partition(":")
    parts = rest.rsplit(":", 2)
    if prefix != CHECKPOINT_PREFIX or len(parts) != 3 or not parts[0]:
        raise InvalidInputError(
            f"Checkpoint {shown!r} is not a checkpoint string; pass the "
            f"'{CHECKPOINT_PREFIX}:<workspace>:<seq>:<hash>' line printed by `order3 activity checkpoint`, or its JSON file."
        )
    workspace, seq, digest = parts
    if not _SEQ.match(seq):
        raise InvalidInputError(f"Checkpoint {shown!r} has sequence number {seq!r}; it must be a whole number from 1.")
    if not _HASH.match(digest):
        raise InvalidInputError(f"Checkpoint {shown!r} has hash {digest!r}; it must be 64 lowercase hex digits.")
    return Checkpoint(workspace=workspace, seq=int(seq), hash=digest)


async def read_checkpoint(session: AsyncSession, *, workspace_id: int) -> Checkpoint:
    """Return the current head of the workspace's chain as a checkpoint.

    Raises:
        NotFoundError: If the workspace does not exist or has no events yet.
    """
    row = (
        await session.execute(
            select(Workspace.name, Workspace.activity_seq, Workspace.activity_head).where(Workspace.id == workspace_id)
        )
    ).first()
    if row is None:
        raise NotFoundError(f"Workspace {workspace_id} does not exist; run `order3 init` first.")
    name, seq, head = row
    if seq < 1:
        raise NotFoundError(f"Workspace {name!r} has no activity events yet, so there is nothing to checkpoint.")
    return Checkpoint(workspace=name, seq=seq, hash=head)


async def verify_against_checkpoint(
    session: AsyncSession, *, workspace_id: int, checkpoint: Checkpoint
) -> ChainReport:
    """Verify the chain, then that the event at the checkpoint's sequence number still has its hash.

    A break in the chain itself is reported first. A chain that verifies on its
    own can still fail here in two ways. If it ends before the checkpoint's
    event, the break is "truncated" at the first missing sequence number. If
    that event has another hash, the break is "rewritten" at the checkpoint's
    sequence number, because the edit that started the rewrite is at or before it.

    Raises:
        InvalidInputError: If the checkpoint belongs to another workspace.
    """
    name = (await session.execute(select(Workspace.name).where(Workspace.id == workspace_id))).scalar_one_or_none()
    if name != checkpoint.workspace:
        raise InvalidInputError(
            f"Checkpoint is for workspace {checkpoint.workspace!r}, but this token belongs to workspace {name!r}; "
            "verify it with a token of that workspace."
        )

    report = await verify_chain(session, workspace_id=workspace_id)
    if not report.ok:
        return report

    if checkpoint.seq > report.events_checked:
        first_missing = report.events_checked + 1
        removed = f"event {first_missing} was" if first_missing == checkpoint.seq else f"events {first_missing} to {checkpoint.seq} were"
        return ChainReport(
            report.events_checked,
            first_missing,
            f"the checkpoint names event {checkpoint.seq}, but the log ends at event {report.events_checked}, "
            f"so {removed} removed",
            BREAK_TRUNCATED,
        )
    stored = (
        await session.execute(
            select(ActivityEvent.hash).where(ActivityEvent.workspace_id == workspace_id, ActivityEvent.seq == checkpoint.seq)
        )
    ).scalar_one()
    if stored != checkpoint.hash:
        return ChainReport(
            report.events_checked,
            checkpoint.seq,
            f"event {checkpoint.seq} no longer has the checkpoint's hash, so the log up to it was rewritten and "
            f"rehashed; the first changed event is {checkpoint.seq} or an earlier one",
            BREAK_REWRITTEN,
        )
    return report

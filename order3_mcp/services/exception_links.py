"""Checks shared by the draft kinds before a draft links the exceptions it answers."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller
from store.errors import InvalidInputError, NotFoundError
from store.models import (
    LIVE_EXCEPTION_STATUSES,
    OPEN_DRAFT_STATUSES,
    CountSheet,
    Draft,
    DraftException,
    ExceptionRecord,
)

_OPEN_COUNT_TASK_DRAFTS = select(CountSheet.draft_id).where(CountSheet.status == "open", CountSheet.draft_id.is_not(None))

# Characters kept from agent or integration text quoted in an error message.
QUOTE_LENGTH = 60


def quoted(text: str) -> str:
    """Return `text` as a Python literal, cut short enough to quote in a message."""
    shown = text if len(text) <= QUOTE_LENGTH else text[: QUOTE_LENGTH - 1] + "…"
    return repr(shown)


async def load_linkable(
    session: AsyncSession,
    caller: Caller,
    exception_ids: list[int],
    *,
    unrelated: Callable[[ExceptionRecord], str],
) -> list[ExceptionRecord]:
    """Load the exceptions a new draft answers, checking that each may be linked to it.

    `unrelated` returns why an exception is not about the draft, or "" when it
    is. Without that check a draft could move any exception out of the open list.

    Raises:
        NotFoundError: If an id is not an exception of this workspace.
        InvalidInputError: If an exception is resolved or dismissed, already
            answered by an open draft, or not about the draft.
    """
    unique = sorted(set(exception_ids))
    if not unique:
        return []
    rows = (
        await session.execute(
            select(ExceptionRecord).where(ExceptionRecord.workspace_id == caller.workspace_id, ExceptionRecord.id.in_(unique))
        )
    ).scalars().all()
    found = {record.id: record for record in rows}
    records: list[ExceptionRecord] = []
    for exception_id in unique:
        record = found.get(exception_id)
        if record is None:
            raise NotFoundError(
                f"Exception {exception_id} does not exist in this workspace; "
                "find_exceptions (or `order3 exceptions list`) lists them."
            )
        if record.status not in LIVE_EXCEPTION_STATUSES:
            raise InvalidInputError(f"Exception {exception_id} is {record.status}; link only open or drafted exceptions.")
        # An executed count-task draft still answers its exceptions while its count task is open.
        answering = (
            await session.execute(
                select(Draft.id, Draft.status)
                .join(DraftException, DraftException.draft_id == Draft.id)
                .where(
                    DraftException.exception_id == record.id,
                    or_(Draft.status.in_(OPEN_DRAFT_STATUSES), Draft.id.in_(_OPEN_COUNT_TASK_DRAFTS)),
                )
                .order_by(Draft.id)
            )
        ).first()
        if answering is not None:
            draft_id, status = answering
            by = f"open draft {draft_id}" if status in OPEN_DRAFT_STATUSES else f"draft {draft_id}, whose count task is still open"
            raise InvalidInputError(
                f"Exception {exception_id} is already answered by {by}; withdraw that draft "
                "first, or leave this exception out of exception_ids."
            )
        problem = unrelated(record)
        if problem:
            raise InvalidInputError(f"Exception {exception_id} ({record.kind}) {problem}; link only exceptions the draft answers.")
        records.append(record)
    return records


def check_text(
    name: str, value: str, *, max_length: int, single_line: bool, example: str, leaves_order3: bool = False
) -> str:
    """Check one field of agent text and return it unchanged.

    Text is stored exactly as sent. A NUL character is rejected because
    PostgreSQL cannot store it, and a single-line field (a subject) also
    rejects line breaks and other control characters. Text that `leaves_order3`
    rejects control characters other than line breaks and tabs.

    Raises:
        InvalidInputError: Naming the field, the problem and the fix.
    """
    if not value.strip():
        raise InvalidInputError(f"{name} is empty; write {example}.")
    if len(value) > max_length:
        raise InvalidInputError(
            f"{name} is {len(value)} characters long, more than the maximum of {max_length}; shorten it."
        )
    for position, char in enumerate(value):
        if char == "\x00" or (single_line and not char.isprintable()):
            kind = "a NUL character" if char == "\x00" else "a line break or control character"
            fix = "remove it" if char == "\x00" else "write it as one line of plain text"
            raise InvalidInputError(f"{name} contains {kind} (U+{ord(char):04X}) at position {position}; {fix}.")
        # Text that leaves Order3 (a note's body, for a mail integration) keeps line breaks
        # and tabs but no other control codes, which a terminal or mail client could act on.
        if leaves_order3 and char not in "\n\t" and unicodedata.category(char) == "Cc":
            raise InvalidInputError(
                f"{name} contains a control character (U+{ord(char):04X}) at position {position}; "
                "use plain text with line breaks and tabs only."
            )
    return value

"""Exception services: run the finders, persist what they find, and page through the records.

A finder call refreshes its kind on the first page (no cursor) and then reads
the persisted records, so later pages are stable while the caller walks them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from order3_mcp.pagination import check_limit, decode_cursor, render_page
from order3_mcp.schemas import ExceptionOut, ExceptionPage
from order3_mcp.services.finder_refresh import REFRESHABLE_KINDS, refresh_due
from order3_mcp.services.progress import ProgressCallback
from store import catalog, changes, finders, freshness
from store.activity import canonical_json
from store.errors import ConflictError, InvalidInputError
from store.finders.records import confirmed_evidence
from store.models import (
    EXCEPTION_KINDS,
    EXCEPTION_STATUSES,
    LIVE_EXCEPTION_STATUSES,
    ExceptionRecord,
)


def evidence_of(record: ExceptionRecord) -> dict[str, Any]:
    """Return a record's evidence, with a finder record's `as_of` set to when its figures were last confirmed."""
    return confirmed_evidence(record) if record.kind in REFRESHABLE_KINDS else record.evidence


def exception_out(record: ExceptionRecord) -> ExceptionOut:
    """Convert an exception record to its tool result."""
    evidence = {
        key: value if isinstance(value, str) else canonical_json(value)
        for key, value in sorted(evidence_of(record).items())
        if value is not None
    }
    return ExceptionOut(
        exception_id=record.id,  # type: ignore[arg-type]
        kind=record.kind,
        status=record.status,
        sku=record.sku,
        location=record.location_code,
        supplier=record.supplier_code,
        purchase_order=record.purchase_order_number,
        owner=record.owner,
        detected_at=record.first_seen.isoformat(),
        last_seen=record.last_seen.isoformat(),
        reason=record.reason,
        suggested_draft=record.suggested_draft_kind,
        evidence=evidence,
    )


async def _find(
    app: Order3,
    caller: Caller,
    *,
    action: str,
    kinds: tuple[str, ...],
    status: str,
    location: str,
    supplier: str,
    owner: str,
    cursor: str | None,
    limit: int,
    refresh: bool = False,
    progress: ProgressCallback | None = None,
) -> ExceptionPage:
    check_limit(limit)
    after = decode_cursor(cursor, action)
    if status and status not in EXCEPTION_STATUSES:
        raise InvalidInputError(f"Exception status {status!r} is unknown; use one of {', '.join(EXCEPTION_STATUSES)}.")
    found: dict[str, int] = {}

    async def bring_up_to_date() -> None:
        # Only the first page reruns finders, so later pages stay stable while the caller walks them.
        if after is None:
            found.update(await refresh_due(app, caller, kinds, force=refresh, progress=progress))

    async def work(session: AsyncSession) -> Outcome:
        location_id = supplier_id = None
        if location.strip():
            location_id = (await catalog.get_location_by_code(session, workspace_id=caller.workspace_id, code=location)).id
        if supplier.strip():
            supplier_id = (await catalog.get_supplier_by_code(session, workspace_id=caller.workspace_id, code=supplier)).id

        refreshed = await freshness.last_refreshed(
            session, workspace_id=caller.workspace_id, kinds=tuple(k for k in kinds if k in REFRESHABLE_KINDS)
        )
        rows = await finders.list_exceptions(
            session,
            workspace_id=caller.workspace_id,
            kinds=kinds,
            statuses=(status,) if status else LIVE_EXCEPTION_STATUSES,
            location_id=location_id,
            supplier_id=supplier_id,
            owner=owner.strip() or None,
            after_id=after,
            limit=limit + 1,
        )
        listed, next_cursor = render_page(action, rows, limit, lambda record: record.id, exception_out)
        counts = ", ".join(f"{count} {kind}" for kind, count in found.items())
        summary = f"Found {counts}; returned {len(listed)}." if found else f"Returned {len(listed)} exceptions."
        reused = sorted(set(refreshed) - set(found))
        if reused:
            summary += f" Reused the last results for {', '.join(reused)}: nothing changed since."
        affected: list[dict[str, Any]] = [{"kind": "exception", "id": record.exception_id} for record in listed]
        page = ExceptionPage(
            exceptions=listed,
            next_cursor=next_cursor,
            refreshed_at={kind: moment.isoformat() for kind, moment in sorted(refreshed.items())},
        )
        return Outcome(page, summary, affected=affected)

    arguments = {"status": status, "location": location, "supplier": supplier, "owner": owner, "cursor": cursor, "limit": limit}
    if refresh:
        arguments["refresh"] = True
    if action == "find_exceptions":
        arguments["kinds"] = list(kinds)
    return await app.run(caller, action, arguments, work, result_type=ExceptionPage, before_read=bring_up_to_date)


async def find_kind(
    app: Order3,
    caller: Caller,
    *,
    action: str,
    kind: str,
    location: str,
    supplier: str,
    cursor: str | None,
    limit: int,
    refresh: bool = False,
    progress: ProgressCallback | None = None,
) -> ExceptionPage:
    """Run one finder (find_low_stock, find_supplier_delays, ...) and page through its live exceptions.

    `progress` is called before the reruns on the first page and after each one.
    """
    return await _find(
        app, caller, action=action, kinds=(kind,), status="", location=location, supplier=supplier, owner="",
        cursor=cursor, limit=limit, refresh=refresh, progress=progress,
    )


async def find_mismatches(
    app: Order3, caller: Caller, *, location: str, supplier: str, cursor: str | None, limit: int, refresh: bool = False
) -> ExceptionPage:
    """Compare the newest external snapshots with current figures and page through the live mismatches."""
    return await find_kind(
        app, caller, action="find_mismatches", kind="mismatch", location=location, supplier=supplier, cursor=cursor,
        limit=limit, refresh=refresh,
    )


async def find_exceptions(
    app: Order3,
    caller: Caller,
    *,
    kind: str,
    status: str,
    location: str,
    supplier: str,
    owner: str,
    cursor: str | None,
    limit: int,
    refresh: bool = False,
    progress: ProgressCallback | None = None,
) -> ExceptionPage:
    """Run every finder (or the one for `kind`) and page through the exceptions, filtered.

    A finder reruns on the first page only when something was written since its
    last run, the business date turned, or its last run is older than
    FINDER_MAX_AGE; `refresh` reruns it regardless.
    `progress` is called before the reruns and after each one.
    """
    if kind and kind not in EXCEPTION_KINDS:
        raise InvalidInputError(f"Exception kind {kind!r} is unknown; use one of {', '.join(EXCEPTION_KINDS)}.")
    kinds = (kind,) if kind else EXCEPTION_KINDS
    return await _find(
        app, caller, action="find_exceptions", kinds=kinds, status=status, location=location, supplier=supplier,
        owner=owner, cursor=cursor, limit=limit, refresh=refresh, progress=progress,
    )


async def get_exception(app: Order3, caller: Caller, *, exception_id: int) -> ExceptionOut:
    """Return one exception record with its evidence."""

    async def work(session: AsyncSession) -> Outcome:
        record = await finders.get_exception(session, workspace_id=caller.workspace_id, exception_id=exception_id)
        return Outcome(exception_out(record), f"Read exception {record.id}.", affected=[{"kind": "exception", "id": record.id}])

    return await app.run(caller, "get_exception", {"exception_id": exception_id}, work, result_type=ExceptionOut)


async def dismiss_exception(
    app: Order3, caller: Caller, *, exception_id: int, reason: str, idempotency_key: str | None = None
) -> ExceptionOut:
    """Dismiss a live exception with a reason; a person with the approve scope decides this, never an agent."""

    async def work(session: AsyncSession) -> Outcome:
        # A dismissal writes only its exception record, which no finder reads as input.
        changes.item_scoped(session)
        clean = reason.strip()
        if len(clean) < 10:
            raise InvalidInputError(
                f"Reason {reason!r} is too short: use at least 10 characters to say why exception {exception_id} "
                "needs no action."
            )
        if any(ord(char) < 32 and char not in "\n\t" for char in clean):
            raise InvalidInputError("Reason contains control characters; write it as plain text.")
        record = await finders.get_exception(session, workspace_id=caller.workspace_id, exception_id=exception_id)
        if record.status not in LIVE_EXCEPTION_STATUSES:
            raise ConflictError(f"Exception {record.id} is already {record.status}; only open or drafted exceptions can be dismissed.")
        now = app.clock()
        changed = await session.execute(
            update(ExceptionRecord)
            .where(ExceptionRecord.id == record.id, ExceptionRecord.version == record.version)
            .values(
                status="dismissed", dismissed_reason=clean[:2000], resolved_at=now, suppressing=True, version=record.version + 1
            )
            .execution_options(synchronize_session=False)
        )
        if changed.rowcount != 1:
            raise ConflictError(f"Exception {record.id} changed while this request ran; reload it and retry.")
        await session.refresh(record)
        return Outcome(
            exception_out(record),
            f"Dismissed exception {record.id} ({record.kind} {record.sku or record.purchase_order_number}): {clean}",
            affected=[{"kind": "exception", "id": record.id}],
        )

    return await app.run(
        caller, "dismiss_exception", {"exception_id": exception_id, "reason": reason}, work, result_type=ExceptionOut,
        idempotency_key=idempotency_key,
    )

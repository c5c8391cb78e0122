"""Sync services: ingest a batch of external records from an integration, from a tool call or a JSON file.

A batch is one activity event (action ingest_external_snapshot, channel sync)
whose idempotency key is `sync:<source>:<batch_id>`. Re-sending a batch with the
same id and content returns the stored result and writes nothing new. The same
id with other content is a conflict. Keys are scoped by source, so two
integrations that number their batches alike never collide.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from order3_mcp.schemas import UNTRUSTED_NOTE
from order3_mcp.services.policy_routing import active_policy
from order3_mcp.services.progress import ProgressCallback
from store.activity import canonical_json
from store.changes import item_scoped
from store.errors import InvalidInputError
from store.models import SNAPSHOT_OUTCOMES
from store.sync import MAX_BATCH_RECORDS, BatchReport, check_batch, ingest_batch

logger = logging.getLogger(__name__)

ACTION = "ingest_external_snapshot"
# The result stays below the 32 KiB that MCP clients validate quickly; this leaves
# room for the counts and the JSON-RPC envelope.
RESULT_BUDGET_BYTES = 28_000
DETAIL_LENGTH = 300
EXTERNAL_ID_LENGTH = 100
# Larger files cannot hold a valid batch of 1000 records of at most 8 KiB each.
MAX_FILE_BYTES = 10 * 1024 * 1024
BATCH_KEYS = ("source", "batch_id", "records")


class RecordOutcome(BaseModel):
    """The outcome of one record of the batch."""

    external_id: str = Field(description=f"The record's id in the source system, cut to {EXTERNAL_ID_LENGTH} characters. {UNTRUSTED_NOTE}")
    kind: str = Field(description="channel_quantity, accounting_value, item, location, supplier or purchase_order; empty when unreadable.")
    outcome: str = Field(description="agreed, mismatch, conflict, applied, stale or invalid.")
    detail: str = Field(description=f"Why, with the numbers or the field at fault and the fix. May quote values the integration sent. {UNTRUSTED_NOTE}")
    exception_id: int | None = Field(description="Exception this record opened, updated or resolved, if any.")


class IngestResult(BaseModel):
    """The outcome of one batch: counts per outcome and the outcome of each record."""

    source: str = Field(description="Integration that sent the batch.")
    batch_id: str = Field(description=f"The batch's id, also its idempotency key within the source. {UNTRUSTED_NOTE}")
    received: int = Field(description="Number of records in the batch.")
    agreed: int = Field(description="Records equal to Order3 within tolerance.")
    mismatch: int = Field(description="Quantities or values beyond tolerance; each opened or updated a mismatch exception.")
    conflict: int = Field(description="Changes made on both sides; each opened or updated a sync_conflict exception.")
    applied: int = Field(description="Changes applied to Order3 because only the integration's side had changed.")
    stale: int = Field(description="Changes not applied because Order3 changed since and the integration's copy is behind.")
    invalid: int = Field(description="Records that could not be read or refer to records Order3 does not have.")
    records: list[RecordOutcome] = Field(description="Outcome per record in batch order; agreed ones are left out first when the result would be too large.")
    records_omitted: int = Field(description="Records left out of `records` to keep the result small; every record is stored with its outcome.")


def _result(report: BatchReport) -> IngestResult:
    outcomes = [
        RecordOutcome(
            external_id=record.external_id[:EXTERNAL_ID_LENGTH],
            kind=record.kind,
            outcome=record.outcome,
            detail=record.detail if len(record.detail) <= DETAIL_LENGTH else record.detail[: DETAIL_LENGTH - 1] + "…",
            exception_id=record.exception_id,
        )
        for record in report.records
    ]
    kept = _within_budget(outcomes)
    counts = {outcome: report.count(outcome) for outcome in SNAPSHOT_OUTCOMES}
    return IngestResult(
        source=report.source,
        batch_id=report.batch_id,
        received=len(report.records),
        records=kept,
        records_omitted=len(outcomes) - len(kept),
        **counts,
    )


def _within_budget(outcomes: list[RecordOutcome]) -> list[RecordOutcome]:
    sizes = [len(outcome.model_dump_json()) + 1 for outcome in outcomes]
    total = sum(sizes)
    if total <= RESULT_BUDGET_BYTES:
        return outcomes
    # Agreed records need no action, so they go first; then the last records of the batch.
    dropped: set[int] = set()
    order = [i for i in reversed(range(len(outcomes))) if outcomes[i].outcome == "agreed"]
    order += [i for i in reversed(range(len(outcomes))) if outcomes[i].outcome != "agreed"]
    for index in order:
        if total <= RESULT_BUDGET_BYTES:
            break
        dropped.add(index)
        total -= sizes[index]
    return [outcome for index, outcome in enumerate(outcomes) if index not in dropped]


def _summary(result: IngestResult) -> str:
    counts = ", ".join(f"{getattr(result, outcome)} {outcome}" for outcome in SNAPSHOT_OUTCOMES)
    return f"Ingested batch {result.batch_id!r} from {result.source}: {result.received} records ({counts})."


def records_digest(records: list[Any]) -> str:
    """Return the SHA-256 of the records' canonical JSON, which the activity log stores in place of the records."""
    return hashlib.sha256(canonical_json(records).encode()).hexdigest()


async def ingest_external_snapshot(
    app: Order3,
    caller: Caller,
    *,
    source: str,
    batch_id: str,
    records: list[Any],
    progress: ProgressCallback | None = None,
) -> IngestResult:
    """Compare a batch of external records with Order3, store each with its outcome, and open exceptions.

    `progress` is called after each phase of the ingest; a replayed batch reports none.

    Raises:
        PermissionDeniedError: If the caller lacks the sync scope.
        InvalidInputError: For a batch-level problem (blank source or batch id,
            no records, more than MAX_BATCH_RECORDS); nothing is written.
        ConflictError: If the batch id was used before with other content.
    """
    sync_caller = dataclasses.replace(caller, channel="sync")
    # The activity log keeps a digest instead of up to 1000 records, which are
    # stored as snapshots; the digest still makes other content a conflict.
    arguments: dict[str, Any] = {
        "source": source,
        "batch_id": batch_id,
        "record_count": len(records) if isinstance(records, list) else None,
        "records_sha256": records_digest(records),
    }
    try:
        check_batch(source=source, batch_id=batch_id, records=records)
        key: str | None = f"sync:{source}:{batch_id}"
    except InvalidInputError:
        # Without a key, `work` raises the same error inside Order3.run, which records the refusal.
        key = None

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        tolerances = (await active_policy(app, session, workspace_id=caller.workspace_id)).tolerances
        report = await ingest_batch(
            session,
            workspace_id=caller.workspace_id,
            source=source,
            batch_id=batch_id,
            records=records,
            qty_tol=tolerances.mismatch_qty_abs,
            value_tol=tolerances.mismatch_value_abs,
            now=app.clock(),
            on_step=progress,
        )
        result = _result(report)
        logger.info("ingested batch %s from %s: %s", batch_id, source, _summary(result))
        affected: list[dict[str, Any]] = [
            *({"kind": "exception", "id": record_id} for record_id in report.exceptions_opened),
            *({"kind": "exception", "id": record_id} for record_id in report.exceptions_updated),
            *({"kind": "exception", "id": record_id} for record_id in report.exceptions_resolved),
            *({"kind": kind, "id": record_id} for kind, record_id in report.changed),
        ]
        return Outcome(result, _summary(result), affected=affected)

    # A batch id belongs to its source, whichever integration token sends it.
    # NOTE: any integration token may name any source; binding a source to
    # its token needs a token setting that does not exist yet.
    return await app.run(
        sync_caller,
        ACTION,
        arguments,
        work,
        result_type=IngestResult,
        idempotency_key=key,
        idempotency_owner=f"source:{source}",
    )


def read_batch_file(path: Path) -> dict[str, Any]:
    """Read a batch from a JSON file and check its shape.

    Raises:
        InvalidInputError: Naming the path and the fix, for a file that is
            missing, unreadable, too large, not JSON or not a batch object.
    """
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InvalidInputError(
                f"Batch file {path} is {size} bytes; at most {MAX_FILE_BYTES} fit {MAX_BATCH_RECORDS} records. Split it into several batches."
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(f"Batch file {path} does not exist; pass the path of a JSON batch file.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"Batch file {path} cannot be read as UTF-8 text ({exc}); check the path and its encoding.") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"Batch file {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}; fix the file "
            "(see docs/sync.md for the format)."
        ) from None
    except (ValueError, RecursionError) as exc:
        # Integers past Python's digit limit and very deep nesting fail outside the JSON grammar.
        raise InvalidInputError(
            f"Batch file {path} cannot be read: {type(exc).__name__}: {str(exc)[:120]}. Send quantities as decimal "
            "strings and keep the records flat (see docs/sync.md)."
        ) from None
    if not isinstance(document, dict):
        raise InvalidInputError(
            f"Batch file {path} contains a JSON {type(document).__name__}, not an object; write an object with "
            '"source", "batch_id" and "records" (see docs/sync.md).'
        )
    missing = [name for name in BATCH_KEYS if name not in document]
    if missing:
        raise InvalidInputError(f"Batch file {path} has no {', '.join(missing)}; add it (see docs/sync.md for the format).")
    unknown = sorted(set(document) - set(BATCH_KEYS))
    if unknown:
        raise InvalidInputError(f"Batch file {path} has unknown key {unknown[0]!r}; a batch has only source, batch_id and records.")
    try:
        check_batch(source=document["source"], batch_id=document["batch_id"], records=document["records"])
    except InvalidInputError as exc:
        raise InvalidInputError(f"Batch file {path}: {exc.message}") from None
    return document


async def ingest_file(app: Order3, caller: Caller, *, path: Path) -> IngestResult:
    """Ingest the batch in a JSON file; a file that is not a valid batch writes nothing.

    Raises:
        InvalidInputError: For a bad file, naming the path and the fix.
        PermissionDeniedError: If the caller lacks the sync scope.
        ConflictError: If the batch id was used before with other content.
    """
    document = read_batch_file(path)
    return await ingest_external_snapshot(
        app, caller, source=document["source"], batch_id=document["batch_id"], records=document["records"]
    )

"""The integration path: compare external records with Order3, store them with their outcomes, open exceptions.

An integration sends channel quantities, accounting values and changed
records (items, locations, suppliers, purchase orders). Order3 compares,
records and opens mismatch or sync_conflict exceptions; it never picks a winner.
"""

from store.sync.changes import conflict_fingerprint
from store.sync.ingest import (
    MAX_BATCH_RECORDS,
    SOURCE_PATTERN,
    BatchReport,
    RecordReport,
    check_batch,
    ingest_batch,
)
from store.sync.records import (
    CHANGE_FIELDS,
    RECORD_KINDS,
    RecordInvalidError,
    parse_record,
)

__all__ = [
    "CHANGE_FIELDS",
    "MAX_BATCH_RECORDS",
    "RECORD_KINDS",
    "SOURCE_PATTERN",
    "BatchReport",
    "RecordInvalidError",
    "RecordReport",
    "check_batch",
    "conflict_fingerprint",
    "ingest_batch",
    "parse_record",
]

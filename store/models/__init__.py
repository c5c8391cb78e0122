"""SQLModel tables for every Order3 record; importing this module registers them all."""

from sqlmodel import SQLModel

# Constraint and index names are fixed by this convention before any table is
# defined, so both backends get the same names and migrations can refer to them.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

from store.models.access import PRINCIPAL_KINDS, IdempotencyRecord, Token
from store.models.activity import CHANNELS, OUTCOMES, ActivityEvent
from store.models.catalog import LOCATION_KINDS, Bin, Item, Location
from store.models.count_sheets import COUNT_SHEET_STATUSES, CountSheet, CountSheetLine
from store.models.counts import COUNT_TASK_STATUSES, CountResult, CountTask, ReorderRule
from store.models.drafts import (
    DRAFT_KINDS,
    DRAFT_STATUSES,
    OPEN_DRAFT_STATUSES,
    OUTBOX_STATUSES,
    Approval,
    Draft,
    DraftException,
    OutboxMessage,
)
from store.models.exceptions import (
    EXCEPTION_KINDS,
    EXCEPTION_STATUSES,
    LIVE_EXCEPTION_STATUSES,
    SNAPSHOT_OUTCOMES,
    ExceptionRecord,
    ExternalSnapshot,
    SyncState,
)
from store.models.policy import DraftPolicyFacts, PolicyVersion
from store.models.purchasing import (
    OPEN_PO_STATUSES,
    PO_STATUSES,
    PurchaseOrder,
    PurchaseOrderLine,
    ReceivingEvent,
    Supplier,
    SupplierItem,
    SupplierPriceBreak,
)
from store.models.stock import MOVEMENT_KINDS, RESERVATION_STATUSES, Movement, Reservation, StockLevel
from store.models.freshness import ChangeCounter, ChangeLogEntry, FinderRun
from store.models.rates import ExchangeRate
from store.models.transfers import TRANSFER_STATUSES, Transfer
from store.models.workspace import Workspace

__all__ = [
    "CHANNELS",
    "COUNT_SHEET_STATUSES",
    "COUNT_TASK_STATUSES",
    "DRAFT_KINDS",
    "DRAFT_STATUSES",
    "EXCEPTION_KINDS",
    "EXCEPTION_STATUSES",
    "LIVE_EXCEPTION_STATUSES",
    "LOCATION_KINDS",
    "MOVEMENT_KINDS",
    "OPEN_DRAFT_STATUSES",
    "OPEN_PO_STATUSES",
    "OUTBOX_STATUSES",
    "OUTCOMES",
    "PO_STATUSES",
    "PRINCIPAL_KINDS",
    "RESERVATION_STATUSES",
    "SNAPSHOT_OUTCOMES",
    "TRANSFER_STATUSES",
    "ActivityEvent",
    "Approval",
    "Bin",
    "ChangeCounter",
    "ChangeLogEntry",
    "CountResult",
    "CountSheet",
    "CountSheetLine",
    "CountTask",
    "Draft",
    "DraftException",
    "DraftPolicyFacts",
    "ExceptionRecord",
    "ExchangeRate",
    "ExternalSnapshot",
    "FinderRun",
    "IdempotencyRecord",
    "Item",
    "Location",
    "Movement",
    "OutboxMessage",
    "PolicyVersion",
    "PurchaseOrder",
    "PurchaseOrderLine",
    "ReceivingEvent",
    "ReorderRule",
    "Reservation",
    "StockLevel",
    "Supplier",
    "SupplierItem",
    "SupplierPriceBreak",
    "SyncState",
    "Token",
    "Transfer",
    "Workspace",
]

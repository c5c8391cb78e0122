"""Exception finders: set-based queries that find problems needing a next action, and their persistence.

Each finder returns the current `Finding`s of one kind; `refresh_exceptions`
turns them into exception records keyed by fingerprint. Tolerances arrive as
plain arguments, because the store does not depend on policies. A finding's
owner is the first one named among the item's, the supplier's and the purchase
order's owners (the location's owner for count drift, which has no supplier).
"""

from store.finders.context import add_item_context
from store.finders.counts import find_count_drift
from store.finders.delays import (
    OnTimeRecord,
    business_date,
    delay_items_of_suppliers,
    find_supplier_delays,
    stored_on_time_records,
    supplier_on_time_records,
    suppliers_of_items,
)
from store.finders.findings import Finding
from store.finders.low_stock import (
    OrderSuggestion,
    find_low_stock,
    suggest_order_quantity,
)
from store.finders.mismatches import (
    MEASURED_KINDS,
    Measurement,
    find_mismatches,
    measurement_finding,
    mismatch_fingerprint,
)
from store.finders.open_drafts import (
    DraftQuantity,
    OpenDraftQuantities,
    open_draft_quantities,
)
from store.finders.receiving import find_receiving_variances, receiving_variance
from store.finders.records import (
    MAX_PAGE_SIZE,
    RefreshResult,
    get_exception,
    list_exceptions,
    refresh_exceptions,
)

__all__ = [
    "MAX_PAGE_SIZE",
    "MEASURED_KINDS",
    "DraftQuantity",
    "Finding",
    "Measurement",
    "OnTimeRecord",
    "OpenDraftQuantities",
    "OrderSuggestion",
    "RefreshResult",
    "add_item_context",
    "business_date",
    "find_count_drift",
    "find_low_stock",
    "find_mismatches",
    "find_receiving_variances",
    "find_supplier_delays",
    "delay_items_of_suppliers",
    "stored_on_time_records",
    "get_exception",
    "list_exceptions",
    "measurement_finding",
    "mismatch_fingerprint",
    "open_draft_quantities",
    "receiving_variance",
    "refresh_exceptions",
    "suggest_order_quantity",
    "supplier_on_time_records",
    "suppliers_of_items",
]

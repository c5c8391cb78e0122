"""Exception tools: find problems that need a next action."""

from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from order3_mcp.app import Caller, Order3
from order3_mcp.schemas import ExceptionPage
from order3_mcp.services import exceptions
from order3_mcp.surface.progress import progress_for
from order3_mcp.tools._common import DEFAULT_LIMIT, READ, Cursor, Limit, guarded

# Logger name of the log notifications a finder rerun sends to the client.
FINDER_LOG = "order3.finders"

Location = Annotated[str, Field(description="Only exceptions at this location code; empty for all.", max_length=60)]
Supplier = Annotated[str, Field(description="Only exceptions for this supplier code; empty for all.", max_length=60)]

FINDERS = {
    "find_low_stock": (
        "low_stock",
        "Find items whose available + on order + quantities in open drafts is at or below the reorder point, "
        "per location and workspace-wide, with a suggested order quantity in whole packs from the preferred supplier.",
    ),
    "find_supplier_delays": (
        "supplier_delay",
        "Find open purchase order lines not fully received whose expected date is before today in the workspace "
        "timezone, with days late and the supplier's on-time rate.",
    ),
    "find_short_receiving": (
        "short_receiving",
        "Find received or closed purchase order lines whose received quantity is short of (or over) the ordered "
        "quantity beyond the policy tolerance.",
    ),
    "find_count_drift": (
        "count_drift",
        "Find counts whose variance against the system quantity at count time exceeds the policy tolerance, "
        "or that drift the same way repeatedly.",
    ),
    "find_mismatches": (
        "mismatch",
        "Find channel quantities and accounting values from integrations whose newest snapshot disagrees with "
        "Order3's available quantity or on hand × unit cost beyond the policy tolerance.",
    ),
}


Refresh = Annotated[
    bool,
    Field(
        description="Rerun the finder on the first page even if nothing was written since its last run "
        "(results are otherwise at most 5 minutes old, and never older than the last write).",
        strict=True,
    ),
]


def register(server: MCPServer, app: Order3, caller: Caller) -> None:
    """Register the exception finders."""
    for name, (kind, description) in FINDERS.items():
        _register_finder(server, app, caller, name=name, kind=kind, description=description)

    @server.tool(annotations=READ)
    async def find_exceptions(
        ctx: Context,
        kind: Annotated[str, Field(description="low_stock, count_drift, short_receiving, supplier_delay, mismatch or sync_conflict; empty for all.", max_length=30)] = "",
        status: Annotated[str, Field(description="open, drafted, resolved or dismissed; empty for open and drafted.", max_length=20)] = "",
        location: Location = "",
        supplier: Supplier = "",
        owner: Annotated[str, Field(description="Only exceptions owned by this person; empty for all.", max_length=120)] = "",
        cursor: Cursor = "",
        limit: Limit = DEFAULT_LIMIT,
        refresh: Refresh = False,
    ) -> ExceptionPage:
        """Find exceptions of every kind, filtered by kind, location, supplier, owner and status.

        The first page reruns the finders whose data changed since their last run, and reports progress
        per finder when the request carries a progress token.
        """
        return await guarded(
            exceptions.find_exceptions(
                app, caller, kind=kind, status=status, location=location, supplier=supplier, owner=owner, cursor=cursor,
                limit=limit, refresh=refresh, progress=progress_for(ctx, level="info", source=FINDER_LOG),
            )
        )


def _register_finder(server: MCPServer, app: Order3, caller: Caller, *, name: str, kind: str, description: str) -> None:
    async def finder(
        ctx: Context,
        location: Location = "", supplier: Supplier = "", cursor: Cursor = "", limit: Limit = DEFAULT_LIMIT, refresh: Refresh = False
    ) -> ExceptionPage:
        return await guarded(
            exceptions.find_kind(
                app, caller, action=name, kind=kind, location=location, supplier=supplier, cursor=cursor, limit=limit,
                refresh=refresh, progress=progress_for(ctx, level="info", source=FINDER_LOG),
            )
        )

    server.add_tool(finder, name=name, description=description, annotations=READ)

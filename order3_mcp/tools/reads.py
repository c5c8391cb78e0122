"""Read tools: items, locations, stock, movements, counts, suppliers, orders, reservations, activity."""

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from order3_mcp.app import Caller, Order3
from order3_mcp.schemas import (
    ActivityPage,
    CountPage,
    ItemDetail,
    ItemPage,
    LocationPage,
    MovementPage,
    PurchaseOrderDetail,
    PurchaseOrderPage,
    ReceivingEventPage,
    ReservationPage,
    StockOut,
    SupplierDetail,
    SupplierPage,
)
from order3_mcp.services import history, reads
from order3_mcp.services.history import ActivityQuery
from order3_mcp.tools._common import DEFAULT_LIMIT, READ, Cursor, Limit, guarded

Sku = Annotated[str, Field(description="Item SKU (case-insensitive).", min_length=1, max_length=100)]
OptionalSku = Annotated[str, Field(description="Item SKU to filter by; empty for all items.", max_length=100)]
OptionalLocation = Annotated[str, Field(description="Location code to filter by; empty for all.", max_length=60)]


def register(server: MCPServer, app: Order3, caller: Caller) -> None:
    """Register the read tools."""

    @server.tool(annotations=READ)
    async def search_items(
        query: Annotated[str, Field(description="Text to find in SKU, name, category or description; empty lists all.", max_length=200)] = "",
        active_only: Annotated[bool, Field(description="Only active items.", strict=True)] = False,
        cursor: Cursor = "",
        limit: Limit = DEFAULT_LIMIT,
    ) -> ItemPage:
        """Search items by SKU, name, category or description."""
        return await guarded(reads.search_items(app, caller, query=query, active_only=active_only, cursor=cursor, limit=limit))

    @server.tool(annotations=READ)
    async def get_item(sku: Sku) -> ItemDetail:
        """Get one item with on hand, reserved, available, on order, stock per place and supplier offers."""
        return await guarded(reads.get_item(app, caller, sku=sku))

    @server.tool(annotations=READ)
    async def list_locations(cursor: Cursor = "", limit: Limit = DEFAULT_LIMIT) -> LocationPage:
        """List locations with their bins."""
        return await guarded(reads.list_locations(app, caller, cursor=cursor, limit=limit))

    @server.tool(annotations=READ)
    async def get_stock(sku: Sku, location: OptionalLocation = "") -> StockOut:
        """Get an item's on hand, reserved and available, for the workspace or one location."""
        return await guarded(reads.get_stock(app, caller, sku=sku, location=location))

    @server.tool(annotations=READ)
    async def list_movements(
        sku: OptionalSku = "", location: OptionalLocation = "", cursor: Cursor = "", limit: Limit = DEFAULT_LIMIT
    ) -> MovementPage:
        """List stock movements from the ledger, oldest first."""
        return await guarded(reads.list_movements(app, caller, sku=sku, location=location, cursor=cursor, limit=limit))

    @server.tool(annotations=READ)
    async def list_counts(
        sku: OptionalSku = "", location: OptionalLocation = "", cursor: Cursor = "", limit: Limit = DEFAULT_LIMIT
    ) -> CountPage:
        """List count results with the system quantity at count time and the variance."""
        return await guarded(reads.list_counts(app, caller, sku=sku, location=location, cursor=cursor, limit=limit))

    @server.tool(annotations=READ)
    async def list_suppliers(
        query: Annotated[str, Field(description="Text to find in code or name; empty lists all.", max_length=200)] = "",
        cursor: Cursor = "",
        limit: Limit = DEFAULT_LIMIT,
    ) -> SupplierPage:
        """List suppliers."""
        return await guarded(reads.list_suppliers(app, caller, query=query, cursor=cursor, limit=limit))

    @server.tool(annotations=READ)
    async def get_supplier(
        code: Annotated[str, Field(description="Supplier code (case-insensitive).", min_length=1, max_length=60)],
    ) -> SupplierDetail:
        """Get one supplier with its open purchase orders."""
        return await guarded(reads.get_supplier(app, caller, code=code))

    @server.tool(annotations=READ)
    async def list_purchase_orders(
        status: Annotated[str, Field(description="Filter by status (issued, partially_received, ...); empty for all.", max_length=30)] = "",
        supplier: Annotated[str, Field(description="Filter by supplier code; empty for all.", max_length=60)] = "",
        cursor: Cursor = "",
        limit: Limit = DEFAULT_LIMIT,
    ) -> PurchaseOrderPage:
        """List purchase orders."""
        return await guarded(
            reads.list_purchase_orders(app, caller, status=status, supplier=supplier, cursor=cursor, limit=limit)
        )

    @server.tool(annotations=READ)
    async def get_purchase_order(
        number: Annotated[str, Field(description="Purchase order number, e.g. PO0001.", min_length=1, max_length=60)],
    ) -> PurchaseOrderDetail:
        """Get one purchase order with its lines, ordered and received quantities."""
        return await guarded(reads.get_purchase_order(app, caller, number=number))

    @server.tool(annotations=READ)
    async def list_receiving_events(
        purchase_order: Annotated[str, Field(description="Purchase order number; empty for all.", max_length=60)] = "",
        cursor: Cursor = "",
        limit: Limit = DEFAULT_LIMIT,
    ) -> ReceivingEventPage:
        """List goods received against purchase order lines."""
        return await guarded(
            reads.list_receiving_events(app, caller, purchase_order=purchase_order, cursor=cursor, limit=limit)
        )

    @server.tool(annotations=READ)
    async def list_reservations(
        sku: OptionalSku = "",
        status: Annotated[str, Field(description="active, released or fulfilled; empty for all.", max_length=20)] = "",
        cursor: Cursor = "",
        limit: Limit = DEFAULT_LIMIT,
    ) -> ReservationPage:
        """List reservations; active ones reduce available stock."""
        return await guarded(reads.list_reservations(app, caller, sku=sku, status=status, cursor=cursor, limit=limit))

    @server.tool(annotations=READ)
    async def list_activity(
        actor: Annotated[str, Field(description="Only events by this principal: a name, or KIND:NAME such as agent:buyer-bot.", max_length=200)] = "",
        action: Annotated[str, Field(description="Only events of this tool or command name.", max_length=60)] = "",
        outcome: Annotated[str, Field(description="ok, replayed, denied, invalid, conflict, error or cancelled; empty for all.", max_length=10)] = "",
        draft_id: Annotated[int | None, Field(description="Only events about this draft.", strict=True)] = None,
        record_kind: Annotated[str, Field(description="Only events that affected a record of this kind (draft, item, location, supplier, purchase_order, count_task, ...); needs record_id.", max_length=40)] = "",
        record_id: Annotated[str, Field(description="Id of that record as in an event's affected list; an item SKU, or a location or supplier code, also works.", max_length=200)] = "",
        since: Annotated[str, Field(description="Only events at or after this ISO 8601 time with a UTC offset, e.g. 2026-03-01T09:00:00+01:00.", max_length=60)] = "",
        until: Annotated[str, Field(description="Only events before this ISO 8601 time with a UTC offset, e.g. 2026-03-02T00:00:00Z.", max_length=60)] = "",
        cursor: Cursor = "",
        limit: Limit = DEFAULT_LIMIT,
    ) -> ActivityPage:
        """List the workspace's activity history in sequence order; all filters combine."""
        query = ActivityQuery(
            actor=actor,
            action=action,
            outcome=outcome,
            draft_id=draft_id,
            record_kind=record_kind,
            record_id=record_id,
            since=since,
            until=until,
        )
        return await guarded(history.list_activity(app, caller, query=query, cursor=cursor, limit=limit))

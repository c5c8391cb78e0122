"""Draft tools: prepare drafts for people to approve, and read them back."""

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from order3_mcp.app import Caller, Order3
from order3_mcp.inputs import CountLine, PurchaseLine, Quantity, QuantityChange
from order3_mcp.schemas import DraftDetail, DraftPage
from order3_mcp.services import approvals, count_tasks, drafts
from order3_mcp.services.kinds import adjustment, transfer
from order3_mcp.tools._common import (
    DEFAULT_LIMIT,
    DRAFT,
    READ,
    Cursor,
    IdempotencyKey,
    Limit,
    guarded,
)
from store.adjustments import ADJUSTMENT_REASONS

DraftId = Annotated[int, Field(description="Draft id.", strict=True, ge=1)]
Rationale = Annotated[
    str,
    Field(
        description="Why this draft is needed, with the numbers (required). People read it before approving.",
        min_length=1,
        max_length=4000,
    ),
]
Title = Annotated[str, Field(description="Short title; empty for a generated one.", max_length=200)]
ExceptionIds = Annotated[
    list[int], Field(description="Exceptions this draft answers; they move to drafted.", max_length=100)
]
Sku = Annotated[str, Field(description="SKU of the item.", min_length=1, max_length=100)]
LocationCode = Annotated[str, Field(description="Location code, as list_locations shows it.", min_length=1, max_length=60)]
BinCode = Annotated[
    str, Field(description="Bin code inside the location; empty for stock held at the location itself.", max_length=120)
]


def register(server: MCPServer, app: Order3, caller: Caller) -> None:
    """Register the draft tools."""

    @server.tool(annotations=DRAFT)
    async def draft_purchase_order(
        lines: Annotated[
            list[PurchaseLine],
            Field(description="Lines to order: sku, quantity (whole packs, at least the minimum order quantity), optional destination location.", min_length=1, max_length=100),
        ],
        rationale: Rationale,
        supplier: Annotated[str, Field(description="Supplier code; empty to use the first line's preferred supplier.", max_length=60)] = "",
        title: Title = "",
        exception_ids: ExceptionIds = [],  # noqa: B006
        idempotency_key: IdempotencyKey = None,
    ) -> DraftDetail:
        """Prepare a purchase order draft. Nothing is ordered until a person approves it with the order3 CLI."""
        return await guarded(
            drafts.draft_purchase_order(
                app,
                caller,
                supplier=supplier,
                lines=lines,
                rationale=rationale,
                title=title,
                exception_ids=list(exception_ids),
                idempotency_key=idempotency_key,
            )
        )

    @server.tool(annotations=DRAFT)
    async def draft_count_task(
        location: Annotated[str, Field(description="Code of the location to count at.", min_length=1, max_length=60)],
        lines: Annotated[
            list[CountLine],
            Field(description="Items to count: sku, and the bin when the item is held in bins. Each item and bin once.", min_length=1, max_length=100),
        ],
        rationale: Rationale,
        title: Annotated[str, Field(description="Short title; empty for a generated one.", max_length=200)] = "",
        assignee: Annotated[str, Field(description="Person asked to count; empty to leave it unassigned.", max_length=120)] = "",
        due_date: Annotated[str, Field(description="Date the count is due, YYYY-MM-DD in the workspace timezone; empty for none.", max_length=10)] = "",
        exception_ids: Annotated[list[int], Field(description="Exceptions this count answers (count drift of these items at this location); they move to drafted.", max_length=100)] = [],  # noqa: B006
        idempotency_key: IdempotencyKey = None,
    ) -> DraftDetail:
        """Prepare a count task draft. Once a person approves it, a count task records on hand per line as its snapshot, and the counted quantities are compared with that snapshot."""
        return await guarded(
            count_tasks.draft_count_task(
                app,
                caller,
                location=location,
                lines=lines,
                rationale=rationale,
                title=title,
                assignee=assignee,
                due_date=due_date,
                exception_ids=list(exception_ids),
                idempotency_key=idempotency_key,
            )
        )

    @server.tool(annotations=DRAFT)
    async def draft_transfer(
        sku: Sku,
        quantity: Quantity,
        from_location: LocationCode,
        to_location: LocationCode,
        rationale: Rationale,
        from_bin: BinCode = "",
        to_bin: BinCode = "",
        title: Title = "",
        exception_ids: ExceptionIds = [],  # noqa: B006
        idempotency_key: IdempotencyKey = None,
    ) -> DraftDetail:
        """Prepare a transfer of one item to another location or bin, of at most what is available at the source (on hand minus active reservations). Nothing moves until a person approves and executes it: execution ships the stock into transit, and a person receives it at the destination."""
        return await guarded(
            transfer.draft_transfer(
                app,
                caller,
                sku=sku,
                quantity=quantity,
                from_location=from_location,
                from_bin=from_bin,
                to_location=to_location,
                to_bin=to_bin,
                rationale=rationale,
                title=title,
                exception_ids=list(exception_ids),
                idempotency_key=idempotency_key,
            )
        )

    @server.tool(annotations=DRAFT)
    async def draft_adjustment(
        sku: Sku,
        location: LocationCode,
        quantity: QuantityChange,
        reason_code: Annotated[
            str,
            Field(
                description=f"Why stock changes: one of {', '.join(ADJUSTMENT_REASONS)}. damaged, lost and expired "
                "remove stock (negative quantity), found adds it, correction goes either way.",
                min_length=1,
                max_length=30,
            ),
        ],
        rationale: Rationale,
        bin: BinCode = "",
        title: Title = "",
        exception_ids: ExceptionIds = [],  # noqa: B006
        idempotency_key: IdempotencyKey = None,
    ) -> DraftDetail:
        """Prepare a stock adjustment: a signed change of on hand at one location or bin, with a reason code. Its value change (quantity × unit cost) decides who must approve it, and on hand changes only once a person approves it."""
        return await guarded(
            adjustment.draft_adjustment(
                app,
                caller,
                sku=sku,
                location=location,
                bin_code=bin,
                quantity=quantity,
                reason_code=reason_code,
                rationale=rationale,
                title=title,
                exception_ids=list(exception_ids),
                idempotency_key=idempotency_key,
            )
        )

    @server.tool(annotations=DRAFT)
    async def withdraw_draft(
        draft_id: DraftId,
        reason: Annotated[str, Field(description="Why the draft is no longer wanted.", max_length=2000)] = "",
        idempotency_key: IdempotencyKey = None,
    ) -> DraftDetail:
        """Withdraw a draft you prepared, before it is executed; linked exceptions reopen."""
        return await guarded(
            approvals.withdraw_draft(app, caller, draft_id=draft_id, reason=reason, idempotency_key=idempotency_key)
        )

    @server.tool(annotations=READ)
    async def list_drafts(
        status: Annotated[str, Field(description="pending_approval, approved, executed, ...; empty for all.", max_length=30)] = "",
        kind: Annotated[str, Field(description="Draft kind to filter by; empty for all.", max_length=30)] = "",
        cursor: Cursor = "",
        limit: Limit = DEFAULT_LIMIT,
    ) -> DraftPage:
        """List drafts with the status of each."""
        return await guarded(drafts.list_drafts(app, caller, status=status, kind=kind, cursor=cursor, limit=limit))

    @server.tool(annotations=READ)
    async def get_draft(draft_id: DraftId) -> DraftDetail:
        """Get one draft with its payload, approval owner, linked exceptions and decisions."""
        return await guarded(drafts.get_draft(app, caller, draft_id=draft_id))

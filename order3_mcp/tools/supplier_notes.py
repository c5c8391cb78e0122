"""Supplier note tools: an agent drafts a message to a supplier for a person to approve, and reads the outbox."""

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from order3_mcp.app import Caller, Order3
from order3_mcp.schemas import DraftDetail, OutboxPage
from order3_mcp.services import outbox, supplier_notes
from order3_mcp.services.supplier_notes import MAX_BODY, MAX_SUBJECT, MAX_TITLE
from order3_mcp.tools._common import (
    DEFAULT_LIMIT,
    DRAFT,
    READ,
    Cursor,
    IdempotencyKey,
    Limit,
    guarded,
)
from order3_mcp.tools.drafts import Rationale


def register(server: MCPServer, app: Order3, caller: Caller) -> None:
    """Register draft_supplier_note and list_outbox."""

    @server.tool(annotations=DRAFT)
    async def draft_supplier_note(
        supplier: Annotated[str, Field(description="Supplier code, from list_suppliers.", min_length=1, max_length=60)],
        subject: Annotated[
            str, Field(description=f"Subject line: one line of plain text, at most {MAX_SUBJECT} characters.", max_length=MAX_SUBJECT)
        ],
        body: Annotated[
            str, Field(description=f"The message to the supplier, at most {MAX_BODY} characters. Line breaks are kept.", max_length=MAX_BODY)
        ],
        rationale: Rationale,
        purchase_order: Annotated[
            str, Field(description="Number of the supplier's purchase order the note is about; empty when none.", max_length=60)
        ] = "",
        title: Annotated[str, Field(description="Short title; empty for one made from the supplier and subject.", max_length=MAX_TITLE)] = "",
        exception_ids: Annotated[
            list[int],
            Field(description="Exceptions about this supplier the note answers, e.g. a supplier_delay; they move to drafted.", max_length=100),
        ] = [],  # noqa: B006
        idempotency_key: IdempotencyKey = None,
    ) -> DraftDetail:
        """Prepare a note to a supplier. Nothing is sent: after a person approves it, the note is queued in the outbox for the mail integration."""
        return await guarded(
            supplier_notes.draft_supplier_note(
                app,
                caller,
                supplier=supplier,
                subject=subject,
                body=body,
                purchase_order=purchase_order,
                rationale=rationale,
                title=title,
                exception_ids=list(exception_ids),
                idempotency_key=idempotency_key,
            )
        )

    @server.tool(annotations=READ)
    async def list_outbox(
        status: Annotated[str, Field(description="queued, sent or failed; empty for all.", max_length=20)] = "",
        supplier: Annotated[str, Field(description="Supplier code to filter by; empty for all.", max_length=60)] = "",
        cursor: Cursor = "",
        limit: Limit = DEFAULT_LIMIT,
    ) -> OutboxPage:
        """List supplier notes queued by executed drafts, oldest first. Check it before drafting another note to the same supplier."""
        return await guarded(outbox.list_outbox(app, caller, status=status, supplier=supplier, cursor=cursor, limit=limit))

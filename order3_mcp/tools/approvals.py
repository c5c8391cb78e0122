"""Approval tools. Agents never see these: the server lists them only for people with the scope."""

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from order3_mcp.app import Caller, Order3
from order3_mcp.schemas import DraftDetail, ExceptionOut
from order3_mcp.services import approvals, exceptions
from order3_mcp.tools._common import DECIDE, IdempotencyKey, guarded

DraftId = Annotated[int, Field(description="Draft id.", strict=True, ge=1)]


def register(server: MCPServer, app: Order3, caller: Caller) -> None:
    """Register approve_draft, reject_draft, execute_draft and dismiss_exception."""

    @server.tool(annotations=DECIDE)
    async def approve_draft(
        draft_id: DraftId,
        expected_hash: Annotated[str, Field(description="Payload hash (or a prefix) you reviewed; empty to bind to the current one.", max_length=64)] = "",
        reason: Annotated[str, Field(description="Optional note for the record.", max_length=2000)] = "",
        idempotency_key: IdempotencyKey = None,
    ) -> DraftDetail:
        """Approve a draft as a person; the policy decides whether more approvals are needed."""
        return await guarded(
            approvals.approve_draft(
                app, caller, draft_id=draft_id, expected_hash=expected_hash, reason=reason, idempotency_key=idempotency_key
            )
        )

    @server.tool(annotations=DECIDE)
    async def reject_draft(
        draft_id: DraftId,
        reason: Annotated[str, Field(description="Why it is rejected.", min_length=1, max_length=2000)],
        idempotency_key: IdempotencyKey = None,
    ) -> DraftDetail:
        """Reject a pending draft."""
        return await guarded(
            approvals.reject_draft(app, caller, draft_id=draft_id, reason=reason, idempotency_key=idempotency_key)
        )

    @server.tool(annotations=DECIDE)
    async def execute_draft(draft_id: DraftId, idempotency_key: IdempotencyKey = None) -> DraftDetail:
        """Execute an approved draft once through the normal inventory flow."""
        return await guarded(approvals.execute_draft(app, caller, draft_id=draft_id, idempotency_key=idempotency_key))

    @server.tool(annotations=DECIDE)
    async def dismiss_exception(
        exception_id: Annotated[int, Field(description="Exception id.", strict=True, ge=1)],
        reason: Annotated[str, Field(description="Why no action is needed (required).", min_length=1, max_length=2000)],
        idempotency_key: IdempotencyKey = None,
    ) -> ExceptionOut:
        """Dismiss an open or drafted exception with a reason."""
        return await guarded(
            exceptions.dismiss_exception(
                app, caller, exception_id=exception_id, reason=reason, idempotency_key=idempotency_key
            )
        )

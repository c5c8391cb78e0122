"""Integration tools: ingest a batch of external records."""

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations
from pydantic import Field

from order3_mcp.app import Caller, Order3
from order3_mcp.services import sync
from order3_mcp.services.sync import IngestResult
from order3_mcp.surface.progress import progress_for
from order3_mcp.tools._common import guarded
from store.sync import MAX_BATCH_RECORDS

# Writes snapshots and exceptions but deletes nothing; a re-sent batch id with the same content is a no-op.
INGEST = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


def register(server: MCPServer, app: Order3, caller: Caller) -> None:
    """Register the integration tools."""

    @server.tool(annotations=INGEST)
    async def ingest_external_snapshot(
        ctx: Context,
        source: Annotated[
            str,
            Field(description="Name of the sending integration, such as shopify-eu: letters, digits, '.', '_' or '-'.", max_length=60),
        ],
        batch_id: Annotated[
            str,
            Field(
                description="Unique id of this batch within the source. Re-sending the same id and records returns the "
                "stored result; the same id with other records is refused.",
                max_length=120,
            ),
        ],
        records: Annotated[
            list[dict[str, Any]],
            Field(
                description=f"1 to {MAX_BATCH_RECORDS} records. Each has external_id and kind: channel_quantity (sku, "
                "location, quantity), accounting_value (sku, location, value, currency), or item, location, supplier, "
                "purchase_order (key, version, fields). A malformed record gets outcome invalid; the rest still count.",
                max_length=MAX_BATCH_RECORDS,
            ),
        ],
    ) -> IngestResult:
        """Compare external records with Order3 and record each with its outcome.

        Disagreements open mismatch or sync_conflict exceptions for a person to settle. A change is applied only to
        descriptive fields, and only when Order3's record has not changed since both sides last agreed.
        Reports progress per phase when the request carries a progress token.
        """
        progress = progress_for(ctx, level="debug", source="order3.sync")
        return await guarded(
            sync.ingest_external_snapshot(app, caller, source=source, batch_id=batch_id, records=records, progress=progress)
        )

"""Import an InvenTree database export (a Django fixture) into one workspace.

Every record written carries `external_ref = "inventree:<model>:<pk>"` (reorder
rules, which have no such column, are matched by item and source), so importing
the same export again writes nothing and reports each record as already present.
The mapping rules are described in docs/import-inventree.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from store.errors import NotFoundError
from store.importers.inventree_catalog import import_items, import_locations, import_reorder_rules
from store.importers.inventree_context import ImportRun
from store.importers.inventree_fixture import currency_or, load_fixture
from store.importers.inventree_orders import import_purchase_orders
from store.importers.inventree_stock import import_counts, import_reservations, import_stock
from store.importers.inventree_summary import RECORD_KINDS, ImportSummary, KindTally, SkippedRecord
from store.importers.inventree_suppliers import import_supplier_items, import_suppliers
from store.models import Workspace

__all__ = ["RECORD_KINDS", "ImportSummary", "KindTally", "SkippedRecord", "import_inventree"]

logger = logging.getLogger(__name__)


async def import_inventree(session: AsyncSession, *, workspace_id: int, path: Path, actor: str) -> ImportSummary:
    """Import an InvenTree fixture export into a workspace inside the caller's write transaction.

    The file is read and checked before anything is written. The function never
    commits: the caller's transaction makes the whole import atomic.

    Raises:
        InvalidInputError: If the file is missing, is not JSON, or is not a Django
            fixture list of InvenTree records.
        NotFoundError: If the workspace does not exist.
    """
    fixture = load_fixture(Path(path))
    workspace = await session.get(Workspace, workspace_id)
    if workspace is None:
        raise NotFoundError(f"Workspace {workspace_id} does not exist; create it with `order3 init` first.")

    run = ImportRun(
        session=session,
        workspace_id=workspace_id,
        timezone=workspace.timezone,
        actor=actor,
        fixture=fixture,
        default_currency=currency_or(fixture.setting("INVENTREE_DEFAULT_CURRENCY"), workspace.base_currency),
    )
    await run.load_existing()

    # Each step needs the ids written by the steps before it.
    await import_locations(run)
    await import_items(run)
    await import_suppliers(run)
    await import_supplier_items(run)
    await import_reorder_rules(run)
    await import_stock(run)
    await import_purchase_orders(run)
    await import_reservations(run)
    await import_counts(run)

    logger.info(
        "Imported InvenTree export %s into workspace %d: %d records written, %d skipped",
        path,
        workspace_id,
        run.summary.imported,
        len(run.summary.skipped),
    )
    return run.summary

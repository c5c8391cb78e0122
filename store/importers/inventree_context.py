"""State shared by the steps of one InvenTree import: the session, id maps and existing records."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlmodel import SQLModel
from sqlalchemy.ext.asyncio import AsyncSession

from store.importers.inventree_fixture import Fixture
from store.importers.inventree_summary import ImportSummary
from store.models import (
    Bin,
    CountResult,
    Item,
    Location,
    Movement,
    PurchaseOrder,
    PurchaseOrderLine,
    ReceivingEvent,
    Reservation,
    Supplier,
    SupplierItem,
    SupplierPriceBreak,
)
from store.stock import Place

REF_PREFIX = "inventree:"

# Tables whose rows carry an InvenTree external_ref.
REFERENCED_TABLES: tuple[type[SQLModel], ...] = (
    Item,
    Location,
    Bin,
    Supplier,
    SupplierItem,
    SupplierPriceBreak,
    PurchaseOrder,
    PurchaseOrderLine,
    ReceivingEvent,
    Movement,
    Reservation,
    CountResult,
)


def external_ref(model: str, pk: Any) -> str:
    """Return the stable reference of an InvenTree record, e.g. "inventree:part.part:12"."""
    return f"{REF_PREFIX}{model}:{pk}"


@dataclass
class ImportRun:
    """One import into one workspace.

    The id maps go from InvenTree primary keys to Order3 ids, for records imported
    now and for records found from an earlier import.
    """

    session: AsyncSession
    workspace_id: int
    timezone: str
    actor: str
    fixture: Fixture
    default_currency: str
    summary: ImportSummary = field(default_factory=ImportSummary)
    # external_ref → id per table, loaded once so each record costs no query.
    existing: dict[str, dict[str, int]] = field(default_factory=dict)
    # InvenTree stock location pk → Order3 place (location, optionally bin).
    places: dict[Any, Place] = field(default_factory=dict)
    # InvenTree part pk → item id.
    items: dict[Any, int] = field(default_factory=dict)
    item_currencies: dict[Any, str] = field(default_factory=dict)
    # InvenTree company pk → supplier id.
    suppliers: dict[Any, int] = field(default_factory=dict)
    # InvenTree supplier part pk → supplier item id.
    supplier_items: dict[Any, int] = field(default_factory=dict)
    # InvenTree supplier part pk → stock units in one pack, or None when the export has no pack size.
    pack_sizes: dict[Any, Decimal | None] = field(default_factory=dict)

    async def load_existing(self) -> None:
        """Load the external refs of every record an earlier InvenTree import wrote to this workspace."""
        for table in REFERENCED_TABLES:
            columns = table.__table__.c  # type: ignore[attr-defined]
            rows = await self.session.execute(
                select(columns.external_ref, columns.id).where(
                    columns.workspace_id == self.workspace_id,
                    columns.external_ref.like(f"{REF_PREFIX}%"),
                )
            )
            self.existing[table.__name__] = {ref: record_id for ref, record_id in rows.all()}

    def existing_id(self, table: type[SQLModel], ref: str) -> int | None:
        """Return the id of the `table` row with this external ref, or None."""
        return self.existing[table.__name__].get(ref)

    def remember(self, table: type[SQLModel], ref: str, record_id: int) -> None:
        """Record a row written in this run so later steps treat it as present."""
        self.existing[table.__name__][ref] = record_id

    def place_of(self, location_pk: Any) -> Place | None:
        """Return the Order3 place of an InvenTree stock location, or None if it was not imported."""
        if location_pk is None:
            return None
        return self.places.get(location_pk)

    async def add_all(self, table: type[SQLModel], rows: list[tuple[str, SQLModel]]) -> dict[str, int]:
        """Insert rows keyed by external ref in one flush and return their new ids."""
        if not rows:
            return {}
        self.session.add_all([row for _, row in rows])
        await self.session.flush()
        ids: dict[str, int] = {}
        for ref, row in rows:
            ids[ref] = row.id  # type: ignore[attr-defined]
            self.remember(table, ref, ids[ref])
        return ids

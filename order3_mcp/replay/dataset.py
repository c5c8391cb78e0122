"""Dataset loading: a fresh workspace filled from a dataset document, or from an InvenTree export through the importer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3
from order3_mcp.replay.clock import parse_moment
from order3_mcp.replay.format import Dataset, Problem, ScenarioFileError
from order3_mcp.services import admin
from store.db import Database
from store.errors import InvalidInputError
from store.models import (
    Bin,
    CountResult,
    Item,
    Location,
    PurchaseOrder,
    PurchaseOrderLine,
    ReorderRule,
    Reservation,
    Supplier,
    SupplierItem,
    SupplierPriceBreak,
)
from store.stock import Place, record_movement
from store.workspaces import sku_key

# Principal of the admin token that sets a replay workspace up; scenario steps never use it.
SETUP_ADMIN = "replay-setup"
SETUP_ACTOR = "dataset"


@dataclass(frozen=True)
class Setup:
    """The workspace a dataset was loaded into and the admin caller that loaded it."""

    workspace: str
    admin: Caller


class _Records:
    """Ids of the records written so far, by code, for resolving later sections of the dataset."""

    def __init__(self, workspace_id: int) -> None:
        self.workspace_id = workspace_id
        self.items: dict[str, Item] = {}
        self.locations: dict[str, Location] = {}
        self.bins: dict[tuple[str, str], Bin] = {}
        self.suppliers: dict[str, Supplier] = {}
        self.offers: dict[tuple[str, str], SupplierItem] = {}


class _Reader:
    """Looks up dataset references and raises a problem that names the dataset file and JSON pointer."""

    def __init__(self, dataset: Dataset, records: _Records) -> None:
        self.dataset = dataset
        self.records = records

    def fail(self, pointer: str, message: str, fix: str) -> ScenarioFileError:
        return ScenarioFileError([Problem(self.dataset.source, pointer, message, fix)])

    def item(self, sku: str, pointer: str) -> Item:
        found = self.records.items.get(sku_key(sku))
        if found is None:
            raise self.fail(pointer, f"item {sku!r} is not in the dataset's items", "add it under items or correct the SKU")
        return found

    def location(self, code: str, pointer: str) -> Location:
        found = self.records.locations.get(code)
        if found is None:
            raise self.fail(pointer, f"location {code!r} is not in the dataset's locations", "add it under locations or correct the code")
        return found

    def bin(self, location: str, code: str, pointer: str) -> Bin | None:
        if not code:
            return None
        found = self.records.bins.get((location, code))
        if found is None:
            raise self.fail(pointer, f"bin {code!r} is not listed under location {location!r}", f"add it to the bins of {location}")
        return found

    def supplier(self, code: str, pointer: str) -> Supplier:
        found = self.records.suppliers.get(code)
        if found is None:
            raise self.fail(pointer, f"supplier {code!r} is not in the dataset's suppliers", "add it under suppliers or correct the code")
        return found

    def moment(self, text: str, pointer: str) -> datetime:
        try:
            return parse_moment(text, what="counted_at")
        except InvalidInputError as exc:
            raise self.fail(pointer, exc.message.rstrip("."), "write an ISO 8601 time with an offset") from None

    def day(self, text: str | None, pointer: str) -> date | None:
        if not text:
            return None
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise self.fail(pointer, f"{text!r} is not a date", "write a date as YYYY-MM-DD") from None


def _decimal(value: Any) -> Decimal:
    return Decimal(str(value))


def _optional_decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


async def _write_catalog(session: AsyncSession, reader: _Reader, document: dict[str, Any], currency: str) -> None:
    records = reader.records
    workspace_id = records.workspace_id
    for index, entry in enumerate(document.get("locations", [])):
        if entry["code"] in records.locations:
            raise reader.fail(f"/locations/{index}/code", f"location {entry['code']!r} is listed twice", "keep one entry per code")
        location = Location(
            workspace_id=workspace_id, code=entry["code"], name=entry.get("name", entry["code"]),
            kind=entry.get("kind", "warehouse"), owner=entry.get("owner", ""),
        )
        session.add(location)
        await session.flush()
        records.locations[location.code] = location
        for code in entry.get("bins", []):
            found = Bin(workspace_id=workspace_id, location_id=location.id, code=code)  # type: ignore[arg-type]
            session.add(found)
            records.bins[(location.code, code)] = found

    for index, entry in enumerate(document.get("items", [])):
        if sku_key(entry["sku"]) in records.items:
            raise reader.fail(f"/items/{index}/sku", f"item {entry['sku']!r} is listed twice", "keep one entry per SKU")
        item = Item(
            workspace_id=workspace_id, sku=entry["sku"].strip(), sku_key=sku_key(entry["sku"]), name=entry.get("name", entry["sku"]),
            description=entry.get("description", ""), unit=entry.get("unit", "each"), unit_cost=_decimal(entry.get("unit_cost", 0)),
            currency=entry.get("currency", currency).upper(), category=entry.get("category", ""), owner=entry.get("owner", ""),
            active=entry.get("active", True),
        )
        session.add(item)
        records.items[item.sku_key] = item

    for index, entry in enumerate(document.get("suppliers", [])):
        if entry["code"] in records.suppliers:
            raise reader.fail(f"/suppliers/{index}/code", f"supplier {entry['code']!r} is listed twice", "keep one entry per code")
        supplier = Supplier(
            workspace_id=workspace_id, code=entry["code"], name=entry.get("name", entry["code"]),
            contact_email=entry.get("contact_email", ""), currency=entry.get("currency", currency).upper(),
            lead_time_days=entry.get("lead_time_days", 14), owner=entry.get("owner", ""), active=entry.get("active", True),
        )
        session.add(supplier)
        records.suppliers[supplier.code] = supplier
    await session.flush()


async def _write_offers(session: AsyncSession, reader: _Reader, document: dict[str, Any]) -> None:
    records = reader.records
    for index, entry in enumerate(document.get("offers", [])):
        where = f"/offers/{index}"
        supplier = reader.supplier(entry["supplier"], f"{where}/supplier")
        item = reader.item(entry["sku"], f"{where}/sku")
        offer = SupplierItem(
            workspace_id=records.workspace_id, supplier_id=supplier.id, item_id=item.id,  # type: ignore[arg-type]
            supplier_sku=entry.get("supplier_sku", ""), unit_price=_optional_decimal(entry.get("unit_price")),
            currency=entry.get("currency", supplier.currency).upper(), min_order_qty=_decimal(entry.get("min_order_qty", 1)),
            pack_size=_optional_decimal(entry.get("pack_size")), lead_time_days=entry.get("lead_time_days"),
            preferred=entry.get("preferred", False),
        )
        session.add(offer)
        await session.flush()
        records.offers[(supplier.code, item.sku_key)] = offer
        for price_break in entry.get("price_breaks", []):
            session.add(
                SupplierPriceBreak(
                    workspace_id=records.workspace_id, supplier_item_id=offer.id,  # type: ignore[arg-type]
                    quantity=_decimal(price_break["quantity"]), unit_price=_decimal(price_break["unit_price"]), currency=offer.currency,
                )
            )


async def _write_stock(session: AsyncSession, reader: _Reader, document: dict[str, Any]) -> None:
    records = reader.records
    for index, entry in enumerate(document.get("stock", [])):
        where = f"/stock/{index}"
        item = reader.item(entry["sku"], f"{where}/sku")
        location = reader.location(entry["location"], f"{where}/location")
        found_bin = reader.bin(location.code, entry.get("bin", ""), f"{where}/bin")
        quantity = _decimal(entry["quantity"])
        if quantity <= 0:
            raise reader.fail(f"{where}/quantity", f"quantity {entry['quantity']!r} is not positive", "list only stock that is on hand")
        await record_movement(
            session, workspace_id=records.workspace_id, item_id=item.id, kind="opening_balance", quantity=quantity,  # type: ignore[arg-type]
            destination=Place(location.id, found_bin.id if found_bin else None),  # type: ignore[arg-type]
            actor=SETUP_ACTOR, reference="replay dataset", unit_cost=_optional_decimal(entry.get("unit_cost")) or item.unit_cost,
        )

    for index, entry in enumerate(document.get("reservations", [])):
        where = f"/reservations/{index}"
        item = reader.item(entry["sku"], f"{where}/sku")
        location = reader.location(entry["location"], f"{where}/location")
        found_bin = reader.bin(location.code, entry.get("bin", ""), f"{where}/bin")
        session.add(
            Reservation(
                workspace_id=records.workspace_id, item_id=item.id, location_id=location.id,  # type: ignore[arg-type]
                bin_id=found_bin.id if found_bin else None, quantity=_decimal(entry["quantity"]), reference=entry["reference"], status="active",
            )
        )

    for index, entry in enumerate(document.get("counts", [])):
        where = f"/counts/{index}"
        item = reader.item(entry["sku"], f"{where}/sku")
        location = reader.location(entry["location"], f"{where}/location")
        found_bin = reader.bin(location.code, entry.get("bin", ""), f"{where}/bin")
        counted = _decimal(entry["counted"])
        system = _optional_decimal(entry.get("system"))
        session.add(
            CountResult(
                workspace_id=records.workspace_id, item_id=item.id, location_id=location.id,  # type: ignore[arg-type]
                bin_id=found_bin.id if found_bin else None, counted_quantity=counted, system_quantity=system,
                variance=None if system is None else counted - system, source="count", actor=entry.get("actor", SETUP_ACTOR),
                counted_at=reader.moment(entry["counted_at"], f"{where}/counted_at"),
            )
        )


async def _write_orders(session: AsyncSession, reader: _Reader, document: dict[str, Any], created_at: datetime) -> None:
    records = reader.records
    numbers: set[str] = set()
    for index, entry in enumerate(document.get("purchase_orders", [])):
        where = f"/purchase_orders/{index}"
        if entry["number"] in numbers:
            raise reader.fail(f"{where}/number", f"purchase order {entry['number']!r} is listed twice", "give each order its own number")
        numbers.add(entry["number"])
        supplier = reader.supplier(entry["supplier"], f"{where}/supplier")
        status = entry.get("status", "issued")
        order = PurchaseOrder(
            workspace_id=records.workspace_id, number=entry["number"], supplier_id=supplier.id, status=status,  # type: ignore[arg-type]
            currency=entry.get("currency", supplier.currency).upper(), expected_date=reader.day(entry.get("expected_date"), f"{where}/expected_date"),
            owner=entry.get("owner", supplier.owner), description=entry.get("description", ""), created_at=created_at,
            issued_at=created_at if status != "draft" else None,
        )
        session.add(order)
        await session.flush()
        for line_no, line in enumerate(entry["lines"], start=1):
            line_where = f"{where}/lines/{line_no - 1}"
            item = reader.item(line["sku"], f"{line_where}/sku")
            offer = records.offers.get((supplier.code, item.sku_key))
            destination = reader.location(line["destination"], f"{line_where}/destination") if line.get("destination") else None
            session.add(
                PurchaseOrderLine(
                    workspace_id=records.workspace_id, purchase_order_id=order.id, line_no=line_no, item_id=item.id,  # type: ignore[arg-type]
                    supplier_item_id=offer.id if offer else None, quantity_ordered=_decimal(line["quantity"]),
                    quantity_received=_decimal(line.get("received", 0)),
                    unit_price=_optional_decimal(line.get("unit_price", offer.unit_price if offer else None)),
                    expected_date=reader.day(line.get("expected_date"), f"{line_where}/expected_date") or order.expected_date,
                    destination_location_id=destination.id if destination else None,
                )
            )


async def _write_rules(session: AsyncSession, reader: _Reader, document: dict[str, Any], updated_at: datetime) -> None:
    records = reader.records
    for index, entry in enumerate(document.get("reorder_rules", [])):
        where = f"/reorder_rules/{index}"
        item = reader.item(entry["sku"], f"{where}/sku")
        location = reader.location(entry["location"], f"{where}/location") if entry.get("location") else None
        supplier = reader.supplier(entry["preferred_supplier"], f"{where}/preferred_supplier") if entry.get("preferred_supplier") else None
        session.add(
            ReorderRule(
                workspace_id=records.workspace_id, item_id=item.id, location_id=location.id if location else None,  # type: ignore[arg-type]
                location_key=location.id if location else 0, reorder_point=_decimal(entry["reorder_point"]),  # type: ignore[arg-type]
                reorder_quantity=_optional_decimal(entry.get("reorder_quantity")), max_level=_optional_decimal(entry.get("max_level")),
                safety_stock=_decimal(entry.get("safety_stock", 0)), preferred_supplier_id=supplier.id if supplier else None,
                source="replay dataset", updated_at=updated_at,
            )
        )


async def write_records(database: Database, dataset: Dataset, *, workspace_id: int, currency: str, now: datetime) -> None:
    """Write a dataset's records into a workspace in one transaction; a bad reference writes nothing.

    Raises:
        ScenarioFileError: If an entry names a record the dataset does not have.
    """
    document = dataset.document
    async with database.write() as session:
        reader = _Reader(dataset, _Records(workspace_id))
        await _write_catalog(session, reader, document, currency)
        await _write_offers(session, reader, document)
        await _write_stock(session, reader, document)
        await _write_orders(session, reader, document, now)
        await _write_rules(session, reader, document, now)


async def load_workspace(
    database: Database, dataset: Dataset, *, timezone: str | None, clock: Callable[[], datetime]
) -> Setup:
    """Create the dataset's workspace with a setup admin token, then import or write its records.

    Raises:
        ScenarioFileError: If the dataset refers to records it does not define.
        Order3Error: If the InvenTree import or the reorder settings fail.
    """
    document = dataset.document
    currency = document.get("currency", "USD").upper()
    created = await admin.init_workspace(
        database, workspace=document["workspace"], base_currency=currency, timezone=timezone or document.get("timezone", "UTC"),
        admin=SETUP_ADMIN, clock=clock,
    )
    app = Order3(database, clock=clock)
    setup_admin = await app.authenticate(created.secret, channel="cli")

    inventree = dataset.inventree
    if inventree is not None:
        await admin.import_inventree_file(app, setup_admin, path=inventree)
    await write_records(database, dataset, workspace_id=setup_admin.workspace_id, currency=currency, now=clock())
    if document.get("reorder_settings"):
        await admin.apply_reorder_settings(app, setup_admin, path=(dataset.base_dir / document["reorder_settings"]).resolve())
    return Setup(workspace=created.workspace, admin=setup_admin)

"""Map InvenTree companies, supplier parts and their price breaks onto suppliers and supplier items.

InvenTree counts supplier part prices and price break quantities in supplier
packs of `pack_quantity_native` stock units, while Order3 counts them in stock
units. Every figure is converted here, and none is converted when the pack size
is missing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select

from store.importers.inventree_context import ImportRun, external_ref
from store.importers.inventree_fixture import (
    Fields,
    RecordSkipped,
    clip,
    code_slug,
    currency_or,
    exact_quantity,
    money,
    parse_decimal,
    plain,
    unique_code,
)
from store.models import Supplier, SupplierItem, SupplierPriceBreak

COMPANY_MODEL = "company.company"
SUPPLIER_PART_MODEL = "company.supplierpart"
PRICE_BREAK_MODEL = "company.supplierpricebreak"

SUPPLIER_CODE_LENGTH = 60


def _no_supplier_reason(company: Fields) -> str:
    roles = [
        role for role, flag in (("customer", "is_customer"), ("manufacturer", "is_manufacturer")) if company.get(flag)
    ]
    if not roles:
        return "the company is not marked as a supplier, customer or manufacturer"
    return f"the company is a {' and '.join(roles)} only, not a supplier"


def _contact_email(run: ImportRun, company_pk: Any, company: Fields) -> str:
    if company.get("email"):
        return clip(company["email"], 250)
    # Without a company address, use the first contact person who has one.
    for _, contact in run.fixture.rows("company.contact"):
        if contact.get("company") == company_pk and contact.get("email"):
            return clip(contact["email"], 250)
    return ""


async def import_suppliers(run: ImportRun) -> None:
    """Import companies marked as suppliers and skip customers and manufacturers."""
    codes = set(
        (await run.session.execute(select(Supplier.code).where(Supplier.workspace_id == run.workspace_id))).scalars()
    )
    used_codes = {code.casefold() for code in codes}

    new_suppliers: list[tuple[str, Supplier]] = []
    pks: dict[str, Any] = {}
    for pk, company in run.fixture.rows(COMPANY_MODEL):
        ref = external_ref(COMPANY_MODEL, pk)
        supplier_id = run.existing_id(Supplier, ref)
        if supplier_id is not None:
            run.summary.suppliers.already_present += 1
            run.suppliers[pk] = supplier_id
            continue
        if not company.get("is_supplier"):
            run.summary.suppliers.skip(model=COMPANY_MODEL, pk=pk, reason=_no_supplier_reason(company))
            continue
        name = clip(company.get("name"), 250) or f"Company {pk}"
        slug = code_slug(name, max_length=SUPPLIER_CODE_LENGTH) or f"SUPPLIER-{pk}"
        code = unique_code(slug, pk=pk, used_codes=used_codes, max_length=SUPPLIER_CODE_LENGTH, separator="-")
        used_codes.add(code.casefold())
        # InvenTree records no lead time, so Supplier keeps the model's default.
        new_suppliers.append(
            (
                ref,
                Supplier(
                    workspace_id=run.workspace_id,
                    code=code,
                    name=name,
                    contact_email=_contact_email(run, pk, company),
                    currency=currency_or(company.get("currency"), run.default_currency),
                    active=bool(company.get("active", True)),
                    external_ref=ref,
                ),
            )
        )
        pks[ref] = pk

    ids = await run.add_all(Supplier, new_suppliers)
    run.summary.suppliers.imported += len(new_suppliers)
    for ref, supplier_id in ids.items():
        run.suppliers[pks[ref]] = supplier_id


def _pack_size(supplier_part: Fields) -> Decimal | None:
    """Return the stock units in one supplier pack, or None when the export has no usable pack size."""
    try:
        pack = parse_decimal(supplier_part.get("pack_quantity_native"), label="pack size")
    except RecordSkipped:
        return None
    if pack is None or pack <= 0:
        return None
    return plain(pack)


def _price_breaks(run: ImportRun) -> dict[Any, list[tuple[Any, Fields]]]:
    by_part: dict[Any, list[tuple[Any, Fields]]] = {}
    for pk, price_break in run.fixture.rows(PRICE_BREAK_MODEL):
        by_part.setdefault(price_break.get("part"), []).append((pk, price_break))
    return by_part


def _first_order_break(breaks: list[tuple[Any, Fields]], multiple: int) -> Fields | None:
    """Return the price break InvenTree applies to one order multiple.

    Like InvenTree's SupplierPart.get_price: the largest break at or below the
    quantity, else the smallest break.
    """
    priced: list[tuple[Decimal, Fields]] = []
    for _, price_break in breaks:
        try:
            quantity = parse_decimal(price_break.get("quantity"), label="price break quantity")
            price = parse_decimal(price_break.get("price"), label="price")
        except RecordSkipped:
            continue
        if quantity is not None and price is not None:
            priced.append((quantity, price_break))
    if not priced:
        return None
    priced.sort(key=lambda pair: pair[0])
    within = [price_break for quantity, price_break in priced if quantity <= multiple]
    return within[-1] if within else priced[0][1]


async def import_supplier_items(run: ImportRun) -> None:
    """Import supplier parts as supplier items, with quantities and prices in stock units."""
    breaks = _price_breaks(run)
    supplier_currencies = dict(
        (
            await run.session.execute(
                select(Supplier.id, Supplier.currency).where(Supplier.workspace_id == run.workspace_id)
            )
        ).all()
    )

    new_items: list[tuple[str, SupplierItem]] = []
    pks: dict[str, Any] = {}
    for pk, supplier_part in run.fixture.rows(SUPPLIER_PART_MODEL):
        pack = _pack_size(supplier_part)
        run.pack_sizes[pk] = pack
        ref = external_ref(SUPPLIER_PART_MODEL, pk)
        supplier_item_id = run.existing_id(SupplierItem, ref)
        if supplier_item_id is not None:
            run.summary.supplier_items.already_present += 1
            run.supplier_items[pk] = supplier_item_id
            continue
        try:
            new_items.append(
                (ref, _supplier_item(run, pk, supplier_part, pack, breaks.get(pk, []), supplier_currencies))
            )
        except RecordSkipped as skipped:
            run.summary.supplier_items.skip(model=SUPPLIER_PART_MODEL, pk=pk, reason=skipped.reason)
            continue
        pks[ref] = pk

    ids = await run.add_all(SupplierItem, new_items)
    run.summary.supplier_items.imported += len(new_items)
    for ref, supplier_item_id in ids.items():
        run.supplier_items[pks[ref]] = supplier_item_id

    await _import_price_breaks(run, supplier_currencies)


def _supplier_item(
    run: ImportRun,
    pk: Any,
    supplier_part: Fields,
    pack: Decimal | None,
    breaks: list[tuple[Any, Fields]],
    supplier_currencies: dict[int, str],
) -> SupplierItem:
    item_id = run.items.get(supplier_part.get("part"))
    if item_id is None:
        raise RecordSkipped("the part was not imported")
    supplier_id = run.suppliers.get(supplier_part.get("supplier"))
    if supplier_id is None:
        raise RecordSkipped("the supplier company was not imported")
    try:
        multiple = max(int(supplier_part.get("multiple") or 1), 1)
    except (TypeError, ValueError) as exc:
        raise RecordSkipped(f"order multiple {supplier_part.get('multiple')!r} is not a whole number") from exc

    currency = supplier_currencies[supplier_id]
    unit_price: Decimal | None = None
    first_break = _first_order_break(breaks, multiple)
    if first_break is not None:
        currency = currency_or(first_break.get("price_currency"), currency)
        if pack is not None:
            unit_price = money(parse_decimal(first_break["price"], label="price") / pack)

    # InvenTree has no minimum order quantity: an order is rounded up to whole
    # multiples of `multiple` packs, so the smallest order is one multiple.
    # NOTE: without a pack size the minimum cannot be converted to stock units, so the column keeps its default of 1.
    ordering: dict[str, Decimal] = {}
    if pack is not None:
        ordering["min_order_qty"] = exact_quantity(multiple * pack, label="minimum order quantity")

    part = run.fixture.get("part.part", supplier_part.get("part")) or {}
    return SupplierItem(
        **ordering,
        workspace_id=run.workspace_id,
        supplier_id=supplier_id,
        item_id=item_id,
        supplier_sku=clip(supplier_part.get("SKU"), 120),
        unit_price=unit_price,
        currency=currency,
        pack_size=pack,
        lead_time_days=None,
        preferred=part.get("default_supplier") == pk,
        external_ref=external_ref(SUPPLIER_PART_MODEL, pk),
    )


async def _import_price_breaks(run: ImportRun, supplier_currencies: dict[int, str]) -> None:
    new_breaks: list[tuple[str, SupplierPriceBreak]] = []
    for pk, price_break in run.fixture.rows(PRICE_BREAK_MODEL):
        ref = external_ref(PRICE_BREAK_MODEL, pk)
        if run.existing_id(SupplierPriceBreak, ref) is not None:
            run.summary.price_breaks.already_present += 1
            continue
        try:
            new_breaks.append((ref, _price_break(run, pk, price_break, supplier_currencies)))
        except RecordSkipped as skipped:
            run.summary.price_breaks.skip(model=PRICE_BREAK_MODEL, pk=pk, reason=skipped.reason)

    await run.add_all(SupplierPriceBreak, new_breaks)
    run.summary.price_breaks.imported += len(new_breaks)


def _price_break(
    run: ImportRun, pk: Any, price_break: Fields, supplier_currencies: dict[int, str]
) -> SupplierPriceBreak:
    supplier_part_pk = price_break.get("part")
    supplier_item_id = run.supplier_items.get(supplier_part_pk)
    if supplier_item_id is None:
        raise RecordSkipped("its supplier part was not imported")
    pack = run.pack_sizes.get(supplier_part_pk)
    if pack is None:
        raise RecordSkipped("its supplier part has no pack size, so the price per stock unit is unknown")
    quantity = parse_decimal(price_break.get("quantity"), label="price break quantity")
    price = parse_decimal(price_break.get("price"), label="price")
    if quantity is None or price is None:
        raise RecordSkipped("the price break has no quantity or no price")
    supplier_part = run.fixture.get(SUPPLIER_PART_MODEL, supplier_part_pk) or {}
    fallback_currency = supplier_currencies.get(run.suppliers.get(supplier_part.get("supplier")), run.default_currency)
    return SupplierPriceBreak(
        workspace_id=run.workspace_id,
        supplier_item_id=supplier_item_id,
        quantity=exact_quantity(quantity * pack, label="price break quantity"),
        unit_price=money(price / pack),
        currency=currency_or(price_break.get("price_currency"), fallback_currency),
        external_ref=external_ref(PRICE_BREAK_MODEL, pk),
    )

"""Map InvenTree stock locations, parts and minimum stock onto locations, bins, items and reorder rules."""

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
    unique_code,
)
from store.models import Bin, Item, Location, ReorderRule
from store.stock import Place
from store.workspaces import sku_key

LOCATION_MODEL = "stock.stocklocation"
PART_MODEL = "part.part"
REORDER_SOURCE = "inventree:minimum_stock"

LOCATION_CODE_LENGTH = 60
BIN_CODE_LENGTH = 120
SKU_LENGTH = 100


def _location_chain(run: ImportRun, pk: Any) -> list[tuple[Any, Fields]]:
    """Return the location and its ancestors, top-level first.

    Raises:
        RecordSkipped: If a parent is missing from the export or the parents form a cycle.
    """
    chain: list[tuple[Any, Fields]] = []
    seen: set[Any] = set()
    current: Any = pk
    # A chain longer than the number of locations can only be a cycle.
    for _ in range(len(run.fixture.records.get(LOCATION_MODEL, {})) + 1):
        location = run.fixture.get(LOCATION_MODEL, current)
        if location is None:
            raise RecordSkipped("a parent stock location is missing from the export")
        if current in seen:
            raise RecordSkipped("the parent locations form a cycle")
        seen.add(current)
        chain.append((current, location))
        if location.get("parent") is None:
            return list(reversed(chain))
        current = location["parent"]
    raise RecordSkipped("the parent locations form a cycle")


async def import_locations(run: ImportRun) -> None:
    """Import top-level stock locations as locations and nested ones as bins of their top-level ancestor."""
    fixture = run.fixture
    # InvenTree keeps no stock in structural locations, but one that contains stock anyway still becomes a bin.
    stocked = {item.get("location") for _, item in fixture.rows("stock.stockitem")}
    chains: dict[Any, list[tuple[Any, Fields]]] = {}
    for pk, _ in fixture.rows(LOCATION_MODEL):
        try:
            chains[pk] = _location_chain(run, pk)
        except RecordSkipped as skipped:
            tally = (
                run.summary.bins if fixture.get(LOCATION_MODEL, pk).get("parent") is not None else run.summary.locations
            )
            tally.skip(model=LOCATION_MODEL, pk=pk, reason=skipped.reason)

    codes = set(
        (await run.session.execute(select(Location.code).where(Location.workspace_id == run.workspace_id))).scalars()
    )
    used_codes = {code.casefold() for code in codes}
    new_locations: list[tuple[str, Location]] = []
    for pk, chain in chains.items():
        if len(chain) != 1:
            continue
        ref = external_ref(LOCATION_MODEL, pk)
        if run.existing_id(Location, ref) is not None:
            run.summary.locations.already_present += 1
            continue
        fields = chain[0][1]
        name = clip(fields.get("name"), 250) or f"Location {pk}"
        slug = code_slug(name, max_length=LOCATION_CODE_LENGTH) or f"LOCATION-{pk}"
        code = unique_code(slug, pk=pk, used_codes=used_codes, max_length=LOCATION_CODE_LENGTH, separator="-")
        used_codes.add(code.casefold())
        new_locations.append(
            (
                ref,
                Location(
                    workspace_id=run.workspace_id,
                    code=code,
                    name=name,
                    kind="warehouse",
                    owner=clip(fixture.owner_name(fields.get("owner")), 120),
                    external_ref=ref,
                ),
            )
        )
    await run.add_all(Location, new_locations)
    run.summary.locations.imported += len(new_locations)
    for pk, chain in chains.items():
        if len(chain) == 1:
            run.places[pk] = Place(location_id=run.existing_id(Location, external_ref(LOCATION_MODEL, pk)))

    await _import_bins(run, chains=chains, stocked=stocked)


async def _import_bins(run: ImportRun, *, chains: dict[Any, list[tuple[Any, Fields]]], stocked: set[Any]) -> None:
    existing_bins = (
        await run.session.execute(select(Bin.id, Bin.location_id, Bin.code).where(Bin.workspace_id == run.workspace_id))
    ).all()
    bin_locations = {bin_id: location_id for bin_id, location_id, _ in existing_bins}
    used_codes: dict[int, set[str]] = {}
    for _, location_id, code in existing_bins:
        used_codes.setdefault(location_id, set()).add(code.casefold())

    new_bins: list[tuple[str, Bin]] = []
    pending_places: dict[Any, tuple[str, int]] = {}
    for pk, chain in chains.items():
        if len(chain) == 1:
            continue
        fields = chain[-1][1]
        # Every top-level location has a place by now: imported above or found from an earlier import.
        top = run.places[chain[0][0]]
        ref = external_ref(LOCATION_MODEL, pk)
        bin_id = run.existing_id(Bin, ref)
        if bin_id is not None:
            run.summary.bins.already_present += 1
            run.places[pk] = Place(location_id=bin_locations[bin_id], bin_id=bin_id)
            continue
        if fields.get("structural") and pk not in stocked:
            run.summary.bins.skip(
                model=LOCATION_MODEL,
                pk=pk,
                reason="structural location: InvenTree keeps no stock in it, so it is no bin",
            )
            continue
        path = "/".join(clip(location.get("name"), 250) or str(location_pk) for location_pk, location in chain[1:])
        location_codes = used_codes.setdefault(top.location_id, set())
        code = unique_code(
            path[:BIN_CODE_LENGTH], pk=pk, used_codes=location_codes, max_length=BIN_CODE_LENGTH, separator=" #"
        )
        location_codes.add(code.casefold())
        new_bins.append(
            (
                ref,
                Bin(
                    workspace_id=run.workspace_id,
                    location_id=top.location_id,
                    code=code,
                    name=clip(fields.get("name"), 250),
                    external_ref=ref,
                ),
            )
        )
        pending_places[pk] = (ref, top.location_id)

    ids = await run.add_all(Bin, new_bins)
    run.summary.bins.imported += len(new_bins)
    for pk, (ref, location_id) in pending_places.items():
        run.places[pk] = Place(location_id=location_id, bin_id=ids[ref])


def _category_path(run: ImportRun, category_pk: Any) -> str:
    category = run.fixture.get("part.partcategory", category_pk)
    if category is None:
        return ""
    if category.get("pathstring"):
        return clip(category["pathstring"], 250)
    names: list[str] = []
    current: Fields | None = category
    # Bounded by the number of categories so a cycle cannot loop forever.
    for _ in range(len(run.fixture.records.get("part.partcategory", {}))):
        if current is None:
            break
        names.append(str(current.get("name") or ""))
        current = run.fixture.get("part.partcategory", current.get("parent"))
    return clip("/".join(reversed(names)), 250)


def _unit_cost(run: ImportRun, pricing: Fields | None) -> tuple[Decimal, str]:
    """Return the per-unit cost and currency from a part's InvenTree pricing record.

    InvenTree's overall price range already applies its own precedence (manual
    override, purchase history, supplier price breaks divided by pack size, BOM,
    internal price). The importer takes its lower bound, because the upper bound
    picks up prices that were recorded per pack as if per unit. In the demo export,
    part 897 has an upper bound of 1029 USD per metre, the price of a 500 m reel.
    """
    if pricing is None:
        return Decimal(0), run.default_currency
    for column in ("overall_min", "overall_max"):
        try:
            cost = parse_decimal(pricing.get(column), label="unit cost")
        except RecordSkipped:
            continue
        if cost is not None and cost >= 0:
            currency = pricing.get(f"{column}_currency") or pricing.get("currency")
            return money(cost), currency_or(currency, run.default_currency)
    # NOTE: a part without any InvenTree pricing gets unit cost 0, because the export contains no better figure.
    return Decimal(0), run.default_currency


def _assign_skus(run: ImportRun, new_parts: list[tuple[Any, Fields]], used_keys: set[str]) -> dict[Any, str]:
    """Choose a SKU per new part: its IPN when unique, else "PART-<pk>".

    IPNs are assigned first so a part's own identifier always wins over another
    part's fallback. `used_keys` contains the SKU keys already used in the
    workspace and gains the keys assigned here.
    """
    ipn_counts: dict[str, int] = {}
    for _, part in run.fixture.rows(PART_MODEL):
        ipn = str(part.get("IPN") or "").strip()
        if ipn:
            ipn_counts[sku_key(ipn)] = ipn_counts.get(sku_key(ipn), 0) + 1

    skus: dict[Any, str] = {}
    for pk, part in new_parts:
        ipn = str(part.get("IPN") or "").strip()
        if ipn and len(ipn) <= SKU_LENGTH and ipn_counts[sku_key(ipn)] == 1 and sku_key(ipn) not in used_keys:
            skus[pk] = ipn
            used_keys.add(sku_key(ipn))
    for pk, _ in new_parts:
        if pk in skus:
            continue
        for candidate in (f"PART-{pk}", f"INVENTREE-PART-{pk}"):
            if sku_key(candidate) not in used_keys:
                skus[pk] = candidate
                used_keys.add(sku_key(candidate))
                break
    return skus


async def import_items(run: ImportRun) -> None:
    """Import parts as items."""
    fixture = run.fixture
    existing = (
        await run.session.execute(
            select(Item.external_ref, Item.id, Item.currency, Item.sku_key).where(Item.workspace_id == run.workspace_id)
        )
    ).all()
    currencies = {ref: currency for ref, _, currency, _ in existing}
    used_keys = {key for _, _, _, key in existing}
    pricing = {fields.get("part"): fields for _, fields in fixture.rows("part.partpricing")}

    new_parts: list[tuple[Any, Fields]] = []
    for pk, part in fixture.rows(PART_MODEL):
        ref = external_ref(PART_MODEL, pk)
        item_id = run.existing_id(Item, ref)
        if item_id is None:
            new_parts.append((pk, part))
            continue
        run.summary.items.already_present += 1
        run.items[pk] = item_id
        run.item_currencies[pk] = currencies[ref]

    skus = _assign_skus(run, new_parts, used_keys)
    new_items: list[tuple[str, Item]] = []
    for pk, part in new_parts:
        if pk not in skus:
            run.summary.items.skip(
                model=PART_MODEL, pk=pk, reason="every SKU candidate is already used in this workspace"
            )
            continue
        ref = external_ref(PART_MODEL, pk)
        unit_cost, currency = _unit_cost(run, pricing.get(pk))
        new_items.append(
            (
                ref,
                Item(
                    workspace_id=run.workspace_id,
                    sku=skus[pk],
                    sku_key=sku_key(skus[pk]),
                    name=clip(part.get("name"), 250) or skus[pk],
                    description=clip(part.get("description"), 2000),
                    unit=clip(part.get("units"), 40) or "each",
                    unit_cost=unit_cost,
                    currency=currency,
                    category=_category_path(run, part.get("category")),
                    owner=clip(fixture.owner_name(part.get("responsible_owner")), 120),
                    active=bool(part.get("active", True)),
                    external_ref=ref,
                ),
            )
        )
        run.item_currencies[pk] = currency

    ids = await run.add_all(Item, new_items)
    run.summary.items.imported += len(new_items)
    for pk, _ in new_parts:
        ref = external_ref(PART_MODEL, pk)
        if ref in ids:
            run.items[pk] = ids[ref]


async def import_reorder_rules(run: ImportRun) -> None:
    """Turn each part's minimum stock into a workspace-wide reorder point."""
    rules = (
        await run.session.execute(
            select(ReorderRule.item_id, ReorderRule.source).where(
                ReorderRule.workspace_id == run.workspace_id, ReorderRule.location_key == 0
            )
        )
    ).all()
    sources = {item_id: source for item_id, source in rules}

    new_rules: list[ReorderRule] = []
    for pk, part in run.fixture.rows(PART_MODEL):
        try:
            minimum = parse_decimal(part.get("minimum_stock"), label="minimum stock")
            if minimum is None or minimum <= 0:
                continue
            minimum = exact_quantity(minimum, label="minimum stock")
        except RecordSkipped as skipped:
            run.summary.reorder_rules.skip(model=PART_MODEL, pk=pk, reason=skipped.reason)
            continue
        item_id = run.items.get(pk)
        if item_id is None:
            run.summary.reorder_rules.skip(model=PART_MODEL, pk=pk, reason="the part was not imported")
            continue
        if item_id in sources:
            if sources[item_id] == REORDER_SOURCE:
                run.summary.reorder_rules.already_present += 1
            else:
                run.summary.reorder_rules.skip(
                    model=PART_MODEL,
                    pk=pk,
                    reason="the item already has a workspace-wide reorder rule from another source",
                )
            continue
        # Part.default_supplier points at a supplier part, whose company is the preferred supplier.
        default_supplier_part = run.fixture.get("company.supplierpart", part.get("default_supplier"))
        preferred = run.suppliers.get(default_supplier_part.get("supplier")) if default_supplier_part else None
        new_rules.append(
            ReorderRule(
                workspace_id=run.workspace_id,
                item_id=item_id,
                location_id=None,
                location_key=0,
                reorder_point=minimum,
                preferred_supplier_id=preferred,
                source=REORDER_SOURCE,
            )
        )
        sources[item_id] = REORDER_SOURCE

    run.session.add_all(new_rules)
    await run.session.flush()
    run.summary.reorder_rules.imported += len(new_rules)

"""Load an InvenTree Django fixture export, index its records, and parse its field values exactly."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from store.errors import InvalidInputError
from store.types import to_scaled
from store.workspaces import check_currency

# The models the importer reads. A fixture with none of them is not an InvenTree export.
READ_MODELS = frozenset(
    {
        "auth.group",
        "auth.user",
        "common.inventreesetting",
        "company.company",
        "company.contact",
        "company.supplierpart",
        "company.supplierpricebreak",
        "order.purchaseorder",
        "order.purchaseorderlineitem",
        "order.salesorder",
        "order.salesorderallocation",
        "order.salesorderlineitem",
        "order.salesordershipment",
        "part.part",
        "part.partcategory",
        "part.partpricing",
        "part.partstocktake",
        "stock.stockitem",
        "stock.stockitemtracking",
        "stock.stocklocation",
        "users.owner",
    }
)

EXPORT_HINT = (
    "export the InvenTree database with `invoke export-records -f FILE` "
    "(or `manage.py dumpdata --natural-foreign`) and pass that file"
)

# Quantities and money are stored in millionths (store.types).
MILLIONTH = Decimal("0.000001")
# Sorts tracking entries without a timestamp before all others.
EARLIEST = datetime.min.replace(tzinfo=UTC)

Fields = dict[str, Any]


class RecordSkipped(Exception):
    """Raised when a record cannot be mapped. The message is the reason shown in the import summary."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _pk_order(pk: Any) -> tuple[int, Any]:
    return (0, pk) if isinstance(pk, int) else (1, str(pk))


@dataclass
class Fixture:
    """The records of one export, by model and primary key."""

    path: Path
    records: dict[str, dict[Any, Fields]] = field(default_factory=lambda: defaultdict(dict))
    _history: dict[Any, list[tuple[Any, Fields]]] | None = field(default=None, repr=False)

    def rows(self, model: str) -> list[tuple[Any, Fields]]:
        """Return (pk, fields) for every record of `model`, in primary key order."""
        table = self.records.get(model, {})
        return [(pk, table[pk]) for pk in sorted(table, key=_pk_order)]

    def get(self, model: str, pk: Any) -> Fields | None:
        """Return the fields of record `pk` of `model`, or None if the export has no such record."""
        # A natural key (a list) can only name auth records, which `username` resolves itself.
        if pk is None or isinstance(pk, list | dict):
            return None
        return self.records.get(model, {}).get(pk)

    def history(self, stock_item_pk: Any) -> list[tuple[Any, Fields]]:
        """Return the tracking entries of one stock item, oldest first."""
        if self._history is None:
            by_item: dict[Any, list[tuple[Any, Fields]]] = defaultdict(list)
            for pk, entry in self.rows("stock.stockitemtracking"):
                by_item[entry.get("item")].append((pk, entry))
            for entries in by_item.values():
                entries.sort(key=lambda pair: (parse_timestamp(pair[1].get("date")) or EARLIEST, _pk_order(pair[0])))
            self._history = dict(by_item)
        return self._history.get(stock_item_pk, [])

    def setting(self, key: str) -> str | None:
        """Return the value of a global InvenTree setting, or None if the export lacks it."""
        for _, setting in self.rows("common.inventreesetting"):
            if setting.get("key") == key:
                value = setting.get("value")
                return None if value is None else str(value)
        return None

    def username(self, ref: Any) -> str:
        """Return the username behind a user reference: a natural key such as ["admin"] or a user pk."""
        if isinstance(ref, list) and ref:
            return str(ref[0])
        user = self.get("auth.user", ref)
        return str(user.get("username") or "") if user else ""

    def owner_name(self, owner_pk: Any) -> str:
        """Return the user or group name behind a users.owner pk, or "" when it cannot be resolved."""
        owner = self.get("users.owner", owner_pk)
        if owner is None:
            return ""
        owner_type = owner.get("owner_type")
        owner_id = owner.get("owner_id")
        # With natural foreign keys the content type is exported as [app_label, model].
        if owner_type == ["auth", "user"]:
            return self.username(owner_id)
        if owner_type == ["auth", "group"]:
            group = self.get("auth.group", owner_id)
            return str(group.get("name") or "") if group else ""
        return ""


def load_fixture(path: Path) -> Fixture:
    """Read and check an InvenTree fixture export. JSON numbers are read as Decimal, never as float.

    Raises:
        InvalidInputError: If the file is missing or unreadable, is not JSON, is not a
            Django fixture list, or contains none of the models this importer reads.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InvalidInputError(f"InvenTree export {str(path)!r} does not exist; {EXPORT_HINT}.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"InvenTree export {str(path)!r} cannot be read ({exc}); {EXPORT_HINT}.") from exc

    try:
        entries = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"InvenTree export {str(path)!r} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            f"{EXPORT_HINT}."
        ) from exc

    if not isinstance(entries, list):
        raise InvalidInputError(
            f"InvenTree export {str(path)!r} is not a Django fixture: it contains a JSON {type(entries).__name__}, "
            f"not a list of {{model, pk, fields}} records; {EXPORT_HINT}."
        )
    fixture = Fixture(path=path)
    for index, entry in enumerate(entries):
        # `invoke export-records` puts a {"metadata": true, ...} entry describing the export first.
        if isinstance(entry, dict) and entry.get("metadata") is True and "model" not in entry:
            continue
        if not (
            isinstance(entry, dict) and isinstance(entry.get("model"), str) and isinstance(entry.get("fields"), dict)
        ):
            raise InvalidInputError(
                f"InvenTree export {str(path)!r} is not a Django fixture: entry {index} is not an object with "
                f"'model' and 'fields'; {EXPORT_HINT}."
            )
        model = entry["model"]
        if model not in READ_MODELS:
            continue
        if "pk" not in entry or entry["pk"] is None:
            raise InvalidInputError(
                f"InvenTree export {str(path)!r} entry {index} ({model}) has no 'pk'; export again with primary "
                f"keys (without --natural-primary)."
            )
        fixture.records[model][entry["pk"]] = entry["fields"]

    if not fixture.records:
        raise InvalidInputError(
            f"InvenTree export {str(path)!r} contains none of the InvenTree models this importer reads "
            f"(part.part, stock.stockitem, company.company, ...); {EXPORT_HINT}."
        )
    return fixture


def parse_decimal(value: Any, *, label: str) -> Decimal | None:
    """Return `value` as an exact Decimal, None for a missing value.

    Raises:
        RecordSkipped: If the value is not a finite number.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RecordSkipped(f"{label} {value!r} is not a number")
    try:
        number = Decimal(value) if isinstance(value, Decimal | int) else Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise RecordSkipped(f"{label} {value!r} is not a number") from exc
    if not number.is_finite():
        raise RecordSkipped(f"{label} {value!r} is not a finite number")
    return number


def exact_quantity(value: Decimal, *, label: str) -> Decimal:
    """Return a quantity unchanged if Order3 can store it exactly, with trailing zeros removed.

    Raises:
        RecordSkipped: If the quantity has more than six decimal places or is out of range.
    """
    try:
        to_scaled(value)
    except ValueError as exc:
        raise RecordSkipped(f"{label} {value} cannot be stored exactly ({exc})") from exc
    return plain(value)


def money(value: Decimal) -> Decimal:
    """Round an amount to the millionths Order3 stores, half to even."""
    return plain(value.quantize(MILLIONTH, rounding=ROUND_HALF_EVEN))


def plain(value: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent notation (100 stays 100, not 1E+2)."""
    normal = value.normalize()
    if normal == normal.to_integral_value():
        return normal.quantize(Decimal(1))
    return normal


def parse_date(value: Any) -> date | None:
    """Return an ISO date ("2021-12-10"), or None when missing or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def parse_timestamp(value: Any) -> datetime | None:
    """Return an ISO timestamp as aware UTC. InvenTree exports timestamps in UTC with a "Z" suffix."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def start_of_day(day: date | None, *, timezone: str) -> datetime | None:
    """Return midnight of a business date in the workspace timezone, as UTC.

    Midnight local time converts back to the same date in the workspace timezone,
    so a date-only InvenTree value keeps its calendar date in Order3.
    """
    if day is None:
        return None
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def currency_or(value: Any, fallback: str) -> str:
    """Return `value` as an ISO 4217 code, or `fallback` when it is missing or malformed."""
    if not isinstance(value, str) or not value.strip():
        return fallback
    try:
        return check_currency(value)
    except InvalidInputError:
        return fallback


def code_slug(name: str, *, max_length: int) -> str:
    """Return an upper-case ASCII slug of a name ("Paint by Numbers" → "PAINT-BY-NUMBERS")."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", ascii_name).strip("-").upper()
    return slug[:max_length].rstrip("-")


def unique_code(code: str, *, pk: Any, used_codes: set[str], max_length: int, separator: str) -> str:
    """Return `code`, or `code` with the InvenTree pk appended if its case-folded form is in `used_codes`."""
    if code.casefold() not in used_codes:
        return code
    suffix = f"{separator}{pk}"
    return code[: max_length - len(suffix)] + suffix


def clip(text: Any, limit: int) -> str:
    """Return free text as a string no longer than a column's `limit`."""
    if text is None:
        return ""
    return str(text).strip()[:limit]

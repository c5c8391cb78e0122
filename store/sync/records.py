"""The external records an integration may send, one pydantic model per kind, and their parsing.

Every value is data from another system. Parsing is strict: no number is read
from a boolean and no text from a number. A changed record may carry only the
descriptive fields its kind whitelists, so nothing an integration sends can
change an owner, a role, a scope or a status.
"""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from store.types import MAX_FIXED, SCALE_DIGITS

MEASURED_RECORD_KINDS = ("channel_quantity", "accounting_value")
CHANGED_RECORD_KINDS = ("item", "location", "supplier", "purchase_order")
RECORD_KINDS = MEASURED_RECORD_KINDS + CHANGED_RECORD_KINDS

# Descriptive fields an integration may change, per kind. Anything that routes
# work or grants access (owner, role, scopes, status, supplier, currency) is left out.
CHANGE_FIELDS: dict[str, tuple[str, ...]] = {
    "item": ("name", "description", "category", "unit_cost", "active"),
    "location": ("name",),
    "supplier": ("name", "contact_email", "lead_time_days", "active"),
    "purchase_order": ("expected_date",),
}

# Maximum length of an integration's text quoted back in a message.
QUOTE_LENGTH = 60

_DECIMAL_TEXT = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
_DATE_TEXT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class RecordInvalidError(ValueError):
    """A record that cannot be used; `detail` names the value and the fix."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def quote(value: Any) -> str:
    """Return `value` as JSON text (the form the integration sent), cut short enough to quote in a message."""
    shown = json.dumps(value, ensure_ascii=False, default=str)
    return shown if len(shown) <= QUOTE_LENGTH else shown[: QUOTE_LENGTH - 1] + "…"


def _parse_decimal(value: Any, *, name: str, example: str) -> Decimal:
    # ValueError even for a wrong type, because pydantic turns only ValueError into a validation error.
    if isinstance(value, bool):
        raise ValueError(f"{name} {quote(value)} is a boolean; send a decimal string such as {example}")  # noqa: TRY004
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        # repr gives the shortest text that reads back as the same float, which is the text the JSON contained.
        number = Decimal(repr(value))
    elif isinstance(value, str) and _DECIMAL_TEXT.match(value):
        number = Decimal(value)
    else:
        raise ValueError(
            f"{name} {quote(value)} is not a plain decimal number; send digits with an optional sign and "
            f"decimal point, such as {example}, without spaces or exponents"
        )
    if not number.is_finite():
        raise ValueError(f"{name} {quote(value)} is not a finite number; send a decimal string such as {example}")
    # The range check comes first: quantize() raises InvalidOperation on numbers
    # with more digits than the decimal context's precision.
    if abs(number) > MAX_FIXED:
        raise ValueError(f"{name} {number} is out of range; at most {MAX_FIXED:.0f} in magnitude")
    if number != number.quantize(Decimal(1).scaleb(-SCALE_DIGITS)):
        raise ValueError(f"{name} {number} has more than {SCALE_DIGITS} decimal places; round it")
    return number


def _signed_quantity(value: Any) -> Decimal:
    return _parse_decimal(value, name="quantity", example='"5"')


def _signed_value(value: Any) -> Decimal:
    return _parse_decimal(value, name="value", example='"12.50"')


def _unit_cost(value: Any) -> Decimal:
    number = _parse_decimal(value, name="unit_cost", example='"2.50"')
    if number < 0:
        raise ValueError(f"unit_cost {number} is negative; send 0 or more")
    return number


def _currency(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{3}", value.strip()):
        raise ValueError(f"currency {quote(value)} is not a three-letter ISO 4217 code; send one such as \"USD\"")
    return value.strip().upper()


def _version(value: Any) -> str:
    # Versions are opaque to Order3 and compared as text; an integer is accepted as its digits.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"version {quote(value)} is not a version; send the record's version in the source system, such as \"7\"")
    if len(value) > 60 or any(ord(char) < 32 for char in value):
        raise ValueError(f"version {quote(value)} is longer than 60 characters or has control characters")
    return value


def _calendar_date(value: Any) -> date:
    if not isinstance(value, str) or not _DATE_TEXT.match(value):
        raise ValueError(f"expected_date {quote(value)} is not a date; send YYYY-MM-DD, such as \"2022-01-10\"")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected_date {quote(value)} is not a real calendar date; send YYYY-MM-DD") from None


def _email(value: Any) -> str:
    if not isinstance(value, str) or (value and not _EMAIL.match(value)):
        raise ValueError(f"contact_email {quote(value)} is not an email address; send one such as \"orders@acme.example\", or \"\"")
    return value


def _identifier(value: Any) -> Any:
    # Blank identifiers would match nothing and hide the real problem behind "not found".
    if isinstance(value, str) and not value.strip():
        raise ValueError("is blank; send the code or id the source system uses")
    return value


ExternalId = Annotated[str, BeforeValidator(_identifier), Field(max_length=200)]
Code = Annotated[str, BeforeValidator(_identifier), Field(max_length=120)]
Version = Annotated[str, BeforeValidator(_version)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    external_id: ExternalId = Field(description="The record's id in the source system.")


class ChannelQuantity(_Record):
    """The quantity a sales channel shows as available for an item at a location, or workspace-wide."""

    kind: Literal["channel_quantity"]
    sku: Code = Field(description="Order3 SKU, matched trimmed and case-insensitively.")
    location: str = Field(max_length=60, description="Location code, or \"\" for every location together.")
    quantity: Annotated[Decimal, BeforeValidator(_signed_quantity)]


class AccountingValue(_Record):
    """The inventory value an accounting system books for an item at a location, or workspace-wide."""

    kind: Literal["accounting_value"]
    sku: Code
    location: str = Field(max_length=60)
    value: Annotated[Decimal, BeforeValidator(_signed_value)]
    currency: Annotated[str, BeforeValidator(_currency)]


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def sent(self) -> dict[str, Any]:
        """Return the fields the record actually carried, by name."""
        return {name: getattr(self, name) for name in sorted(self.model_fields_set)}


# Defaults of None mark a field as not sent; an explicit null fails validation.
class ItemFields(_Fields):
    """Descriptive item fields an integration may change."""

    name: str = Field(default=None, min_length=1, max_length=250)  # type: ignore[assignment]
    description: str = Field(default=None, max_length=2000)  # type: ignore[assignment]
    category: str = Field(default=None, max_length=250)  # type: ignore[assignment]
    unit_cost: Annotated[Decimal, BeforeValidator(_unit_cost)] = None  # type: ignore[assignment]
    active: bool = None  # type: ignore[assignment]


class LocationFields(_Fields):
    """Descriptive location fields an integration may change."""

    name: str = Field(default=None, min_length=1, max_length=250)  # type: ignore[assignment]


class SupplierFields(_Fields):
    """Descriptive supplier fields an integration may change."""

    name: str = Field(default=None, min_length=1, max_length=250)  # type: ignore[assignment]
    contact_email: Annotated[str, BeforeValidator(_email), Field(max_length=250)] = None  # type: ignore[assignment]
    lead_time_days: int = Field(default=None, ge=0, le=3650)  # type: ignore[assignment]
    active: bool = None  # type: ignore[assignment]


class PurchaseOrderFields(_Fields):
    """Descriptive purchase order fields an integration may change."""

    expected_date: Annotated[date, BeforeValidator(_calendar_date)] = None  # type: ignore[assignment]


class _Change(_Record):
    key: Code = Field(description="Order3's code for the record: SKU, location code, supplier code or PO number.")
    version: Version = Field(description="The record's version in the source system.")


class ItemChange(_Change):
    """An item as recorded in the source system."""

    kind: Literal["item"]
    fields: ItemFields


class LocationChange(_Change):
    """A location as recorded in the source system."""

    kind: Literal["location"]
    fields: LocationFields


class SupplierChange(_Change):
    """A supplier as recorded in the source system."""

    kind: Literal["supplier"]
    fields: SupplierFields


class PurchaseOrderChange(_Change):
    """A purchase order header as recorded in the source system."""

    kind: Literal["purchase_order"]
    fields: PurchaseOrderFields


MeasuredRecord = ChannelQuantity | AccountingValue
ChangedRecord = ItemChange | LocationChange | SupplierChange | PurchaseOrderChange
ExternalRecord = MeasuredRecord | ChangedRecord

_MODELS: dict[str, type[BaseModel]] = {
    "channel_quantity": ChannelQuantity,
    "accounting_value": AccountingValue,
    "item": ItemChange,
    "location": LocationChange,
    "supplier": SupplierChange,
    "purchase_order": PurchaseOrderChange,
}

# Fix suggested for a missing or malformed top-level value.
_HINTS = {
    "external_id": "send the record's id in the source system",
    "kind": f"send one of {', '.join(RECORD_KINDS)}",
    "sku": "send the item's Order3 SKU",
    "location": 'send a location code, or "" for every location together',
    "quantity": 'send the available quantity as a decimal string such as "5"',
    "value": 'send the booked value as a decimal string such as "12.50"',
    "currency": 'send the ISO 4217 code of the value, such as "USD"',
    "key": "send Order3's code for the record (SKU, location code, supplier code or PO number)",
    "version": 'send the record\'s version in the source system, such as "7"',
    "fields": "send an object of the fields to compare",
}


def parse_record(raw: Any) -> ExternalRecord:
    """Validate one raw record into the model of its kind.

    Raises:
        RecordInvalidError: With a detail naming the first problem, its value and the fix.
    """
    if not isinstance(raw, dict):
        raise RecordInvalidError(f"Record {quote(raw)} is not an object; send each record as a JSON object.")
    kind = raw.get("kind")
    if kind is None:
        raise RecordInvalidError(f"kind is missing; {_HINTS['kind']}.")
    if kind not in _MODELS:
        raise RecordInvalidError(f"kind {quote(kind)} is unknown; {_HINTS['kind']}.")
    fields = raw.get("fields")
    if kind in CHANGE_FIELDS and isinstance(fields, dict):
        _check_change_fields(kind, fields)
    try:
        return _MODELS[kind].model_validate(raw)  # type: ignore[return-value]
    except ValidationError as exc:
        raise RecordInvalidError(_describe(kind, exc)) from None


def _check_change_fields(kind: str, fields: dict[str, Any]) -> None:
    allowed = CHANGE_FIELDS[kind]
    if not fields:
        raise RecordInvalidError(f"fields is empty; send at least one of {', '.join(allowed)}.")
    for name in fields:
        if name not in allowed:
            raise RecordInvalidError(
                f"fields.{str(name)[:QUOTE_LENGTH]} may not be changed by a sync: an integration may change only "
                f"{', '.join(allowed)} of a {kind}. Remove the field; owners, roles, scopes and statuses change only in Order3."
            )


def _describe(kind: str, exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"])
    top = str(error["loc"][0]) if error["loc"] else ""
    # Hints describe top-level values, because pydantic's message already states what a nested field expects.
    hint = _HINTS.get(top, "") if len(error["loc"]) == 1 else ""
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        return f"{location} is missing; {hint}." if hint else f"{location} is missing."
    if error["type"] == "extra_forbidden":
        known = ", ".join(_MODELS[kind].model_fields)
        return f"{location} is not a field of a {kind} record; remove it (the fields are {known})."
    if error["type"] == "value_error":
        # Our own validators name the value and the fix, starting with the field's name.
        parents = "".join(f"{part}." for part in error["loc"][:-1])
        if error["loc"] and message.startswith(str(error["loc"][-1])):
            return f"{parents}{message}."
        return f"{location} {message}."
    shown = quote(error.get("input"))
    return f"{location} {shown} is invalid: {message}." + (f" {hint[0].upper()}{hint[1:]}." if hint else "")


def readable_fields(raw: Any) -> dict[str, str]:
    """Return the identifying text a malformed record still carries, for its stored snapshot.

    Returns external_id, kind, sku, location and key where they are strings,
    each cut to its column's length.
    """
    if not isinstance(raw, dict):
        return {}
    limits = {"external_id": 200, "kind": 30, "sku": 120, "location": 60, "key": 120}
    return {name: raw[name][:limit] for name, limit in limits.items() if isinstance(raw.get(name), str)}

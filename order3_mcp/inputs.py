"""Strict argument types for tools: quantities that refuse booleans, floats in disguise and overflow.

The MCP SDK coerces loosely (true → 1, "5" → 5), so quantities pass through
`parse_quantity` before pydantic sees them.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field

from store.types import SCALE_DIGITS

MAX_QUANTITY = Decimal(1_000_000_000)
_DECIMAL_TEXT = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_SIGNED_DECIMAL_TEXT = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
_UNSIGNED_FORM = "send digits with an optional decimal point, such as 12 or \"12.5\", without spaces, signs or exponents"
_SIGNED_FORM = (
    "send digits with an optional leading minus and decimal point, such as -3 or \"12.5\", without spaces or exponents"
)


def _read_decimal(value: Any, *, text_pattern: re.Pattern[str], form: str) -> Decimal:
    """Return `value` as a finite Decimal if it is a JSON number or decimal text matching `text_pattern`."""
    if isinstance(value, bool):
        raise ValueError(f"quantity {value!r} is a boolean; send a number such as 12 or \"12.5\"")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"quantity {value!r} is not finite; send a number such as 12 or \"12.5\"")
        return Decimal(repr(value))
    if isinstance(value, str) and text_pattern.match(value):
        try:
            return Decimal(value)
        except InvalidOperation as exc:  # pragma: no cover - the pattern already guards this
            raise ValueError(f"quantity {value!r} is not a decimal number") from exc
    if isinstance(value, Decimal) and value.is_finite():
        return value
    shown = value if not isinstance(value, str) or len(value) < 40 else value[:40] + "…"
    raise ValueError(f"quantity {shown!r} is not a plain decimal number; {form}")


def plain(number: Decimal) -> str:
    """Return `number` in positional notation, never with an exponent: 0.0000001, not 1E-7."""
    return format(number, "f")


def _check_size(number: Decimal) -> Decimal:
    if abs(number) > MAX_QUANTITY:
        raise ValueError(f"quantity {plain(number)} is above the maximum of {MAX_QUANTITY}")
    if number != number.quantize(Decimal(1).scaleb(-SCALE_DIGITS)):
        raise ValueError(f"quantity {plain(number)} has more than {SCALE_DIGITS} decimal places")
    return number


def parse_quantity(value: Any) -> Decimal:
    """Return `value` as a positive Decimal with at most six decimal places.

    Accepts a JSON number or a plain decimal string such as "12.5".

    Raises:
        ValueError: With a message naming the value and the accepted form.
    """
    number = _read_decimal(value, text_pattern=_DECIMAL_TEXT, form=_UNSIGNED_FORM)
    if number <= 0:
        raise ValueError(f"quantity {plain(number)} must be greater than zero")
    return _check_size(number)


def parse_quantity_change(value: Any) -> Decimal:
    """Return `value` as a non-zero signed Decimal with at most six decimal places.

    Accepts a JSON number or a plain decimal string with an optional leading
    minus, such as "-3" or "12.5".

    Raises:
        ValueError: With a message naming the value and the accepted form.
    """
    number = _read_decimal(value, text_pattern=_SIGNED_DECIMAL_TEXT, form=_SIGNED_FORM)
    if number == 0:
        raise ValueError("quantity 0 changes nothing; send a negative quantity to remove stock or a positive one to add it")
    return _check_size(number)


Quantity = Annotated[
    Decimal,
    BeforeValidator(parse_quantity),
    Field(description="Positive quantity in the item's unit: a number or a decimal string such as \"12.5\"."),
]


QuantityChange = Annotated[
    Decimal,
    BeforeValidator(parse_quantity_change),
    Field(
        description="Signed quantity in the item's unit: negative removes stock, positive adds it. "
        "A number or a decimal string such as \"-3\" or \"12.5\"; never 0."
    ),
]


class PurchaseLine(BaseModel):
    """One requested purchase order line."""

    sku: str = Field(description="SKU of the item to order.", min_length=1, max_length=100)
    quantity: Quantity
    location: str = Field(
        default="",
        max_length=60,
        description=(
            "Destination location code. When empty, the line goes to the location of the linked low-stock "
            "exception for this item, or, without one, is left to the receiver."
        ),
    )


class CountLine(BaseModel):
    """One requested count task line: an item, and optionally the bin it is held in."""

    sku: str = Field(description="SKU of the item to count.", min_length=1, max_length=100)
    bin: str = Field(
        default="",
        max_length=120,
        description="Bin code inside the location; empty to count the stock held at the location itself.",
    )

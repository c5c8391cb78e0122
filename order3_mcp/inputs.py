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


def parse_quantity(value: Any) -> Decimal:
    """Return `value` as a positive Decimal with at most six decimal places.

    Accepts a JSON number or a plain decimal string such as "12.5".

    Raises:
        ValueError: With a message naming the value and the accepted form.
    """
    if isinstance(value, bool):
        raise ValueError(f"quantity {value!r} is a boolean; send a number such as 12 or \"12.5\"")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"quantity {value!r} is not finite; send a number such as 12 or \"12.5\"")
        number = Decimal(repr(value))
    elif isinstance(value, str) and _DECIMAL_TEXT.match(value):
        try:
            number = Decimal(value)
        except InvalidOperation as exc:  # pragma: no cover - the pattern already guards this
            raise ValueError(f"quantity {value!r} is not a decimal number") from exc
    elif isinstance(value, Decimal) and value.is_finite():
        number = value
    else:
        shown = value if not isinstance(value, str) or len(value) < 40 else value[:40] + "…"
        raise ValueError(
            f"quantity {shown!r} is not a plain decimal number; send digits with an optional decimal point, "
            "such as 12 or \"12.5\", without spaces, signs or exponents"
        )
    if number <= 0:
        raise ValueError(f"quantity {number} must be greater than zero")
    if number > MAX_QUANTITY:
        raise ValueError(f"quantity {number} is above the maximum of {MAX_QUANTITY}")
    if number != number.quantize(Decimal(1).scaleb(-SCALE_DIGITS)):
        raise ValueError(f"quantity {number} has more than {SCALE_DIGITS} decimal places")
    return number


Quantity = Annotated[
    Decimal,
    BeforeValidator(parse_quantity),
    Field(description="Positive quantity in the item's unit: a number or a decimal string such as \"12.5\"."),
]


class PurchaseLine(BaseModel):
    """One requested purchase order line."""

    sku: str = Field(description="SKU of the item to order.", min_length=1, max_length=100)
    quantity: Quantity
    location: str = Field(
        default="", max_length=60, description="Destination location code; empty to leave it to the receiver."
    )


class CountLine(BaseModel):
    """One requested count task line: an item, and optionally the bin it is held in."""

    sku: str = Field(description="SKU of the item to count.", min_length=1, max_length=100)
    bin: str = Field(
        default="",
        max_length=120,
        description="Bin code inside the location; empty to count the stock held at the location itself.",
    )

"""Tolerances the exception finders use, read from a policy file's `[tolerances]` table."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from policies.errors import PolicyError


@dataclass(frozen=True)
class Tolerances:
    """Thresholds beyond which a difference becomes an exception.

    Percentages are in percent (5 means 5 %), values are in the workspace's base
    currency, and quantities are in the item's unit of measure.
    """

    #: A count variance larger than this many units is drift.
    count_drift_abs: Decimal = Decimal("2")
    #: A count variance larger than this percentage of the system quantity is drift.
    count_drift_pct: Decimal = Decimal("5")
    #: A count variance worth more than this at unit cost is drift.
    count_drift_value: Decimal = Decimal("50")
    #: Flag repeated drift when this many of the last counts drifted in the same direction.
    count_drift_repeat: int = 2
    #: A received or closed PO line short by more than this percentage of the ordered quantity.
    receiving_short_pct: Decimal = Decimal("2")
    #: Receiving more than this percentage above the ordered quantity.
    receiving_over_pct: Decimal = Decimal("5")
    #: An external snapshot quantity differing from ours by more than this.
    mismatch_qty_abs: Decimal = Decimal("0")
    #: An external snapshot value differing from ours by more than this.
    mismatch_value_abs: Decimal = Decimal("0.01")


_DECIMAL_FIELDS = (
    "count_drift_abs",
    "count_drift_pct",
    "count_drift_value",
    "receiving_short_pct",
    "receiving_over_pct",
    "mismatch_qty_abs",
    "mismatch_value_abs",
)


def parse_decimal(value: Any, *, where: str, field: str) -> Decimal:
    """Parse a non-negative decimal written in TOML as a string (or an integer).

    `where` names the file and table or rule for the error message.

    Raises:
        PolicyError: If the value is a float, not a number, not finite or negative.
    """
    if isinstance(value, float):
        # TOML floats are binary, so 0.1 would arrive as 0.1000000000000000055...
        raise PolicyError(
            f"{where}: {field} = {value!r} is a float, which cannot hold money or "
            f'quantities exactly; write it as a string: {field} = "{value}".'
        )
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PolicyError(
            f'{where}: {field} = {value!r} is not a decimal; write it as a string such as {field} = "10".'
        )

    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise PolicyError(
            f'{where}: {field} = {value!r} is not a decimal number; write digits such as {field} = "10.50".'
        ) from None
    if not number.is_finite():
        raise PolicyError(f"{where}: {field} = {value!r} is not a finite number; write a plain decimal.")
    if number < 0:
        raise PolicyError(f"{where}: {field} = {value!r} is negative; write 0 or more.")
    return number


def parse_tolerances(table: Any, *, source: str) -> Tolerances:
    """Build Tolerances from a `[tolerances]` table; missing keys keep their defaults.

    Raises:
        PolicyError: On an unknown key or an invalid value, naming the file and key.
    """
    where = f"{source} [tolerances]"
    if not isinstance(table, dict):
        raise PolicyError(f"{source}: tolerances must be a table, written as [tolerances].")

    known = set(_DECIMAL_FIELDS) | {"count_drift_repeat"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise PolicyError(
            f"{where}: unknown key {unknown[0]!r}; valid keys are {', '.join(sorted(known))}."
        )

    values: dict[str, Any] = {}
    for field in _DECIMAL_FIELDS:
        if field in table:
            values[field] = parse_decimal(table[field], where=where, field=field)

    if "count_drift_repeat" in table:
        repeat = table["count_drift_repeat"]
        # A single drifting count is already flagged by the per-count thresholds.
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 2:
            raise PolicyError(
                f"{where}: count_drift_repeat = {repeat!r} is invalid; write a whole number of 2 or more."
            )
        values["count_drift_repeat"] = repeat

    return Tolerances(**values)

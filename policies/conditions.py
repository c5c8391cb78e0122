"""Rule conditions that compare a draft with facts beyond itself: share of on hand, and supplier spend per day.

The service gathers these facts (on hand at each location, and the spend of
the supplier's other drafts that business day) and passes them in, so the
decision here stays free of I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from policies.errors import PolicyError
from policies.tolerances import parse_decimal

# Draft kinds that change stock, so a share of on hand means something for them.
QUANTITY_SHARE_KINDS = ("transfer", "adjustment", "reconciliation")
# Draft kinds that spend money with a supplier.
SUPPLIER_SPEND_KINDS = ("purchase_order",)

# Digits shown for a share in messages; the comparison itself is exact.
_SHARE_DISPLAY = Decimal("0.0001")


@dataclass(frozen=True)
class QuantityChange:
    """A draft's change to one item's stock at one location, with the on hand it is measured against."""

    sku: str
    location_code: str
    #: Signed change in the item's unit of measure; its absolute value is compared.
    change: Decimal
    #: On hand of the item at the location when the draft was prepared.
    on_hand: Decimal

    def __post_init__(self) -> None:
        for name in ("change", "on_hand"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite():
                raise PolicyError(f"Quantity change {name} {value!r} for {self.sku} is invalid; pass a finite Decimal.")

    def exceeds(self, max_share: Decimal) -> bool:
        """Return whether |change| is more than `max_share` of on hand, compared exactly."""
        if self.change == 0:
            return False
        if self.on_hand <= 0:
            # Any change is an unbounded share of nothing on hand.
            return True
        return abs(self.change) > max_share * self.on_hand

    def describe(self) -> str:
        """Describe the change and its share of on hand for messages."""
        if self.on_hand <= 0:
            return f"{self.sku} at {self.location_code} changes by {abs(self.change)} with {self.on_hand} on hand"
        share = (abs(self.change) / self.on_hand).quantize(_SHARE_DISPLAY)
        return (
            f"{self.sku} at {self.location_code} changes by {abs(self.change)} against {self.on_hand} on hand, "
            f"a share of {share}"
        )


def quantity_share_unmet(max_share: Decimal, changes: Sequence[QuantityChange]) -> str:
    """Return why a draft breaks a max_quantity_share condition, or "" when every change is within it.

    A draft without recorded quantity changes breaks the condition, so a rule
    that limits the share never matches a draft whose share was not measured.
    """
    if not changes:
        return "the draft records no quantity change against on hand, so max_quantity_share cannot hold"
    for change in changes:
        if change.exceeds(max_share):
            return f"{change.describe()}, above max_quantity_share {max_share}"
    return ""


def supplier_spend_unmet(
    limit: Decimal, *, value: Decimal, supplier_code: str | None, earlier_spend: Decimal | None
) -> str:
    """Return why a draft breaks a max_supplier_daily_spend condition, or "" when the day's total is within it.

    `earlier_spend` is the spend of the supplier's other live purchase-order
    drafts prepared earlier that business day. None means it was not gathered,
    which breaks the condition.
    """
    if supplier_code is None or earlier_spend is None:
        return "the draft carries no supplier spend for its business day, so max_supplier_daily_spend cannot hold"
    total = earlier_spend + value
    if total > limit:
        return (
            f"supplier {supplier_code} spend on the draft's business day would be {total} "
            f"({earlier_spend} in earlier drafts + {value} in this one), above max_supplier_daily_spend {limit}"
        )
    return ""


def parse_quantity_share(raw_rule: dict[str, Any], *, where: str, kinds: Sequence[str]) -> Decimal | None:
    """Parse an optional max_quantity_share: a fraction of on hand above 0 and at most 1.

    Raises:
        PolicyError: If the value is not a decimal in (0, 1], or the rule lists a
            kind that does not change stock.
    """
    if "max_quantity_share" not in raw_rule:
        return None
    raw = raw_rule["max_quantity_share"]
    share = parse_decimal(raw, where=where, field="max_quantity_share")
    if share <= 0 or share > 1:
        raise PolicyError(
            f"{where}: max_quantity_share = {raw!r} is out of range; it is a fraction of on hand, so write a "
            'value above 0 and at most 1, such as "0.10" for 10 %.'
        )
    _require_kinds(kinds, allowed=QUANTITY_SHARE_KINDS, where=where, field="max_quantity_share")
    return share


def parse_supplier_daily_spend(raw_rule: dict[str, Any], *, where: str, kinds: Sequence[str]) -> Decimal | None:
    """Parse an optional max_supplier_daily_spend, in base currency, for purchase-order rules only.

    Raises:
        PolicyError: If the value is not a decimal above 0, or the rule lists a
            kind that does not spend with a supplier.
    """
    if "max_supplier_daily_spend" not in raw_rule:
        return None
    raw = raw_rule["max_supplier_daily_spend"]
    limit = parse_decimal(raw, where=where, field="max_supplier_daily_spend")
    if limit <= 0:
        raise PolicyError(
            f"{where}: max_supplier_daily_spend = {raw!r} would match no purchase; write an amount above 0 "
            'in the base currency, such as "5000".'
        )
    _require_kinds(kinds, allowed=SUPPLIER_SPEND_KINDS, where=where, field="max_supplier_daily_spend")
    return limit


def _require_kinds(kinds: Sequence[str], *, allowed: Sequence[str], where: str, field: str) -> None:
    others = [kind for kind in kinds if kind not in allowed]
    if others:
        raise PolicyError(
            f"{where}: {field} applies only to kinds {', '.join(allowed)}, but kinds also lists "
            f"{', '.join(others)}; move those kinds to a rule of their own."
        )

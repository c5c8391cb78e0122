"""Stock adjustments: a signed change of on hand at one place, with a reason code."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from store.errors import InvalidInputError
from store.models import Movement
from store.stock import Place, record_movement

# Reason codes and the sign of the change each allows: -1 removes stock, +1 adds
# it, 0 allows either. Damaged, lost or expired stock can only leave, and stock
# that turns up can only arrive; a correction fixes a booking error either way.
ADJUSTMENT_REASONS: dict[str, int] = {
    "damaged": -1,
    "lost": -1,
    "expired": -1,
    "found": 1,
    "correction": 0,
}


def check_reason(reason_code: str, quantity: Decimal) -> str:
    """Return the normalised reason code for a change of `quantity`.

    Raises:
        InvalidInputError: If the code is unknown, the quantity is zero, or its
            sign does not fit the reason.
    """
    code = reason_code.strip().lower()
    if code not in ADJUSTMENT_REASONS:
        raise InvalidInputError(
            f"Reason code {reason_code!r} is unknown; use one of {', '.join(ADJUSTMENT_REASONS)}."
        )
    if quantity == 0:
        raise InvalidInputError(
            "Adjustment quantity 0 changes nothing; send a negative quantity to remove stock or a positive one to add it."
        )
    sign = ADJUSTMENT_REASONS[code]
    if sign < 0 and quantity > 0:
        raise InvalidInputError(
            f"Reason {code} removes stock, so the quantity must be negative; send -{quantity}, "
            "or use reason found or correction to add stock."
        )
    if sign > 0 and quantity < 0:
        raise InvalidInputError(
            f"Reason {code} adds stock, so the quantity must be positive; send {-quantity}, "
            "or use reason damaged, lost, expired or correction to remove stock."
        )
    return code


async def post_adjustment(
    session: AsyncSession,
    *,
    workspace_id: int,
    item_id: int,
    place: Place,
    quantity: Decimal,
    reason_code: str,
    unit_cost: Decimal | None,
    actor: str,
    draft_id: int | None,
    occurred_at: datetime,
    item_label: str,
) -> Movement:
    """Post one adjustment movement: out of `place` for a negative quantity, into it for a positive one.

    Raises:
        InvalidInputError: If the reason does not fit the quantity, or a removal
            would take on hand below zero.
        ConflictError: If the stock level changed concurrently.
    """
    code = check_reason(reason_code, quantity)
    removal = quantity < 0
    return await record_movement(
        session,
        workspace_id=workspace_id,
        item_id=item_id,
        kind="adjustment",
        quantity=abs(quantity),
        source=place if removal else None,
        destination=None if removal else place,
        actor=actor,
        reference_kind="draft" if draft_id is not None else "",
        reference_id=draft_id,
        reference=f"adjustment {code}" + (f", draft {draft_id}" if draft_id is not None else ""),
        unit_cost=unit_cost,
        occurred_at=occurred_at,
        item_label=item_label,
    )

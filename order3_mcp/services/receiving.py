"""The one receive path: goods received against a purchase order line, within the policy's over-receipt tolerance."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from order3_mcp.app import Caller, Order3, Outcome
from order3_mcp.inputs import parse_quantity
from order3_mcp.operator_schemas import ReceiptOut
from store import catalog
from store.changes import item_scoped
from store.errors import InvalidInputError, NotFoundError
from store.idempotency import decimal_or_raw
from store.models import Bin, Location
from store.purchasing import get_purchase_order_by_number
from store.receiving import check_open_for_receiving, get_order_line, receive_line
from store.stock import Place
from store.types import SCALE_DIGITS, from_scaled, to_scaled

MAX_DELIVERY_LENGTH = 80


def max_received(ordered: Decimal, over_pct: Decimal) -> Decimal:
    """Return the most a line ordered at `ordered` may receive in total, rounded down to stored precision."""
    limit = ordered * (1 + over_pct / 100)
    return from_scaled(to_scaled(limit.quantize(Decimal(1).scaleb(-SCALE_DIGITS), rounding=ROUND_FLOOR)))


def _check_delivery(delivery: str) -> str:
    clean = delivery.strip()
    if len(clean) > MAX_DELIVERY_LENGTH:
        raise InvalidInputError(
            f"Delivery reference {clean[:40]!r}… is {len(clean)} characters; use the delivery note number, "
            f"at most {MAX_DELIVERY_LENGTH} characters."
        )
    if any(ord(char) < 32 for char in clean):
        raise InvalidInputError(f"Delivery reference {clean!r} contains control characters; use printable text only.")
    return clean


async def _place(session: AsyncSession, caller: Caller, *, location: str, bin_code: str, default_location_id: int | None, label: str) -> tuple[Place, Location, str]:
    if location.strip():
        place = await catalog.get_location_by_code(session, workspace_id=caller.workspace_id, code=location)
    elif default_location_id is not None:
        place = (await session.execute(select(Location).where(Location.id == default_location_id))).scalar_one()
    else:
        raise InvalidInputError(f"{label} has no destination location; pass --location CODE for where the goods are put away.")
    if not bin_code.strip():
        return Place(place.id), place, ""  # type: ignore[arg-type]
    bins = (await session.execute(select(Bin).where(Bin.location_id == place.id).order_by(Bin.code))).scalars().all()
    for candidate in bins:
        if candidate.code.casefold() == bin_code.strip().casefold():
            return Place(place.id, candidate.id), place, candidate.code  # type: ignore[arg-type]
    known = ", ".join(b.code for b in bins[:20]) or "none"
    raise NotFoundError(f"Bin {bin_code!r} does not exist at {place.code}; bins there: {known}.")


async def receive(
    app: Order3,
    caller: Caller,
    *,
    purchase_order: str,
    line_no: int,
    quantity: str,
    location: str = "",
    bin_code: str = "",
    delivery: str = "",
    idempotency_key: str | None = None,
) -> ReceiptOut:
    """Receive goods against one purchase order line.

    A receipt may take the line beyond its ordered quantity only within the
    policy's `receiving_over_pct` tolerance. A delivery reference received
    once on a line is refused the second time, and an order that is received,
    closed or cancelled accepts no receipts. On any refusal nothing is written
    except the activity event.

    Raises:
        InvalidInputError: For a malformed quantity or delivery reference, a
            missing location, or a receipt beyond the tolerance.
        NotFoundError: For an unknown order, line, location or bin.
        ConflictError: For a duplicate delivery, or an order not open for receiving.
    """

    async def work(session: AsyncSession) -> Outcome:
        item_scoped(session)
        try:
            amount = from_scaled(to_scaled(parse_quantity(quantity)))
        except ValueError as exc:
            # The parser's message already names the accepted form where the form was wrong.
            raise InvalidInputError(f"Received {exc}.") from None
        if isinstance(line_no, bool) or line_no < 1:
            raise InvalidInputError(f"Line number {line_no!r} is invalid; give the line number shown by get_purchase_order, from 1.")
        reference = _check_delivery(delivery)

        order = await get_purchase_order_by_number(
            session, workspace_id=caller.workspace_id, number=purchase_order, for_update=True
        )
        check_open_for_receiving(order)
        line, item = await get_order_line(session, order=order, line_no=line_no)
        label = f"{order.number} line {line.line_no}"
        place, place_location, place_bin = await _place(
            session, caller, location=location, bin_code=bin_code, default_location_id=line.destination_location_id, label=label
        )
        over_pct = app.policy.tolerances.receiving_over_pct
        receipt = await receive_line(
            session,
            order=order,
            line=line,
            item=item,
            quantity=amount,
            max_received=max_received(line.quantity_ordered, over_pct),
            place=place,
            delivery=reference,
            actor=caller.principal,
            received_at=app.clock(),
            tolerance_note=f"the over-receipt tolerance of {over_pct}% (receiving_over_pct in the policy)",
        )

        outstanding = max(receipt.line.quantity_ordered - receipt.line.quantity_received, Decimal(0))
        result = ReceiptOut(
            receiving_event_id=receipt.event.id,  # type: ignore[arg-type]
            movement_id=receipt.movement.id,  # type: ignore[arg-type]
            purchase_order=order.number,
            line_no=line.line_no,
            sku=item.sku,
            quantity=str(amount),
            location=place_location.code,
            bin=place_bin,
            delivery=reference,
            ordered=str(receipt.line.quantity_ordered),
            received_total=str(receipt.line.quantity_received),
            outstanding=str(outstanding),
            purchase_order_status=receipt.order.status,
            on_hand=str(receipt.on_hand),
        )
        where = place_location.code + (f" bin {place_bin}" if place_bin else "")
        summary = (
            f"Received {amount} {item.sku} on {label} at {where}: {receipt.line.quantity_received} of "
            f"{receipt.line.quantity_ordered} received; {order.number} is {receipt.order.status}."
        )
        affected = [
            {"kind": "purchase_order", "id": order.id},
            {"kind": "purchase_order_line", "id": line.id},
            {"kind": "receiving_event", "id": receipt.event.id},
            {"kind": "movement", "id": receipt.movement.id},
        ]
        return Outcome(result, summary, affected=affected)

    arguments = {
        "purchase_order": purchase_order,
        "line_no": line_no,
        "quantity": decimal_or_raw(quantity, parse_quantity),
        "location": location,
        "bin": bin_code,
        "delivery": delivery,
    }
    return await app.run(caller, "receive", arguments, work, result_type=ReceiptOut, idempotency_key=idempotency_key)

"""The `receive` command: goods received against a purchase order line."""

from __future__ import annotations

from typing import Annotated

import typer

from order3_mcp.commands._runtime import (
    IdempotencyKeyOption,
    execute,
    keyed,
    say,
    settings_of,
    signed_in,
)
from order3_mcp.operator_schemas import ReceiptOut
from order3_mcp.services import receiving


def receive(
    ctx: typer.Context,
    purchase_order: Annotated[str, typer.Argument(help="Purchase order number, such as PO-000001.")],
    line_no: Annotated[int, typer.Argument(help="Line number on the purchase order, from 1.")],
    quantity: Annotated[str, typer.Argument(help="Quantity received, in the item's unit, such as 12 or 12.5.")],
    location: Annotated[str, typer.Option(help="Location code the goods are put away at; default: the line's destination.")] = "",
    bin_code: Annotated[str, typer.Option("--bin", help="Bin code inside that location; default: the location itself.")] = "",
    delivery: Annotated[
        str, typer.Option(help="Delivery note reference; a second receipt of the same delivery on one line is rejected.")
    ] = "",
    idempotency_key: IdempotencyKeyOption = None,
) -> None:
    """Receive goods against a purchase order line, within the policy's over-receipt tolerance."""
    settings = settings_of(ctx)

    async def step() -> tuple[ReceiptOut, str | None]:
        async with signed_in(settings) as (app, caller):
            return await keyed(
                receiving.receive(
                    app,
                    caller,
                    purchase_order=purchase_order,
                    line_no=line_no,
                    quantity=quantity,
                    location=location,
                    bin_code=bin_code,
                    delivery=delivery,
                    idempotency_key=idempotency_key,
                )
            )

    receipt, replayed = execute(step)
    if replayed is not None:
        print_replayed_receipt(receipt, replayed)
        return
    where = _where(receipt)
    say(
        f"Received {receipt.quantity} {receipt.sku} on {receipt.purchase_order} line {receipt.line_no} at {where} "
        f"(receiving event {receipt.receiving_event_id}, movement {receipt.movement_id}).",
        style="green",
    )
    say(
        f"Line {receipt.line_no}: {receipt.received_total} of {receipt.ordered} received, {receipt.outstanding} outstanding. "
        f"{receipt.purchase_order} is {receipt.purchase_order_status}."
    )
    # Without a bin the figure leaves out the stock in the location's bins, so the line names that.
    place = where if receipt.bin else f"{receipt.location} outside its bins"
    say(f"On hand of {receipt.sku} at {place}: {receipt.on_hand}.")


def _where(receipt: ReceiptOut) -> str:
    return receipt.location + (f" bin {receipt.bin}" if receipt.bin else "")


def print_replayed_receipt(receipt: ReceiptOut, key: str) -> None:
    """Print a replayed receipt: nothing was received now, and the figures are those stored by the first receipt."""
    where = _where(receipt)
    say(
        f"Nothing received: idempotency key {key!r} already recorded this receipt (receiving event "
        f"{receipt.receiving_event_id}, movement {receipt.movement_id}), so this is a replay of it.",
        style="yellow",
    )
    say(
        f"Stored figures of that earlier receipt: {receipt.quantity} {receipt.sku} received on {receipt.purchase_order} "
        f"line {receipt.line_no} at {where}."
    )
    say(
        f"As of that receipt: line {receipt.line_no} had {receipt.received_total} of {receipt.ordered} received, "
        f"{receipt.outstanding} outstanding; {receipt.purchase_order} was {receipt.purchase_order_status}; on hand of "
        f"{receipt.sku} at {where} was {receipt.on_hand}."
    )

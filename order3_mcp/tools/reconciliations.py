"""The reconciliation tool: an agent proposes one step that settles a mismatch or sync conflict exception."""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import BeforeValidator, Field

from order3_mcp.app import Caller, Order3
from order3_mcp.schemas import DraftDetail
from order3_mcp.services import reconciliations
from order3_mcp.services.reconciliations import MAX_TITLE
from order3_mcp.tools._common import DRAFT, IdempotencyKey, guarded
from order3_mcp.tools.drafts import Rationale
from store.types import MAX_FIXED, SCALE_DIGITS

_SIGNED_DECIMAL = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def parse_figure(value: Any) -> Decimal:
    """Return a figure copied from an exception's evidence as an exact Decimal; it may be zero or negative.

    Raises:
        ValueError: With a message naming the value and the accepted form.
    """
    if isinstance(value, bool):
        raise ValueError(f"figure {value!r} is a boolean; copy the decimal string from the exception evidence, such as \"12.5\"")  # noqa: TRY004
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float) and math.isfinite(value):
        number = Decimal(repr(value))
    elif isinstance(value, str) and _SIGNED_DECIMAL.match(value):
        number = Decimal(value)
    else:
        shown = value if not isinstance(value, str) or len(value) < 40 else value[:40] + "…"
        raise ValueError(
            f"figure {shown!r} is not a plain decimal number; copy it from the exception evidence, such as \"12.5\" or \"-3\""
        )
    if abs(number) > MAX_FIXED:
        raise ValueError(f"figure {number} is out of range")
    if number != number.quantize(Decimal(1).scaleb(-SCALE_DIGITS)):
        raise ValueError(f"figure {number} has more than {SCALE_DIGITS} decimal places")
    return number


Figure = Annotated[Decimal, BeforeValidator(parse_figure)]


def register(server: MCPServer, app: Order3, caller: Caller) -> None:
    """Register draft_reconciliation."""

    @server.tool(annotations=DRAFT)
    async def draft_reconciliation(
        exception_id: Annotated[int, Field(description="Id of the mismatch or sync_conflict exception to settle.", strict=True, ge=1)],
        action: Annotated[
            Literal["adjust_ours", "accept_ours"],
            Field(
                description="adjust_ours makes Order3 match the source: for a mismatch, stock at the exception's "
                "location moves by reported − ours (channel quantities only); for a sync conflict, the source's "
                "differing values are written to Order3's record. accept_ours keeps Order3's figure or values: "
                "a mismatch's snapshot is acknowledged, a sync conflict is closed."
            ),
        ],
        rationale: Rationale,
        reported: Annotated[
            Figure | None,
            Field(description="Mismatch only: the external figure you saw, the evidence's `reported`, as a decimal string."),
        ] = None,
        ours: Annotated[
            Figure | None,
            Field(description="Mismatch only: Order3's figure you saw, the evidence's `ours`, as a decimal string."),
        ] = None,
        our_version: Annotated[
            str, Field(description="Sync conflict only: the evidence's `our_version`, Order3's record version you saw.", max_length=60)
        ] = "",
        their_version: Annotated[
            str, Field(description="Sync conflict only: the evidence's `their_version`, the source's version you saw.", max_length=60)
        ] = "",
        bin: Annotated[str, Field(description="Mismatch adjust_ours only: bin code at the location; empty for stock held at the location itself.", max_length=120)] = "",
        title: Annotated[str, Field(description="Short title; empty for a generated one.", max_length=MAX_TITLE)] = "",
        idempotency_key: IdempotencyKey = None,
    ) -> DraftDetail:
        """Prepare one reconciliation step for a mismatch or sync conflict exception. Nothing changes until a person approves it; if what you saw changed by then, the draft fails."""
        return await guarded(
            reconciliations.draft_reconciliation(
                app,
                caller,
                exception_id=exception_id,
                action=action,
                reported=reported,
                ours=ours,
                our_version=our_version,
                their_version=their_version,
                bin=bin,
                rationale=rationale,
                title=title,
                idempotency_key=idempotency_key,
            )
        )

"""Execution of each draft kind through its normal inventory flow.

Each kind registers a `KindExecutor`: `revalidate` returns why the draft can no
longer run (empty when it can), and `perform` writes the effect and returns the
result fields stored on the draft and the records it touched. Both run inside
the execute transaction, so a failure writes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Draft

if TYPE_CHECKING:
    from order3_mcp.app import Caller, Order3

Performed = tuple[dict[str, Any], list[dict[str, Any]]]


@dataclass(frozen=True)
class KindExecutor:
    """The revalidation and the effect of one draft kind at execution."""

    revalidate: Callable[[AsyncSession, Draft], Awaitable[str]]
    perform: Callable[[AsyncSession, Order3, Caller, Draft], Awaitable[Performed]]


def executors() -> dict[str, KindExecutor]:
    """Return the executor of every draft kind this version can carry out."""
    from order3_mcp.services.kinds import (
        adjustment,
        count_task,
        purchase_order,
        reconciliation,
        supplier_note,
        transfer,
    )

    return {
        "purchase_order": purchase_order.EXECUTOR,
        "transfer": transfer.EXECUTOR,
        "count_task": count_task.EXECUTOR,
        "supplier_note": supplier_note.EXECUTOR,
        "reconciliation": reconciliation.EXECUTOR,
        "adjustment": adjustment.EXECUTOR,
    }

"""Recent counts and reservations added to exception evidence, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from store.db import Database
from store.finders import add_item_context, context, find_low_stock
from store.models import CountResult, Location, Reservation
from tests.factory import small_workspace
from tests.test_exception_lifecycle import add_reorder_rule


@pytest.mark.parametrize("bound_ids", [5_000, 0], ids=["ids bound", "whole workspace"])
async def test_evidence_lists_recent_context(any_database: Database, monkeypatch, bound_ids: int) -> None:
    # With 0 ids bound per statement, the context is read in one pass over the workspace.
    monkeypatch.setattr(context, "_CHUNK", bound_ids)
    tokens = await small_workspace(any_database)
    await add_reorder_rule(any_database, reorder_point="20", max_level="60")
    async with any_database.write() as session:
        wh1 = (await session.execute(select(Location).where(Location.code == "WH1"))).scalar_one()
        for day, counted in ((1, "7"), (2, "6.5"), (3, "5"), (4, "5")):
            session.add(
                CountResult(
                    workspace_id=wh1.workspace_id, item_id=1, location_id=wh1.id, counted_quantity=Decimal(counted),
                    system_quantity=Decimal(5), variance=Decimal(counted) - 5, actor="counter",
                    counted_at=datetime(2026, 3, day, 8, 30, tzinfo=UTC),
                )
            )
        session.add(
            Reservation(workspace_id=wh1.workspace_id, item_id=1, location_id=wh1.id, quantity=Decimal("1.25"), reference="SO-7")
        )

    async with any_database.read() as session:
        found = await find_low_stock(session, workspace_id=tokens.agent.workspace_id, now=datetime(2026, 3, 5, tzinfo=UTC))
        [finding] = await add_item_context(session, workspace_id=tokens.agent.workspace_id, findings=found)

    # The three newest counts, newest first; the oldest (day 1) is left out.
    assert finding.evidence["recent_counts"] == [
        {"counted_at": "2026-03-04T08:30:00+00:00", "location": "WH1", "counted": "5", "system": "5", "variance": "0", "source": "count"},
        {"counted_at": "2026-03-03T08:30:00+00:00", "location": "WH1", "counted": "5", "system": "5", "variance": "0", "source": "count"},
        {"counted_at": "2026-03-02T08:30:00+00:00", "location": "WH1", "counted": "6.5", "system": "5", "variance": "1.5", "source": "count"},
    ]
    assert finding.evidence["recent_reservations"] == [
        {"reference": "SO-7", "location": "WH1", "quantity": "1.25", "status": "active"}
    ]

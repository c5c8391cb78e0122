"""Location and supplier codes match case-insensitively and literally."""

from __future__ import annotations

import pytest

from store.catalog import get_location_by_code, get_supplier_by_code
from store.db import Database
from store.errors import NotFoundError
from tests.factory import small_workspace


async def test_codes_match_whatever_their_case(database: Database) -> None:
    tokens = await small_workspace(database)
    async with database.read() as session:
        supplier = await get_supplier_by_code(session, workspace_id=tokens.agent.workspace_id, code=" acme ")
        location = await get_location_by_code(session, workspace_id=tokens.agent.workspace_id, code="wh1")
    assert (supplier.code, location.code) == ("ACME", "WH1")


@pytest.mark.parametrize("pattern", ["A%", "AC_E", "%", "WH_"])
async def test_like_wildcards_in_a_code_match_nothing(database: Database, pattern: str) -> None:
    tokens = await small_workspace(database)
    async with database.read() as session:
        with pytest.raises(NotFoundError, match="does not exist"):
            if pattern.startswith("WH"):
                await get_location_by_code(session, workspace_id=tokens.agent.workspace_id, code=pattern)
            else:
                await get_supplier_by_code(session, workspace_id=tokens.agent.workspace_id, code=pattern)

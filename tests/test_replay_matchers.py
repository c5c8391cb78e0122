"""Replay expectation matching and step references."""

from __future__ import annotations

from typing import Any

import pytest

from order3_mcp.replay.clock import (
    FixedClock,
    environment_clock,
    parse_duration,
    parse_moment,
)
from order3_mcp.replay.matchers import first_difference
from order3_mcp.replay.references import UnresolvedReference, resolve
from store.errors import InvalidInputError


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        ({"status": "executed"}, {"status": "executed", "kind": "transfer"}),
        ([1, 2], [1, 2]),
        ({"$match": "^PO-\\d+$"}, "PO-000001"),
        ({"$type": "integer"}, 7),
        ({"$type": "null"}, None),
        ({"$len": 2}, ["a", "b"]),
        ({"$contains": "late"}, "11 days late"),
        ({"$contains": {"sku": "B"}}, [{"sku": "A"}, {"sku": "B", "qty": "1"}]),
        ({"$decimal": "5"}, "5.000"),
        ({"lines": [{"sku": {"$match": "W"}}]}, {"lines": [{"sku": "WIDGET-1"}]}),
    ],
)
def test_expectation_matches(expected: Any, actual: Any) -> None:
    assert first_difference(expected, actual) is None


@pytest.mark.parametrize(
    ("expected", "actual", "path", "reason"),
    [
        ({"status": "executed"}, {"status": "approved"}, "status", ""),
        ({"a": {"b": 1}}, {"a": {}}, "a.b", "is missing"),
        ({"lines": [{"sku": "A"}]}, {"lines": [{"sku": "B"}]}, "lines[0].sku", ""),
        ([1], [1, 2], "", "has 2 elements, not 1"),
        ({"$type": "integer"}, True, "", "is of type boolean"),
        ({"$type": "string"}, 5, "", "is of type integer"),
        ({"$len": 3}, [1], "", "has length 1"),
        ({"$match": "^x"}, 5, "", "does not match the pattern"),
        ({"$contains": {"sku": "C"}}, [{"sku": "A"}], "", "has no matching element"),
        ({"$decimal": "5"}, "five", "", "is not that number"),
        (1, True, "", ""),
        ("5", 5, "", ""),
    ],
)
def test_expectation_mismatch_names_path(expected: Any, actual: Any, path: str, reason: str) -> None:
    found = first_difference(expected, actual)

    assert found is not None
    assert (found.path, found.reason) == (path, reason)


def test_references_resolve_step_outputs() -> None:
    outputs = {"draft1": {"id": 4, "result": {"lines": [{"sku": "WIDGET-1"}]}}}

    resolved = resolve({"draft_id": "$steps.draft1.id", "sku": "$steps.draft1.result.lines.0.sku", "text": "$$steps.x"}, outputs)

    assert resolved == {"draft_id": 4, "sku": "WIDGET-1", "text": "$steps.x"}


def test_reference_to_missing_field_raises() -> None:
    with pytest.raises(UnresolvedReference, match="step 'draft1' has no 'lines'"):
        resolve("$steps.draft1.result.lines.0", {"draft1": {"result": {}}})


def test_durations_and_moments() -> None:
    clock = FixedClock(parse_moment("2026-12-01T09:00:00+01:00"))

    clock.advance(parse_duration("1d12h"))

    assert clock().isoformat() == "2026-12-02T20:00:00+00:00"
    with pytest.raises(InvalidInputError, match="cannot move back"):
        clock.move_to(parse_moment("2026-12-01T00:00:00Z"))


@pytest.mark.parametrize("text", ["2 days", "0d", "d", ""])
def test_invalid_duration_is_refused(text: str) -> None:
    with pytest.raises(InvalidInputError, match="Duration"):
        parse_duration(text)


def test_clock_variable_fixes_command_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER3_CLOCK", "2026-12-01T09:00:00+01:00")

    assert environment_clock()().isoformat() == "2026-12-01T08:00:00+00:00"


def test_clock_variable_without_offset_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER3_CLOCK", "2026-12-01T09:00:00")

    with pytest.raises(InvalidInputError, match="ORDER3_CLOCK '2026-12-01T09:00:00' has no UTC offset"):
        environment_clock()

"""Expectation matching: exact values, partial objects, and the $match, $type, $len, $contains and $decimal matchers.

`first_difference(expected, actual)` walks both values and returns the first
place they disagree, so a report can name one field path with both values.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

MATCHERS = ("$match", "$type", "$len", "$contains", "$decimal")
TYPE_NAMES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "object": (dict,),
    "array": (list,),
}
# Longest rendering of one value in a report line.
MAX_VALUE_TEXT = 300


@dataclass(frozen=True)
class Mismatch:
    """The first place where an expectation and the actual value differ."""

    path: str
    expected: Any
    actual: Any
    reason: str = ""


def render(value: Any) -> str:
    """Return a value as stable, compact JSON for a report, cut to MAX_VALUE_TEXT characters."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= MAX_VALUE_TEXT else text[: MAX_VALUE_TEXT - 1] + "…"


def join(path: str, key: Any) -> str:
    """Return the field path of `key` under `path`: result.lines[0].sku."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def is_matcher(value: Any) -> bool:
    """Return True for a one-key object whose key is a matcher name."""
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in MATCHERS


def _type_of(value: Any) -> str:
    for name, classes in TYPE_NAMES.items():
        if isinstance(value, classes) and not (name in ("integer", "number") and isinstance(value, bool)):
            return name
    return type(value).__name__


def _match_operator(name: str, argument: Any, actual: Any, path: str) -> Mismatch | None:
    if name == "$match":
        if not isinstance(actual, str) or re.search(str(argument), actual) is None:
            return Mismatch(path, {"$match": argument}, actual, "does not match the pattern")
        return None
    if name == "$type":
        if _type_of(actual) != argument:
            return Mismatch(path, {"$type": argument}, actual, f"is of type {_type_of(actual)}")
        return None
    if name == "$len":
        if not isinstance(actual, (str, list, dict)) or len(actual) != argument:
            size = len(actual) if isinstance(actual, (str, list, dict)) else "no"
            return Mismatch(path, {"$len": argument}, actual, f"has length {size}")
        return None
    if name == "$decimal":
        try:
            same = Decimal(str(actual)) == Decimal(str(argument))
        except (InvalidOperation, ValueError):
            same = False
        return None if same else Mismatch(path, {"$decimal": argument}, actual, "is not that number")
    # $contains: a substring of a string, or an element of a list that matches the argument.
    if isinstance(actual, str) and isinstance(argument, str):
        return None if argument in actual else Mismatch(path, {"$contains": argument}, actual, "does not contain the text")
    if isinstance(actual, list):
        if any(first_difference(argument, element, path) is None for element in actual):
            return None
        return Mismatch(path, {"$contains": argument}, actual, "has no matching element")
    return Mismatch(path, {"$contains": argument}, actual, "is neither a string nor a list")


def first_difference(expected: Any, actual: Any, path: str = "") -> Mismatch | None:
    """Return the first mismatch between an expectation and a value, or None when the value satisfies it.

    Objects match partially (keys the expectation leaves out are ignored), lists
    match element by element and must have the same length, and everything else
    must be equal. A matcher object tests the value instead of comparing it.
    """
    if is_matcher(expected):
        name, argument = next(iter(expected.items()))
        return _match_operator(name, argument, actual, path)
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return Mismatch(path, expected, actual, "is not an object")
        for key, value in expected.items():
            if key not in actual:
                return Mismatch(join(path, key), value, None, "is missing")
            found = first_difference(value, actual[key], join(path, key))
            if found is not None:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return Mismatch(path, expected, actual, "is not a list")
        for index, (want, have) in enumerate(zip(expected, actual)):
            found = first_difference(want, have, join(path, index))
            if found is not None:
                return found
        if len(expected) != len(actual):
            return Mismatch(path, expected, actual, f"has {len(actual)} elements, not {len(expected)}")
        return None
    if isinstance(expected, bool) or isinstance(actual, bool):
        same = type(expected) is type(actual) and expected == actual
    else:
        same = expected == actual
    return None if same else Mismatch(path, expected, actual)

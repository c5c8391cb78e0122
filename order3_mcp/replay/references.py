"""Step references: `$steps.ID.PATH` strings in arguments and expectations, replaced by an earlier step's output."""

from __future__ import annotations

from typing import Any

from order3_mcp.replay.format import REFERENCE


class UnresolvedReference(Exception):
    """A reference names an output the earlier step did not produce, for example because that step failed."""

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f"{reference}: {reason}")
        self.reference = reference
        self.reason = reason


def lookup(outputs: dict[str, dict[str, Any]], text: str) -> Any:
    """Return the value a `$steps.` reference points at.

    Raises:
        UnresolvedReference: If the step has no output or the path does not exist in it.
    """
    match = REFERENCE.match(text)
    if match is None:
        raise UnresolvedReference(text, "it is not a step reference")
    step_id, rest = match.group(1), match.group(2)
    if step_id not in outputs:
        raise UnresolvedReference(text, f"step {step_id!r} produced no output")
    value: Any = outputs[step_id]
    for part in rest.split(".")[1:]:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise UnresolvedReference(text, f"step {step_id!r} has no {part!r} at this point of its output")
    return value


def resolve(value: Any, outputs: dict[str, dict[str, Any]]) -> Any:
    """Return `value` with every reference replaced and every `$$steps` escape turned into the literal `$steps`.

    Raises:
        UnresolvedReference: If a reference cannot be resolved.
    """
    if isinstance(value, str):
        if value.startswith("$$steps"):
            return value[1:]
        if value.startswith("$steps"):
            return lookup(outputs, value)
        return value
    if isinstance(value, dict):
        return {key: resolve(item, outputs) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, outputs) for item in value]
    return value

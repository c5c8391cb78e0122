"""Scenario and dataset files: reading YAML or JSON, validating against the shipped JSON Schemas, and the checks a schema cannot express."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from order3_mcp.replay.clock import parse_duration, parse_moment
from store.errors import InvalidInputError
from store.workspaces import check_timezone

FORMAT_VERSION = 1
SCENARIO_SUFFIXES = (".yaml", ".yml", ".json")
STEP_KINDS = ("tool", "cli", "sync", "advance", "to", "tamper")
# A string that is exactly a reference to an earlier step's output, such as $steps.draft1.result.lines.0.sku.
REFERENCE = re.compile(r"^\$steps\.([A-Za-z][A-Za-z0-9_-]*)((?:\.[^.]+)*)$")
# Problems listed for one file before the rest are summarised.
MAX_PROBLEMS = 10


@dataclass(frozen=True)
class Problem:
    """One reason a scenario or dataset file is invalid: where, what, and how to fix it."""

    file: str
    pointer: str
    message: str
    fix: str

    def render(self) -> str:
        """Return the problem as one line: FILE at POINTER: MESSAGE. Fix: FIX"""
        where = f"{self.file} at {self.pointer or '/'}"
        return f"{where}: {self.message}. Fix: {self.fix}"


class ScenarioFileError(InvalidInputError):
    """A scenario or dataset file is unreadable or breaks the format; the CLI exits with 2 and lists the problems."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = [problem.render() for problem in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            lines.append(f"... and {len(problems) - MAX_PROBLEMS} more problems in the same file.")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class TokenSpec:
    """A token the scenario creates: its principal, kind, role, the person it acts for, and its workspace."""

    name: str
    kind: str
    role: str
    on_behalf_of: str
    principal: str
    workspace: str | None


@dataclass(frozen=True)
class Dataset:
    """A validated dataset document and the directory its relative paths start from."""

    source: str
    base_dir: Path
    document: dict[str, Any]

    @property
    def inventree(self) -> Path | None:
        """The InvenTree export to import, if the dataset names one."""
        value = self.document.get("inventree")
        return (self.base_dir / value).resolve() if value else None


@dataclass(frozen=True)
class Scenario:
    """A validated scenario: the steps stay plain dicts, exactly as the schema allows them."""

    path: Path
    label: str
    name: str
    description: str
    dataset: Dataset
    now: datetime
    timezone: str | None
    policy: Path | None
    tokens: dict[str, TokenSpec]
    steps: list[dict[str, Any]] = field(default_factory=list)


class _PlainLoader(yaml.SafeLoader):
    """A safe YAML loader that keeps unquoted timestamps as strings, so `now: 2026-12-01T09:00:00Z` stays text."""


_PlainLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Return a JSON Schema shipped in this package: scenario.schema.json or dataset.schema.json."""
    return json.loads(resources.files("order3_mcp.replay").joinpath(name).read_text(encoding="utf-8"))


def read_document(path: Path, *, label: str) -> Any:
    """Parse a YAML or JSON file.

    Raises:
        ScenarioFileError: If the file cannot be read or parsed.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioFileError([Problem(label, "", "the file does not exist", "check the path")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioFileError([Problem(label, "", f"the file cannot be read ({exc})", "pass a UTF-8 text file")]) from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.load(text, Loader=_PlainLoader)
    except json.JSONDecodeError as exc:
        raise ScenarioFileError(
            [Problem(label, "", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", "correct the JSON syntax")]
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise ScenarioFileError([Problem(label, "", f"invalid YAML{where}: {reason}", "correct the YAML syntax")]) from None


def pointer_of(parts: Any) -> str:
    """Return the JSON pointer (RFC 6901) of a path of keys and indexes."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def _schema_problem(label: str, error: ValidationError) -> Problem:
    """Turn a jsonschema error into a problem whose fix names what to write instead."""
    pointer = pointer_of(error.absolute_path)
    validator = error.validator
    value = error.validator_value
    if validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        name = missing[0] if missing else "a field"
        return Problem(label, pointer, f"the required field {name!r} is missing", f"add {name!r}")
    if validator == "additionalProperties":
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {}))) if isinstance(error.instance, dict) else []
        names = ", ".join(repr(name) for name in extra)
        return Problem(label, pointer, f"unknown field {names}", f"remove or rename it; allowed fields here: {allowed}")
    if validator == "anyOf" and pointer.startswith("/steps/"):
        return Problem(
            label, pointer, "the step has no kind", f"give the step exactly one of {', '.join(STEP_KINDS)}"
        )
    if validator in ("minProperties", "maxProperties") and re.search(r"/state/\d+$", pointer):
        return Problem(
            label, pointer, "a state check needs exactly one target and 'expect'",
            "write one of stock, draft, purchase_order, exceptions, outbox, movements, item, supplier, activity, with expect",
        )
    if validator == "enum":
        return Problem(label, pointer, f"{error.instance!r} is not allowed", f"use one of {', '.join(map(str, value))}")
    if validator == "const":
        return Problem(label, pointer, f"{error.instance!r} is not supported", f"write {value!r}")
    if validator == "type":
        kinds = value if isinstance(value, list) else [value]
        return Problem(label, pointer, f"{error.instance!r} is not of type {' or '.join(kinds)}", f"write a {' or '.join(kinds)}")
    if validator == "pattern":
        hint = "a duration such as 2d, 36h or 1d12h" if pointer.endswith("/advance") else f"a value matching {value}"
        return Problem(label, pointer, f"{error.instance!r} has the wrong form", f"write {hint}")
    if validator in ("minItems", "minProperties", "minLength"):
        return Problem(label, pointer, "the value is empty or too short", f"give at least {value} entries or characters")
    if validator in ("maxProperties", "oneOf"):
        return Problem(label, pointer, error.message, "keep exactly one of the alternatives")
    return Problem(label, pointer, error.message, "correct the value as docs/replay.md describes")


def validate(document: Any, *, schema_name: str, label: str) -> None:
    """Validate a document against a shipped schema.

    Raises:
        ScenarioFileError: Listing every problem, ordered by JSON pointer.
    """
    validator = Draft202012Validator(load_schema(schema_name))
    errors = sorted(validator.iter_errors(document), key=lambda error: (pointer_of(error.absolute_path), error.message))
    problems = []
    seen = set()
    for error in errors:
        problem = _schema_problem(label, error)
        if (problem.pointer, problem.message) not in seen:
            seen.add((problem.pointer, problem.message))
            problems.append(problem)
    if problems:
        raise ScenarioFileError(problems)


def load_dataset(value: str | dict[str, Any], *, scenario_dir: Path, label: str) -> Dataset:
    """Load and validate the dataset a scenario names, a file path relative to the scenario, or an inline one.

    Raises:
        ScenarioFileError: If the dataset file is missing or invalid.
    """
    if isinstance(value, dict):
        validate(value, schema_name="dataset.schema.json", label=f"{label} (inline dataset)")
        return Dataset(source=f"{label} (inline dataset)", base_dir=scenario_dir, document=value)

    path = (scenario_dir / value).resolve()
    if not path.is_file():
        raise ScenarioFileError(
            [Problem(label, "/dataset", f"dataset file {value!r} does not exist", "give a path relative to the scenario file")]
        )
    document = read_document(path, label=value)
    validate(document, schema_name="dataset.schema.json", label=value)
    return Dataset(source=value, base_dir=path.parent, document=document)


def walk_references(value: Any, parts: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """Return (path, step id) for every `$steps.` reference inside `value`."""
    found: list[tuple[tuple[Any, ...], str]] = []
    if isinstance(value, str):
        match = REFERENCE.match(value)
        if match:
            found.append((parts, match.group(1)))
        elif value.startswith("$steps"):
            found.append((parts, ""))
    elif isinstance(value, dict):
        for key, item in value.items():
            found.extend(walk_references(item, (*parts, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(walk_references(item, (*parts, index)))
    return found


def read_batch(scenario_dir: Path, name: str) -> dict[str, Any]:
    """Read a sync batch file named by a scenario, JSON or YAML.

    Raises:
        ScenarioFileError: If the file is unreadable or not an object with source, batch_id and records.
    """
    batch = read_document(scenario_dir / name, label=name)
    if not isinstance(batch, dict) or not {"source", "batch_id", "records"} <= set(batch):
        raise ScenarioFileError(
            [Problem(name, "", "the batch is not an object with source, batch_id and records", "write a batch as docs/sync.md describes")]
        )
    return batch


def _check_batch_file(label: str, pointer: str, scenario_dir: Path, name: str) -> list[Problem]:
    if not (scenario_dir / name).is_file():
        return [Problem(label, pointer, f"batch file {name!r} does not exist", "give a path relative to the scenario file")]
    try:
        read_batch(scenario_dir, name)
    except ScenarioFileError as exc:
        return exc.problems
    return []


def _check_steps(label: str, document: dict[str, Any], scenario_dir: Path, start: datetime) -> list[Problem]:
    """Check what the schema cannot: token names, unique step ids, references to earlier steps, files and times."""
    problems: list[Problem] = []
    tokens = set(document["tokens"])
    known_ids: set[str] = set()
    moment = start
    for index, step in enumerate(document["steps"]):
        where = f"/steps/{index}"
        if "as" in step and step["as"] not in tokens:
            problems.append(Problem(label, f"{where}/as", f"token {step['as']!r} is not declared", f"use one of {', '.join(sorted(tokens))} or add it under tokens"))
        for parts, target in walk_references({key: value for key, value in step.items() if key != "id"}):
            pointer = where + pointer_of(parts)
            if not target:
                problems.append(Problem(label, pointer, "the reference is malformed", "write $steps.STEP_ID.result.FIELD, or $$steps for the literal text"))
            elif target not in known_ids:
                problems.append(Problem(label, pointer, f"step {target!r} is not an earlier step", "reference the id of a step that runs before this one"))
        if "sync" in step and "file" in step["sync"]:
            problems.extend(_check_batch_file(label, f"{where}/sync/file", scenario_dir, step["sync"]["file"]))
        if "advance" in step:
            try:
                moment += parse_duration(step["advance"])
            except InvalidInputError as exc:
                problems.append(Problem(label, f"{where}/advance", exc.message.rstrip("."), "write a duration such as 2d"))
        if "to" in step:
            try:
                target_time = parse_moment(step["to"], what="to")
            except InvalidInputError as exc:
                problems.append(Problem(label, f"{where}/to", exc.message.rstrip("."), "write an ISO 8601 time with an offset"))
            else:
                if target_time < moment:
                    problems.append(Problem(label, f"{where}/to", f"{step['to']} is before the clock's time then ({moment.isoformat()})", "move the clock forward only"))
                moment = max(moment, target_time)
        step_id = step.get("id")
        if step_id is not None:
            if step_id in known_ids:
                problems.append(Problem(label, f"{where}/id", f"step id {step_id!r} is used twice", "give each step its own id"))
            known_ids.add(step_id)
    return problems


def load_scenario(path: Path, *, label: str | None = None) -> Scenario:
    """Read and validate a scenario file, its dataset and its policy file.

    Raises:
        ScenarioFileError: If any of them is unreadable or invalid; nothing is run.
    """
    label = label or str(path)
    document = read_document(path, label=label)
    validate(document, schema_name="scenario.schema.json", label=label)
    scenario_dir = path.resolve().parent

    problems: list[Problem] = []
    try:
        now = parse_moment(document["now"], what="now")
    except InvalidInputError as exc:
        problems.append(Problem(label, "/now", exc.message.rstrip("."), "write an ISO 8601 time with an offset, such as 2026-12-01T09:00:00+00:00"))
        now = parse_moment("2000-01-01T00:00:00+00:00")
    timezone = document.get("timezone")
    if timezone is not None:
        try:
            check_timezone(timezone)
        except InvalidInputError as exc:
            problems.append(Problem(label, "/timezone", exc.message.rstrip("."), "use an IANA timezone name"))
    policy = None
    if "policy" in document:
        policy = (scenario_dir / document["policy"]).resolve()
        if not policy.is_file():
            problems.append(Problem(label, "/policy", f"policy file {document['policy']!r} does not exist", "give a path relative to the scenario file"))
    for name, spec in document["tokens"].items():
        if spec.get("for") and spec["kind"] == "user":
            problems.append(Problem(label, f"/tokens/{name}/for", "a user token acts for itself", "remove 'for', or make the token an agent or integration"))
    problems.extend(_check_steps(label, document, scenario_dir, now))
    if problems:
        raise ScenarioFileError(problems)

    dataset = load_dataset(document["dataset"], scenario_dir=scenario_dir, label=label)
    tokens = {
        name: TokenSpec(
            name=name,
            kind=spec["kind"],
            role=spec["role"],
            on_behalf_of=spec.get("for", ""),
            principal=spec.get("principal", name),
            workspace=spec.get("workspace"),
        )
        for name, spec in document["tokens"].items()
    }
    return Scenario(
        path=path,
        label=label,
        name=document["name"],
        description=document.get("description", ""),
        dataset=dataset,
        now=now,
        timezone=timezone,
        policy=policy,
        tokens=tokens,
        steps=document["steps"],
    )


def collect_paths(paths: list[Path]) -> list[Path]:
    """Expand directories into their scenario files (.yaml, .yml, .json, searched recursively), in sorted order.

    Raises:
        ScenarioFileError: If a path does not exist or a directory contains no scenario file.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SCENARIO_SUFFIXES)
            if not files:
                raise ScenarioFileError([Problem(str(path), "", "the directory contains no .yaml, .yml or .json file", "pass a scenario directory such as fixtures/scenarios")])
            found.extend(files)
        elif path.is_file():
            found.append(path)
        else:
            raise ScenarioFileError([Problem(str(path), "", "the path does not exist", "pass a scenario file or a directory of them")])
    return found

"""Approval rules: loading a policy file and matching a draft to a rule.

A policy file is TOML with three tables. Unknown keys anywhere are errors, so a
typo cannot silently widen a rule::

    [policy]
    name = "default"          # shown with the version in each draft's policy fingerprint
    version = "1"

    [[rules]]                 # checked in file order; the first rule that matches wins
    id = "po-up-to-5000"      # unique; recorded on the draft
    kinds = ["purchase_order"]
    max_value = "5000"        # optional, inclusive upper bound on the draft's value
    min_value = "0"           # optional, exclusive lower bound
    suppliers = ["DIGIKEY"]   # optional; the draft's supplier code must be listed
    locations = ["FACTORY"]   # optional; every location of the draft must be listed
    approver_roles = ["buyer", "admin"]
    approvals = 1             # distinct approvers needed
    auto_execute = true       # optional, default false: execute once the last approval lands
    expires_after_hours = 72  # optional; the approval window, counted from draft creation
    max_quantity_share = "0.10"        # optional, transfers/adjustments/reconciliations: |change| / on hand
    max_supplier_daily_spend = "5000"  # optional, purchase orders: the supplier's spend that business day

    [tolerances]              # optional; see policies.tolerances for the keys
    count_drift_abs = "2"

A draft's value is its estimated spend, or the absolute change in inventory
value, in the workspace's base currency. Money is written as a string (or an
integer) because TOML floats are binary and inexact. A draft that no rule
matches cannot be approved.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from policies.conditions import (
    QuantityChange,
    parse_quantity_share,
    parse_supplier_daily_spend,
    quantity_share_unmet,
    supplier_spend_unmet,
)
from policies.errors import PolicyError
from policies.scopes import ROLES
from policies.tolerances import Tolerances, parse_decimal, parse_tolerances

# Kept equal to store.models.drafts.DRAFT_KINDS by hand (a test compares them), because
# policies may not import store.
DRAFT_KINDS = (
    "purchase_order",
    "transfer",
    "count_task",
    "supplier_note",
    "reconciliation",
    "adjustment",
)

# Bounds that keep a rule satisfiable and its expiry a representable date.
MAX_APPROVALS = 20
MAX_EXPIRY_HOURS = 24 * 366 * 10

_TOP_LEVEL_KEYS = ("policy", "rules", "tolerances")
_POLICY_KEYS = ("name", "version")
_RULE_KEYS = (
    "id",
    "kinds",
    "max_value",
    "min_value",
    "suppliers",
    "locations",
    "approver_roles",
    "approvals",
    "auto_execute",
    "expires_after_hours",
    "max_quantity_share",
    "max_supplier_daily_spend",
)
_REQUIRED_RULE_KEYS = ("id", "kinds", "approver_roles", "approvals")

# Lengths of the draft columns that store the fingerprint and the rule id.
_MAX_NAME_LENGTH = 60
_MAX_VERSION_LENGTH = 40
_MAX_RULE_ID_LENGTH = 120

_APPROVING_ROLES = tuple(role for role, scopes in ROLES.items() if "approve" in scopes)


@dataclass(frozen=True)
class DraftFacts:
    """Facts about a draft that rules match on: kind, value, supplier, locations, stock shares and day spend."""

    kind: str
    #: Estimated spend or absolute inventory value change, in base currency.
    value: Decimal
    supplier_code: str | None = None
    location_codes: tuple[str, ...] = ()
    #: Each stock change the draft makes, with on hand at its location.
    quantity_changes: tuple[QuantityChange, ...] = ()
    #: Spend of the supplier's other live purchase-order drafts prepared earlier the
    #: same business day, in base currency; None when it was not gathered.
    supplier_day_spend: Decimal | None = None

    def __post_init__(self) -> None:
        if self.kind not in DRAFT_KINDS:
            raise PolicyError(f"Unknown draft kind {self.kind!r}; use one of {', '.join(DRAFT_KINDS)}.")
        if not isinstance(self.value, Decimal) or not self.value.is_finite() or self.value < 0:
            raise PolicyError(
                f"Draft value {self.value!r} is invalid; pass a finite Decimal of 0 or more "
                "(the absolute value change for adjustments and reconciliations)."
            )
        spend = self.supplier_day_spend
        if spend is not None and (not isinstance(spend, Decimal) or not spend.is_finite() or spend < 0):
            raise PolicyError(f"Supplier day spend {spend!r} is invalid; pass a finite Decimal of 0 or more, or None.")


@dataclass(frozen=True)
class Rule:
    """One approval rule: the drafts it matches and who must approve them."""

    id: str
    kinds: tuple[str, ...]
    approver_roles: tuple[str, ...]
    approvals: int
    #: Inclusive upper bound on the draft value; None means no upper bound.
    max_value: Decimal | None = None
    #: Exclusive lower bound on the draft value; None means no lower bound.
    min_value: Decimal | None = None
    #: Supplier codes the draft's supplier must be one of; None matches any draft.
    suppliers: tuple[str, ...] | None = None
    #: Location codes that must include every location of the draft; None matches any draft.
    locations: tuple[str, ...] | None = None
    auto_execute: bool = False
    expires_after_hours: int | None = None
    #: Largest |quantity change| / on hand of any line, inclusive; None means no limit.
    max_quantity_share: Decimal | None = None
    #: Largest spend with the draft's supplier on its business day, inclusive; None means no limit.
    max_supplier_daily_spend: Decimal | None = None

    def matches(self, facts: DraftFacts) -> bool:
        """Return whether every condition of this rule holds for the draft."""
        return not self.unmet_condition(facts)

    def unmet_condition(self, facts: DraftFacts) -> str:
        """Return the first condition of this rule that the draft breaks, as a sentence, or "" if none.

        Codes compare exactly, as the store keeps them. A supplier or location
        condition never matches a draft without a supplier or without locations,
        and a share or day-spend condition never matches a draft without those facts.
        """
        if facts.kind not in self.kinds:
            return f"kind {facts.kind} is not in kinds ({', '.join(self.kinds)})"
        if self.min_value is not None and facts.value <= self.min_value:
            return f"value {facts.value} is not above min_value {self.min_value}"
        if self.max_value is not None and facts.value > self.max_value:
            return f"value {facts.value} is above max_value {self.max_value}"
        if self.suppliers is not None and facts.supplier_code not in self.suppliers:
            return f"supplier {facts.supplier_code or '(none)'} is not in suppliers ({', '.join(self.suppliers)})"
        if self.locations is not None:
            if not facts.location_codes:
                return "the draft names no location, so the locations condition cannot hold"
            outside = [code for code in facts.location_codes if code not in self.locations]
            if outside:
                return f"location {outside[0]} is not in locations ({', '.join(self.locations)})"
        if self.max_quantity_share is not None:
            unmet = quantity_share_unmet(self.max_quantity_share, facts.quantity_changes)
            if unmet:
                return unmet
        if self.max_supplier_daily_spend is not None:
            unmet = supplier_spend_unmet(
                self.max_supplier_daily_spend,
                value=facts.value,
                supplier_code=facts.supplier_code,
                earlier_spend=facts.supplier_day_spend,
            )
            if unmet:
                return unmet
        return ""

    def expires_at(self, created_at: datetime) -> datetime | None:
        """Return when the approval window of a draft created at `created_at` closes."""
        if self.expires_after_hours is None:
            return None
        return created_at + timedelta(hours=self.expires_after_hours)


@dataclass(frozen=True)
class Policy:
    """A parsed policy file."""

    name: str
    version: str
    rules: tuple[Rule, ...]
    #: "name:version:hash12", where hash12 is the start of the SHA-256 of the file, so an
    #: edited file shows as a new version even when `version` was left unchanged.
    fingerprint: str
    #: The file path or label the policy came from, used in error messages.
    source: str = ""
    tolerances: Tolerances = field(default_factory=Tolerances)
    #: SHA-256 of the UTF-8 policy text, in hex.
    sha256: str = ""


def default_policy_path() -> Path:
    """Return the path of the default policy shipped with this package."""
    return Path(__file__).resolve().parent / "default.toml"


def load_policy(path: Path) -> Policy:
    """Read and validate a policy file.

    Raises:
        PolicyError: If the file cannot be read, is not UTF-8 TOML, or breaks a rule
            of the format. The message names the file, the rule, the field and the fix.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"Cannot read policy file {str(path)!r}: {exc.strerror}.") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: policy files must be UTF-8 ({exc.reason} at byte {exc.start}).") from exc
    return parse_policy(text, source=str(path))


def parse_policy(text: str, *, source: str) -> Policy:
    """Parse and validate policy TOML; `source` names the file in error messages.

    Raises:
        PolicyError: On invalid TOML, an unknown key, a missing or invalid field, or
            a duplicate rule id.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: invalid TOML: {exc}.") from exc

    _reject_unknown_keys(document, allowed=_TOP_LEVEL_KEYS, where=source)
    if "policy" not in document:
        raise PolicyError(f'{source}: missing the [policy] table; add one with name = "..." and version = "1".')
    name, version = _parse_header(document["policy"], source=source)

    raw_rules = document.get("rules", [])
    if not isinstance(raw_rules, list):
        raise PolicyError(f"{source}: rules must be an array of tables, each written as [[rules]].")
    rules: list[Rule] = []
    seen_ids: dict[str, int] = {}
    for index, raw_rule in enumerate(raw_rules, start=1):
        rule = _parse_rule(raw_rule, index=index, source=source)
        if rule.id in seen_ids:
            raise PolicyError(
                f"{source}: rule #{index} reuses id {rule.id!r} from rule #{seen_ids[rule.id]}; "
                "give each rule a unique id."
            )
        seen_ids[rule.id] = index
        rules.append(rule)

    tolerances = parse_tolerances(document.get("tolerances", {}), source=source)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Policy(
        name=name,
        version=version,
        rules=tuple(rules),
        fingerprint=f"{name}:{version}:{digest[:12]}",
        source=source,
        tolerances=tolerances,
        sha256=digest,
    )


def match_rule(policy: Policy, facts: DraftFacts) -> Rule | None:
    """Return the first rule, in file order, whose every condition holds for the draft.

    None means no rule matches, so the draft cannot be approved.
    """
    for rule in policy.rules:
        if rule.matches(facts):
            return rule
    return None


def _reject_unknown_keys(table: dict[str, Any], *, allowed: Sequence[str], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise PolicyError(f"{where}: unknown key {unknown[0]!r}; valid keys are {', '.join(allowed)}.")


def _parse_header(table: Any, *, source: str) -> tuple[str, str]:
    where = f"{source} [policy]"
    if not isinstance(table, dict):
        raise PolicyError(f"{source}: policy must be a table, written as [policy].")
    _reject_unknown_keys(table, allowed=_POLICY_KEYS, where=where)

    name = _parse_label(table.get("name"), where=where, field="name", max_length=_MAX_NAME_LENGTH)
    version = _parse_label(table.get("version"), where=where, field="version", max_length=_MAX_VERSION_LENGTH)
    return name, version


def _parse_label(value: Any, *, where: str, field: str, max_length: int) -> str:
    if value is None:
        raise PolicyError(f'{where}: missing {field}; add {field} = "..." as a quoted string.')
    if not isinstance(value, str):
        raise PolicyError(f'{where}: {field} = {value!r} must be a quoted string, such as {field} = "{value}".')
    if not value.strip() or value != value.strip() or len(value) > max_length:
        raise PolicyError(
            f"{where}: {field} = {value!r} is invalid; use 1 to {max_length} characters "
            "without leading or trailing spaces."
        )
    return value


def _parse_rule(raw_rule: Any, *, index: int, source: str) -> Rule:
    if not isinstance(raw_rule, dict):
        raise PolicyError(f"{source}: rule #{index} must be a table, written as [[rules]].")

    rule_id = raw_rule.get("id")
    if isinstance(rule_id, str) and rule_id.strip():
        where = f"{source} rule {rule_id!r}"
    else:
        where = f"{source} rule #{index}"
    _reject_unknown_keys(raw_rule, allowed=_RULE_KEYS, where=where)
    for key in _REQUIRED_RULE_KEYS:
        if key not in raw_rule:
            raise PolicyError(
                f"{where}: missing required field {key!r}; every rule needs {', '.join(_REQUIRED_RULE_KEYS)}."
            )

    rule_id = _parse_label(rule_id, where=where, field="id", max_length=_MAX_RULE_ID_LENGTH)
    kinds = _parse_names(raw_rule["kinds"], where=where, field="kinds", allowed=DRAFT_KINDS)
    approver_roles = _parse_names(
        raw_rule["approver_roles"], where=where, field="approver_roles", allowed=tuple(ROLES)
    )
    for role in approver_roles:
        if role not in _APPROVING_ROLES:
            raise PolicyError(
                f"{where}: approver_roles lists {role!r}, a role without the approve scope, so it "
                f"could never approve; use roles from {', '.join(_APPROVING_ROLES)}."
            )
    approvals = _parse_count(raw_rule["approvals"], where=where, field="approvals", most=MAX_APPROVALS)

    max_value = _parse_optional_decimal(raw_rule, where=where, field="max_value")
    min_value = _parse_optional_decimal(raw_rule, where=where, field="min_value")
    if max_value is not None and min_value is not None and min_value >= max_value:
        raise PolicyError(
            f"{where}: min_value {min_value} (exclusive) is not below max_value {max_value} "
            "(inclusive), so the rule matches nothing; lower min_value or raise max_value."
        )

    suppliers = None
    if "suppliers" in raw_rule:
        suppliers = _parse_names(raw_rule["suppliers"], where=where, field="suppliers")
    locations = None
    if "locations" in raw_rule:
        locations = _parse_names(raw_rule["locations"], where=where, field="locations")

    auto_execute = raw_rule.get("auto_execute", False)
    if not isinstance(auto_execute, bool):
        raise PolicyError(f"{where}: auto_execute = {auto_execute!r} must be true or false, unquoted.")
    expires_after_hours = None
    if "expires_after_hours" in raw_rule:
        expires_after_hours = _parse_count(
            raw_rule["expires_after_hours"], where=where, field="expires_after_hours", most=MAX_EXPIRY_HOURS
        )
    max_quantity_share = parse_quantity_share(raw_rule, where=where, kinds=kinds)
    max_supplier_daily_spend = parse_supplier_daily_spend(raw_rule, where=where, kinds=kinds)

    return Rule(
        id=rule_id,
        kinds=kinds,
        approver_roles=approver_roles,
        approvals=approvals,
        max_value=max_value,
        min_value=min_value,
        suppliers=suppliers,
        locations=locations,
        auto_execute=auto_execute,
        expires_after_hours=expires_after_hours,
        max_quantity_share=max_quantity_share,
        max_supplier_daily_spend=max_supplier_daily_spend,
    )


def _parse_names(value: Any, *, where: str, field: str, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        # An empty list would silently match nothing, while a missing key matches anything,
        # so the file must say which one it means.
        raise PolicyError(
            f'{where}: {field} = {value!r} must be a non-empty list of strings, such as {field} = ["..."]; '
            "remove an optional condition to match any value."
        )

    names: list[str] = []
    for name in value:
        if not isinstance(name, str) or not name.strip():
            raise PolicyError(f"{where}: {field} contains {name!r}; each entry must be a non-empty string.")
        if allowed is not None and name not in allowed:
            raise PolicyError(
                f"{where}: {field} contains unknown value {name!r}; use values from {', '.join(allowed)}."
            )
        names.append(name)
    return tuple(names)


def _parse_count(value: Any, *, where: str, field: str, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise PolicyError(f"{where}: {field} = {value!r} is invalid; write a whole number from 1 to {most}, unquoted.")
    return value


def _parse_optional_decimal(raw_rule: dict[str, Any], *, where: str, field: str) -> Decimal | None:
    if field not in raw_rule:
        return None
    return parse_decimal(raw_rule[field], where=where, field=field)

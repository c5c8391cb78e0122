"""The outcome of an InvenTree import: counts per record kind and every skipped record with its reason."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class SkippedRecord:
    """An InvenTree record the importer did not map, and why."""

    model: str
    pk: int | str
    reason: str


@dataclass
class KindTally:
    """Imported, already present and skipped records of one kind."""

    imported: int = 0
    already_present: int = 0
    skipped: list[SkippedRecord] = field(default_factory=list)

    def skip(self, *, model: str, pk: int | str, reason: str) -> None:
        """Record that the InvenTree record `model` `pk` was not imported because of `reason`."""
        self.skipped.append(SkippedRecord(model=model, pk=pk, reason=reason))


@dataclass
class ImportSummary:
    """Counts of imported and already present records per record kind, with every skipped record.

    "Already present" means a record with the same `external_ref` exists in the
    workspace from an earlier import; the importer leaves it unchanged.
    """

    items: KindTally = field(default_factory=KindTally)
    locations: KindTally = field(default_factory=KindTally)
    bins: KindTally = field(default_factory=KindTally)
    stock: KindTally = field(default_factory=KindTally)
    suppliers: KindTally = field(default_factory=KindTally)
    supplier_items: KindTally = field(default_factory=KindTally)
    price_breaks: KindTally = field(default_factory=KindTally)
    purchase_orders: KindTally = field(default_factory=KindTally)
    purchase_order_lines: KindTally = field(default_factory=KindTally)
    receiving_events: KindTally = field(default_factory=KindTally)
    reservations: KindTally = field(default_factory=KindTally)
    counts: KindTally = field(default_factory=KindTally)
    reorder_rules: KindTally = field(default_factory=KindTally)

    def tallies(self) -> list[tuple[str, KindTally]]:
        """Return (kind, tally) pairs in report order."""
        return [(spec.name, getattr(self, spec.name)) for spec in fields(self)]

    @property
    def imported(self) -> int:
        """Total number of records written by this import."""
        return sum(tally.imported for _, tally in self.tallies())

    @property
    def skipped(self) -> list[SkippedRecord]:
        """Every skipped record, in report order."""
        return [record for _, tally in self.tallies() for record in tally.skipped]

    def lines(self) -> list[str]:
        """Return a readable report: one line per kind, then the skip reasons of each kind with their counts."""
        report = [
            f"{kind}: {tally.imported} imported, {tally.already_present} already present, {len(tally.skipped)} skipped"
            for kind, tally in self.tallies()
        ]
        for kind, tally in self.tallies():
            reasons = Counter(record.reason for record in tally.skipped)
            for reason, count in sorted(reasons.items(), key=lambda pair: (-pair[1], pair[0])):
                report.append(f"skipped {kind} ({count}): {reason}")
        return report


# Record kinds in the order `lines()` reports them.
RECORD_KINDS = tuple(spec.name for spec in fields(ImportSummary))

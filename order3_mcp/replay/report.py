"""Replay reports: the readable pass/fail text and JUnit XML, both free of times unless timings are asked for."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

from order3_mcp.replay.matchers import render
from order3_mcp.replay.runner import ScenarioReport

STATUS_WORDS = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}


def text_report(reports: list[ScenarioReport], *, timings: bool = False) -> str:
    """Return the report: one line per scenario, then each failing step's first difference, then the totals."""
    lines: list[str] = []
    for report in reports:
        took = f" in {report.seconds:.2f} s" if timings else ""
        head = f"{STATUS_WORDS[report.status]} {report.name} [{report.label}]"
        if report.status == "skipped":
            lines.append(f"{head}: skipped because {report.skip_reason}")
            continue
        lines.append(f"{head}: {len(report.steps)} steps{took}")
        for difference in report.differences:
            mismatch = difference.mismatch
            name = f"step {difference.step_index}" + (f" ({difference.step_id})" if difference.step_id else "")
            lines.append(f"  {name}: {difference.step_label}")
            lines.append(f"    field:    {mismatch.path or 'value'}" + (f" ({mismatch.reason})" if mismatch.reason else ""))
            lines.append(f"    expected: {render(mismatch.expected)}")
            lines.append(f"    actual:   {render(mismatch.actual)}")
    counts = {status: sum(1 for report in reports if report.status == status) for status in STATUS_WORDS}
    total = f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
    if timings:
        total += f" in {sum(report.seconds for report in reports):.2f} s"
    lines.append(total)
    return "\n".join(lines) + "\n"


def junit_xml(reports: list[ScenarioReport], *, timings: bool = False) -> str:
    """Return JUnit XML with one testcase per scenario; a failure's message is the scenario's first difference."""
    suite = ElementTree.Element(
        "testsuite",
        name="order3-replay",
        tests=str(len(reports)),
        failures=str(sum(1 for report in reports if report.status == "failed")),
        skipped=str(sum(1 for report in reports if report.status == "skipped")),
        errors="0",
    )
    if timings:
        suite.set("time", f"{sum(report.seconds for report in reports):.3f}")
    for report in reports:
        case = ElementTree.SubElement(suite, "testcase", classname=report.label, name=report.name)
        if timings:
            case.set("time", f"{report.seconds:.3f}")
        if report.status == "skipped":
            ElementTree.SubElement(case, "skipped", message=report.skip_reason)
        elif report.status == "failed":
            differences = report.differences
            failure = ElementTree.SubElement(case, "failure", message=differences[0].headline(), type="ReplayMismatch")
            failure.text = "\n".join(difference.headline() for difference in differences)
    ElementTree.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(suite, encoding="unicode") + "\n"


def write_junit(path: Path, reports: list[ScenarioReport], *, timings: bool = False) -> None:
    """Write the JUnit XML report to `path`."""
    path.write_text(junit_xml(reports, timings=timings), encoding="utf-8")

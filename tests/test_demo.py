"""The demo end to end, as a user runs it: `python -m order3_mcp.cli demo` in a subprocess."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from order3_mcp.cli import app
from tests.conftest import INVENTREE_DEMO, sqlite_only

# Generous bound for a CI machine; the demo takes about 8 s on a development laptop.
DEMO_TIMEOUT_SECONDS = 120


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("ORDER3_TOKEN", None)
    env.pop("ORDER3_DB", None)
    return subprocess.run(
        [sys.executable, "-m", "order3_mcp.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_SECONDS,
        env=env,
        check=False,
    )


@sqlite_only
@pytest.mark.skipif(not INVENTREE_DEMO.exists(), reason="the InvenTree demo export is not next to the repository")
def test_demo_issues_purchase_order_after_refusal(tmp_path: Path) -> None:
    result = run_demo("--keep", str(tmp_path))

    assert result.returncode == 0, result.stderr
    assert "are not listed for this agent token" in result.stdout
    assert "approve_draft 1: refused:" in result.stdout
    assert "may not call approve_draft: it needs the 'approve' scope" in result.stdout
    assert "Draft 1 executed: issued purchase order PO-000001." in result.stdout
    assert "first broken seq: none" in result.stdout

    with sqlite3.connect(tmp_path / "order3-demo.db") as connection:
        rows = connection.execute("SELECT actor, channel, action, outcome FROM activity_event ORDER BY seq").fetchall()
    assert ("buyer-bot", "mcp", "approve_draft", "denied") in rows
    assert ("alice", "cli", "execute_draft", "ok") in rows


@sqlite_only
@pytest.mark.skipif(not INVENTREE_DEMO.exists(), reason="the InvenTree demo export is not next to the repository")
def test_demo_executes_every_draft_kind(tmp_path: Path) -> None:
    result = run_demo("--keep", str(tmp_path))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Batch webshop-batch.json: 1 record, 1 mismatch → exception 1." in lines
    assert (
        "buyer-bot → draft_transfer: draft 2, 400 × PART-60 from ELECTRONICS-LAB/Reel Storage to PCB-ASSEMBLER; "
        "1 approver with role buyer or approver or admin (policy rule transfer)"
    ) in lines
    assert "order3 transfer receive TR-000001: 400 PART-60 from IN-TRANSIT into PCB-ASSEMBLER." in lines
    assert "order3 count submit 1: PART-85@Storage Room B 14 (expected 15, variance -1); task applied." in lines
    assert (
        "order3 outbox list: message 1 queued to DIGIKEY <michelle.leblanc@digikey.com>: "
        "'Delivery date for purchase order PO0001'"
    ) in lines
    assert "Draft 5 (adjustment) executed by carol. Posted adjustment movement 1024: widget.blue at FACTORY now has 9 on hand." in lines
    assert "Draft 6 (reconciliation) executed by carol. Posted movement 1025, adjusting stock by -2." in lines
    assert "Stock levels checked: 464. Mismatches: 0." in lines

    with sqlite3.connect(tmp_path / "order3-demo.db") as connection:
        drafts = connection.execute("SELECT id, kind, status, created_by FROM draft ORDER BY id").fetchall()
        transfers = connection.execute("SELECT number, status FROM transfer").fetchall()
        sheets = connection.execute("SELECT status, draft_id FROM count_sheet").fetchall()
        messages = connection.execute("SELECT status, draft_id FROM outbox_message").fetchall()
        levels = connection.execute("SELECT count(*) FROM stock_level").fetchone()[0]
        rows = connection.execute("SELECT actor, channel, action, outcome FROM activity_event ORDER BY seq").fetchall()
    assert drafts == [
        (1, "purchase_order", "executed", "buyer-bot"),
        (2, "transfer", "executed", "buyer-bot"),
        (3, "count_task", "executed", "buyer-bot"),
        (4, "supplier_note", "executed", "buyer-bot"),
        (5, "adjustment", "executed", "buyer-bot"),
        (6, "reconciliation", "executed", "buyer-bot"),
    ]
    assert transfers == [("TR-000001", "received")]
    assert sheets == [("applied", 3)]
    assert messages == [("queued", 4)]
    assert levels == 464
    assert ("webshop", "sync", "ingest_external_snapshot", "ok") in rows
    assert ("buyer-bot", "mcp", "find_mismatches", "ok") in rows
    assert ("alice", "cli", "transfer_receive", "ok") in rows
    assert ("alice", "cli", "count_submit", "ok") in rows
    assert [row for row in rows if row[0] == "carol" and row[2] == "execute_draft"] == [
        ("carol", "cli", "execute_draft", "ok"),
        ("carol", "cli", "execute_draft", "ok"),
    ]


@sqlite_only
@pytest.mark.skipif(not INVENTREE_DEMO.exists(), reason="the InvenTree demo export is not next to the repository")
def test_demo_keep_prints_every_token(tmp_path: Path) -> None:
    result = run_demo("--keep", str(tmp_path))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Store these tokens now: they are not shown again, and the database keeps only their hashes." in lines
    assert f"  export ORDER3_DB={tmp_path / 'order3-demo.db'}" in lines
    secrets = {}
    for principal in ("alice", "carol", "admin", "buyer-bot", "webshop"):
        heading = next(index for index, line in enumerate(lines) if line.startswith(f"To continue as {principal},"))
        secrets[principal] = lines[heading + 2].removeprefix("  export ORDER3_TOKEN=")
    assert len(set(secrets.values())) == 5
    assert all(secret.startswith("o3_") for secret in secrets.values())

    listed = CliRunner().invoke(
        app, ["--db", str(tmp_path / "order3-demo.db"), "--token", secrets["admin"], "token", "list"], env={"COLUMNS": "200"}
    )
    assert listed.exit_code == 0, listed.stderr
    assert "buyer-bot" in listed.stdout


def test_demo_refuses_used_keep_directory(tmp_path: Path) -> None:
    (tmp_path / "order3-demo.db").write_bytes(b"")
    # Any existing file passes the data check, which runs before the directory check.
    data = tmp_path / "export.json"
    data.write_text("[]", encoding="utf-8")

    result = run_demo("--keep", str(tmp_path), "--data", str(data))

    assert result.returncode == 5
    assert "already exists" in result.stderr


def test_demo_reports_missing_data_file(tmp_path: Path) -> None:
    result = run_demo("--data", str(tmp_path / "none.json"))

    assert result.returncode == 4
    assert "none.json" in result.stderr
    assert "pass --data FILE" in result.stderr

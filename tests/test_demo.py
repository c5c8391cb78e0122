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
from tests.conftest import INVENTREE_DEMO

# Generous bound for a CI machine; the demo takes about 5 s on a development laptop.
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


@pytest.mark.skipif(not INVENTREE_DEMO.exists(), reason="the InvenTree demo export is not next to the repository")
def test_demo_keep_prints_every_token(tmp_path: Path) -> None:
    result = run_demo("--keep", str(tmp_path))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Store these tokens now: they are not shown again, and the database keeps only their hashes." in lines
    assert f"  export ORDER3_DB={tmp_path / 'order3-demo.db'}" in lines
    secrets = {}
    for principal in ("alice", "admin", "buyer-bot"):
        heading = next(index for index, line in enumerate(lines) if line.startswith(f"To continue as {principal},"))
        secrets[principal] = lines[heading + 2].removeprefix("  export ORDER3_TOKEN=")
    assert len(set(secrets.values())) == 3
    assert all(secret.startswith("o3_") for secret in secrets.values())

    listed = CliRunner().invoke(
        app, ["--db", str(tmp_path / "order3-demo.db"), "--token", secrets["admin"], "token", "list"], env={"COLUMNS": "200"}
    )
    assert listed.exit_code == 0, listed.stderr
    assert "buyer-bot" in listed.stdout


def test_demo_refuses_used_keep_directory(tmp_path: Path) -> None:
    (tmp_path / "order3-demo.db").write_bytes(b"")

    result = run_demo("--keep", str(tmp_path))

    assert result.returncode == 5
    assert "already exists" in result.stderr


def test_demo_reports_missing_data_file(tmp_path: Path) -> None:
    result = run_demo("--data", str(tmp_path / "none.json"))

    assert result.returncode == 4
    assert "none.json" in result.stderr
    assert "pass --data FILE" in result.stderr

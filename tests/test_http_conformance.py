"""The MCP conformance suite's server scenarios against `order3 serve --http`.

The suite (npm package @modelcontextprotocol/conformance, pinned in
conformance/package.json) connects without any way to add a header, so it
reaches the server through tests/header_proxy.py, which adds the bearer token of
an agent and changes nothing else that the server checks.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.header_proxy import header_proxy
from tests.http_support import create_token, order3, secret_in, serve_http

CONFORMANCE_DIR = REPO_ROOT / "conformance"
# Seconds one scenario may run; each takes about one second on a quiet machine.
SCENARIO_TIMEOUT = 120

MUST_PASS = [
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "prompts-list",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
    "logging-set-level",
    "completion-complete",
]

pytestmark = pytest.mark.skipif(
    shutil.which("npx") is None or shutil.which("node") is None,
    reason="Node.js (node and npx) is not installed, so the MCP conformance suite cannot run",
)


@pytest.fixture(scope="module")
def conformance_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    installed = CONFORMANCE_DIR / "node_modules" / "@modelcontextprotocol" / "conformance"
    assert installed.is_dir(), f"The conformance suite is not installed; run `npm ci --prefix {CONFORMANCE_DIR}`."
    db = tmp_path_factory.mktemp("conformance") / "order3.db"
    admin = secret_in(order3(db, "init", "--workspace", "main"))
    _, agent = create_token(db, admin, "conformance-suite", kind="agent", role="agent")
    with serve_http(db) as server, header_proxy(server.port, agent) as url:
        yield url


def run_scenario(url: str, scenario: str, output: Path) -> list[dict[str, object]]:
    """Run one server scenario and return its checks from the suite's checks.json."""
    completed = subprocess.run(
        ["npx", "--no-install", "conformance", "server", "--url", url, "--scenario", scenario, "--output-dir", str(output)],
        cwd=CONFORMANCE_DIR,
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT,
        check=False,
    )
    reports = sorted(output.glob("*/checks.json"))
    assert reports, f"{scenario} wrote no checks.json (exit {completed.returncode}): {completed.stdout}{completed.stderr}"
    return json.loads(reports[-1].read_text())


def failures_of(checks: list[dict[str, object]]) -> list[str]:
    return [f"{check['id']}: {check.get('errorMessage')}" for check in checks if check["status"] not in ("SUCCESS", "INFO")]


@pytest.mark.parametrize("scenario", MUST_PASS)
def test_conformance_scenario_passes(conformance_url: str, scenario: str, tmp_path: Path) -> None:
    checks = run_scenario(conformance_url, scenario, tmp_path)

    assert checks, f"{scenario} ran no checks"
    assert failures_of(checks) == []

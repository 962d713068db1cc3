"""Run the MCP conformance suite's server scenarios against a URL and read back the results.

    run = run_conformance("http://127.0.0.1:3901/mcp", tmp_path)          # blocking; ~4 s for all 30 when idle
    assert run.failed == 0 and run.failures == []

The suite (0.1.16) connects with the handshake era, calls fixed tool/resource/prompt names (served by
`tests/servers/conformance_server.py`) and writes one `checks.json` per scenario under `output_dir`.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tests.tools.node import NodeTools, node_tools
from tests.tools.patience import PATIENCE

_TOTAL = re.compile(r"^Total: (\d+) passed, (\d+) failed", re.MULTILINE)
_SCENARIO = re.compile(r"^\S+ ([\w/.-]+): (\d+) passed, (\d+) failed", re.MULTILINE)


@dataclass
class ConformanceRun:
    """The outcome of one `conformance server` run."""

    returncode: int
    passed: int
    failed: int
    scenarios: dict[str, tuple[int, int]] = field(default_factory=lambda: {})
    """Scenario name -> (passed, failed) checks, from the summary."""
    checks: list[dict[str, Any]] = field(default_factory=lambda: [])
    """Every check of every scenario, as written to `checks.json`."""
    output: str = ""

    @property
    def failures(self) -> list[dict[str, Any]]:
        """The checks whose status is FAILURE."""
        return [check for check in self.checks if check.get("status") == "FAILURE"]

    @property
    def warnings(self) -> list[dict[str, Any]]:
        """The checks whose status is WARNING."""
        return [check for check in self.checks if check.get("status") == "WARNING"]


def run_conformance(
    url: str,
    output_dir: Path,
    *,
    suite: Literal["active", "all", "pending"] = "active",
    scenario: str | None = None,
    tools: NodeTools | None = None,
    timeout: float = 3 * PATIENCE,
) -> ConformanceRun:
    """Run `conformance server --url URL` (Node 22) and parse its summary and `checks.json` files.

    Raises:
        NodeToolsMissing: when the tools are not installed.
        ValueError: when the output has no `Total:` line (the suite did not run).
    """
    tools = tools or node_tools()
    args = ["server", "--url", url, "-o", str(output_dir), "--suite", suite]
    if scenario is not None:
        args += ["--scenario", scenario]
    completed = subprocess.run(
        tools.conformance(*args), capture_output=True, env=tools.env(), cwd=tools.root, timeout=timeout, check=False
    )
    output = completed.stdout.decode(errors="replace") + completed.stderr.decode(errors="replace")
    total = _TOTAL.search(output)
    if total is None:
        raise ValueError(f"conformance printed no summary (exit {completed.returncode}):\n{output[-4000:]}")
    scenarios = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in _SCENARIO.finditer(output)}
    checks = [check for path in sorted(output_dir.glob("*/checks.json")) for check in json.loads(path.read_text())]
    return ConformanceRun(
        returncode=completed.returncode,
        passed=int(total.group(1)),
        failed=int(total.group(2)),
        scenarios=scenarios,
        checks=checks,
        output=output,
    )

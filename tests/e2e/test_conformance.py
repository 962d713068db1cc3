"""The MCP conformance suite's server scenarios against the hub's `/mcp/conformance`.

The upstream is `tests/servers/conformance_server.py` over Streamable HTTP (so the hub's HTTP connector,
its per-client sessions and the upstream's SSE streams are all on the path), configured with
`session = "per_client"` because the suite's sampling and elicitation scenarios need the upstream to reach
the calling client. The suite (0.1.16) cannot send an Authorization header, so a small reverse proxy in this
test (`header_proxy`) adds the virtual key and passes everything else through unchanged, Host and Origin
included; the hub is configured to accept the proxy's own `Host`, as it would be behind any Host-preserving
reverse proxy.

The suite runs with `--expected-failures conformance-expected-failures.yml`: its exit code is 0 only when every
failing scenario is listed there and every listed scenario still fails. The test checks that and says which
scenarios were unexpected or stale. Figures are recorded in docs/conformance.md.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.e2e.header_proxy import header_proxy
from tests.hub.harness import ALICE, BOB, base_config, fixture_stdio, running_hub
from tests.tools import PATIENCE, NodeTools, free_port, node_tools, served, server_argv

pytestmark = pytest.mark.anyio

BASELINE = Path(__file__).with_name("conformance-expected-failures.yml")
TOTAL = re.compile(r"^Total: (\d+) passed, (\d+) failed", re.MULTILINE)
RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d\d-\d\dT[\d-]+Z$")


@dataclass
class SuiteRun:
    returncode: int
    passed: int
    failed: int
    checks: dict[str, list[dict[str, Any]]]
    """Scenario name -> its checks, as written to `checks.json`."""
    output: str

    def failing(self) -> set[str]:
        """Scenarios the suite counts as failed (any FAILURE or WARNING check), as its baseline logic does."""
        return {
            name
            for name, checks in self.checks.items()
            if any(check.get("status") in ("FAILURE", "WARNING") for check in checks)
        }


def baseline_entries(path: Path) -> dict[str, str]:
    """The `server:` entries of a baseline file, each with the comment above it (its reason)."""
    entries: dict[str, str] = {}
    reason: list[str] = []
    section = None
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not line.startswith(" ") and stripped.endswith(":"):
            section = stripped[:-1]
        elif stripped.startswith("#"):
            reason.append(stripped.lstrip("# "))
        elif stripped.startswith("- ") and section == "server":
            entries[stripped[2:].strip()] = " ".join(reason)
            reason = []
        elif not stripped:
            reason = []
    return entries


def run_suite(tools: NodeTools, url: str, output_dir: Path, baseline: Path) -> SuiteRun:
    """`conformance server --suite all --expected-failures BASELINE` against `url` (blocking)."""
    args = ["server", "--url", url, "-o", str(output_dir), "--suite", "all", "--expected-failures", str(baseline)]
    completed = subprocess.run(
        tools.conformance(*args),
        capture_output=True,
        env=tools.env(),
        cwd=tools.root,
        timeout=3 * PATIENCE,
        check=False,
    )
    output = completed.stdout.decode(errors="replace") + completed.stderr.decode(errors="replace")
    total = TOTAL.search(output)
    assert total is not None, f"the suite printed no summary (exit {completed.returncode}):\n{output[-4000:]}"
    checks: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(output_dir.glob("*/checks.json")):
        match = RESULT_DIR.match(path.parent.name)
        assert match is not None, path
        checks[match.group("scenario")] = json.loads(path.read_text())
    return SuiteRun(completed.returncode, int(total.group(1)), int(total.group(2)), checks, output)


def test_every_baseline_entry_has_a_reason() -> None:
    entries = baseline_entries(BASELINE)
    assert entries, "the baseline lists no scenario"
    assert all(len(reason) > 20 for reason in entries.values()), entries


@pytest.mark.slow
async def test_conformance_suite_against_the_hub(tmp_path: Path) -> None:
    tools = node_tools()
    proxy_port = free_port()
    upstream_argv = server_argv("conformance_server", "--transport", "streamable-http", "--port", "{port}")
    async with served(upstream_argv) as upstream:
        servers = {"conformance": {"transport": "http", "url": upstream.url("/mcp"), "session": "per_client"}}
        config = base_config(
            servers,
            allowed_hosts=[f"127.0.0.1:{proxy_port}"],
            allowed_origins=[f"http://127.0.0.1:{proxy_port}"],
        )
        async with (
            running_hub(config, tmp_path) as hub,
            header_proxy(hub.base, {"Authorization": f"Bearer {ALICE}"}, port=proxy_port) as proxy,
        ):
            async with httpx2.AsyncClient(timeout=10) as http:
                keyless = await http.post(
                    hub.url("/mcp/conformance"),
                    json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                    headers={"Accept": "application/json, text/event-stream"},
                )
            assert keyless.status_code == 401  # so every request the suite got answered went through the proxy
            url = proxy.url("/mcp/conformance")
            run = await anyio.to_thread.run_sync(lambda: run_suite(tools, url, tmp_path / "results", BASELINE))
            proxied = proxy.stats.requests

    expected = set(baseline_entries(BASELINE))
    failing = run.failing()
    unexpected = sorted(failing - expected)
    stale = sorted(expected - failing)
    details = {name: [c for c in run.checks[name] if c.get("status") == "FAILURE"] for name in unexpected}
    assert not unexpected, f"unexpected failures: {unexpected}\n{json.dumps(details, indent=1)[:6000]}"
    assert not stale, f"stale baseline entries (these scenarios pass now, remove them): {stale}"
    assert run.returncode == 0, run.output[-4000:]
    print(run.output)  # the suite's scenario table, for docs/conformance.md (shown with -s)
    assert len(run.checks) >= 32  # 30 active + 2 pending scenarios in 0.1.16
    assert run.passed >= 41
    assert proxied > len(run.checks)


async def test_a_deleted_session_is_gone_and_sessions_are_bound_to_their_key(tmp_path: Path) -> None:
    """What the suite does not check: DELETE ends a session (404 after), and another key cannot use it."""
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {ALICE}"}
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
    }
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with running_hub(base_config({"fixture": fixture_stdio()}), tmp_path) as hub, httpx2.AsyncClient() as http:
        for path in ("/mcp", "/mcp/fixture"):
            created = await http.post(hub.url(path), json=init, headers=headers)
            assert created.status_code == 200
            session = {
                **headers,
                "mcp-session-id": created.headers["mcp-session-id"],
                "mcp-protocol-version": "2025-11-25",
            }
            initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            assert (await http.post(hub.url(path), json=initialized, headers=session)).status_code == 202
            assert (await http.post(hub.url(path), json=ping, headers=session)).status_code == 200
            other_key = await http.post(hub.url(path), json=ping, headers={**session, "Authorization": f"Bearer {BOB}"})
            assert other_key.status_code == 404
            assert (await http.delete(hub.url(path), headers=session)).status_code == 200
            after = await http.post(hub.url(path), json=ping, headers=session)
            assert after.status_code == 404 and after.json()["error"]["code"] == -32600

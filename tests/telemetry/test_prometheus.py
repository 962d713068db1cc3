"""A real Prometheus server scrapes a running hub and answers PromQL over what the hub's clients did.

Prometheus (Debian package `prometheus`) runs on a free loopback port with a temporary storage directory and two
scrape jobs on the hub: one that sends the `[metrics] token`, which must be up, and one that does not, which the hub
must refuse with 401. The test waits on Prometheus's own HTTP API (its targets, then the query), never on time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.hub.harness import ALICE, base_config, fixture_stdio, mcp_client, running_hub
from tests.tools import REPO_ROOT, ServedProcess, served
from tests.tools.patience import PATIENCE
from tests.tools.requirements import unavailable

pytestmark = pytest.mark.anyio

TOKEN = "prometheus-scrape-token-42"
POLL_S = 0.1
"""Between two reads of Prometheus's API while waiting for a scrape (a polling interval, not a wait for time)."""


def prometheus_config(hub_port: int, token_file: Path) -> str:
    target = f'["127.0.0.1:{hub_port}"]'
    return f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: agenthub
    authorization:
      type: Bearer
      credentials_file: {token_file}
    static_configs:
      - targets: {target}
  - job_name: anonymous
    static_configs:
      - targets: {target}
"""


@pytest.fixture
def prometheus_binary() -> str:
    """The `prometheus` program (a missing one skips the test locally and fails it under CI)."""
    return shutil.which("prometheus") or unavailable("prometheus", "apt-get install prometheus")


@contextlib.asynccontextmanager
async def prometheus(binary: str, config: Path, storage: Path) -> AsyncGenerator[ServedProcess]:
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={storage}",
        "--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    async with served(argv) as process:
        yield process


async def targets_settled(http: httpx2.AsyncClient) -> dict[str, dict[str, Any]]:
    """The active targets by job, once every one of them has been scraped at least once."""
    with anyio.fail_after(PATIENCE):
        while True:
            active: list[dict[str, Any]] = (await http.get("/api/v1/targets")).json()["data"]["activeTargets"]
            by_job = {target["labels"]["job"]: target for target in active}
            if set(by_job) == {"agenthub", "anonymous"} and all(t["health"] != "unknown" for t in active):
                return by_job
            await anyio.sleep(POLL_S)


async def query(http: httpx2.AsyncClient, promql: str) -> float:
    """The value of a PromQL expression with one result, once Prometheus has one."""
    with anyio.fail_after(PATIENCE):
        while True:
            answer = (await http.get("/api/v1/query", params={"query": promql})).json()
            assert answer["status"] == "success", answer
            result: list[dict[str, Any]] = answer["data"]["result"]
            if result:
                assert len(result) == 1, result
                return float(result[0]["value"][1])
            await anyio.sleep(POLL_S)


def dashboard_expressions() -> list[str]:
    """The PromQL of every panel of the Grafana example, with Grafana's variables filled in."""
    dashboard = json.loads((REPO_ROOT / "examples" / "grafana-dashboard.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    fill = {"$__rate_interval": "1m", "$__range": "1h", "$instance": ".*"}
    for variable, value in fill.items():
        expressions = [expr.replace(variable, value) for expr in expressions]
    return expressions


async def evaluate(http: httpx2.AsyncClient, promql: str) -> dict[str, Any]:
    answer: dict[str, Any] = (await http.get("/api/v1/query", params={"query": promql})).json()
    return {"query": promql, **answer}


async def test_prometheus_scrapes_the_hub_with_the_token_and_answers_promql(
    prometheus_binary: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_METRICS_TOKEN", TOKEN)
    config = base_config({"fixture": fixture_stdio()})
    config["metrics"] = {"token": "env:T_METRICS_TOKEN"}
    async with running_hub(config, tmp_path) as hub:
        async with mcp_client(hub.url(), ALICE) as client:
            for word in ("one", "two", "three"):
                assert not (await client.call_tool("fixture__echo", {"message": word})).is_error
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN)
        prometheus_yml = tmp_path / "prometheus.yml"
        prometheus_yml.write_text(prometheus_config(hub.port, token_file))
        storage = tmp_path / "tsdb"
        async with prometheus(prometheus_binary, prometheus_yml, storage) as server:
            async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=PATIENCE) as http:
                targets = await targets_settled(http)
                calls = await query(http, 'sum(agenthub_requests_total{door="mcp",operation="mcp.tool"})')
                echoes = await query(http, 'agenthub_mcp_tool_calls_total{server="fixture",tool="echo"}')
                up = await query(http, 'agenthub_upstream_up{job="agenthub",server="fixture"}')
                histogram = await query(
                    http, 'sum(agenthub_upstream_duration_seconds_count{door="mcp",operation="mcp.tool"})'
                )
                dashboard = [await evaluate(http, expr) for expr in dashboard_expressions()]

    assert targets["agenthub"]["health"] == "up", targets["agenthub"]
    assert targets["anonymous"]["health"] == "down"
    assert "401" in targets["anonymous"]["lastError"]
    assert (calls, echoes, up, histogram) == (3, 3, 1, 3)
    assert [answer for answer in dashboard if answer["status"] != "success"] == []


@pytest.mark.parametrize("ci", [False, True], ids=["locally", "under-ci"])
def test_a_missing_prometheus_skips_the_scrape_test_locally_and_fails_it_under_ci(tmp_path: Path, ci: bool) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {name: value for name, value in os.environ.items() if name != "CI"} | {"PATH": str(empty)}
    if ci:
        env["CI"] = "true"
    nodeid = (
        f"{Path(__file__).relative_to(REPO_ROOT)}::test_prometheus_scrapes_the_hub_with_the_token_and_answers_promql"
    )
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "-rs", nodeid]
    run = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=PATIENCE, check=False)
    output = run.stdout + run.stderr
    assert "prometheus is not installed (apt-get install prometheus)" in output, output
    if ci:  # the fixture fails at setup: an error, which fails the run
        assert run.returncode == 1 and "1 error" in output, output
    else:
        assert run.returncode == 0 and "1 skipped" in output, output

"""`GET /metrics` on a running hub: what the traffic of real MCP and OpenAI clients leaves there, and its guard.

The scrape is outside the virtual-key pipeline (the door matrix lists it among the routes governed elsewhere):
what guards it is `[metrics] token`, a secret reference like every other secret of the configuration.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx2
import pytest
from mcp import MCPError
from prometheus_client.parser import text_string_to_metric_families

from tests.doors.harness import MODELS, USER, async_client, hub_with_fakes, running_fakes
from tests.hub.harness import ALICE, base_config, fixture_stdio, mcp_client, running_hub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

TOKEN = "scrape-token-0123456789"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples_of(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def scrape(base: str, token: str | None = TOKEN) -> httpx2.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(timeout=PATIENCE) as http:
        return await http.get(base + "/metrics", headers=headers)


async def test_the_scrape_needs_the_token_and_shows_the_mcp_traffic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_METRICS_TOKEN", TOKEN)
    config = base_config({"fixture": fixture_stdio()})
    config["metrics"] = {"token": "env:T_METRICS_TOKEN"}
    config["guardrails"] = [{"name": "codename", "kind": "regex", "pattern": "(?i)project falcon", "apply_to": "input"}]
    async with running_hub(config, tmp_path) as hub:
        async with mcp_client(hub.url(), ALICE) as client:
            for _ in range(2):
                assert not (await client.call_tool("fixture__echo", {"message": "hi"})).is_error
            with pytest.raises(MCPError):
                await client.call_tool("fixture__echo", {"message": "about Project Falcon"})
            refused = [await scrape(hub.base, None), await scrape(hub.base, "not-the-token")]
            answer = await scrape(hub.base)  # while the client's session is open

    for response in refused:
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "metrics token" in response.json()["error"]["message"]
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples = samples_of(answer.text)
    ok = {"door": "mcp", "operation": "mcp.tool"}
    assert sample(samples, "agenthub_requests_total", **ok, outcome="ok", status="200") == 2
    assert sample(samples, "agenthub_requests_total", **ok, outcome="permission_error", status="403") == 1
    assert sample(samples, "agenthub_request_duration_seconds_count", **ok) == 3
    assert sample(samples, "agenthub_upstream_duration_seconds_count", **ok) == 2  # the blocked call never left
    assert sample(samples, "agenthub_overhead_duration_seconds_count", **ok) == 2
    assert sample(samples, "agenthub_mcp_tool_calls_total", server="fixture", tool="echo", outcome="ok") == 2
    assert sample(samples, "agenthub_upstream_up", server="fixture") == 1
    found = {labels: v for (name, labels), v in samples.items() if name == "agenthub_guardrail_findings_total"}
    assert [dict(labels)["guardrail"] for labels in found] == ["codename"]
    assert dict(next(iter(found)))["direction"] == "input" and list(found.values()) == [1]
    assert sample(samples, "agenthub_mcp_sessions", key="alice") == 1
    assert "process_resident_memory_bytes" in answer.text


async def test_llm_calls_count_tokens_cost_and_upstream_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.doors.harness import ENV

    for name, secret in ENV.items():
        monkeypatch.setenv(name, secret)
    keys = [{"name": "alice", "secret": ALICE, "models": ["*"]}]
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes, keys) as hub:
        client = async_client(hub)
        await client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hello"}])
        stream = await client.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "hello"}], stream=True
        )
        async for _chunk in stream:
            pass
        await client.close()
        async with httpx2.AsyncClient(base_url=hub.base, timeout=PATIENCE) as http:
            body = {"model": f"anthropic/{MODELS['anthropic']}", "max_tokens": 16, "messages": USER}
            messages = await http.post("/v1/messages", json=body, headers={"x-api-key": ALICE})
            assert messages.status_code == 200, messages.text
        answer = await scrape(hub.base, None)

    samples = samples_of(answer.text)
    chat = {"door": "openai", "operation": "llm.chat"}
    assert sample(samples, "agenthub_requests_total", **chat, outcome="ok", status="200") == 2
    assert sample(samples, "agenthub_upstream_duration_seconds_count", **chat) == 2
    assert sample(samples, "agenthub_overhead_duration_seconds_count", **chat) == 1  # the stream has none
    deployment = {"provider": "openai", "model": MODELS["openai"]}
    assert sample(samples, "agenthub_llm_calls_total", **deployment) == 2
    assert sample(samples, "agenthub_llm_tokens_total", **deployment, kind="output") > 0
    assert sample(samples, "agenthub_llm_tokens_total", **deployment, kind="input") > 0
    assert sample(samples, "agenthub_llm_cost_usd_total", **deployment) > 0
    anthropic = {"provider": "anthropic", "model": MODELS["anthropic"]}
    assert sample(samples, "agenthub_upstream_duration_seconds_count", door="anthropic", operation="llm.messages") == 1
    assert sample(samples, "agenthub_llm_calls_total", **anthropic) == 1
    spent = sample(samples, "agenthub_llm_cost_usd_total", **deployment) + sample(
        samples, "agenthub_llm_cost_usd_total", **anthropic
    )
    assert sample(samples, "agenthub_key_cost_usd_total", key="alice", team="", customer="") == pytest.approx(spent)


def _probe(tmp_path: Path, enabled: bool) -> dict[str, object]:
    """Run a hub with `[metrics] enabled` in a fresh interpreter: whether it keeps metrics, whether it loaded
    prometheus_client, and whether its app routes `/metrics`."""
    tmp_path.mkdir()
    probe = textwrap.dedent(
        f"""
        import json, sys
        import anyio
        from hub.app import open_hub
        from hub.http import build_app
        from hub.settings import settings_from_dict

        settings = settings_from_dict(
            {{"hub": {{"database": "sqlite:///{tmp_path}/hub.db"}}, "metrics": {{"enabled": {enabled!r}}}}}
        )
        routed = "/metrics" in {{getattr(route, "path", "") for route in build_app(settings).app.routes}}

        async def main():
            hub = open_hub(settings)
            async with hub.running():
                kept = hub.metrics is not None
            hub.store.close()
            return kept

        kept = anyio.run(main)
        print(json.dumps({{"kept": kept, "loaded": "prometheus_client" in sys.modules, "routed": routed}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_hub_with_metrics_off_serves_no_endpoint_and_never_loads_the_library(tmp_path: Path) -> None:
    assert _probe(tmp_path / "off", False) == {"kept": False, "loaded": False, "routed": False}
    assert _probe(tmp_path / "on", True) == {"kept": True, "loaded": True, "routed": True}

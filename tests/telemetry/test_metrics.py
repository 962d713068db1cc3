"""The Prometheus metrics as a scraper reads them: names, labels, values, and the bound on their label sets.

Each test counts calls the way the audit stage does (a finished request-log row, the call, its outcome) and reads
the exposition back with `prometheus_client`'s own parser, as Prometheus would.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.config import HttpConfig
from connectors.registry import Entry
from connectors.upstream import Upstream, UpstreamState
from hub.audit.requestlog import LogEntry
from hub.call import Call, Outcome, Principal
from hub.governance.keys import VirtualKey
from hub.governance.usage import Usage
from hub.guardrails import Finding, Scope, Verdict
from hub.settings import ConfigError, settings_from_dict
from hub.telemetry import metrics as metrics_module
from hub.telemetry.metrics import OTHER, HubMetrics, MetricSources, configured_deployments
from hub.telemetry.metricsconfig import MetricsSection
from llm.config import ModelConfig, ProviderConfig
from tests.tools import REPO_ROOT

ALICE = VirtualKey(id="k1", name="alice", team="search", customer="acme", tools=("*",), chat_tools=("*",))
BOB = VirtualKey(id="k2", name="bob")


def entry(door: str, operation: str, target: str = "", **fields: Any) -> LogEntry:
    values: dict[str, Any] = {
        "ts": datetime.now(UTC),
        "call_id": "call_1",
        "parent_id": None,
        "key_id": "k1",
        "key_name": "alice",
        "door": door,
        "operation": operation,
        "target": target,
        "outcome": "ok",
        "status": 200,
        "latency_ms": 1.0,
        "error": None,
    }
    values.update(fields)
    return LogEntry(**values)


def call_of(row: LogEntry, principal: Principal | None = None, **kwargs: Any) -> Call:
    return Call(row.door, row.operation, row.target, principal=principal, parent_id=row.parent_id, **kwargs)  # pyright: ignore[reportArgumentType]


def scrape(metrics: HubMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, by name and sorted labels."""
    body, _ = metrics.render(None)
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def tool_entry(server: str, original: str) -> Entry:
    return Entry(server, original, f"{server}__{original}", types.Tool(name=original, input_schema={"type": "object"}))


def test_a_call_is_counted_by_door_operation_outcome_and_status_with_its_latency_split() -> None:
    metrics = HubMetrics(process=False)
    row = entry("mcp", "mcp.tool", "fixture__echo", latency_ms=12.0)
    metrics.observe(row, call_of(row), Outcome({}, upstream_ms=10.0), False)
    refused = entry("openai", "llm.chat", "gpt", outcome="authentication_error", status=401, latency_ms=0.2)
    metrics.observe(refused, call_of(refused), None, False)

    samples = scrape(metrics)
    assert value(samples, "agenthub_requests_total", door="mcp", operation="mcp.tool", outcome="ok", status="200") == 1
    assert (
        value(
            samples,
            "agenthub_requests_total",
            door="openai",
            operation="llm.chat",
            outcome="authentication_error",
            status="401",
        )
        == 1
    )
    labels = {"door": "mcp", "operation": "mcp.tool"}
    assert value(samples, "agenthub_request_duration_seconds_sum", **labels) == 0.012
    assert value(samples, "agenthub_request_duration_seconds_bucket", **labels, le="0.01") == 0
    assert value(samples, "agenthub_request_duration_seconds_bucket", **labels, le="0.025") == 1
    assert value(samples, "agenthub_upstream_duration_seconds_sum", **labels) == 0.010
    assert value(samples, "agenthub_upstream_duration_seconds_bucket", **labels, le="0.01") == 1
    assert value(samples, "agenthub_overhead_duration_seconds_sum", **labels) == 0.002
    assert value(samples, "agenthub_overhead_duration_seconds_bucket", **labels, le="0.0025") == 1
    assert value(samples, "agenthub_overhead_duration_seconds_bucket", **labels, le="0.001") == 0
    # A refused call reached no upstream: it has a whole duration only.
    assert value(samples, "agenthub_request_duration_seconds_count", door="openai", operation="llm.chat") == 1
    assert ("agenthub_upstream_duration_seconds_count", (("door", "openai"), ("operation", "llm.chat"))) not in samples


def test_a_streamed_call_has_an_upstream_time_but_no_overhead() -> None:
    metrics = HubMetrics(process=False)
    row = entry("openai", "llm.chat", "fast", latency_ms=900.0)
    metrics.observe(row, call_of(row), Outcome(None, upstream_ms=40.0), True)
    samples = scrape(metrics)
    labels = {"door": "openai", "operation": "llm.chat"}
    assert value(samples, "agenthub_upstream_duration_seconds_count", **labels) == 1
    assert ("agenthub_overhead_duration_seconds_count", tuple(sorted(labels.items()))) not in samples


def test_tool_calls_are_labelled_by_configured_server_and_tool_and_anything_else_is_other() -> None:
    tools = {"fixture__echo": tool_entry("fixture", "echo")}
    metrics = HubMetrics(MetricSources(tools=lambda: tools), process=False)
    for target, outcome in [("fixture__echo", "ok"), ("fixture__echo", "tool_error"), ("made-up-by-a-caller", "ok")]:
        row = entry("mcp", "mcp.tool", target, outcome=outcome)
        metrics.observe(row, call_of(row), Outcome({}), False)
    samples = scrape(metrics)
    assert value(samples, "agenthub_mcp_tool_calls_total", server="fixture", tool="echo", outcome="ok") == 1
    assert value(samples, "agenthub_mcp_tool_calls_total", server="fixture", tool="echo", outcome="tool_error") == 1
    assert value(samples, "agenthub_mcp_tool_calls_total", server=OTHER, tool=OTHER, outcome="ok") == 1
    assert not any("made-up" in str(labels) for _, labels in samples)


def test_llm_tokens_and_cost_are_counted_by_deployment_and_by_key_team_and_customer() -> None:
    providers = {
        "openai": ProviderConfig.model_validate(
            {"kind": "openai", "keys": [{"secret": "env:T_OPENAI"}], "models": ["gpt-4o-mini"]}
        )
    }
    sources = MetricSources(deployments=configured_deployments(providers, {}, {}), providers=frozenset(providers))
    metrics = HubMetrics(sources, process=False)
    usage = Usage(
        tokens=130,
        usd=0.25,
        cache_read_tokens=40,
        cache_write_5m_tokens=5,
        cache_write_1h_tokens=3,
        reasoning_tokens=20,
        output_tokens=30,
    )
    served = [("openai", "gpt-4o-mini"), ("openai", "gpt-from-the-request-body"), ("elsewhere", "x")]
    for provider, model in served:
        row = entry("openai", "llm.chat", model, tokens=130, cost_usd=0.25)
        outcome = Outcome(
            {},
            usage=usage,
            headers={"x-agenthub-provider": provider, "x-agenthub-model": model},
            principal=Principal(ALICE),
            upstream_ms=3.0,
        )
        metrics.observe(row, call_of(row), outcome, False)

    samples = scrape(metrics)
    deployment = {"provider": "openai", "model": "gpt-4o-mini"}
    kinds = {"input": 100, "output": 30, "cache_read": 40, "cache_write": 8, "reasoning": 20}
    for kind, count in kinds.items():
        assert value(samples, "agenthub_llm_tokens_total", **deployment, kind=kind) == count
        assert value(samples, "agenthub_key_tokens_total", key="alice", team="search", customer="acme", kind=kind) == (
            3 * count
        )
    assert value(samples, "agenthub_llm_cost_usd_total", **deployment) == 0.25
    assert value(samples, "agenthub_llm_calls_total", provider="openai", model=OTHER) == 1
    assert value(samples, "agenthub_llm_calls_total", provider=OTHER, model=OTHER) == 1
    assert value(samples, "agenthub_key_cost_usd_total", key="alice", team="search", customer="acme") == 0.75


def test_the_configured_deployments_come_from_providers_aliases_and_prices() -> None:
    providers = {
        "openai": ProviderConfig.model_validate({"kind": "openai", "keys": [{"secret": "env:T_KEY"}], "models": ["a"]}),
        "azure": ProviderConfig.model_validate(
            {
                "kind": "azure",
                "base_url": "http://127.0.0.1:1",
                "keys": [{"secret": "env:T_KEY"}],
                "api_version": "2024-10-21",
                "deployments": {"b": "p"},
            }
        ),
    }
    models = {"fast": ModelConfig.model_validate({"deployments": [{"provider": "openai", "model": "c"}]})}
    prices = {"openai/d": object(), "nobody/e": object(), "f": object()}
    assert configured_deployments(providers, models, prices) == {
        ("openai", "a"),
        ("azure", "b"),
        ("openai", "c"),
        ("openai", "d"),
    }


def test_rate_limit_and_budget_rejections_are_counted_by_key() -> None:
    metrics = HubMetrics(process=False)
    cases = [("rate_limit_error", 429, "k1", "alice"), ("insufficient_quota", 402, "k1", "alice")]
    cases += [("rate_limit_error", 429, None, None), ("forbidden", 403, "k1", "alice")]
    for outcome, status, key_id, key_name in cases:
        row = entry("mcp", "mcp.tool", "x", outcome=outcome, status=status, key_id=key_id, key_name=key_name)
        metrics.observe(row, call_of(row), None, False)
    samples = scrape(metrics)
    assert value(samples, "agenthub_rejections_total", reason="rate_limit", key="alice") == 1
    assert value(samples, "agenthub_rejections_total", reason="budget", key="alice") == 1
    assert value(samples, "agenthub_rejections_total", reason="rate_limit", key=OTHER) == 1
    assert sum(v for (name, _), v in samples.items() if name == "agenthub_rejections_total") == 3


def test_code_mode_and_agent_mode_are_derived_from_their_calls() -> None:
    metrics = HubMetrics(process=False)
    rows = [
        (entry("mcp", "code.run", "run_code", latency_ms=300.0), Principal(BOB)),
        (entry("code", "mcp.tool", "fixture__echo", parent_id="call_0"), Principal(BOB)),
        (entry("code", "mcp.tool", "fixture__echo", parent_id="call_0"), Principal(BOB)),
        (entry("openai", "llm.chat", "fast", latency_ms=50.0), Principal(ALICE)),
        (entry("agent", "llm.chat", "fast", parent_id="call_3"), Principal(ALICE)),
        (entry("agent", "mcp.tool", "fixture__echo", parent_id="call_3"), Principal(ALICE)),
        (entry("openai", "llm.chat", "fast"), Principal(BOB)),  # bob's key offers no tools in chat: no loop
        (entry("anthropic", "llm.messages", "fast", latency_ms=70.0), Principal(ALICE)),
    ]
    for row, principal in rows:
        call = call_of(row, context={"api": "messages" if row.operation == "llm.messages" else "chat"})
        metrics.observe(row, call, Outcome({}, principal=principal), False)
    samples = scrape(metrics)
    assert value(samples, "agenthub_code_runs_total", outcome="ok") == 1
    assert value(samples, "agenthub_code_run_duration_seconds_count") == 1
    assert value(samples, "agenthub_code_run_duration_seconds_sum") == 0.3
    assert value(samples, "agenthub_code_inner_calls_total", operation="mcp.tool") == 2
    assert value(samples, "agenthub_agent_loops_total", outcome="ok") == 2
    assert value(samples, "agenthub_agent_steps_total", operation="llm.chat") == 1
    assert value(samples, "agenthub_agent_steps_total", operation="mcp.tool") == 1


def test_guardrail_findings_are_counted_by_guardrail_rule_direction_and_action() -> None:
    metrics = HubMetrics(process=False)
    findings = (
        Finding("secrets", "secrets", "aws-access-key", "block"),
        Finding("pii", "pii", "email", "redact"),
        Finding("pii", "pii", "email", "redact"),
    )
    metrics.observe_findings(Scope("input", "mcp", "mcp.tool"), Verdict("block", None, findings))
    samples = scrape(metrics)
    labels = {"guardrail": "secrets", "rule": "aws-access-key", "direction": "input", "action": "block"}
    assert value(samples, "agenthub_guardrail_findings_total", **labels) == 1
    assert (
        value(
            samples,
            "agenthub_guardrail_findings_total",
            **{**labels, "guardrail": "pii", "rule": "email", "action": "redact"},
        )
        == 2
    )


def test_state_kept_elsewhere_is_read_at_scrape_time() -> None:
    upstream = Upstream(HttpConfig(name="docs", transport="http", url="http://127.0.0.1:1/mcp"))
    sessions = {"alice": 2}
    pool: list[tuple[int, int, int] | None] = [None]
    sources = MetricSources(upstreams=lambda: {"docs": upstream}, sessions=lambda: sessions, pool=lambda: pool[0])
    metrics = HubMetrics(sources, process=False)

    before = scrape(metrics)
    assert value(before, "agenthub_upstream_up", server="docs") == 0
    assert value(before, "agenthub_upstream_state", server="docs", state="connecting") == 1
    assert value(before, "agenthub_sandbox_workers") == 0

    upstream.health.state = UpstreamState.READY
    upstream.health.reconnects = 3
    sessions["alice"] = 5
    pool[0] = (4, 1, 2)
    after = scrape(metrics)
    assert value(after, "agenthub_upstream_up", server="docs") == 1
    assert value(after, "agenthub_upstream_state", server="docs", state="connecting") == 0
    assert value(after, "agenthub_upstream_reconnects_total", server="docs") == 3
    assert value(after, "agenthub_mcp_sessions", key="alice") == 5
    assert (value(after, "agenthub_sandbox_workers"), value(after, "agenthub_sandbox_busy")) == (4, 1)
    assert value(after, "agenthub_sandbox_waiting") == 2


def test_each_metric_keeps_a_bounded_number_of_label_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "MAX_SERIES", 3)
    metrics = HubMetrics(process=False)
    findings = tuple(Finding("remote", "remote", f"rule-{i}", "log") for i in range(10))
    metrics.observe_findings(Scope("output", "llm", "llm.chat"), Verdict("allow", None, findings))
    samples = scrape(metrics)
    found = {labels: v for (name, labels), v in samples.items() if name == "agenthub_guardrail_findings_total"}
    assert len(found) == 4  # three label sets, then everything else under `other`
    other = (("action", OTHER), ("direction", OTHER), ("guardrail", OTHER), ("rule", OTHER))
    assert found[other] == 7


def test_a_scraper_that_asks_for_openmetrics_gets_it() -> None:
    metrics = HubMetrics(process=False)
    row = entry("mcp", "mcp.list", "tools")
    metrics.observe(row, call_of(row), Outcome({}), False)
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    text, plain_type = metrics.render(None)
    assert plain_type.startswith("text/plain") and b"# EOF" not in text


def test_the_grafana_dashboard_reads_only_metrics_the_hub_exports() -> None:
    dashboard = json.loads((REPO_ROOT / "examples" / "grafana-dashboard.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    used = {name for expr in expressions for name in re.findall(r"\bagenthub_\w+", expr)}
    body, _ = HubMetrics(process=False).render(None)
    suffixes = re.compile(r"_(total|bucket|sum|count)$")
    exported = {suffixes.sub("", name) for name in re.findall(r"^# TYPE (agenthub_\w+) ", body.decode(), re.MULTILINE)}
    assert used and {suffixes.sub("", name) for name in used} <= exported, sorted(used)
    assert len(expressions) > 30


def test_metrics_are_on_by_default_and_the_scrape_token_is_a_secret_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "agenthub.toml"
    assert settings_from_dict({}, file).metrics == MetricsSection(enabled=True, token=None)
    monkeypatch.setenv("T_SCRAPE_TOKEN", "s3cret-scrape")
    assert settings_from_dict({"metrics": {"token": "env:T_SCRAPE_TOKEN"}}, file).metrics.token == "s3cret-scrape"
    monkeypatch.delenv("T_SCRAPE_TOKEN")
    with pytest.raises(ConfigError, match=r"metrics\.token"):
        settings_from_dict({"metrics": {"token": "env:T_SCRAPE_TOKEN"}}, file)
    with pytest.raises(ConfigError, match="metrics"):
        settings_from_dict({"metrics": {"token": ""}}, file)

"""Request-log rows exported as OTLP log records: a real hub posts them to the OTLP/HTTP receiver in the test, which
decodes `/v1/logs` with `opentelemetry-proto`; each record carries the row's columns under the span attributes'
names and the ids of its call's root span. No test waits on time: both export threads are flushed."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import anyio
import httpx2
import pytest

from hub.app import Hub
from hub.telemetry.traceconfig import LogConfig, TelemetrySection, log_config
from llm.testing import FakeScript, Reply, openai_app, serve
from tests.hub.harness import ALICE, base_config, fixture_stdio, running_hub
from tests.telemetry.otlp import Receiver
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

MODEL = "openai/gpt-4o-mini"


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


async def _flush(hub: Hub) -> None:
    assert hub.tracing is not None and hub.log_export is not None
    assert await anyio.to_thread.run_sync(hub.tracing.force_flush)
    assert await anyio.to_thread.run_sync(hub.log_export.force_flush)


async def test_an_mcp_call_a_chat_call_and_a_denial_are_exported_as_log_records(tmp_path: Path) -> None:
    os.environ["T_LOGS_KEY"] = "sk-logs-test"
    receiver = Receiver()
    script = FakeScript(default=Reply("hello there"))
    mcp_header, mcp_trace, mcp_client = _traceparent()
    chat_header, chat_trace, chat_client = _traceparent()
    denied_header, denied_trace, denied_client = _traceparent()
    async with serve(openai_app(script, keys=["sk-logs-test"])) as provider, serve(receiver.app()) as collector:
        config = base_config(
            {"fixture": fixture_stdio()}, [{"name": "alice", "secret": ALICE, "tools": ["*"], "models": ["*"]}]
        )
        config["providers"] = {
            "openai": {"kind": "openai", "base_url": f"{provider}/v1", "keys": [{"secret": "env:T_LOGS_KEY"}]}
        }
        config["telemetry"] = {"otlp_endpoint": collector, "service_name": "hub-under-test"}
        async with running_hub(config, tmp_path) as hub, httpx2.AsyncClient(timeout=PATIENCE) as http:
            arguments = json.dumps({"message": "hi"})
            tool = {"id": "c1", "type": "function", "function": {"name": "fixture__echo", "arguments": arguments}}
            called = await http.post(
                hub.url("/v1/mcp/tool/execute"),
                json=tool,
                headers={"authorization": f"Bearer {ALICE}", "traceparent": mcp_header},
            )
            chat = await http.post(
                hub.url("/v1/chat/completions"),
                json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": f"Bearer {ALICE}", "traceparent": chat_header},
            )
            denied = await http.post(
                hub.url("/v1/mcp/tool/execute"),
                json=tool,
                headers={"authorization": "Bearer ahk-not-a-key", "traceparent": denied_header},
            )
            await _flush(hub.hub)
    assert (called.status_code, chat.status_code, denied.status_code) == (200, 200, 401)
    assert receiver.content_types == {"application/x-protobuf"}

    def root(client_span: str) -> tuple[str, str]:
        (span,) = [s for s in receiver.spans if s.parent == client_span]
        return span.span_id, str(span.attributes["agenthub.call.id"])

    mcp_root, mcp_call = root(mcp_client)
    record = receiver.log_of(mcp_call)
    assert (record.trace_id, record.span_id) == (mcp_trace, mcp_root), "the record names its call's root span"
    assert record.event_name == "agenthub.request" and record.service == "hub-under-test"
    assert (record.severity, record.severity_number) == ("INFO", 9)
    assert record.body.startswith("mcp.tool fixture__echo ok 200 in ")
    assert (
        record.attributes.items()
        >= {
            "agenthub.door": "rest",
            "agenthub.operation": "mcp.tool",
            "agenthub.target": "fixture__echo",
            "agenthub.key.name": "alice",
            "agenthub.server": "fixture",
            "agenthub.tool": "echo",
            "agenthub.outcome": "ok",
            "agenthub.status": 200,
        }.items()
    )
    assert isinstance(record.attributes["agenthub.latency_ms"], float)

    chat_root, chat_call = root(chat_client)
    record = receiver.log_of(chat_call)
    assert (record.trace_id, record.span_id) == (chat_trace, chat_root)
    assert (
        record.attributes.items()
        >= {
            "agenthub.door": "openai",
            "agenthub.operation": "llm.chat",
            "gen_ai.request.model": MODEL,
            "agenthub.status": 200,
        }.items()
    )
    assert record.attributes["agenthub.usage.tokens"] > 0
    assert str(record.attributes["agenthub.deployment"]).startswith("openai/")

    denied_root, denied_call = root(denied_client)
    record = receiver.log_of(denied_call)
    assert (record.trace_id, record.span_id) == (denied_trace, denied_root)
    assert (record.severity, record.attributes["agenthub.status"]) == ("WARN", 401)
    assert record.attributes["error.type"] == record.attributes["agenthub.outcome"] == "authentication_error"
    assert "agenthub.key.name" not in record.attributes
    assert len(receiver.logs) == 3, json.dumps([r.attributes for r in receiver.logs], default=str)


def test_log_export_follows_telemetry_and_its_own_variables() -> None:
    assert log_config(TelemetrySection(), {}) is None
    section = TelemetrySection(otlp_endpoint="http://collector:4318/", service_name="gw", compression="gzip")
    assert log_config(section, {}) == LogConfig("http://collector:4318/v1/logs", "gw", (), True)
    only_logs = TelemetrySection(logs_endpoint="http://logs:4318")
    assert log_config(only_logs, {}) == LogConfig("http://logs:4318/v1/logs", "agenthub")
    env = {"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://env:1/custom", "OTEL_SERVICE_NAME": "env"}
    assert log_config(section, env) == LogConfig("http://env:1/custom", "env", (), True)
    assert log_config(section, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:2"}) == LogConfig(
        "http://base:2/v1/logs", "gw", (), True
    )
    assert log_config(section, {"OTEL_LOGS_EXPORTER": "none"}) is None
    assert log_config(section, {"OTEL_SDK_DISABLED": "true"}) is None
    with pytest.raises(ValueError, match="OTEL_LOGS_EXPORTER='console' is not supported"):
        log_config(section, {"OTEL_LOGS_EXPORTER": "console"})

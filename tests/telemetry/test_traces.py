"""OpenTelemetry traces, end to end: a real hub exports over OTLP/HTTP to a receiver in the test, which decodes
the spans with `opentelemetry-proto`; the client's `traceparent` is the root's parent, and the upstreams (an MCP
server, the fake LLM provider) receive the context of the same trace.

No test waits on time: spans are exported by `force_flush` (the batch processor's interval plays no part).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from hub.app import Hub
from llm.testing import FakeRequest, FakeScript, Fault, Reply, ToolCall, openai_app, serve
from tests.doors.harness import ENV, hub_with_fakes, running_fakes
from tests.hub.harness import ALICE, RunningHub, base_config, fixture_stdio, running_hub
from tests.telemetry.otlp import Receiver
from tests.tools import served
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

MODEL = "openai/gpt-4o-mini"
TRACE_SERVER = str(Path(__file__).with_name("trace_server.py"))
PROGRAM = "total = fixture.add(a=2, b=3)\nprint(await total)\n"


def _traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


async def _flush(hub: Hub) -> None:
    """Export every ended span now (the exporter posts from its own thread, to the receiver on this loop)."""
    assert hub.tracing is not None
    assert await anyio.to_thread.run_sync(hub.tracing.force_flush)


@asynccontextmanager
async def _traced_hub(tmp_path: Path, receiver: Receiver, config: dict[str, Any]) -> AsyncGenerator[RunningHub]:
    async with serve(receiver.app()) as collector:
        config = {**config, "telemetry": {"otlp_endpoint": collector, "service_name": "hub-under-test"}}
        async with running_hub(config, tmp_path) as hub:
            yield hub


def _agent_config(provider: str, servers: dict[str, Any], **key: Any) -> dict[str, Any]:
    os.environ["T_AGENT_KEY"] = "sk-agent-test"
    config = base_config(servers, None)
    config["providers"] = {
        "openai": {"kind": "openai", "base_url": f"{provider}/v1", "keys": [{"secret": "env:T_AGENT_KEY"}]}
    }
    config["keys"] = [
        {"name": "agent", "secret": ALICE, "models": ["openai/*"], "tools": ["*"], "chat_tools": ["*"], **key}
    ]
    return config


async def test_an_agent_loop_with_a_code_mode_run_is_one_trace_under_the_clients_span(tmp_path: Path) -> None:
    def model(request: FakeRequest) -> Reply:
        last = request.body["messages"][-1]
        if last["role"] == "tool":
            return Reply(f"done: {last['content']}")
        return Reply(tool_calls=[ToolCall("execute_tool_code", {"code": PROGRAM}, id="c1")])

    script = FakeScript(model, model)
    receiver = Receiver()
    header, trace_id, client_span = _traceparent()
    async with serve(openai_app(script, keys=["sk-agent-test"])) as provider:
        config = _agent_config(provider, {"fixture": fixture_stdio()}, code_mode=True, auto_execute=["fixture__add"])
        async with _traced_hub(tmp_path, receiver, config) as hub:
            async with httpx2.AsyncClient(timeout=PATIENCE) as http:
                body = {"model": MODEL, "messages": [{"role": "user", "content": "add 2 and 3"}]}
                response = await http.post(
                    hub.url("/v1/chat/completions"),
                    json=body,
                    headers={"authorization": f"Bearer {ALICE}", "traceparent": header},
                )
            await _flush(hub.hub)
    answer = response.json()
    assert response.status_code == 200 and "5" in answer["choices"][0]["message"]["content"]
    loop_id = answer["agenthub"]["loop_id"]

    roots = [s for s in receiver.spans if s.parent == client_span]
    assert len(roots) == 1
    root = roots[0]
    assert (root.name, root.kind, root.trace_id) == (f"chat {MODEL}", "server", trace_id)
    assert root.attributes["agenthub.call.id"] == loop_id and root.attributes["gen_ai.operation.name"] == "chat"
    assert root.attributes["agenthub.key.name"] == "agent" and root.service == "hub-under-test"
    assert {s.trace_id for s in receiver.spans} == {trace_id}, "every span is in the client's trace"

    # The stages of the loop's call nest as the pipeline does, the executor innermost.
    chain = ["agenthub.authn", "agenthub.authz", "agenthub.limits", "agenthub.guardrails", f"invoke_agent {MODEL}"]
    parent = root
    for name in chain:
        (child,) = [s for s in receiver.children(parent) if s.name == name]
        parent = child
    loop = parent
    assert loop.attributes["gen_ai.operation.name"] == "invoke_agent"

    # The loop's two model turns and its Code Mode run are calls of their own, under the loop.
    turns = [s for s in receiver.under(loop, f"chat {MODEL}") if s.attributes.get("agenthub.parent.id") == loop_id]
    assert len(turns) == 2 and all(t.kind == "internal" and t.attributes["agenthub.door"] == "openai" for t in turns)
    for turn in turns:
        (attempt,) = receiver.under(turn, "chat gpt-4o-mini")
        assert attempt.kind == "client"
        assert attempt.attributes["gen_ai.provider.name"] == "openai"
        assert attempt.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert {t.attributes["gen_ai.usage.input_tokens"] for t in turns} and all(
        t.attributes["gen_ai.response.model"] for t in turns
    )

    (run_call,) = receiver.under(loop, "tools/call execute_tool_code")
    assert run_call.attributes["agenthub.operation"] == "code.run"
    (run,) = receiver.under(run_call, "execute_code")
    (inner,) = [s for s in receiver.under(run, "tools/call fixture__add") if s.kind == "internal"]
    assert inner.attributes["agenthub.door"] == "code"
    assert inner.attributes["agenthub.parent.id"] == run_call.attributes["agenthub.call.id"]
    (upstream,) = [s for s in receiver.under(inner, "tools/call fixture__add") if s.kind == "client"]
    assert upstream.attributes["mcp.method.name"] == "tools/call"
    assert upstream.attributes["gen_ai.tool.name"] == "fixture__add"
    assert upstream.attributes["agenthub.server"] == "fixture"

    # What the provider received belongs to the same trace, each request with its own attempt's span.
    sent = {r.headers["traceparent"].split("-")[2] for r in script.requests}
    attempts = {s.span_id for s in receiver.named("chat gpt-4o-mini")}
    assert {r.headers["traceparent"].split("-")[1] for r in script.requests} == {trace_id}
    assert sent == attempts


async def test_upstream_mcp_servers_receive_the_trace_in_meta_and_headers(tmp_path: Path) -> None:
    receiver = Receiver()
    header, trace_id, client_span = _traceparent()
    argv = [sys.executable, TRACE_SERVER, "--transport", "streamable-http", "--port", "{port}"]
    async with served(argv) as upstream:
        servers = {
            "web": {"transport": "http", "url": upstream.url("/mcp")},
            "local": {"transport": "stdio", "command": sys.executable, "args": [TRACE_SERVER]},
        }
        async with _traced_hub(tmp_path, receiver, base_config(servers)) as hub:
            headers = {"authorization": f"Bearer {ALICE}", "traceparent": header}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=PATIENCE) as http,
                Client(streamable_http_client(hub.url(), http_client=http), mode="legacy") as client,
            ):
                web = json.loads((await client.call_tool("web__seen", {})).content[0].text)  # type: ignore[union-attr]
                local = json.loads((await client.call_tool("local__seen", {})).content[0].text)  # type: ignore[union-attr]
            await _flush(hub.hub)
    assert {web["protocol"], local["protocol"]} == {"2025-11-25", "2026-07-28"}, "both protocol revisions are covered"
    for seen in (web, local):
        assert seen["meta"]["traceparent"].split("-")[1] == trace_id
    assert web["headers"]["traceparent"].split("-")[1] == trace_id
    for name in ("web__seen", "local__seen"):
        (span,) = [s for s in receiver.named(f"tools/call {name}") if s.kind == "client"]
        call_span = receiver.ancestors(span)[-1]
        assert call_span.parent == client_span and call_span.trace_id == trace_id
        seen = web if name == "web__seen" else local
        assert seen["meta"]["traceparent"].split("-")[2] in {
            span.span_id,
            *(s.span_id for s in receiver.children(span)),
        }


async def test_a_clients_meta_traceparent_is_the_parent_when_the_header_is_absent(tmp_path: Path) -> None:
    receiver = Receiver()
    header, trace_id, client_span = _traceparent()
    config = base_config({"fixture": fixture_stdio()})
    async with _traced_hub(tmp_path, receiver, config) as hub:
        async with (
            httpx2.AsyncClient(headers={"authorization": f"Bearer {ALICE}"}, timeout=PATIENCE) as http,
            Client(streamable_http_client(hub.url(), http_client=http), mode="legacy") as client,
        ):
            result = await client.call_tool("fixture__echo", {"message": "hi"}, meta={"traceparent": header})
        await _flush(hub.hub)
    assert not result.is_error
    (root,) = [s for s in receiver.named("tools/call fixture__echo") if s.kind == "server"]
    assert (root.trace_id, root.parent) == (trace_id, client_span)
    assert root.attributes["mcp.method.name"] == "tools/call" and root.attributes["mcp.session.id"]


async def test_a_refused_call_is_a_failed_span_marked_at_the_stage_that_refused(tmp_path: Path) -> None:
    receiver = Receiver()
    header, trace_id, _ = _traceparent()
    async with _traced_hub(tmp_path, receiver, base_config({"fixture": fixture_stdio()})) as hub:
        async with httpx2.AsyncClient(timeout=PATIENCE) as http:
            refused = await http.post(
                hub.url("/v1/mcp/tool/execute"),
                json={"id": "c1", "type": "function", "function": {"name": "fixture__echo", "arguments": "{}"}},
                headers={"authorization": "Bearer ahk-not-a-key", "traceparent": header},
            )
        await _flush(hub.hub)
    assert refused.status_code == 401
    (root,) = [s for s in receiver.spans if s.trace_id == trace_id and s.kind == "server"]
    assert root.error and root.attributes["error.type"] == "authentication_error"
    (authn,) = receiver.children(root)
    assert authn.name == "agenthub.authn" and authn.error
    assert not receiver.children(authn), "nothing past the stage that refused ran"


async def test_a_streamed_agent_loops_turns_and_tools_are_under_its_span(tmp_path: Path) -> None:
    """The turns of a streamed loop run while the door sends the stream, after the loop's call returned: they are
    still the loop's children, and the loop's spans end when the stream does."""

    def model(request: FakeRequest) -> Reply:
        last = request.body["messages"][-1]
        if last["role"] == "tool":
            return Reply(f"done: {last['content']}")
        return Reply(tool_calls=[ToolCall("fixture__add", {"a": 2, "b": 3}, id="c1")])

    script = FakeScript(model, model)
    receiver = Receiver()
    header, trace_id, client_span = _traceparent()
    async with serve(openai_app(script, keys=["sk-agent-test"])) as provider:
        config = _agent_config(provider, {"fixture": fixture_stdio()}, auto_execute=["fixture__add"])
        async with _traced_hub(tmp_path, receiver, config) as hub:
            async with httpx2.AsyncClient(timeout=PATIENCE) as http:
                body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "add"}]}
                response = await http.post(
                    hub.url("/v1/chat/completions"),
                    json=body,
                    headers={"authorization": f"Bearer {ALICE}", "traceparent": header},
                )
            await _flush(hub.hub)
    assert response.status_code == 200 and response.text.rstrip().endswith("data: [DONE]")
    (root,) = [s for s in receiver.spans if s.parent == client_span]
    (loop,) = receiver.under(root, f"invoke_agent {MODEL}")
    turns = [s for s in receiver.under(loop, f"chat {MODEL}") if s.kind == "internal"]
    tools = [s for s in receiver.under(loop, "tools/call fixture__add") if s.kind == "internal"]
    assert len(turns) == 2 and len(tools) == 1
    assert {s.trace_id for s in receiver.spans} == {trace_id}


async def test_each_retry_and_fallback_is_a_span_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    receiver = Receiver()
    header, trace_id, client_span = _traceparent()
    models = {
        "fast": {
            "deployments": [{"provider": "openai", "model": "gpt-4o-mini"}],
            "fallbacks": ["anthropic/claude-3-5-haiku"],
        }
    }
    async with serve(receiver.app()) as collector, running_fakes() as fakes:
        fakes.scripts["openai"].push(Fault.http(503), Fault.http(500))
        fakes.scripts["anthropic"].push(Reply("from the fallback"))
        telemetry = {"otlp_endpoint": collector}
        async with hub_with_fakes(tmp_path, fakes, models=models, telemetry=telemetry) as hub:
            async with httpx2.AsyncClient(timeout=PATIENCE) as http:
                response = await http.post(
                    hub.url("/v1/chat/completions"),
                    json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]},
                    headers={"authorization": f"Bearer {ALICE}", "traceparent": header},
                )
            await _flush(hub.hub)
    assert response.status_code == 200
    (root,) = [s for s in receiver.spans if s.parent == client_span]
    assert (
        root.attributes["gen_ai.provider.name"] == "anthropic" and root.attributes["agenthub.provider"] == "anthropic"
    )
    (route,) = receiver.under(root, "agenthub.route fast")
    attempts = [s for s in receiver.children(route) if s.kind == "client"]
    assert [(s.name, s.error, s.attributes.get("error.type")) for s in attempts] == [
        ("chat gpt-4o-mini", True, "503"),
        ("chat gpt-4o-mini", True, "500"),
        ("chat claude-3-5-haiku", False, None),
    ]
    assert [s.attributes["gen_ai.provider.name"] for s in attempts] == ["openai", "openai", "anthropic"]
    sent = [r.headers["traceparent"] for r in fakes.scripts["openai"].requests + fakes.scripts["anthropic"].requests]
    assert [t.split("-")[2] for t in sent] == [s.span_id for s in attempts]
    assert {t.split("-")[1] for t in sent} == {trace_id}

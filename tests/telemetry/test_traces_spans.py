"""The span of every kind of call, as the tracing wrappers name and describe it: a pipeline of small real stages
around a real executor function, spans kept by the SDK's in-memory exporter (what the OTLP exporter would send)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from hub.call import Call, Operation, Outcome, Principal
from hub.errors import Forbidden, NotFound
from hub.executors.stream import AgentStream
from hub.governance.keys import VirtualKey
from hub.governance.usage import Usage
from hub.pipeline import Handler, Stage, compose
from hub.telemetry.traceconfig import TraceConfig
from hub.telemetry.traces import Tracing
from llm.result import Hop

pytestmark = pytest.mark.anyio

KEY = VirtualKey(id="k1", name="alice", tools=("*",), team="search", customer="acme")


class AuditStage:
    async def __call__(self, call: Call, call_next: Handler) -> Outcome:
        return await call_next(call)


class AuthnStage:
    async def __call__(self, call: Call, call_next: Handler) -> Outcome:
        if call.credential == "bad":
            raise Forbidden("no")
        outcome = await call_next(Call(call.door, call.operation, call.target, call.payload, Principal(KEY)))
        outcome.principal = Principal(KEY)
        return outcome


async def executor(call: Call) -> Outcome:
    if call.target == "missing":
        raise NotFound("unknown tool: missing")
    if call.operation == "llm.chat":
        response = {
            "id": "chatcmpl-1",
            "model": "gpt-4o-mini-2024",
            "choices": [{"finish_reason": "stop", "message": {"content": "hi"}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2},
        }
        usage = Usage(tokens=9, usd=0.25, cache_read_tokens=3, reasoning_tokens=1)
        return Outcome(response, usage=usage, headers={"x-agenthub-provider": "main"})
    if call.target == "broken":
        return Outcome({"isError": True}, tool_error=True)
    return Outcome({})


def _tracing() -> tuple[Tracing, InMemorySpanExporter, Handler]:
    exporter = InMemorySpanExporter()
    tracing = Tracing(
        TraceConfig("http://127.0.0.1:9/v1/traces", 1.0, "test"),
        exporter,
        provider_kind=lambda name: {"main": "azure"}.get(name),
        server_of=lambda call: "fixture" if call.operation.startswith("mcp.") else None,
    )
    stages: list[Stage] = [AuditStage(), AuthnStage()]
    wrapped, wrapped_executor = tracing.wrap(stages, executor)
    return tracing, exporter, compose(wrapped, wrapped_executor)


def _spans(tracing: Tracing, exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    assert tracing.force_flush()
    return {f"{s.kind.name} {s.name}": s for s in exporter.get_finished_spans()}


@pytest.mark.parametrize(
    ("operation", "target", "payload", "root", "executor_span", "attributes"),
    [
        ("mcp.prompt", "fixture__greet", {}, "prompts/get fixture__greet", "CLIENT prompts/get fixture__greet",
         {"gen_ai.prompt.name": "fixture__greet", "mcp.method.name": "prompts/get"}),
        ("mcp.resource", "fixture://readme", {}, "resources/read", "CLIENT resources/read",
         {"mcp.resource.uri": "fixture://readme", "mcp.method.name": "resources/read"}),
        ("mcp.complete", "fixture__greet", {}, "completion/complete", "CLIENT completion/complete",
         {"mcp.method.name": "completion/complete"}),
        ("mcp.subscribe", "fixture://readme", {}, "resources/subscribe", "CLIENT resources/subscribe",
         {"mcp.resource.uri": "fixture://readme"}),
        ("mcp.list", "tools", None, "tools/list", "INTERNAL agenthub.execute", {"mcp.method.name": "tools/list"}),
        ("mcp.session", "initialize", None, "initialize", "INTERNAL agenthub.execute",
         {"mcp.method.name": "initialize"}),
        ("code.read", "read_tool_file", {}, "tools/call read_tool_file", "INTERNAL agenthub.execute",
         {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "read_tool_file"}),
        ("llm.embed", "text-embed", {"input": "x"}, "embeddings text-embed", "INTERNAL agenthub.route text-embed",
         {"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "text-embed"}),
        ("llm.models", "", None, "llm.models", "INTERNAL agenthub.route", {"agenthub.operation": "llm.models"}),
    ],
)  # fmt: skip
async def test_each_operation_has_its_conventional_name_and_attributes(
    operation: Operation, target: str, payload: Any, root: str, executor_span: str, attributes: dict[str, Any]
) -> None:
    tracing, exporter, pipeline = _tracing()
    await pipeline(Call("mcp", operation, target, payload))
    spans = _spans(tracing, exporter)
    call_span = spans[f"SERVER {root}"]
    assert dict(call_span.attributes or {}).items() >= attributes.items()
    assert call_span.attributes is not None and call_span.attributes["agenthub.key.name"] == "alice"
    assert call_span.attributes["agenthub.team"] == "search" and call_span.attributes["agenthub.customer"] == "acme"
    assert executor_span in spans
    tracing.shutdown()


async def test_an_llm_call_carries_the_genai_request_response_and_usage() -> None:
    tracing, exporter, pipeline = _tracing()
    body = {"model": "fast", "temperature": 0.5, "max_tokens": 20, "top_p": 1}
    await pipeline(Call("openai", "llm.chat", "fast", body, context={"api": "chat"}))
    span = _spans(tracing, exporter)["SERVER chat fast"]
    assert dict(span.attributes or {}) | {"agenthub.call.id": None} == {
        "agenthub.call.id": None,
        "agenthub.door": "openai",
        "agenthub.operation": "llm.chat",
        "agenthub.api": "chat",
        "agenthub.key.name": "alice",
        "agenthub.team": "search",
        "agenthub.customer": "acme",
        "agenthub.provider": "main",
        "agenthub.usage.tokens": 9,
        "agenthub.usage.cost_usd": 0.25,
        "agenthub.usage.reasoning_tokens": 1,
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "azure.ai.openai",
        "gen_ai.request.model": "fast",
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.max_tokens": 20,
        "gen_ai.request.top_p": 1,
        "gen_ai.response.model": "gpt-4o-mini-2024",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 7,
        "gen_ai.usage.output_tokens": 2,
        "gen_ai.usage.cache_read.input_tokens": 3,
    }
    tracing.shutdown()


async def test_a_refusal_marks_the_stage_that_refused_and_the_executor_that_failed() -> None:
    tracing, exporter, pipeline = _tracing()
    with pytest.raises(Forbidden):
        await pipeline(Call("mcp", "mcp.tool", "fixture__echo", {}, credential="bad"))
    spans = _spans(tracing, exporter)
    assert spans["INTERNAL agenthub.authn"].status.status_code is StatusCode.ERROR
    assert spans["SERVER tools/call fixture__echo"].attributes["error.type"] == "permission_error"  # type: ignore[index]
    exporter.clear()
    with pytest.raises(NotFound):
        await pipeline(Call("mcp", "mcp.tool", "missing", {}))
    spans = _spans(tracing, exporter)
    assert spans["CLIENT tools/call missing"].status.status_code is StatusCode.ERROR
    assert spans["INTERNAL agenthub.authn"].status.status_code is StatusCode.UNSET, "the refusal was not authn's"
    assert spans["SERVER tools/call missing"].attributes["agenthub.status"] == 404  # type: ignore[index]
    exporter.clear()
    outcome = await pipeline(Call("mcp", "mcp.tool", "broken", {}))
    spans = _spans(tracing, exporter)
    assert outcome.tool_error and spans["CLIENT tools/call broken"].attributes["error.type"] == "tool_error"  # type: ignore[index]
    assert spans["SERVER tools/call broken"].status.status_code is StatusCode.ERROR
    tracing.shutdown()


async def test_a_streamed_outcomes_spans_end_with_the_stream() -> None:
    async def chunks() -> AsyncGenerator[dict[str, Any]]:
        yield {"choices": []}

    async def streaming(call: Call) -> Outcome:
        return Outcome(AgentStream(chunks()))

    exporter = InMemorySpanExporter()
    tracing = Tracing(TraceConfig("http://127.0.0.1:9/v1/traces", 1.0, "test"), exporter)
    stages, wrapped = tracing.wrap([AuditStage()], streaming)
    outcome = await compose(stages, wrapped)(Call("openai", "llm.chat", "fast", {}))
    assert tracing.force_flush() and exporter.get_finished_spans() == ()
    stream = outcome.value
    assert isinstance(stream, AgentStream)
    async for _ in stream:
        pass
    await stream.aclose()
    spans = _spans(tracing, exporter)
    assert {"SERVER chat fast", "INTERNAL agenthub.route fast"} <= spans.keys()
    assert tracing.running == {}
    tracing.shutdown()


async def test_a_provider_attempt_is_a_client_span_that_records_its_failure() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(TraceConfig("http://127.0.0.1:9/v1/traces", 1.0, "test"), exporter)

    class ProviderDown(Exception):
        status = 503

    with pytest.raises(ProviderDown), tracing.attempt(Hop("local", "llama", "default")):
        raise ProviderDown
    (span,) = _spans(tracing, exporter).values()
    assert span.kind is SpanKind.CLIENT and span.name == "chat llama"
    assert span.attributes is not None and span.attributes["error.type"] == "503"
    assert span.attributes["gen_ai.provider.name"] == "local"
    tracing.shutdown()


def test_sampling_follows_the_ratio_and_a_clients_decision() -> None:
    from opentelemetry.trace import SpanContext, TraceFlags, TraceState

    from hub.telemetry.spans import Recorder

    exporter = InMemorySpanExporter()
    never = Recorder(exporter, "test", 0.0, parent_based=True)
    dropped = never.start("root", SpanKind.SERVER, {})
    child = never.start("child", SpanKind.INTERNAL, {}, dropped)
    never.end(child)
    never.end(dropped)
    assert child.carriers[0][1].endswith("-00") and child.context.trace_id == dropped.context.trace_id
    sampled_client = SpanContext(0xABC, 0xDEF, True, TraceFlags(TraceFlags.SAMPLED), TraceState([("v", "1")]))
    followed = never.start("call", SpanKind.SERVER, {}, sampled_client)
    never.end(followed)
    assert followed.carriers == (
        ("traceparent", f"00-{0xABC:032x}-{followed.context.span_id:016x}-01"),
        ("tracestate", "v=1"),
    )
    assert never.processor.force_flush()
    assert [s.name for s in exporter.get_finished_spans()] == ["call"], "the client's decision wins (parent-based)"
    exporter.clear()
    ratio_only = Recorder(exporter, "test", 0.0, parent_based=False)
    ratio_only.end(ratio_only.start("call", SpanKind.SERVER, {}, sampled_client))
    assert ratio_only.processor.force_flush() and exporter.get_finished_spans() == ()
    never.processor.shutdown()
    ratio_only.processor.shutdown()


async def test_the_clients_sampling_decision_reaches_the_stage_spans_and_the_upstream() -> None:
    """A client's `traceparent` (with `tracestate`) read by the ASGI layer: a sampled one gives the call its stage
    spans, chained under the root, and the executor's upstream context; an unsampled one records nothing, yet
    what goes upstream carries the client's trace and decision."""
    from http1.propagation import trace_context
    from hub.telemetry.traces import client_context

    exporter = InMemorySpanExporter()
    tracing = Tracing(TraceConfig("http://127.0.0.1:9/v1/traces", 0.0, "test"), exporter)
    upstream: list[tuple[tuple[str, str], ...] | None] = []

    async def remember(call: Call) -> Outcome:
        upstream.append(trace_context.get())
        return Outcome({})

    stages, wrapped = tracing.wrap([AuditStage(), AuthnStage()], remember)
    pipeline = compose(stages, wrapped)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await pipeline(Call("mcp", "mcp.tool", "echo", {}, credential="good"))

    trace_id = "0af7651916cd43dd8448eb211c80319c"
    for flags in ("01", "00"):
        headers = [
            (b"traceparent", f"00-{trace_id}-b7ad6b7169203331-{flags}".encode()),
            (b"tracestate", b"v=1"),
            (b"mcp-session-id", b"s-1"),
        ]
        await client_context(app)({"type": "http", "headers": headers}, None, None)  # type: ignore[arg-type]

    assert tracing.force_flush()
    spans = {f"{s.kind.name} {s.name}": s for s in exporter.get_finished_spans()}
    assert set(spans) == {"SERVER tools/call echo", "INTERNAL agenthub.authn", "CLIENT tools/call echo"}, (
        "only the sampled call is recorded"
    )
    root, authn, executor = (
        spans["SERVER tools/call echo"],
        spans["INTERNAL agenthub.authn"],
        spans["CLIENT tools/call echo"],
    )
    assert root.parent is not None and root.parent.span_id == 0xB7AD6B7169203331 and root.parent.is_remote
    assert root.attributes is not None and root.attributes["mcp.session.id"] == "s-1"
    contexts = {name: span.get_span_context() for name, span in spans.items()}
    assert all(c is not None and c.trace_id == int(trace_id, 16) for c in contexts.values())
    root_context, authn_context = contexts["SERVER tools/call echo"], contexts["INTERNAL agenthub.authn"]
    assert root_context is not None and authn_context is not None
    assert authn.parent is not None and authn.parent.span_id == root_context.span_id
    assert executor.parent is not None and executor.parent.span_id == authn_context.span_id
    assert authn_context.trace_state.get("v") == "1"
    sampled, unsampled = upstream
    assert sampled is not None and unsampled is not None
    assert sampled[0][1].startswith(f"00-{trace_id}-") and sampled[0][1].endswith("-01")
    assert unsampled[0][1].startswith(f"00-{trace_id}-") and unsampled[0][1].endswith("-00")
    assert ("tracestate", "v=1") in unsampled
    tracing.shutdown()

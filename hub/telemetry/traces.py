"""OpenTelemetry traces: the one place that knows span names and attribute names.

Loaded only when tracing is on (`hub.telemetry.traceconfig`): the hub then composes these wrappers into the
pipeline at start-up, and a hub that does not trace runs exactly the pipeline it ran before (no per-call work).

The span tree of one governed call, outermost first::

    {call span}            the audit stage: the call's root span (SERVER for a client's call, INTERNAL nested)
      agenthub.authn       each stage is a child of the one outside it (the pipeline is an onion)
        agenthub.authz
          agenthub.limits
            agenthub.guardrails
              {executor}   `tools/call {tool}` (CLIENT: the upstream MCP request), `invoke_agent {model}` (an
                           Agent Mode loop), `execute_code` (a Code Mode run), `agenthub.route {model}` (LLM)
                {attempt}  `chat {model}` (CLIENT), one per provider request: retries and fallbacks included

Nested calls (an Agent Mode loop's turns and tool runs, a Code Mode program's tool calls) are children of their
parent's executor span: the span context travels in context variables into the nested pipeline calls (the host
side of a sandbox worker's tool calls runs in the task that runs the program), and a nested call also finds its
parent's executor span by its `parent_id` while the parent runs (a streamed loop runs its turns while the door
sends the stream, after the loop's call returned and its context was left).

A client's W3C `traceparent` (HTTP header, or `params._meta.traceparent` of an MCP request without the header)
becomes the parent of the root span; the upstream request carries its span's context on (`traceparent` header
through `http1`, and MCP `_meta`).

Attributes follow the OpenTelemetry GenAI conventions for LLM calls (`gen_ai.operation.name`,
`gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.response.model`, `gen_ai.usage.*`) and the MCP
conventions for tool calls (`mcp.method.name`, `gen_ai.tool.name`, `mcp.session.id`, `mcp.resource.uri`);
the hub's own are under `agenthub.*`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from time import time_ns
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Receive, Scope, Send

from http1.propagation import trace_context
from hub.call import Call, Outcome, agent_loop
from hub.errors import HubError
from hub.executors.stream import ClosingStream
from hub.pipeline import Handler, Stage
from hub.telemetry.batching import BatchSettings
from hub.telemetry.otlphttp import OtlpHttp, OtlpHttpSettings
from hub.telemetry.spans import CLIENT, INTERNAL, SERVER, Recorder, Span, current
from hub.telemetry.traceconfig import TraceConfig
from llm.result import Hop

__all__ = ["Tracing", "client_context"]

_PROPAGATOR = TraceContextTextMapPropagator()
_MCP_METHODS: Mapping[str, str] = {
    "mcp.tool": "tools/call",
    "mcp.prompt": "prompts/get",
    "mcp.resource": "resources/read",
    "mcp.complete": "completion/complete",
    "mcp.subscribe": "resources/subscribe",
}
"""The MCP method of each operation the hub forwards to an upstream."""
_GEN_AI_OPERATIONS: Mapping[str, str] = {
    "chat": "chat",
    "responses": "chat",
    "messages": "chat",
    "count_tokens": "count_tokens",
}
_PROVIDER_NAMES: Mapping[str, str] = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "bedrock": "aws.bedrock",
}
"""`gen_ai.provider.name` of each provider kind (an OpenAI-compatible server is named by its configured name)."""

_llm_operation: ContextVar[str] = ContextVar("agenthub_llm_operation", default="chat")
"""The GenAI operation of the LLM call whose provider attempts run in this context."""
mcp_session: ContextVar[str | None] = ContextVar("agenthub_mcp_session", default=None)
"""The client's MCP session id for the request being served (set by the MCP layers, read by the call span)."""


class Tracing:
    """The span recorder (exporting over OTLP/HTTP in batches) and the wrappers the hub composes when tracing."""

    def __init__(
        self,
        config: TraceConfig,
        exporter: SpanExporter | None = None,
        *,
        provider_kind: Callable[[str], str | None] | None = None,
        server_of: Callable[[Call], str | None] | None = None,
    ) -> None:
        """`exporter` replaces the OTLP/HTTP one (an SDK exporter: tests keep spans in memory); `provider_kind`
        gives a configured provider's kind, `server_of` the upstream server a call goes to (both for attributes).

        Raises:
            ValueError: an `OTEL_*` variable of the exporter or the batch processor cannot be followed.
        """
        self.http: OtlpHttp | None = None
        sink: SpanExporter | Callable[[bytes], None]
        if exporter is None:
            settings = OtlpHttpSettings.from_env(config.endpoint, "TRACES", dict(config.headers), config.gzip)
            self.http = OtlpHttp(settings)
            sink = self.http.post
        else:
            sink = exporter
        self.recorder = Recorder(
            sink,
            config.service_name,
            config.sample_ratio,
            config.parent_based,
            BatchSettings.from_env("OTEL_BSP"),
        )
        self.streaming: dict[str, Span] = {}
        """The root span of each streamed call whose stream is still open, by call id (its request-log row is
        recorded when the stream ends, outside the call's context)."""
        self.running: dict[str, Span] = {}
        """The executor span of each call still running, by call id: a nested call's parent (a streamed Agent Mode
        loop runs its turns while the door sends the stream, outside the context its call ran in)."""
        self._provider_kind = provider_kind or (lambda name: None)
        self._server_of = server_of or (lambda call: None)

    # -- composition ------------------------------------------------------------------------------------------

    def wrap(self, stages: Sequence[Stage], executor: Handler) -> tuple[list[Stage], Handler]:
        """The stages and executor with their spans: the first stage (audit) opens the call's root span."""
        wrapped: list[Stage] = []
        for index, stage in enumerate(stages):
            if index == 0:
                wrapped.append(_CallSpan(self, stage))
            else:
                wrapped.append(_StageSpan(self.recorder, stage, _stage_name(stage)))
        return wrapped, _ExecutorSpan(self, executor)

    def attempt(self, hop: Hop) -> _AttemptScope:
        """The router's attempt observer: one CLIENT span per provider request (retries and fallbacks each have
        their own), whose context the request carries (`traceparent`)."""
        return _AttemptScope(self, hop)

    async def mcp_middleware(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        """MCP SDK server middleware: a request the SDK serves runs in the session's task, not the HTTP request's,
        so its trace context is set here from the request's `traceparent` header, else its `_meta.traceparent`,
        else none (never the context of the request that opened the session)."""
        request = getattr(ctx, "request", None)
        headers: Mapping[str, str] = getattr(request, "headers", None) or {}
        carrier = {k: headers[k] for k in ("traceparent", "tracestate") if k in headers}
        if "traceparent" not in carrier:
            meta: Any = getattr(ctx, "meta", None) or {}
            if isinstance(meta, Mapping):
                carrier = {k: str(v) for k, v in meta.items() if k in ("traceparent", "tracestate")}
        token = current.set(_remote(carrier))
        session_token = mcp_session.set(headers.get("mcp-session-id"))
        try:
            return await call_next(ctx)
        finally:
            mcp_session.reset(session_token)
            current.reset(token)

    def force_flush(self) -> bool:
        """Export every ended span now (the batch processor otherwise waits for its interval)."""
        return self.recorder.force_flush()

    def shutdown(self) -> None:
        """Export what is left and stop the exporter's thread."""
        self.recorder.shutdown()
        if self.http is not None:
            self.http.shutdown()
            self.http.close()

    def span_ids(self, call_id: str) -> tuple[int, int, bool] | None:
        """The (trace id, span id, sampled) of the root span of call `call_id`, when the call runs in this context
        or is a stream still open (the request log's OTLP records carry them)."""
        span = current.get()
        if type(span) is not Span or span.attributes.get("agenthub.call.id") != call_id:
            span = self.streaming.get(call_id)
            if span is None:
                return None
        return span.trace_id, span.span_id, span.sampled

    # -- attributes -------------------------------------------------------------------------------------------

    def provider_name(self, provider: str) -> str:
        kind = self._provider_kind(provider)
        return _PROVIDER_NAMES.get(kind or "", provider)

    def server_of(self, call: Call) -> str | None:
        try:
            return self._server_of(call)
        except Exception:  # an attribute is never worth failing a call
            return None


def client_context(app: ASGIApp) -> ASGIApp:
    """`app` with each HTTP request served in the client's trace context (its `traceparent`/`tracestate` headers),
    which the call span of whatever the request runs takes as parent; and the MCP session id it names."""

    async def traced(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        # one dict built in C, three lookups: cheaper than a loop over the headers in Python (the last of a
        # repeated header wins, as it did in that loop)
        headers: dict[bytes, bytes] = dict(scope.get("headers") or ())
        parent = headers.get(b"traceparent")
        remote = None
        if parent is not None:
            carrier = {"traceparent": parent.decode("latin-1")}
            state = headers.get(b"tracestate")
            if state is not None:
                carrier["tracestate"] = state.decode("latin-1")
            remote = _remote(carrier)
        session = headers.get(b"mcp-session-id")
        token = current.set(remote)
        session_token = mcp_session.set(session.decode("latin-1") if session is not None else None)
        try:
            await app(scope, receive, send)
        finally:
            mcp_session.reset(session_token)
            current.reset(token)

    return traced


def _remote(carrier: Mapping[str, str]) -> SpanContext | None:
    """The client's span context in a W3C carrier (`traceparent`, `tracestate`), if it holds a valid one."""
    if "traceparent" not in carrier:
        return None
    context = trace.get_current_span(_PROPAGATOR.extract(carrier)).get_span_context()
    return context if context.is_valid else None


class _CallSpan:
    """The call's root span around the audit stage; ended when a streamed outcome ends."""

    def __init__(self, tracing: Tracing, stage: Stage) -> None:
        self._tracing = tracing
        self._stage = stage

    async def __call__(self, call: Call, call_next: Handler) -> Outcome:
        tracing = self._tracing
        recorder = tracing.recorder
        parent_id = call.parent_id
        parent = tracing.running.get(parent_id) if parent_id is not None else None
        span = recorder.start(
            _call_name(call),
            INTERNAL if parent_id is not None else SERVER,
            _call_attributes(call),
            parent,
        )
        if span.sampled:  # an unsampled call records no stage spans
            span.children = []
        token = current.set(span)
        deferred = False
        try:
            outcome = await self._stage(call, call_next)
            _outcome_attributes(span, call, outcome, tracing)
            value = outcome.value
            if isinstance(value, ClosingStream):
                deferred = True
                tracing.streaming[call.call_id] = span
                value.on_close(_stream_closer(span, recorder, tracing.streaming, call.call_id))
            return outcome
        except HubError as exc:
            _refused(span, exc)
            raise
        except BaseException as exc:
            span.fail("cancelled" if not isinstance(exc, Exception) else type(exc).__name__)
            raise
        finally:
            current.reset(token)
            if not deferred:
                recorder.end(span)


class _StageSpan:
    """A stage's span; marked as failed only when this stage refused the call (not when a later one did).

    Kept on the call's root span as a `StageRecord` (no span object, no queueing of its own); a call that is not
    sampled records none."""

    __slots__ = ("_bits", "_name", "_stage")

    def __init__(self, recorder: Recorder, stage: Stage, name: str) -> None:
        self._bits = recorder.bits
        self._stage = stage
        self._name = f"agenthub.{name}"

    async def __call__(self, call: Call, call_next: Handler) -> Outcome:
        root = current.get()
        if type(root) is not Span or root.children is None:  # outside a sampled call's span: nothing to record
            return await self._stage(call, call_next)
        parent = root.top
        span_id = root.top = self._bits(64) or 1
        start = time_ns()
        failure = None
        try:
            return await self._stage(call, call_next)
        except HubError as exc:
            if root.inner_failure is not exc:  # else a later stage or the executor refused: its span says so
                root.inner_failure = exc
                failure = (exc.code, exc.message, exc.wire.status)
            raise
        finally:
            root.top = parent
            root.children.append((self._name, span_id, parent, start, time_ns(), failure))


class _ExecutorSpan:
    """The executor's span: the upstream MCP request (CLIENT), an Agent Mode loop, a Code Mode run, or the LLM
    routing whose provider attempts are its children. Inside it, upstream requests carry its trace context."""

    def __init__(self, tracing: Tracing, executor: Handler) -> None:
        self._tracing = tracing
        self._executor = executor

    async def __call__(self, call: Call) -> Outcome:
        name, kind, attributes = self._describe(call)
        llm_token = None
        if call.operation.startswith("llm."):
            llm_token = _llm_operation.set(_GEN_AI_OPERATIONS.get(str(call.context.get("api", "")), "embeddings"))
        tracing = self._tracing
        recorder = tracing.recorder
        running = tracing.running
        outer = current.get()
        if type(outer) is Span and outer.children is not None:  # in a sampled call's span: the innermost stage's
            span = Span(
                name, kind, outer.trace_id, recorder.bits(64) or 1, outer.top, True, outer.trace_state, False,
                attributes,
            )  # fmt: skip
        else:
            span = recorder.start(name, kind, attributes, outer)
        running[call.call_id] = span
        token = current.set(span)
        # an MCP request goes upstream from here (LLM requests from their attempts' spans, nested calls from theirs)
        carried = trace_context.set(span.carriers) if kind == CLIENT else None
        deferred = False
        try:
            outcome = await self._executor(call)
            if outcome.tool_error:
                span.fail("tool_error")
            value = outcome.value
            if isinstance(value, ClosingStream):
                deferred = True
                value.on_close(_executor_closer(span, recorder, running, call.call_id))
            return outcome
        except HubError as exc:
            if span.inner_failure is not exc:
                _refused(span, exc)
            _seen(outer, exc)
            raise
        finally:
            if carried is not None:
                trace_context.reset(carried)
            current.reset(token)
            if llm_token is not None:
                _llm_operation.reset(llm_token)
            if not deferred:
                running.pop(call.call_id, None)
                recorder.end(span)

    def _describe(self, call: Call) -> tuple[str, int, dict[str, Any]]:
        operation = call.operation
        method = _MCP_METHODS.get(operation)
        if method is not None:
            attributes: dict[str, Any] = {"mcp.method.name": method}
            server = self._tracing.server_of(call)
            if server is not None:
                attributes["agenthub.server"] = server
            if operation == "mcp.tool":
                attributes["gen_ai.operation.name"] = "execute_tool"
                attributes["gen_ai.tool.name"] = call.target
                return f"{method} {call.target}", CLIENT, attributes
            if operation == "mcp.prompt":
                attributes["gen_ai.prompt.name"] = call.target
                return f"{method} {call.target}", CLIENT, attributes
            if operation in ("mcp.resource", "mcp.subscribe"):
                attributes["mcp.resource.uri"] = call.target
            return method, CLIENT, attributes
        if operation == "code.run":
            return "execute_code", INTERNAL, {"gen_ai.tool.name": call.target}
        if agent_loop(call):
            attributes = {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "agenthub",
                "gen_ai.request.model": call.target,
            }
            return f"invoke_agent {call.target}", INTERNAL, attributes
        if operation.startswith("llm."):
            return f"agenthub.route {call.target}".rstrip(), INTERNAL, {"gen_ai.request.model": call.target}
        return "agenthub.execute", INTERNAL, {}


class _AttemptScope:
    """One provider request's span, current while the request runs (its `traceparent` rides along)."""

    __slots__ = ("_hop", "_span", "_tokens", "_tracing")

    def __init__(self, tracing: Tracing, hop: Hop) -> None:
        self._tracing = tracing
        self._hop = hop

    def __enter__(self) -> Span:
        hop = self._hop
        tracing = self._tracing
        operation = _llm_operation.get()
        attributes = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": tracing.provider_name(hop.provider),
            "gen_ai.request.model": hop.model,
            "agenthub.provider": hop.provider,
            "agenthub.provider.key": hop.key,
        }
        span = self._span = tracing.recorder.start(f"{operation} {hop.model}", CLIENT, attributes)
        self._tokens = (current.set(span), trace_context.set(span.carriers))
        return span

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        span = self._span
        if exc is not None:
            span.fail(_provider_error_type(exc), getattr(exc, "message", None) or type(exc).__name__)
        spans, carried = self._tokens
        trace_context.reset(carried)
        current.reset(spans)
        self._tracing.recorder.end(span)


def _provider_error_type(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    return str(status) if isinstance(status, int) else type(exc).__name__


def _stage_name(stage: Stage) -> str:
    return type(stage).__name__.removesuffix("Stage").lower()


def _call_name(call: Call) -> str:
    """`{mcp.method.name} {target}` for MCP requests, `{gen_ai.operation.name} {model}` for LLM calls."""
    operation = call.operation
    method = _MCP_METHODS.get(operation)
    if method is not None:
        return f"{method} {call.target}" if operation in ("mcp.tool", "mcp.prompt") else method
    if operation in ("code.run", "code.read"):
        return f"tools/call {call.target}"
    if operation == "mcp.list":
        return f"{call.target}/list"
    if operation == "mcp.session":
        return call.target or "mcp.session"
    if operation in ("llm.chat", "llm.messages"):
        return f"chat {call.target}"
    if operation == "llm.embed":
        return f"embeddings {call.target}"
    return operation


def _call_attributes(call: Call) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "agenthub.call.id": call.call_id,
        "agenthub.door": call.door,
        "agenthub.operation": call.operation,
    }
    if call.parent_id is not None:
        attributes["agenthub.parent.id"] = call.parent_id
    if call.scope is not None:
        attributes["agenthub.scope"] = call.scope
    operation = call.operation
    if operation.startswith("llm."):
        attributes["gen_ai.request.model"] = call.target
        api = call.context.get("api")
        if operation == "llm.embed":
            attributes["gen_ai.operation.name"] = "embeddings"
        elif operation in ("llm.chat", "llm.messages"):
            attributes["gen_ai.operation.name"] = "chat"
        if api:
            attributes["agenthub.api"] = str(api)
        payload = call.payload
        if isinstance(payload, dict):
            _request_parameters(attributes, payload)
        return attributes
    _mcp_attributes(attributes, call)
    return attributes


def _mcp_attributes(attributes: dict[str, Any], call: Call) -> None:
    operation = call.operation
    method = _MCP_METHODS.get(operation)
    if operation in ("mcp.tool", "code.run", "code.read"):
        method = "tools/call"
        attributes["gen_ai.operation.name"] = "execute_tool"
        attributes["gen_ai.tool.name"] = call.target
    elif operation == "mcp.prompt":
        attributes["gen_ai.prompt.name"] = call.target
    elif operation in ("mcp.resource", "mcp.subscribe"):
        attributes["mcp.resource.uri"] = call.target
    elif operation == "mcp.list":
        method = f"{call.target}/list"
    elif operation == "mcp.session":
        method = call.target
    if method:
        attributes["mcp.method.name"] = method
    if call.door == "mcp":
        session = mcp_session.get()
        if session:
            attributes["mcp.session.id"] = session


def _request_parameters(attributes: dict[str, Any], payload: Mapping[str, Any]) -> None:
    for field, name in (
        ("max_tokens", "gen_ai.request.max_tokens"),
        ("max_completion_tokens", "gen_ai.request.max_tokens"),
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
    ):
        value = payload.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[name] = value


def _outcome_attributes(span: Span, call: Call, outcome: Outcome, tracing: Tracing) -> None:
    principal = outcome.principal or call.principal
    if principal is not None:
        key = principal.key
        span.attributes["agenthub.key.name"] = key.name
        if key.team:
            span.attributes["agenthub.team"] = key.team
        if key.customer:
            span.attributes["agenthub.customer"] = key.customer
    if outcome.tool_error:
        span.fail("tool_error")
    provider = outcome.headers.get("x-agenthub-provider")
    if provider:
        span.attributes["gen_ai.provider.name"] = tracing.provider_name(provider)
        span.attributes["agenthub.provider"] = provider
    value = outcome.value
    if call.operation.startswith("llm.") and isinstance(value, Mapping):
        _response_attributes(span, value)
    if outcome.usage is not None:
        _usage_attributes(span, outcome.usage)


def _response_attributes(span: Span, response: Mapping[str, Any]) -> None:
    model = response.get("model")
    if isinstance(model, str):
        span.attributes["gen_ai.response.model"] = model
    response_id = response.get("id")
    if isinstance(response_id, str):
        span.attributes["gen_ai.response.id"] = response_id
    choices = response.get("choices")
    if isinstance(choices, list):
        reasons = [str(c.get("finish_reason")) for c in choices if isinstance(c, dict) and c.get("finish_reason")]
        if reasons:
            span.attributes["gen_ai.response.finish_reasons"] = tuple(reasons)
    usage = response.get("usage")
    if isinstance(usage, Mapping):
        tokens: Mapping[str, Any] = usage
        input_tokens = tokens.get("prompt_tokens", tokens.get("input_tokens"))
        output_tokens = tokens.get("completion_tokens", tokens.get("output_tokens"))
        if isinstance(input_tokens, int):
            span.attributes["gen_ai.usage.input_tokens"] = input_tokens
        if isinstance(output_tokens, int):
            span.attributes["gen_ai.usage.output_tokens"] = output_tokens


def _usage_attributes(span: Span, usage: Any) -> None:
    span.attributes["agenthub.usage.tokens"] = int(usage.tokens)
    if usage.priced:
        span.attributes["agenthub.usage.cost_usd"] = float(usage.usd)
    if usage.cache_read_tokens:
        span.attributes["gen_ai.usage.cache_read.input_tokens"] = int(usage.cache_read_tokens)
    if usage.reasoning_tokens:
        span.attributes["agenthub.usage.reasoning_tokens"] = int(usage.reasoning_tokens)


def _refused(span: Span, exc: HubError) -> None:
    span.fail(exc.code, exc.message)
    span.attributes["agenthub.status"] = exc.wire.status


def _seen(outer: Span | SpanContext | None, exc: BaseException) -> None:
    """Tell the span outside that a failure passing through it was recorded below (it records only its own)."""
    if isinstance(outer, Span):
        outer.inner_failure = exc


def _executor_closer(
    span: Span, recorder: Recorder, running: dict[str, Span], call_id: str
) -> Callable[[ClosingStream], Awaitable[None]]:
    """End a streamed call's executor span when its stream ends (its nested calls have run by then)."""

    async def close(stream: ClosingStream) -> None:
        running.pop(call_id, None)
        if stream.failure is not None:
            _refused(span, stream.failure)
        recorder.end(span)

    return close


def _stream_closer(
    span: Span, recorder: Recorder, streaming: dict[str, Span], call_id: str
) -> Callable[[ClosingStream], Awaitable[None]]:
    """End a streamed call's root span when its stream ends, with how it ended and what it used."""

    async def close(stream: ClosingStream) -> None:
        streaming.pop(call_id, None)
        if stream.failure is not None:
            _refused(span, stream.failure)
        elif not stream.finished:
            span.fail("cancelled", "the caller went away")
        if stream.usage is not None:
            _usage_attributes(span, stream.usage)
        recorder.end(span)

    return close

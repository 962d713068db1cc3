"""Spans at the cost the hot path allows: recorded in a small object, queued as it is, encoded in the export thread.

The OpenTelemetry SDK's own `Span` does much per span that a gateway does not need on every call (sampler calls,
attribute validation behind a lock, span limits, a processor call at the start, the context attached and
detached), and its batch processor wants a `ReadableSpan` built per span; its OTLP exporter then builds a protobuf
object tree per span. Measured, each of those costs several times what recording the span does. The hub's spans are
made here instead, with the same ids, sampling rule and W3C propagation: a span is a handful of slots (the ids as
integers), ended by queueing it to a `Batcher`, whose thread writes the OTLP wire bytes directly
(`hub.telemetry.otlpwire`) and posts them (`hub.telemetry.otlphttp`). An SDK `SpanExporter` can stand in for the
OTLP one (tests keep spans in the SDK's in-memory exporter): it gets `ReadableSpan`s, built in the thread.

Which span is current lives in one context variable (`current`): our own span, or the remote span context a
client sent. An unsampled span still has ids, so that what it sends upstream carries the client's decision.

The spans of a call's governance stages are lighter still: a stage span is never current, never a parent of
anything but the next stage's span or the executor's, and ends before its call's root span, so it is kept as a
tuple on the root (`Span.children`, a `StageRecord`) and exported with it, rather than as an object queued on its
own (measured: the object, its initialiser and its queueing were about half of what a stage span cost).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from contextvars import ContextVar
from time import time_ns
from typing import Any, TypeAlias, cast

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from hub.telemetry.batching import Batcher, BatchSettings
from hub.telemetry.otlpwire import SpanEncoder, resource_field, scope_field, traces_request

__all__ = ["CLIENT", "INTERNAL", "SERVER", "Recorder", "Span", "SpanExport", "StageRecord", "current"]

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_LOWER_64 = (1 << 64) - 1
_ERROR = StatusCode.ERROR.value
SCOPE = "agenthub"
"""The instrumentation scope of the hub's spans and log records."""
INTERNAL, SERVER, CLIENT = 1, 2, 3
"""Span kinds as OTLP numbers them (a plain int is cheaper to pass and compare than an enum member)."""

StageRecord: TypeAlias = tuple[str, int, int, int, int, tuple[str, str, int] | None]
"""A stage's span kept on its call's root span: (name, span id, parent span id, start, end, failure), the failure
being (`error.type`, status message, `agenthub.status`) when the stage refused the call. It shares the root's trace
id, trace state and sampling decision, and is an INTERNAL span with no other attributes."""


class Span:
    """One span being recorded: its name, kind, ids, attributes and status; ended by `Recorder.end`."""

    __slots__ = (
        "_carriers",
        "attributes",
        "children",
        "end",
        "error",
        "inner_failure",
        "kind",
        "name",
        "parent_id",
        "remote_parent",
        "sampled",
        "span_id",
        "start",
        "top",
        "trace_id",
        "trace_state",
    )

    def __init__(
        self,
        name: str,
        kind: int,
        trace_id: int,
        span_id: int,
        parent_id: int,
        sampled: bool,
        trace_state: TraceState | None,
        remote_parent: bool,
        attributes: dict[str, Any],
    ) -> None:
        self.name = name
        self.kind = kind
        """`INTERNAL`, `SERVER` or `CLIENT`."""
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        """0 for a root span."""
        self.sampled = sampled
        self.trace_state = trace_state
        self.remote_parent = remote_parent
        self.attributes = attributes
        self.error: str | None = None
        """None while the span has not failed, else the status message ("" for none)."""
        self.start = time_ns()
        self.end = 0
        self._carriers: tuple[tuple[str, str], ...] | None = None
        self.children: list[StageRecord] | None = None
        """Of a call's root span: its stages' spans, ended (exported with the root); None for any other span."""
        self.top = span_id
        """Of a call's root span: the id of the innermost of its stages' spans open now (the parent of the next one,
        or of the executor's span). The stage spans of a call run one inside the other in one task, so they pass the
        parent here rather than through the context variable (an attribute costs less than a context switch)."""
        self.inner_failure: BaseException | None = None
        """A failure a span inside this one recorded already (this one then records it no more); of a call's root
        span, the failure one of its stages or its executor recorded."""

    def fail(self, error_type: str, message: str | None = None) -> None:
        """Mark the span as failed, with the kind of failure (`error.type`)."""
        self.attributes["error.type"] = error_type
        self.error = message or ""

    @property
    def context(self) -> SpanContext:
        """The span's context as the OpenTelemetry API spells it."""
        return SpanContext(
            self.trace_id, self.span_id, False, _SAMPLED if self.sampled else _NOT_SAMPLED, self.trace_state
        )

    @property
    def status(self) -> Status:
        return Status(StatusCode.ERROR, self.error or None) if self.error is not None else Status(StatusCode.UNSET)

    @property
    def carriers(self) -> tuple[tuple[str, str], ...]:
        """The W3C `traceparent` (and `tracestate`) that requests sent within this span carry."""
        carriers = self._carriers
        if carriers is None:
            flags = "01" if self.sampled else "00"
            carriers = (("traceparent", f"00-{self.trace_id:032x}-{self.span_id:016x}-{flags}"),)
            if self.trace_state:
                carriers += (("tracestate", self.trace_state.to_header()),)
            self._carriers = carriers
        return carriers


current: ContextVar[Span | SpanContext | None] = ContextVar("agenthub_current_span", default=None)
"""The span new spans in this context are children of: the hub's own, or the client's (remote) span context."""


class SpanExport:
    """Encodes batches of ended spans as OTLP `ExportTraceServiceRequest`s and hands the bytes to `send` (in the
    export thread)."""

    def __init__(self, send: Callable[[bytes], None], resource: Resource) -> None:
        self._send = send
        self._encoder = SpanEncoder()
        self._resource = resource_field(0x0A, dict(resource.attributes))
        self._scope = scope_field(0x0A, SCOPE)
        self._schema_url = resource.schema_url

    def __call__(self, spans: list[Span]) -> None:
        span = self._encoder.span
        encoded: list[bytes] = []
        for s in spans:
            state = s.trace_state.to_header() if s.trace_state else ""
            encoded.append(
                span(
                    s.trace_id,
                    s.span_id,
                    s.parent_id,
                    state,
                    s.name,
                    s.kind,
                    s.start,
                    s.end,
                    s.attributes,
                    None if s.error is None else (_ERROR, s.error),
                    s.remote_parent,
                )
            )
            if s.children:
                trace_id = s.trace_id
                for name, span_id, parent_id, start, end, failure in s.children:
                    attributes, status = _stage_status(failure)
                    encoded.append(
                        span(trace_id, span_id, parent_id, state, name, INTERNAL, start, end, attributes, status, False)
                    )
        self._send(traces_request(self._resource, self._scope, encoded, self._schema_url))


def _stage_status(failure: tuple[str, str, int] | None) -> tuple[dict[str, Any] | None, tuple[int, str] | None]:
    """A stage span's attributes and status: none, or those of the refusal it recorded."""
    if failure is None:
        return None, None
    error_type, message, status = failure
    return {"error.type": error_type, "agenthub.status": status}, (_ERROR, message)


class _SdkExport:
    """Hands ended spans to an OpenTelemetry SDK `SpanExporter` as `ReadableSpan`s (built in the export thread)."""

    def __init__(self, exporter: SpanExporter, resource: Resource) -> None:
        self.exporter = exporter
        self._resource = resource
        self._scope = InstrumentationScope(SCOPE)

    def __call__(self, spans: list[Span]) -> None:
        readable: list[ReadableSpan] = []
        for s in spans:
            readable.append(self._readable(s))
            readable.extend(self._stage(s, child) for child in s.children or ())
        self.exporter.export(readable)

    def _stage(self, root: Span, record: StageRecord) -> ReadableSpan:
        name, span_id, parent_id, start, end, failure = record
        flags = _SAMPLED if root.sampled else _NOT_SAMPLED
        attributes, status = _stage_status(failure)
        return ReadableSpan(
            name=name,
            context=SpanContext(root.trace_id, span_id, False, flags, root.trace_state),
            parent=SpanContext(root.trace_id, parent_id, False, flags, root.trace_state),
            resource=self._resource,
            attributes=attributes or {},
            kind=SpanKind.INTERNAL,
            status=Status(StatusCode.ERROR, status[1] or None) if status is not None else Status(StatusCode.UNSET),
            start_time=start,
            end_time=end,
            instrumentation_scope=self._scope,
        )

    def _readable(self, span: Span) -> ReadableSpan:
        parent = None
        if span.parent_id:
            flags = _SAMPLED if span.sampled else _NOT_SAMPLED
            parent = SpanContext(span.trace_id, span.parent_id, span.remote_parent, flags, span.trace_state)
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=parent,
            resource=self._resource,
            attributes=span.attributes,
            kind=SpanKind(span.kind - 1),
            status=span.status,
            start_time=span.start,
            end_time=span.end,
            instrumentation_scope=self._scope,
        )


class Recorder:
    """Starts spans (ids, sampling) and queues the sampled ones, ended, for the export thread."""

    def __init__(
        self,
        exporter: SpanExporter | Callable[[bytes], None],
        service_name: str,
        sample_ratio: float,
        parent_based: bool,
        batch: BatchSettings | None = None,
    ) -> None:
        """`exporter`: where ended spans go, an SDK `SpanExporter` or a function that sends an encoded OTLP export
        request (`OtlpHttp.post`)."""
        resource = Resource.create({"service.name": service_name})
        self._sdk: SpanExporter | None = exporter if isinstance(exporter, SpanExporter) else None
        export: Callable[[list[Span]], None]
        if isinstance(exporter, SpanExporter):
            export = _SdkExport(exporter, resource)
        else:
            export = SpanExport(exporter, resource)
        self.processor: Batcher[Span] = Batcher(export, batch or BatchSettings(), "agenthub-spans")
        self._queue = self.processor.add
        self._bound = round(sample_ratio * (1 << 64))
        self._parent_based = parent_based
        self.bits = random.Random().getrandbits
        """Random ids: `bits(64)` for a span, `bits(128)` for a trace (0, invalid, is replaced by 1)."""

    def start(
        self, name: str, kind: int | SpanKind, attributes: dict[str, Any], parent: Span | SpanContext | None = None
    ) -> Span:
        """A new span under `parent` (default: the current one); a new trace when there is none. `kind` is one of
        `INTERNAL`, `SERVER`, `CLIENT` (an API `SpanKind` is taken too)."""
        if type(kind) is not int:
            kind = cast("SpanKind", kind).value + 1
        if parent is None:
            parent = current.get()
        span_id = self.bits(64) or 1
        if parent is None:
            trace_id = self.bits(128) or 1
            sampled = (trace_id & _LOWER_64) < self._bound
            return Span(name, kind, trace_id, span_id, 0, sampled, None, False, attributes)
        if type(parent) is Span:
            return Span(
                name, kind, parent.trace_id, span_id, parent.span_id, parent.sampled, parent.trace_state, False,
                attributes,
            )  # fmt: skip
        assert isinstance(parent, SpanContext)
        trace_id = parent.trace_id
        if self._parent_based:
            sampled = parent.trace_flags.sampled
        else:
            sampled = (trace_id & _LOWER_64) < self._bound
        state = parent.trace_state or None
        return Span(name, kind, trace_id, span_id, parent.span_id, sampled, state, parent.is_remote, attributes)

    def end(self, span: Span) -> None:
        """Finish `span`; a sampled one is queued for the export thread."""
        if span.sampled:
            span.end = time_ns()
            self._queue(span)

    def force_flush(self) -> bool:
        return self.processor.force_flush()

    def shutdown(self) -> None:
        """Export what is queued, stop the thread and the SDK exporter if there is one."""
        self.processor.shutdown()
        if self._sdk is not None:
            self._sdk.shutdown()

"""Spans at the cost the hot path allows: recorded in a small object, handed to the SDK's batch processor as a
finished `ReadableSpan`.

The OpenTelemetry SDK's own `Span` does much per span that a gateway does not need on every call (sampler calls,
attribute validation behind a lock, span limits, a processor call at the start, the context attached and
detached): measured, it costs several times what building the finished `ReadableSpan` does. The hub's spans are
made here instead, with the same ids, sampling rule and W3C propagation, and end in the same
`BatchSpanProcessor` and OTLP/HTTP exporter (its thread encodes and sends them in batches).

Which span is current lives in one context variable (`current`): our own span, or the remote span context a
client sent. An unsampled span still has ids, so that what it sends upstream carries the client's decision.
"""

from __future__ import annotations

import random
from contextvars import ContextVar
from time import time_ns
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

__all__ = ["Recorder", "Span", "current"]

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_UNSET = Status(StatusCode.UNSET)
_LOWER_64 = (1 << 64) - 1


class Span:
    """One span being recorded: its name, kind, ids, attributes and status; ended by `Recorder.end`."""

    __slots__ = ("_carriers", "attributes", "context", "inner_failure", "kind", "name", "parent", "start", "status")

    def __init__(
        self, name: str, kind: SpanKind, context: SpanContext, parent: SpanContext | None, attributes: dict[str, Any]
    ) -> None:
        self.name = name
        self.kind = kind
        self.context = context
        self.parent = parent
        self.attributes = attributes
        self.status = _UNSET
        self.start = time_ns()
        self._carriers: tuple[tuple[str, str], ...] | None = None
        self.inner_failure: BaseException | None = None
        """A failure a span inside this one recorded already (this one then records it no more)."""

    def fail(self, error_type: str, message: str | None = None) -> None:
        """Mark the span as failed, with the kind of failure (`error.type`)."""
        self.attributes["error.type"] = error_type
        self.status = Status(StatusCode.ERROR, message)

    @property
    def carriers(self) -> tuple[tuple[str, str], ...]:
        """The W3C `traceparent` (and `tracestate`) that requests sent within this span carry."""
        carriers = self._carriers
        if carriers is None:
            context = self.context
            flags = "01" if context.trace_flags.sampled else "00"
            carriers = (("traceparent", f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags}"),)
            if context.trace_state:
                carriers += (("tracestate", context.trace_state.to_header()),)
            self._carriers = carriers
        return carriers


current: ContextVar[Span | SpanContext | None] = ContextVar("agenthub_current_span", default=None)
"""The span new spans in this context are children of: the hub's own, or the client's (remote) span context."""


class Recorder:
    """Starts spans (ids, sampling) and hands the sampled ones, ended, to a `BatchSpanProcessor`."""

    def __init__(self, exporter: SpanExporter, service_name: str, sample_ratio: float, parent_based: bool) -> None:
        self.processor = BatchSpanProcessor(exporter)
        self._resource = Resource.create({"service.name": service_name})
        self._scope = InstrumentationScope("agenthub")
        self._bound = round(sample_ratio * (1 << 64))
        self._parent_based = parent_based
        self._random = random.Random()

    def start(
        self, name: str, kind: SpanKind, attributes: dict[str, Any], parent: Span | SpanContext | None = None
    ) -> Span:
        """A new span under `parent` (default: the current one); a new trace when there is none."""
        if parent is None:
            parent = current.get()
        bits = self._random.getrandbits
        if parent is None:
            trace_id = bits(128)
            context = SpanContext(trace_id, bits(64), False, self._decide(trace_id))
            return Span(name, kind, context, None, attributes)
        parent_context = parent if isinstance(parent, SpanContext) else parent.context
        trace_id = parent_context.trace_id
        flags = parent_context.trace_flags
        if parent_context.is_remote and not self._parent_based:
            flags = self._decide(trace_id)
        context = SpanContext(trace_id, bits(64), False, flags, parent_context.trace_state)
        return Span(name, kind, context, parent_context, attributes)

    def end(self, span: Span) -> None:
        """Finish `span`; a sampled one goes to the batch processor (exported from its thread)."""
        context = span.context
        if not context.trace_flags.sampled:
            return
        self.processor.on_end(
            ReadableSpan(
                name=span.name,
                context=context,
                parent=span.parent,
                resource=self._resource,
                attributes=span.attributes,
                kind=span.kind,
                status=span.status,
                start_time=span.start,
                end_time=time_ns(),
                instrumentation_scope=self._scope,
            )
        )

    def _decide(self, trace_id: int) -> TraceFlags:
        """The trace-id ratio rule of the specification: the same decision for the same trace everywhere."""
        return _SAMPLED if (trace_id & _LOWER_64) < self._bound else _NOT_SAMPLED

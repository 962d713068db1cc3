"""An OTLP/HTTP receiver for tests: a Starlette app that decodes `ExportTraceServiceRequest`s and
`ExportLogsServiceRequest`s with `opentelemetry-proto` and keeps the spans and log records, and helpers to read the
tree the spans form."""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

KINDS = {
    ProtoSpan.SPAN_KIND_INTERNAL: "internal",
    ProtoSpan.SPAN_KIND_SERVER: "server",
    ProtoSpan.SPAN_KIND_CLIENT: "client",
    ProtoSpan.SPAN_KIND_PRODUCER: "producer",
    ProtoSpan.SPAN_KIND_CONSUMER: "consumer",
}


@dataclass
class ReceivedSpan:
    """One exported span, its ids as lower-case hex (`parent` empty for a root)."""

    name: str
    trace_id: str
    span_id: str
    parent: str
    kind: str
    attributes: dict[str, Any]
    error: bool
    service: str


@dataclass
class ReceivedLog:
    """One exported log record, its ids as lower-case hex (empty when the record names no trace)."""

    body: Any
    severity: str
    severity_number: int
    event_name: str
    trace_id: str
    span_id: str
    attributes: dict[str, Any]
    service: str
    time: int


@dataclass
class Receiver:
    """The spans and log records received so far, in arrival order, and what each request came with."""

    spans: list[ReceivedSpan] = field(default_factory=list[ReceivedSpan])
    logs: list[ReceivedLog] = field(default_factory=list[ReceivedLog])
    content_types: set[str] = field(default_factory=set[str])
    headers: list[dict[str, str]] = field(default_factory=list[dict[str, str]])

    def app(self) -> Starlette:
        async def traces(request: Request) -> Response:
            body = await request.body()
            if request.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            self.content_types.add(request.headers.get("content-type", ""))
            self.headers.append(dict(request.headers))
            self.add(body)
            return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

        async def logs(request: Request) -> Response:
            body = await request.body()
            if request.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            self.content_types.add(request.headers.get("content-type", ""))
            self.headers.append(dict(request.headers))
            self.add_logs(body)
            return Response(ExportLogsServiceResponse().SerializeToString(), media_type="application/x-protobuf")

        return Starlette(
            routes=[Route("/v1/traces", traces, methods=["POST"]), Route("/v1/logs", logs, methods=["POST"])]
        )

    def add_logs(self, body: bytes) -> None:
        export = ExportLogsServiceRequest()
        export.ParseFromString(body)
        for resource_logs in export.resource_logs:
            service = next(
                (a.value.string_value for a in resource_logs.resource.attributes if a.key == "service.name"), ""
            )
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    self.logs.append(
                        ReceivedLog(
                            body=_value(record.body),
                            severity=record.severity_text,
                            severity_number=record.severity_number,
                            event_name=record.event_name,
                            trace_id=record.trace_id.hex(),
                            span_id=record.span_id.hex(),
                            attributes={a.key: _value(a.value) for a in record.attributes},
                            service=service,
                            time=record.time_unix_nano,
                        )
                    )

    def log_of(self, call_id: str) -> ReceivedLog:
        """The one log record of call `call_id`."""
        found = [r for r in self.logs if r.attributes.get("agenthub.call.id") == call_id]
        assert len(found) == 1, f"{len(found)} log records of call {call_id}: {self.logs}"
        return found[0]

    def add(self, body: bytes) -> None:
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        for resource_spans in export.resource_spans:
            service = next(
                (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"), ""
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent=span.parent_span_id.hex(),
                            kind=KINDS.get(span.kind, "unspecified"),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            error=span.status.code == span.status.STATUS_CODE_ERROR,
                            service=service,
                        )
                    )

    def named(self, name: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.name == name]

    def one(self, name: str) -> ReceivedSpan:
        found = self.named(name)
        assert len(found) == 1, f"{len(found)} spans named {name!r}: {[s.name for s in self.spans]}"
        return found[0]

    def parent_of(self, span: ReceivedSpan) -> ReceivedSpan | None:
        return next((s for s in self.spans if s.span_id == span.parent), None)

    def ancestors(self, span: ReceivedSpan) -> list[ReceivedSpan]:
        """The spans above `span`, nearest first (as far as they were received)."""
        chain: list[ReceivedSpan] = []
        parent = self.parent_of(span)
        while parent is not None:
            chain.append(parent)
            parent = self.parent_of(parent)
        return chain

    def children(self, span: ReceivedSpan) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.parent == span.span_id]

    def under(self, span: ReceivedSpan, name: str) -> list[ReceivedSpan]:
        """The spans named `name` below `span`, at any depth."""
        return [s for s in self.named(name) if span in self.ancestors(s)]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind is not None else None

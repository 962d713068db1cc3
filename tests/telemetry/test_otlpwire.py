"""The OTLP wire bytes the hub writes itself, decoded with `opentelemetry-proto`'s generated classes field by field:
resource, scope, every attribute value type, events, links, status, trace state, flags and dropped counts; and the
hub's spans as the export thread writes them, against what the SDK's own OTLP encoder makes of the same spans."""

from __future__ import annotations

from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, TraceState

from hub.telemetry.otlpwire import (
    SpanEncoder,
    any_value,
    attribute_fields,
    log_record,
    logs_request,
    resource_field,
    scope_field,
    traces_request,
    varint,
)
from hub.telemetry.spans import Recorder, Span, SpanExport, current

TRACE = 0x0AF7651916CD43DD8448EB211C80319C
SPAN = 0xB7AD6B7169203331
PARENT = 0x00F067AA0BA902B7
EVERY_TYPE: dict[str, Any] = {
    "s": "héllo",
    "empty": "",
    "t": True,
    "f": False,
    "i": 7,
    "zero": 0,
    "negative": -3,
    "big": 2**62,
    "d": 0.25,
    "nd": -1.5e300,
    "b": b"\x00\xff",
    "strings": ("a", "b"),
    "mixed": [1, "x", 2.5, False],
    "nested": {"k": "v", "n": [1, 2]},
    "none": None,
}


def _decoded(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_decoded(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _decoded(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def _expected(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_expected(v) for v in value]
    if isinstance(value, dict):
        return {k: _expected(v) for k, v in value.items()}
    return value


def test_varints_match_the_protobuf_encoding() -> None:
    assert [varint(n) for n in (0, 1, 127, 128, 300, 4095, 4096, 2**63)] == [
        b"\x00", b"\x01", b"\x7f", b"\x80\x01", b"\xac\x02", b"\xff\x1f", b"\x80\x20",
        b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
    ]  # fmt: skip
    assert varint(-1) == b"\xff" * 9 + b"\x01", "a negative int64 is ten bytes"


def test_every_attribute_value_type_decodes_to_its_value() -> None:
    for value in EVERY_TYPE.values():
        decoded = AnyValue()
        decoded.ParseFromString(any_value(value))
        assert _decoded(decoded) == _expected(value), value


def test_a_span_with_every_field_decodes_field_by_field() -> None:
    encoder = SpanEncoder()
    span = encoder.span(
        TRACE, SPAN, PARENT, "vendor=a,other=b", "tools/call fixture__echo", 3, 1_700_000_000_000_000_001,
        1_700_000_000_500_000_000, EVERY_TYPE, (2, "denied"), True,
        events=[("exception", 1_700_000_000_100_000_000, {"exception.type": "ValueError"}, 2),
                ("retry", 1_700_000_000_200_000_000, None, 0)],
        links=[(0x1234, 0x5678, "k=v", {"link.kind": "follows"}, 1, True), (0x9, 0xA, "", None, 0, False)],
        dropped=(4, 5, 6),
    )  # fmt: skip
    resource = resource_field(0x0A, {"service.name": "hub", "replica": 2})
    scope = scope_field(0x0A, "agenthub", "1.2.3", {"scope.attr": True})
    request = ExportTraceServiceRequest()
    request.ParseFromString(traces_request(resource, scope, [span, span], "https://schema/1"))

    (resource_spans,) = request.resource_spans
    assert {a.key: _decoded(a.value) for a in resource_spans.resource.attributes} == {
        "service.name": "hub",
        "replica": 2,
    }
    assert resource_spans.schema_url == "https://schema/1"
    (scope_spans,) = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("agenthub", "1.2.3")
    assert {a.key: _decoded(a.value) for a in scope_spans.scope.attributes} == {"scope.attr": True}
    assert len(scope_spans.spans) == 2
    decoded = scope_spans.spans[0]
    assert decoded.trace_id == TRACE.to_bytes(16, "big") and decoded.span_id == SPAN.to_bytes(8, "big")
    assert decoded.parent_span_id == PARENT.to_bytes(8, "big")
    assert decoded.trace_state == "vendor=a,other=b"
    assert (decoded.name, decoded.kind) == ("tools/call fixture__echo", decoded.SPAN_KIND_CLIENT)
    assert decoded.start_time_unix_nano == 1_700_000_000_000_000_001
    assert decoded.end_time_unix_nano == 1_700_000_000_500_000_000
    assert {a.key: _decoded(a.value) for a in decoded.attributes} == {k: _expected(v) for k, v in EVERY_TYPE.items()}
    assert [a.key for a in decoded.attributes] == list(EVERY_TYPE), "attributes keep their order"
    assert (decoded.status.code, decoded.status.message) == (decoded.status.STATUS_CODE_ERROR, "denied")
    assert decoded.flags == 0x300, "the parent's remoteness is known, and it is remote"
    assert (decoded.dropped_attributes_count, decoded.dropped_events_count, decoded.dropped_links_count) == (4, 5, 6)
    first, second = decoded.events
    assert (first.name, first.time_unix_nano, first.dropped_attributes_count) == (
        "exception",
        1_700_000_000_100_000_000,
        2,
    )
    assert {a.key: a.value.string_value for a in first.attributes} == {"exception.type": "ValueError"}
    assert (second.name, list(second.attributes)) == ("retry", [])
    link, local = decoded.links
    assert (link.trace_id, link.span_id) == ((0x1234).to_bytes(16, "big"), (0x5678).to_bytes(8, "big"))
    assert (link.trace_state, link.dropped_attributes_count, link.flags) == ("k=v", 1, 0x300)
    assert {a.key: a.value.string_value for a in link.attributes} == {"link.kind": "follows"}
    assert (local.trace_state, local.flags) == ("", 0x100)


def test_a_root_span_has_no_parent_and_an_unset_status_is_absent() -> None:
    request = ExportTraceServiceRequest()
    span = SpanEncoder().span(TRACE, SPAN, 0, "", "agenthub.authn", 1, 1, 2, None, None, False)
    request.ParseFromString(traces_request(resource_field(0x0A, {}), scope_field(0x0A, "agenthub"), [span]))
    decoded = request.resource_spans[0].scope_spans[0].spans[0]
    assert decoded.parent_span_id == b"" and not decoded.HasField("status") and decoded.flags == 0x100
    assert decoded.kind == decoded.SPAN_KIND_INTERNAL and list(decoded.attributes) == []


def test_cached_attributes_are_written_the_same_each_time() -> None:
    cache: dict[tuple[str, str], bytes] = {}
    attributes = {"agenthub.door": "mcp", "agenthub.call.id": "c1", "n": 1}
    first = attribute_fields(0x4A, attributes, cache)
    assert attribute_fields(0x4A, attributes, cache) == first == attribute_fields(0x4A, attributes, None)
    assert set(cache) == {("agenthub.door", "mcp")}, "unique ids are not cached"


def test_a_log_record_decodes_field_by_field() -> None:
    record = log_record(
        1_700_000_000_000_000_000, 1_700_000_000_000_000_500, 13, "WARN", any_value("mcp.tool x denied"),
        attribute_fields(0x32, {"agenthub.status": 403, "agenthub.door": "mcp"}, {}), TRACE, SPAN, True,
        "agenthub.request",
    )  # fmt: skip
    untraced = log_record(5, 6, 9, "INFO", any_value("ok"), b"", 0, 0, False)
    request = ExportLogsServiceRequest()
    request.ParseFromString(
        logs_request(resource_field(0x0A, {"service.name": "hub"}), scope_field(0x0A, "agenthub"), [record, untraced])
    )
    (resource_logs,) = request.resource_logs
    assert resource_logs.resource.attributes[0].value.string_value == "hub"
    (scope_logs,) = resource_logs.scope_logs
    assert scope_logs.scope.name == "agenthub"
    first, second = scope_logs.log_records
    assert (first.time_unix_nano, first.observed_time_unix_nano) == (
        1_700_000_000_000_000_000,
        1_700_000_000_000_000_500,
    )
    assert (first.severity_number, first.severity_text, first.body.string_value) == (13, "WARN", "mcp.tool x denied")
    assert {a.key: _decoded(a.value) for a in first.attributes} == {"agenthub.status": 403, "agenthub.door": "mcp"}
    assert (first.trace_id, first.span_id, first.flags) == (TRACE.to_bytes(16, "big"), SPAN.to_bytes(8, "big"), 1)
    assert first.event_name == "agenthub.request"
    assert (second.trace_id, second.span_id, second.flags, second.event_name) == (b"", b"", 0, "")
    assert (second.time_unix_nano, second.observed_time_unix_nano, second.body.string_value) == (5, 6, "ok")


def test_the_hubs_spans_encode_as_the_sdks_own_encoder_encodes_them() -> None:
    """The export thread's bytes for recorded spans decode to the message the SDK's OTLP encoder builds from the
    same spans as `ReadableSpan`s (the SDK always writes an empty status; the hub leaves an unset one out)."""
    sent: list[bytes] = []
    recorder = Recorder(sent.append, "hub-under-test", 1.0, True)
    client = SpanContext(TRACE, PARENT, True, TraceFlags(TraceFlags.SAMPLED), TraceState([("v", "1")]))
    root = recorder.start(
        "chat fast", SpanKind.SERVER, {"agenthub.door": "openai", "gen_ai.request.max_tokens": 20}, client
    )
    token = current.set(root)
    child = recorder.start("agenthub.authn", SpanKind.INTERNAL, {})
    child.fail("permission_error", "no")
    current.reset(token)
    recorder.end(child)
    recorder.end(root)
    assert recorder.force_flush()
    recorder.shutdown()
    ours = ExportTraceServiceRequest()
    ours.ParseFromString(b"".join(sent))

    resource = Resource.create({"service.name": "hub-under-test"})
    theirs = encode_spans([_readable(s, resource) for s in (child, root)])
    for span in theirs.resource_spans[0].scope_spans[0].spans:
        if span.status.code == span.status.STATUS_CODE_UNSET:
            span.ClearField("status")
    assert ours == theirs


def _readable(span: Span, resource: Resource) -> ReadableSpan:
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    flags = TraceFlags(TraceFlags.SAMPLED)
    parent = SpanContext(span.trace_id, span.parent_id, span.remote_parent, flags, span.trace_state)
    return ReadableSpan(
        name=span.name, context=span.context, parent=parent, resource=resource, attributes=span.attributes,
        kind=SpanKind(span.kind - 1), status=span.status, start_time=span.start, end_time=span.end,
        instrumentation_scope=InstrumentationScope("agenthub"),
    )  # fmt: skip


def test_span_export_is_one_request_per_batch() -> None:
    sent: list[bytes] = []
    export = SpanExport(sent.append, Resource.create({"service.name": "x"}))
    export([])
    request = ExportTraceServiceRequest()
    request.ParseFromString(sent[0])
    assert len(sent) == 1 and list(request.resource_spans[0].scope_spans[0].spans) == []

"""OTLP protobuf wire bytes, written directly: `ExportTraceServiceRequest` and `ExportLogsServiceRequest`.

The OTLP exporter's own encoder builds a generated protobuf object per span, attribute and value in Python and then
serialises the tree: measured here, about 20 µs of CPU per span, in the export thread but in this process (and
holding the GIL). The messages are simple (ids, times, strings, key/value lists), so they are written here as
protobuf wire format: varints, fixed-width numbers and length-delimited fields, in field-number order. Repeated
pieces are cached: a span's name and kind, and each (attribute, string value) pair, which in a gateway's traffic
repeat from call to call (door, operation, tool, model, key); ids and times are packed per span.

The field numbers are those of `opentelemetry/proto/{common,resource,trace,logs}/v1/*.proto`; a test decodes
what is written here with `opentelemetry-proto`'s generated classes, field by field.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "SpanEncoder",
    "any_value",
    "attribute_fields",
    "field",
    "log_record",
    "logs_request",
    "resource_field",
    "scope_field",
    "traces_request",
    "varint",
]

_CACHE_LIMIT = 8192
"""Cached encodings kept at most per cache (it is emptied when full: values never seen again go with it)."""
UNIQUE_KEYS = frozenset(
    {"agenthub.call.id", "agenthub.parent.id", "agenthub.loop.id", "gen_ai.response.id", "mcp.session.id"}
)
"""Attributes whose values rarely repeat: encoded each time, never cached."""

_FIXED64 = struct.Struct("<Q")
_DOUBLE = struct.Struct("<d")
_TIMES = struct.Struct("<BQBQ")
"""A span's start (field 7) and end (field 8), both fixed64."""


def _slow_varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 on the wire: two's complement, ten bytes
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = tuple(_slow_varint(n) for n in range(4096))


def varint(n: int) -> bytes:
    """`n` as a protobuf varint (a negative int64 as its two's complement)."""
    return _SMALL[n] if 0 <= n < 4096 else _slow_varint(n)


def field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: `tag` (field number << 3 | 2) written as one byte, the length, the payload."""
    n = len(payload)
    return bytes((tag,)) + (_SMALL[n] if n < 4096 else _slow_varint(n)) + payload


def any_value(value: Any) -> bytes:
    """An `AnyValue` message's payload: string 1, bool 2, int 3, double 4, array 5, key/value list 6, bytes 7
    (None is the empty value, as the OpenTelemetry SDK writes it)."""
    if value is None:
        return b""
    kind = type(value)
    if kind is str:
        return field(0x0A, value.encode())
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        return b"\x18" + varint(value)
    if kind is float:
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, str):
        return field(0x0A, str(value).encode())
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + varint(int(value))
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(float(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return field(0x3A, bytes(value))
    if isinstance(value, Mapping):
        items: Mapping[Any, Any] = value
        return field(0x32, b"".join(field(0x0A, _key_value(str(k), v)) for k, v in items.items()))
    if isinstance(value, Sequence):
        values: Sequence[Any] = value
        return field(0x2A, b"".join(field(0x0A, any_value(v)) for v in values))
    raise TypeError(f"an attribute cannot hold a {kind.__name__}")


def _key_value(key: str, value: Any) -> bytes:
    return field(0x0A, key.encode()) + field(0x12, any_value(value))


def attribute_fields(tag: int, attributes: Mapping[str, Any], cache: dict[tuple[str, str], bytes] | None) -> bytes:
    """Each attribute as a `KeyValue` field with `tag` (a span's 9, a log record's 6, a resource's 1); an attribute
    whose value is a string is taken from `cache` when seen before (unless its key is one of `UNIQUE_KEYS`).

    A string value, the common case, is written out here (the key's field cached, the two length prefixes looked
    up): it runs in the export thread for every attribute of every span and log record, holding the GIL."""
    out: list[bytes] = []
    append = out.append
    lead = bytes((tag,))
    small = _SMALL
    for key, value in attributes.items():
        if type(value) is not str:
            append(field(tag, _key_value(key, value)))
            continue
        cached = cache if cache is not None and key not in UNIQUE_KEYS else None
        if cached is not None:
            encoded = cached.get((key, value))
            if encoded is not None:
                append(encoded)
                continue
        name = _KEYS.get(key)
        if name is None:
            name = _key_field(key)
        raw = value.encode()
        n = len(raw)
        string = (b"\x0a" + small[n] if n < 4096 else b"\x0a" + _slow_varint(n)) + raw  # AnyValue.string_value
        n = len(string)
        pair = name + (b"\x12" + small[n] if n < 4096 else b"\x12" + _slow_varint(n)) + string  # KeyValue.value
        n = len(pair)
        encoded = lead + (small[n] if n < 4096 else _slow_varint(n)) + pair
        if cached is not None:
            if len(cached) >= _CACHE_LIMIT:
                cached.clear()
            cached[(key, value)] = encoded
        append(encoded)
    return b"".join(out)


_KEYS: dict[str, bytes] = {}
"""Each attribute key's `KeyValue.key` field, encoded once (keys are the hub's own names, a small set)."""


def _key_field(key: str) -> bytes:
    encoded = field(0x0A, key.encode())
    if len(_KEYS) >= _CACHE_LIMIT:
        _KEYS.clear()
    _KEYS[key] = encoded
    return encoded


def resource_field(tag: int, attributes: Mapping[str, Any]) -> bytes:
    """A `Resource` (its attributes) as field `tag` of its container (`resource`, field 1, in both signals)."""
    return field(tag, attribute_fields(0x0A, attributes, None))


def scope_field(tag: int, name: str, version: str | None = None, attributes: Mapping[str, Any] | None = None) -> bytes:
    """An `InstrumentationScope` as field `tag` of its container (`scope`, field 1)."""
    payload = field(0x0A, name.encode())
    if version:
        payload += field(0x12, version.encode())
    if attributes:
        payload += attribute_fields(0x1A, attributes, None)
    return field(tag, payload)


class SpanEncoder:
    """Writes spans as `Span` messages (fields of a `ScopeSpans`), keeping its caches between batches (one encoder
    per export thread: the caches are not shared)."""

    def __init__(self) -> None:
        self._names: dict[tuple[str, int], bytes] = {}
        self._attributes: dict[tuple[str, str], bytes] = {}

    def span(
        self,
        trace_id: int,
        span_id: int,
        parent_id: int,
        trace_state: str,
        name: str,
        kind: int,
        start: int,
        end: int,
        attributes: Mapping[str, Any] | None,
        status: tuple[int, str | None] | None,
        remote_parent: bool,
        events: Sequence[tuple[str, int, Mapping[str, Any] | None, int]] = (),
        links: Sequence[tuple[int, int, str, Mapping[str, Any] | None, int, bool]] = (),
        dropped: tuple[int, int, int] = (0, 0, 0),
    ) -> bytes:
        """One `Span` as field 2 of a `ScopeSpans`. `kind` is the OTLP number (internal 1, server 2, client 3...);
        `status` is (code, message) or None when unset; `events` are (name, time, attributes, dropped attributes);
        `links` (trace id, span id, trace state, attributes, dropped attributes, remote); `dropped` the dropped
        attributes, events and links counts."""
        parts = [b"\x0a\x10", trace_id.to_bytes(16, "big"), b"\x12\x08", span_id.to_bytes(8, "big")]
        if trace_state:
            parts.append(field(0x1A, trace_state.encode()))
        if parent_id:
            parts += (b"\x22\x08", parent_id.to_bytes(8, "big"))
        names = self._names
        head = names.get((name, kind))
        if head is None:
            head = field(0x2A, name.encode()) + b"\x30" + varint(kind)
            if len(names) >= _CACHE_LIMIT:
                names.clear()
            names[(name, kind)] = head
        parts += (head, _TIMES.pack(0x39, start, 0x41, end))
        if attributes:
            parts.append(attribute_fields(0x4A, attributes, self._attributes))
        if dropped != (0, 0, 0) or events or links:
            parts.append(_events_and_links(events, links, dropped))
        if status is not None:
            code, message = status
            payload = field(0x12, message.encode()) if message else b""
            parts.append(field(0x7A, payload + b"\x18" + varint(code)))
        parts.append(_SPAN_REMOTE_FLAGS if remote_parent else _SPAN_LOCAL_FLAGS)
        body = b"".join(parts)
        return field(0x12, body)


def _events_and_links(
    events: Iterable[tuple[str, int, Mapping[str, Any] | None, int]],
    links: Iterable[tuple[int, int, str, Mapping[str, Any] | None, int, bool]],
    dropped: tuple[int, int, int],
) -> bytes:
    """A span's fields 10 to 14: dropped attributes, events, dropped events, links, dropped links."""
    parts: list[bytes] = []
    dropped_attributes, dropped_events, dropped_links = dropped
    if dropped_attributes:
        parts.append(b"\x50" + varint(dropped_attributes))
    for event_name, time, event_attributes, event_dropped in events:
        event = b"\x09" + _FIXED64.pack(time) + field(0x12, event_name.encode())
        if event_attributes:
            event += attribute_fields(0x1A, event_attributes, None)
        if event_dropped:
            event += b"\x20" + varint(event_dropped)
        parts.append(field(0x5A, event))
    if dropped_events:
        parts.append(b"\x60" + varint(dropped_events))
    for link_trace, link_span, link_state, link_attributes, link_dropped, link_remote in links:
        link = b"\x0a\x10" + link_trace.to_bytes(16, "big") + b"\x12\x08" + link_span.to_bytes(8, "big")
        if link_state:
            link += field(0x1A, link_state.encode())
        if link_attributes:
            link += attribute_fields(0x22, link_attributes, None)
        if link_dropped:
            link += b"\x28" + varint(link_dropped)
        link += _REMOTE_FLAGS if link_remote else _LOCAL_FLAGS_LINK
        parts.append(field(0x6A, link))
    if dropped_links:
        parts.append(b"\x70" + varint(dropped_links))
    return b"".join(parts)


_SPAN_LOCAL_FLAGS = b"\x85\x01" + struct.pack("<I", 0x100)
"""`Span.flags` (field 16, fixed32): whether the parent is remote is known (and it is not)."""
_SPAN_REMOTE_FLAGS = b"\x85\x01" + struct.pack("<I", 0x300)
_LOCAL_FLAGS_LINK = b"\x35" + struct.pack("<I", 0x100)
"""`Link.flags` (field 6, fixed32)."""
_REMOTE_FLAGS = b"\x35" + struct.pack("<I", 0x300)


def traces_request(resource: bytes, scope: bytes, spans: Sequence[bytes], schema_url: str = "") -> bytes:
    """An `ExportTraceServiceRequest` of one resource and one scope: `resource` and `scope` from `resource_field`
    and `scope_field` (tag 0x0A), `spans` from `SpanEncoder.span`."""
    scope_spans = field(0x12, scope + b"".join(spans))
    resource_spans = resource + scope_spans
    if schema_url:
        resource_spans += field(0x1A, schema_url.encode())
    return field(0x0A, resource_spans)


def log_record(
    time: int,
    observed: int,
    severity: int,
    severity_text: str,
    body: bytes,
    attributes: bytes,
    trace_id: int,
    span_id: int,
    sampled: bool,
    event_name: str = "",
) -> bytes:
    """One `LogRecord` as field 2 of a `ScopeLogs`; `body` is an `AnyValue` payload (`any_value`), `attributes`
    `KeyValue` fields with tag 0x32 (`attribute_fields`); ids of 0 (no trace) are left out."""
    parts = [b"\x09", _FIXED64.pack(time), b"\x10", varint(severity)]
    if severity_text:
        parts.append(field(0x1A, severity_text.encode()))
    parts += (field(0x2A, body), attributes)
    if trace_id:
        parts += (b"\x45", struct.pack("<I", 1 if sampled else 0), b"\x4a\x10", trace_id.to_bytes(16, "big"))
        if span_id:
            parts += (b"\x52\x08", span_id.to_bytes(8, "big"))
    parts += (b"\x59", _FIXED64.pack(observed))
    if event_name:
        parts.append(field(0x62, event_name.encode()))
    return field(0x12, b"".join(parts))


def logs_request(resource: bytes, scope: bytes, records: Sequence[bytes]) -> bytes:
    """An `ExportLogsServiceRequest` of one resource and one scope (`records` from `log_record`)."""
    return field(0x0A, resource + field(0x12, scope + b"".join(records)))

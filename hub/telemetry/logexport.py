"""Request-log rows as OTLP log records: each row the request log records is also exported, batched, over
OTLP/HTTP (`POST {endpoint}/v1/logs`), when telemetry is on.

The request log hands each row to `LogExport.record` as it records it (on the event loop, in the call's context):
that queues the row with the ids of the call's root span, when the call is traced, so that a backend links the
record to its trace. The export thread writes the `ExportLogsServiceRequest` directly (`hub.telemetry.otlpwire`):
the body is a one-line summary, the attributes are the row's columns under the names the spans use.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from time import time_ns
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.resources import Resource

from hub.telemetry.batching import Batcher, BatchSettings
from hub.telemetry.otlphttp import OtlpHttp, OtlpHttpSettings
from hub.telemetry.otlpwire import any_value, attribute_fields, log_record, logs_request, resource_field, scope_field
from hub.telemetry.traceconfig import LogConfig

if TYPE_CHECKING:
    from hub.audit.requestlog import LogEntry

__all__ = ["ATTRIBUTES", "EVENT_NAME", "LogExport"]

SpanIds = Callable[[str], "tuple[int, int, bool] | None"]
"""The (trace id, span id, sampled) of a call's root span, by call id, or None when the call is not traced."""

EVENT_NAME = "agenthub.request"
"""`LogRecord.event_name` of every request-log record."""

ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("call_id", "agenthub.call.id"),
    ("parent_id", "agenthub.parent.id"),
    ("loop_id", "agenthub.loop.id"),
    ("key_id", "agenthub.key.id"),
    ("key_name", "agenthub.key.name"),
    ("team", "agenthub.team"),
    ("customer", "agenthub.customer"),
    ("door", "agenthub.door"),
    ("operation", "agenthub.operation"),
    ("target", "agenthub.target"),
    ("outcome", "agenthub.outcome"),
    ("status", "agenthub.status"),
    ("error", "agenthub.error"),
    ("latency_ms", "agenthub.latency_ms"),
    ("upstream_ms", "agenthub.upstream_ms"),
    ("model", "gen_ai.request.model"),
    ("deployment", "agenthub.deployment"),
    ("server", "agenthub.server"),
    ("tool", "agenthub.tool"),
    ("tokens", "agenthub.usage.tokens"),
    ("cost_usd", "agenthub.usage.cost_usd"),
    ("cache_read_tokens", "gen_ai.usage.cache_read.input_tokens"),
    ("cache_write_5m_tokens", "agenthub.usage.cache_write_5m_tokens"),
    ("cache_write_1h_tokens", "agenthub.usage.cache_write_1h_tokens"),
    ("reasoning_tokens", "agenthub.usage.reasoning_tokens"),
)
"""Each request-log column and its attribute: the span attribute's name where a span carries the same fact. A
refused or failed call also carries `error.type` (its outcome), as its span does."""

_columns = attrgetter(*(column for column, _ in ATTRIBUTES))
_NAMES = tuple(name for _, name in ATTRIBUTES)

_INFO, _WARN, _ERROR = 9, 13, 17
"""OTLP severity numbers."""


class LogExport:
    """Queues request-log rows and exports them as OTLP log records from a thread of its own."""

    def __init__(
        self,
        config: LogConfig,
        span_ids: SpanIds | None = None,
        send: Callable[[bytes], None] | None = None,
        batch: BatchSettings | None = None,
    ) -> None:
        """`span_ids` finds a call's root span (tracing on); `send` replaces the OTLP/HTTP post (else built from
        `config` and the `OTEL_EXPORTER_OTLP_*` variables).

        Raises:
            ValueError: an `OTEL_*` variable of the exporter or the batch processor cannot be followed.
        """
        self.http: OtlpHttp | None = None
        if send is None:
            settings = OtlpHttpSettings.from_env(config.endpoint, "LOGS", dict(config.headers), config.gzip)
            self.http = OtlpHttp(settings)
            send = self.http.post
        self._send = send
        self._span_ids = span_ids
        resource = Resource.create({"service.name": config.service_name})
        self._resource = resource_field(0x0A, dict(resource.attributes))
        self._scope = scope_field(0x0A, "agenthub")
        self._cache: dict[tuple[str, str], bytes] = {}
        self._batcher: Batcher[tuple[LogEntry, int, int, bool, int]] = Batcher(
            self._export, batch or BatchSettings.from_env("OTEL_BLRP"), "agenthub-logs"
        )

    def record(self, entry: LogEntry) -> None:
        """Queue one request-log row (called by the request log, in the call's context)."""
        ids = self._span_ids(entry.call_id) if self._span_ids is not None else None
        if ids is None:
            self._batcher.add((entry, 0, 0, False, time_ns()))
        else:
            self._batcher.add((entry, ids[0], ids[1], ids[2], time_ns()))

    def force_flush(self) -> bool:
        return self._batcher.force_flush()

    def shutdown(self) -> None:
        """Export what is queued and stop the thread."""
        self._batcher.shutdown()
        if self.http is not None:
            self.http.shutdown()
            self.http.close()

    def _export(self, batch: list[tuple[LogEntry, int, int, bool, int]]) -> None:
        records = [self._record(*item) for item in batch]
        self._send(logs_request(self._resource, self._scope, records))

    def _record(self, entry: LogEntry, trace_id: int, span_id: int, sampled: bool, observed: int) -> bytes:
        attributes: dict[str, Any] = {n: v for n, v in zip(_NAMES, _columns(entry), strict=True) if v is not None}
        status = entry.status
        if entry.outcome != "ok":
            attributes["error.type"] = entry.outcome
        severity, text = (_INFO, "INFO") if entry.outcome == "ok" else (_WARN, "WARN")
        if status >= 500:
            severity, text = _ERROR, "ERROR"
        body = f"{entry.operation} {entry.target} {entry.outcome} {status} in {entry.latency_ms:g} ms".replace(
            "  ", " "
        )
        time = round(entry.ts.timestamp() * 1_000_000) * 1000
        return log_record(
            time,
            observed,
            severity,
            text,
            any_value(body),
            attribute_fields(0x32, attributes, self._cache),
            trace_id,
            span_id,
            sampled,
            EVENT_NAME,
        )

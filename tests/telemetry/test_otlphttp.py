"""The OTLP/HTTP sender against a real collector on 127.0.0.1: protobuf content type, gzip, configured headers,
retries of 429/502/503/504 and of a refused connection with backoff (the waits are recorded, not slept), no retry
of a refusal, and the export's deadline (on an injected clock)."""

from __future__ import annotations

import gzip
import socket
from typing import Any

import anyio
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.telemetry.batching import BatchSettings
from hub.telemetry.otlphttp import ExportFailed, OtlpHttp, OtlpHttpSettings, parse_headers
from hub.telemetry.otlpwire import SpanEncoder, resource_field, scope_field, traces_request
from llm.testing import serve

pytestmark = pytest.mark.anyio

BODY = traces_request(
    resource_field(0x0A, {"service.name": "t"}),
    scope_field(0x0A, "agenthub"),
    [SpanEncoder().span(1, 2, 0, "", "s", 1, 1, 2, {"k": "v"}, None, False)],
)


class Collector:
    """Answers each export with the next scripted status (then 200), keeping what it received."""

    def __init__(self, *statuses: int | tuple[int, dict[str, str]]) -> None:
        self.script = list(statuses)
        self.received: list[tuple[dict[str, str], bytes]] = []

    def app(self) -> Starlette:
        async def export(request: Request) -> Response:
            self.received.append((dict(request.headers), await request.body()))
            answer: Any = self.script.pop(0) if self.script else 200
            status, headers = answer if isinstance(answer, tuple) else (answer, {})
            return Response(b"", status_code=status, headers=headers, media_type="application/x-protobuf")

        return Starlette(routes=[Route("/v1/traces", export, methods=["POST"])])


class Waits:
    """Records each backoff instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return True


async def test_a_retryable_status_is_retried_with_backoff_until_accepted() -> None:
    collector = Collector(503, 429, (502, {"retry-after": "7"}), 504)
    waits = Waits()
    async with serve(collector.app()) as url:
        sender = OtlpHttp(OtlpHttpSettings(f"{url}/v1/traces", timeout_s=600), sleep=waits)
        await anyio.to_thread.run_sync(sender.post, BODY)
        sender.close()
    assert len(collector.received) == 5 and sender.sent == 1
    assert 0.8 <= waits.waits[0] <= 1.2 and 1.6 <= waits.waits[1] <= 2.4, "exponential, jittered"
    assert waits.waits[2] == 7, "the collector's Retry-After is honoured"
    assert 6.4 <= waits.waits[3] <= 9.6
    headers, body = collector.received[-1]
    assert headers["content-type"] == "application/x-protobuf" and body == BODY
    assert ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans[0].name == "s"


async def test_a_refusal_is_not_retried() -> None:
    collector = Collector(400)
    waits = Waits()
    async with serve(collector.app()) as url:
        sender = OtlpHttp(OtlpHttpSettings(f"{url}/v1/traces"), sleep=waits)
        with pytest.raises(ExportFailed, match="HTTP 400"):
            await anyio.to_thread.run_sync(sender.post, BODY)
        sender.close()
    assert len(collector.received) == 1 and waits.waits == []


async def test_retries_stop_at_the_deadline() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> bool:
        waits.append(seconds)
        now[0] += seconds
        return True

    collector = Collector(*([503] * 10))
    async with serve(collector.app()) as url:
        sender = OtlpHttp(OtlpHttpSettings(f"{url}/v1/traces", timeout_s=5), sleep=sleep, clock=lambda: now[0])
        with pytest.raises(ExportFailed, match="did not accept the export \\(HTTP 503\\)"):
            await anyio.to_thread.run_sync(sender.post, BODY)
        sender.close()
    assert sum(waits) <= 5 and len(collector.received) == len(waits) + 1 >= 2


def test_a_refused_connection_is_retried_then_reported() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits = Waits()
    sender = OtlpHttp(OtlpHttpSettings(f"http://127.0.0.1:{port}/v1/traces", timeout_s=600), sleep=waits)
    with pytest.raises(ExportFailed, match="ConnectionRefusedError"):
        sender.post(BODY)
    assert len(waits.waits) == 5, "every attempt but the last is followed by a backoff"


async def test_gzip_and_headers_come_from_the_config_and_the_variables() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20abc,x-team=search",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-team=traces",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "3",
    }
    collector = Collector()
    async with serve(collector.app()) as url:
        settings = OtlpHttpSettings.from_env(f"{url}/v1/traces", "TRACES", {"x-file": "1"}, False, env)
        assert (settings.gzip, settings.timeout_s) == (True, 3.0)
        sender = OtlpHttp(settings)
        await anyio.to_thread.run_sync(sender.post, BODY)
        sender.close()
    ((headers, body),) = collector.received
    assert headers["content-encoding"] == "gzip" and gzip.decompress(body) == BODY
    assert (headers["authorization"], headers["x-team"], headers["x-file"]) == ("Bearer abc", "traces", "1")


def test_variables_the_exporter_cannot_follow_are_named() -> None:
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_COMPRESSION='zstd'"):
        OtlpHttpSettings.from_env("http://c/v1/traces", "TRACES", {}, False, {"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"})
    with pytest.raises(ValueError, match="OTEL_EXPORTER_OTLP_LOGS_TIMEOUT='soon'"):
        OtlpHttpSettings.from_env("http://c/v1/logs", "LOGS", {}, False, {"OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "soon"})
    with pytest.raises(ValueError, match="without a name=value pair"):
        parse_headers("novalue", "OTEL_EXPORTER_OTLP_HEADERS")
    with pytest.raises(ValueError, match="OTEL_BSP_SCHEDULE_DELAY='-1' must be positive"):
        BatchSettings.from_env("OTEL_BSP", {"OTEL_BSP_SCHEDULE_DELAY": "-1"})
    assert BatchSettings.from_env("OTEL_BLRP", {"OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "64"}) == BatchSettings(
        5.0, 2048, 64
    )

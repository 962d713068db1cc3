"""OTLP/HTTP export: POST protobuf bytes to a collector, from the export thread, as the specification asks.

`Content-Type: application/x-protobuf`; optional gzip (`Content-Encoding: gzip`); the headers the operator
configures (a collector's credentials); one kept-alive connection (reopened after an error). A response of 429,
502, 503 or 504, or a connection that fails, is retried with exponential backoff (1, 2, 4... seconds, jittered,
or the `Retry-After` the collector sent) while the export's deadline (the timeout) allows; any other status drops
the batch with a warning. Retrying may deliver a batch twice: the specification accepts that for telemetry.

Plain `http.client` in the export thread: the hub's own clients are asynchronous and serve the event loop, while
this runs in a thread of its own at a few requests a minute.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

__all__ = ["ExportFailed", "OtlpHttp", "OtlpHttpSettings"]

logger = logging.getLogger(__name__)

RETRYABLE = frozenset({429, 502, 503, 504})
"""The statuses OTLP/HTTP says to retry."""
_MAX_ATTEMPTS = 6


class ExportFailed(Exception):
    """The collector refused a batch or could not be reached before the deadline (the batch is dropped)."""


@dataclass(frozen=True, slots=True)
class OtlpHttpSettings:
    """Where and how a signal is posted."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict[str, str])
    gzip: bool = False
    timeout_s: float = 10.0
    certificate: str | None = None
    """A CA bundle to verify an https collector with (else the system's)."""
    client_certificate: str | None = None
    client_key: str | None = None

    @classmethod
    def from_env(
        cls, url: str, signal: str, headers: Mapping[str, str], gzip: bool, environ: Mapping[str, str] | None = None
    ) -> OtlpHttpSettings:
        """The settings for `signal` (`TRACES`, `LOGS`): `OTEL_EXPORTER_OTLP_{signal}_*` over `OTEL_EXPORTER_OTLP_*`
        over `headers` and `gzip` from the config file. The timeout is in seconds, as the Python SDK reads it.

        Raises:
            ValueError: a variable has a value the exporter cannot follow (named in the message).
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> tuple[str, str]:
            for variable in (f"OTEL_EXPORTER_OTLP_{signal}_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
                value = env.get(variable, "").strip()
                if value:
                    return variable, value
            return "", ""

        merged = dict(headers)
        for variable in ("OTEL_EXPORTER_OTLP_HEADERS", f"OTEL_EXPORTER_OTLP_{signal}_HEADERS"):
            merged.update(parse_headers(env.get(variable, ""), variable))
        name, compression = get("COMPRESSION")
        if compression and compression.lower() not in ("gzip", "none"):
            raise ValueError(f"{name}={compression!r} is not supported (use 'gzip' or 'none')")
        name, timeout = get("TIMEOUT")
        try:
            timeout_s = float(timeout) if timeout else 10.0
        except ValueError:
            raise ValueError(f"{name}={timeout!r} is not a number") from None
        return cls(
            url,
            merged,
            compression.lower() == "gzip" if compression else gzip,
            timeout_s,
            get("CERTIFICATE")[1] or None,
            get("CLIENT_CERTIFICATE")[1] or None,
            get("CLIENT_KEY")[1] or None,
        )


def parse_headers(raw: str, variable: str) -> dict[str, str]:
    """`key1=value1,key2=value2` (values URL-encoded), the W3C baggage form the OTLP variables use.

    Raises:
        ValueError: an entry has no `=` (the variable is named in the message).
    """
    headers: dict[str, str] = {}
    for entry in raw.split(","):
        if not entry.strip():
            continue
        key, sep, value = entry.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{variable} has an entry without a name=value pair: {entry.strip()!r}")
        headers[unquote(key.strip()).lower()] = unquote(value.strip())
    return headers


class OtlpHttp:
    """Posts one signal's requests to its collector URL (from one thread: the connection is not shared)."""

    def __init__(
        self,
        settings: OtlpHttpSettings,
        *,
        sleep: Callable[[float], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`sleep(seconds)` waits between attempts and returns False when the exporter is closing (then no more
        attempts); `clock` measures the deadline. Both are injected by tests."""
        parts = urlsplit(settings.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"an OTLP/HTTP endpoint must be an http:// or https:// URL, not {settings.url!r}")
        self.settings = settings
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"content-type": "application/x-protobuf", "user-agent": "agenthub-otlp"}
        headers.update(settings.headers)
        if settings.gzip:
            headers["content-encoding"] = "gzip"
        self._headers = headers
        self._connection: http.client.HTTPConnection | None = None
        self._closing = threading.Event()
        self._sleep = sleep or self._wait
        self._clock = clock
        self.sent = 0
        """Requests the collector accepted."""

    def _wait(self, seconds: float) -> bool:
        return not self._closing.wait(seconds)

    def post(self, body: bytes) -> None:
        """Send one export request, retrying what the specification says to retry until the deadline.

        Raises:
            ExportFailed: the collector refused it, or did not accept it before the deadline.
        """
        if self.settings.gzip:
            body = gzip.compress(body, compresslevel=6)
        deadline = self._clock() + self.settings.timeout_s
        for attempt in range(_MAX_ATTEMPTS):
            try:
                status, retry_after = self._send(body)
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                status, retry_after, why = None, None, f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= status < 300:
                    self.sent += 1
                    return
                why = f"HTTP {status}"
                if status not in RETRYABLE:
                    raise ExportFailed(f"the collector at {self.settings.url} answered {why}")
            backoff = retry_after if retry_after is not None else 2**attempt * random.uniform(0.8, 1.2)
            if attempt + 1 == _MAX_ATTEMPTS or self._clock() + backoff > deadline or not self._sleep(backoff):
                raise ExportFailed(f"the collector at {self.settings.url} did not accept the export ({why})")
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, body: bytes) -> tuple[int, float | None]:
        connection = self._connection
        if connection is None:
            connection = self._connection = self._connect()
        connection.request("POST", self._path, body, self._headers)
        response = connection.getresponse()
        response.read()
        if response.will_close:
            self.close()
        retry_after: float | None = None
        raw = response.getheader("retry-after")
        if raw is not None and raw.strip().isdigit():
            retry_after = float(raw.strip())
        return response.status, retry_after

    def _connect(self) -> http.client.HTTPConnection:
        timeout = self.settings.timeout_s
        if not self._https:
            return http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        context = ssl.create_default_context(cafile=self.settings.certificate)
        if self.settings.client_certificate:
            context.load_cert_chain(self.settings.client_certificate, self.settings.client_key)
        return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=context)

    def close(self) -> None:
        """Drop the connection (the next post opens a new one)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def shutdown(self) -> None:
        """Stop waiting between attempts (a batch being retried is given up) and close the connection."""
        self._closing.set()

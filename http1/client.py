"""A small HTTP/1.1 client for the tool-call hot path: one origin, pooled keep-alive connections.

The hub POSTs JSON-RPC to each Streamable HTTP upstream and reads the whole answer (a JSON body or a short SSE
stream). That needs very little of a general HTTP client, so this one is built on asyncio protocols and the
`httptools` response parser (the C parser the hub's server side already uses): no per-request tasks, no
header objects, no cookie jar, no redirects, no content decoding (it never asks for compressed bodies).

A connection goes back to the pool only after a complete response that allows keep-alive; a request that is
cancelled or fails half-way closes its connection. Idle connections the server closed are dropped on reuse; when
a server times out a pooled connection just as a request leaves on it (it closes without a byte of answer, so
it never took the request), the request is sent once more on a new connection.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - asyncio protocols: the hub serves on the asyncio backend (uvicorn)
import ssl
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import anyio
import httptools

__all__ = [
    "BodyTooLarge",
    "H1Pool",
    "HttpError",
    "HttpResponse",
    "StreamedResponse",
    "default_ssl_context",
    "ssl_context_for",
]

T = TypeVar("T")
DEFAULT_MAX_BODY = 64 * 1024 * 1024
_MAX_BUFFERED_CHUNKS = 64
"""Body chunks a streamed response holds before the connection stops reading (until the reader catches up)."""


@cache
def default_ssl_context() -> ssl.SSLContext:
    """The system's trust store, certificate and host name checks on: one context for every upstream client."""
    return ssl.create_default_context()


def ssl_context_for(url: str) -> ssl.SSLContext:
    """The context a client that only ever talks to `url` (no redirects) needs: the system's trust store for an
    `https` URL; for a plain `http` one, a context that trusts no certificate at all, so TLS fails closed if it is
    ever attempted and the trust store (about 2 MiB resident) is not loaded for nothing."""
    if urlsplit(url).scheme.lower() == "https":
        return default_ssl_context()
    return _trusts_nothing()


@cache
def _trusts_nothing() -> ssl.SSLContext:
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verification and host name checks on, no CA loaded


class HttpError(ConnectionError):
    """The connection failed, closed early, or the server sent something that is not HTTP/1.1."""


class BodyTooLarge(HttpError):
    """The response body grew past the pool's `max_body`."""


def _first(headers: list[tuple[str, str]], name: str, default: str) -> str:
    for key, value in headers:
        if key == name:
            return value
    return default


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    """Header names in lower case, in the order received."""
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        """The first value of header `name` (lower case), or `default`."""
        return _first(self.headers, name, default)


class StreamedResponse:
    """A response whose headers arrived; `next_chunk()` returns its body piece by piece (None at the end)."""

    __slots__ = ("_conn", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], conn: _Connection) -> None:
        self.status = status
        self.headers = headers
        """Header names in lower case, in the order received."""
        self._conn = conn

    def header(self, name: str, default: str = "") -> str:
        """The first value of header `name` (lower case), or `default`."""
        return _first(self.headers, name, default)

    async def next_chunk(self, timeout: float | None = None) -> bytes | None:
        """The body bytes that arrived since the last call (waiting for some), or None once the body ended.

        Raises:
            TimeoutError: nothing arrived within `timeout` seconds (the connection is closed).
            HttpError: the connection broke, the body is not valid HTTP/1.1 or grew past the pool's limit.
        """
        conn = self._conn
        timer = asyncio.get_running_loop().call_later(timeout, conn.expire) if timeout is not None else None
        try:
            return await conn.next_chunk()
        except (HttpError, TimeoutError):
            raise
        except OSError as exc:
            raise HttpError(str(exc) or type(exc).__name__) from None
        finally:
            if timer is not None:
                timer.cancel()


class _Dropped(HttpError):
    """The server closed the connection without a byte of response (an idle connection it had just timed out)."""

    def __init__(self) -> None:
        super().__init__("the server closed the connection without answering")


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; parses one response at a time."""

    def __init__(self, max_body: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._max_body = max_body
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self._waiter: asyncio.Future[None] | None = None
        self._headers: list[tuple[str, str]] = []
        self._chunks: list[bytes] = []
        self._size = 0
        self._status = 0
        self._headers_done = False
        self._complete = False
        self._delimited = False
        self._active = False
        """Whether a request is under way (bytes arriving otherwise put the connection out of step)."""
        self._streaming = False
        self._paused = False
        self._error: Exception | None = None
        self.answered = False
        """Whether any byte of the current response arrived."""

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream transport (uvloop's is not a subclass)

    def data_received(self, data: bytes) -> None:
        if not self._active:  # bytes while idle: the connection is out of step, never reuse it
            self._close()
            return
        self.answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"malformed HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self._active or self._complete:
            return
        if self._headers_done and not self._delimited:  # a body that ends with the connection
            self._finish()
            return
        self._fail(
            _Dropped() if not self.answered else HttpError("the connection closed in the middle of the response")
        )

    # -- httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        if key in ("content-length", "transfer-encoding"):
            self._delimited = True
        self._headers.append((key, value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = True
        if self._streaming:
            self._wake()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._max_body:
            self._fail(BodyTooLarge(f"response body larger than {self._max_body} bytes"))
            return
        self._chunks.append(body)
        if self._streaming:
            if len(self._chunks) > _MAX_BUFFERED_CHUNKS and not self._paused and self.transport is not None:
                self._paused = True  # the reader is behind: stop reading until it catches up
                self.transport.pause_reading()
            self._wake()

    def on_message_complete(self) -> None:
        if not self._parser.should_keep_alive():
            self.closed = True
        self._finish()

    # -- the request

    async def exchange(self, request: bytes) -> HttpResponse:
        """Send one request and wait for its whole response."""
        await self._wait(self._begin(), request)
        response = HttpResponse(self._status, self._headers, b"".join(self._chunks))
        self._reset()
        return response

    async def start(self, request: bytes) -> tuple[int, list[tuple[str, str]]]:
        """Send one request and wait for the status and headers; the body follows through `next_chunk`."""
        self._streaming = True
        await self._wait(self._begin(), request)
        if self._error is not None:
            raise self._error
        return self._status, self._headers

    def _begin(self) -> Callable[[bytes], object]:
        """Mark a request under way; the function that sends its bytes."""
        transport = self.transport
        if transport is None or self.closed:
            raise HttpError("the connection is closed")
        self._active = True
        return transport.write

    async def next_chunk(self) -> bytes | None:
        """The body bytes received since the last call, waiting for some; None once the body is complete."""
        while True:
            if self._chunks:
                data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
                self._chunks.clear()
                if self._paused and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return data
            if self._error is not None:
                raise self._error
            if self._complete:
                return None
            await self._wait()

    def release(self) -> bool:
        """After a streamed response: True when the connection may serve another request (else it is closed)."""
        if self._complete and self._error is None and not self.closed:
            self._reset()
            return True
        self._close()
        return False

    async def _wait(self, send: Callable[[bytes], object] | None = None, data: bytes = b"") -> None:
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        if send is not None:
            send(data)
        try:
            await waiter
        except BaseException:
            self._close()
            raise
        finally:
            self._waiter = None

    def expire(self) -> None:
        """The caller's time ran out: fail what waits and close the connection."""
        self._fail(TimeoutError("timed out"))

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _finish(self) -> None:
        self._complete = True
        self._wake()

    def _fail(self, exc: Exception) -> None:
        self._close()
        self._error = exc
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


async def _timed(conn: _Connection, step: Coroutine[Any, Any, T], timeout: float | None) -> T:
    """Run `step` on `conn`; past `timeout` seconds the connection fails it with TimeoutError (a timer, no task)."""
    if timeout is None:
        return await step
    timer = asyncio.get_running_loop().call_later(timeout, conn.expire)
    try:
        return await step
    finally:
        timer.cancel()


class H1Pool:
    """Pooled HTTP/1.1 connections to the origin of `url` (http or https)."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 100,
        keepalive_s: float = 60.0,
        max_body: int = DEFAULT_MAX_BODY,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        """Raises: ValueError: `url` is not an absolute http(s) URL."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = self._port == (443 if parts.scheme == "https" else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._authority = host if default_port else f"{host}:{self._port}"
        self._tls = parts.scheme == "https"
        self._ssl = ssl_context
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(max_connections)
        self._keepalive_s = keepalive_s
        self._max_body = max_body
        self._connect_timeout = connect_timeout
        self._closed = False

    def target(self, url: str) -> str:
        """The request target (path and query) of `url`, which must be on this pool's origin."""
        parts = urlsplit(url)
        path = parts.path or "/"
        return f"{path}?{parts.query}" if parts.query else path

    async def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes = b"",
        *,
        timeout: float | None = None,
    ) -> HttpResponse:
        """Send `method target` with `headers` and `body`; the whole response, within `timeout` seconds.

        Raises:
            TimeoutError: no whole response within `timeout` seconds of having a connection.
            HttpError: connecting failed, the connection broke, or the response is not valid HTTP/1.1.
            ValueError: a header name or value holds a line break.
        """
        request = self._head(method, target, headers, len(body)) + body
        async with self._slots:
            conn, response = await self._send(_Connection.exchange, request, timeout)
            self._put_back(conn)
            return response

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes = b"",
        *,
        timeout: float | None = None,
    ) -> AsyncGenerator[StreamedResponse]:
        """Send `method target` and yield the response once its headers arrived; its body streams from it.

        Leaving the block before the body ended closes the connection; otherwise it returns to the pool.

        Raises:
            TimeoutError: no status and headers within `timeout` seconds of having a connection.
            HttpError: connecting failed, the connection broke, or the response is not valid HTTP/1.1.
            ValueError: a header name or value holds a line break.
        """
        request = self._head(method, target, headers, len(body)) + body
        async with self._slots:
            conn, (status, received) = await self._send(_Connection.start, request, timeout)
            try:
                yield StreamedResponse(status, received, conn)
            finally:
                if conn.release():
                    self._put_back(conn)

    async def _send(
        self, step: Callable[[_Connection, bytes], Coroutine[Any, Any, T]], request: bytes, timeout: float | None
    ) -> tuple[_Connection, T]:
        """Run `step` (exchange or start) for `request` on a pooled or new connection, within `timeout` seconds."""
        conn = self._reuse()
        try:
            if conn is None:
                conn = await self._connect()
                return conn, await _timed(conn, step(conn, request), timeout)
            try:
                return conn, await _timed(conn, step(conn, request), timeout)
            except _Dropped:  # the server timed the pooled connection out as the request left: once more
                conn = await self._connect()
                return conn, await _timed(conn, step(conn, request), timeout)
        except (HttpError, TimeoutError):
            raise
        except OSError as exc:
            raise HttpError(str(exc) or type(exc).__name__) from None

    def _put_back(self, conn: _Connection) -> None:
        """Pool a connection that finished its response, unless it or the pool is closing."""
        if conn.closed or self._closed:
            conn._close()
        else:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)

    async def aclose(self) -> None:
        """Close every idle connection; connections in use close when their request ends."""
        self._closed = True
        while self._idle:
            self._idle.pop()._close()

    def _head(self, method: str, target: str, headers: Iterable[tuple[str, str]], length: int) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._authority}"]
        for name, value in headers:
            if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                raise ValueError(f"header {name!r} holds a line break")
            lines.append(f"{name}: {value}")
        if length or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _reuse(self) -> _Connection | None:
        oldest = time.monotonic() - self._keepalive_s
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and conn.idle_since >= oldest:
                return conn
            conn._close()
        return None

    async def _connect(self) -> _Connection:
        if self._closed:
            raise HttpError("the client is closed")
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if self._tls:
            context = self._ssl = self._ssl or default_ssl_context()
        try:
            with anyio.fail_after(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._max_body),
                    self._host,
                    self._port,
                    ssl=context,
                    server_hostname=self._host if context else None,
                )
        except TimeoutError:
            raise HttpError(
                f"cannot connect to {self._authority}: no answer within {self._connect_timeout:g}s"
            ) from None
        except OSError as exc:
            raise HttpError(f"cannot connect to {self._authority}: {exc.strerror or exc}") from None
        return conn

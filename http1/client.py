"""A small HTTP/1.1 client for the hot paths: one origin, pooled keep-alive connections.

The hub POSTs JSON-RPC to each Streamable HTTP upstream and JSON to LLM providers, and reads the whole answer or
a stream of events. That needs very little of a general HTTP client, so this one is built on asyncio protocols
and the `httptools` response parser (the C parser the hub's server side already uses): no per-request tasks, no
header objects, no cookie jar, no redirects, no content decoding (it never asks for compressed bodies). How a
response is read, and what is refused, is in `http1.connection`; what a caller may send, in `http1.request`.

One deadline per request: `timeout` seconds from the call bound the wait for a free connection slot, connecting
(TLS included), sending and receiving (for `stream`, up to the headers). It is worked out once; on the common
path (a free slot, a pooled connection) one loop timer on the connection enforces it (`loop.call_at`), no task
and no cancel scope; a cancel scope is entered only for a wait that blocks (a full pool, a new connection).

A request is sent at most once unless it is idempotent, by method (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) or as
the caller declares (`idempotent=`). When a pooled connection closes without a byte of answer (the server timed
it out just as the request left), an idempotent request goes once more on a new connection, within the same
deadline; any other raises `RequestMayHaveBeenProcessed`, because the server may have acted on it. A failure to
connect raises `ConnectFailed`: nothing was sent.

A connection goes back to the pool only after a complete response that allows keep-alive; a request that is
cancelled or fails half-way closes its connection. A pooled connection is not picked once it has been idle for
the pool's `keepalive_s` or for the server's `Keep-Alive: timeout=` less a margin (`max=0` ends reuse, as does
`Connection: close`), nor when the server's close or stray bytes already wait on it (one `poll` on its socket).
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - asyncio protocols: the hub serves on the asyncio backend (uvicorn)
import ssl
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from functools import cache
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio

from http1.connection import Connection as _Connection
from http1.errors import BodyTooLarge, ConnectFailed, HttpError, RequestMayHaveBeenProcessed
from http1.proxy import FROM_ENVIRONMENT, ProxyChoice, ProxySettings
from http1.request import encode_head, is_idempotent
from http1.response import HttpResponse, StreamedResponse
from http1.tunnel import open_tunnel

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_HEAD",
    "BodyTooLarge",
    "ConnectFailed",
    "H1Pool",
    "HttpError",
    "HttpResponse",
    "RequestMayHaveBeenProcessed",
    "StreamedResponse",
    "default_ssl_context",
    "ssl_context_for",
]

T = TypeVar("T")
DEFAULT_MAX_BODY = 64 * 1024 * 1024
DEFAULT_MAX_HEAD = 64 * 1024
"""Bytes a response's header section may take, interim responses included (as h11's default)."""


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


async def _timed(conn: _Connection, step: Coroutine[Any, Any, T], deadline: float | None) -> T:
    """Run `step` on `conn`; at `deadline` (loop time) the connection fails it with TimeoutError (a timer, no task)."""
    if deadline is None:
        return await step
    timer = asyncio.get_running_loop().call_at(deadline, conn.expire)
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
        max_head: int = DEFAULT_MAX_HEAD,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        proxy: ProxyChoice = FROM_ENVIRONMENT,
    ) -> None:
        """`clock` measures how long connections stay idle (the request deadlines run on the event loop's clock).

        `proxy`: the forward proxy new connections tunnel through (`CONNECT`), None to always go direct, or (the
        default) the one the environment names for this origin, read here once (`http1.proxy`).

        Raises:
            ValueError: `url` is not an absolute http(s) URL.
            ProxyConfigError: the environment names a proxy this client cannot use (a ValueError)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        if proxy is FROM_ENVIRONMENT:
            proxy = ProxySettings.from_environment().for_target(parts.scheme, self._host, self._port)
        self._proxy = proxy
        self._via = "" if proxy is None else f" through proxy {proxy}"
        default_port = self._port == (443 if parts.scheme == "https" else 80)
        host = self._host if self._host.isascii() else self._host.encode("idna").decode("ascii")  # the A-label
        host = f"[{host}]" if ":" in host else host
        self._authority = host if default_port else f"{host}:{self._port}"
        self._host_line = f"Host: {self._authority}"
        self._tls = parts.scheme == "https"
        self._ssl = ssl_context
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(max_connections)
        self._keepalive_s = keepalive_s
        self._max_body = max_body
        self._max_head = max_head
        self._connect_timeout = connect_timeout
        self._clock = clock
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
        idempotent: bool | None = None,
    ) -> HttpResponse:
        """Send `method target` with `headers` and `body`; the whole response, within `timeout` seconds.

        `idempotent` says whether the request may be sent again if a pooled connection drops it unanswered
        (None: by method). The deadline covers waiting for a free slot, connecting and the whole exchange.

        Raises:
            TimeoutError: no whole response within `timeout` seconds of the call.
            ConnectFailed: no connection could be made (nothing was sent).
            RequestMayHaveBeenProcessed: the connection closed without an answer after the request left, and
                the request is not idempotent.
            HttpError: the connection broke or the response is not valid HTTP/1.1 (or too large).
            ValueError: a header the client sets itself, a malformed name, a line break or a character outside
                latin-1 (the message names the header).
        """
        request = encode_head(method, target, self._host_line, headers, len(body)) + body
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        slots = self._slots
        if deadline is not None and slots.locked():
            await self._wait_for_slot(deadline)
        else:
            await slots.acquire()
        try:
            conn, response = await self._send(_Connection.exchange, request, method, deadline, idempotent)
            self._put_back(conn)
        finally:
            self._slots.release()
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
        idempotent: bool | None = None,
    ) -> AsyncGenerator[StreamedResponse]:
        """Send `method target` and yield the response once its headers arrived; its body streams from it.

        `timeout` bounds everything up to the status and headers (slot, connection, exchange); the body's pace is
        the reader's business (`StreamedResponse.next_chunk(timeout)`). `idempotent` as for `request`. Leaving the
        block before the body ended closes the connection; otherwise it returns to the pool.

        Raises:
            TimeoutError: no status and headers within `timeout` seconds of the call.
            ConnectFailed: no connection could be made (nothing was sent).
            RequestMayHaveBeenProcessed: the connection closed without an answer after the request left, and
                the request is not idempotent.
            HttpError: the connection broke or the response is not valid HTTP/1.1.
            ValueError: as for `request`.
        """
        request = encode_head(method, target, self._host_line, headers, len(body)) + body
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        slots = self._slots
        if deadline is not None and slots.locked():
            await self._wait_for_slot(deadline)
        else:
            await slots.acquire()
        try:
            conn, (status, received) = await self._send(_Connection.start, request, method, deadline, idempotent)
            try:
                yield StreamedResponse(status, received, conn)
            finally:
                if conn.release():
                    self._put_back(conn)
        finally:
            self._slots.release()

    async def _wait_for_slot(self, deadline: float) -> None:
        """Take a connection slot from a full pool, waiting no later than `deadline` (the only cancel scope of a
        request that finds a pooled connection: a free slot is taken without one)."""
        try:
            with anyio.fail_at(deadline):
                await self._slots.acquire()
        except TimeoutError:
            raise TimeoutError("no free connection within the timeout") from None

    async def _send(
        self,
        step: Callable[[_Connection, bytes, bool], Coroutine[Any, Any, T]],
        request: bytes,
        method: str,
        deadline: float | None,
        idempotent: bool | None,
    ) -> tuple[_Connection, T]:
        """Run `step` (exchange or start) for `request` on a pooled or new connection, by `deadline`; once more on
        a new connection if a pooled one drops it unanswered and the request is idempotent (`idempotent`, or by
        `method` when None: decided only then, off the common path)."""
        head = method == "HEAD"
        conn = self._reuse()
        try:
            if conn is not None:
                try:
                    return conn, await _timed(conn, step(conn, request, head), deadline)
                except RequestMayHaveBeenProcessed:
                    if not (is_idempotent(method) if idempotent is None else idempotent):
                        raise
                # the server timed the pooled connection out as the request left: once more, on a new connection
            conn = await self._connect(deadline)
            return conn, await _timed(conn, step(conn, request, head), deadline)
        except (HttpError, TimeoutError):
            raise
        except OSError as exc:
            raise HttpError(str(exc) or type(exc).__name__) from None

    def _put_back(self, conn: _Connection) -> None:
        """Pool a connection that finished its response, unless it, the server or the pool ends its reuse."""
        keep = self._keepalive_s
        server = conn.server_keep_s
        if server is not None:
            keep = min(keep, server)
        if conn.closed or self._closed or keep <= 0:
            conn.close()
        else:
            conn.reuse_until = self._clock() + keep
            self._idle.append(conn)

    async def aclose(self) -> None:
        """Close every idle connection; connections in use close when their request ends."""
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    def _head(self, method: str, target: str, headers: Iterable[tuple[str, str]], length: int) -> bytes:
        """The head `request` would send for a `length`-byte body (`request` calls `encode_head` itself)."""
        return encode_head(method, target, self._host_line, headers, length)

    def _reuse(self) -> _Connection | None:
        """The most recently pooled connection that may still carry a request (the others are closed)."""
        now = self._clock()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and conn.reuse_until > now and not conn.idle_but_readable():
                return conn
            conn.close()
        return None

    async def _connect(self, deadline: float | None) -> _Connection:
        """A new connection (TLS handshake included), within `connect_timeout` and by the request's `deadline`.

        Raises:
            ConnectFailed: refused, unreachable, TLS refused, or no answer within `connect_timeout`.
            TimeoutError: the request's deadline came first.
        """
        if self._closed:
            raise ConnectFailed("the client is closed")
        loop = asyncio.get_running_loop()
        now = loop.time()
        give_up = now + self._connect_timeout
        by_deadline = False
        if deadline is not None and deadline <= give_up:
            if deadline <= now:
                raise TimeoutError("the timeout ran out before a connection was made")
            give_up, by_deadline = deadline, True
        context: ssl.SSLContext | None = None
        if self._tls:
            context = self._ssl = self._ssl or default_ssl_context()
        proxy = self._proxy
        try:
            with anyio.fail_at(give_up):
                if proxy is None:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(self._max_body, self._max_head),
                        self._host,
                        self._port,
                        ssl=context,
                        server_hostname=self._host if context else None,
                    )
                else:
                    conn = await open_tunnel(
                        proxy,
                        lambda: _Connection(self._max_body, self._max_head),
                        self._host,
                        self._port,
                        ssl_context=context,
                        server_hostname=self._host if context else None,
                    )
        except TimeoutError:
            if by_deadline:
                raise TimeoutError(f"the timeout ran out while connecting to {self._authority}{self._via}") from None
            raise ConnectFailed(
                f"cannot connect to {self._authority}{self._via}: no answer within {self._connect_timeout:g}s"
            ) from None
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {self._authority}{self._via}: {exc.strerror or exc}") from None
        return conn

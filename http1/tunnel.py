"""A connection through an http forward proxy: `CONNECT host:port`, then the caller's protocol on the tunnel.

The client asks the proxy for a tunnel to the origin, reads the proxy's answer head, and hands the open socket to
the connection protocol the pool would have used on a direct connection (after TLS, for https, with the origin's
name for SNI and the certificate check). From then on the proxy only relays bytes: the request framing, keep-alive
and the rule never to resend a request work as on a direct connection. Plain http targets are tunnelled too, for
the same reason: a proxy forwarding absolute-form requests may rewrite or replay them.

Built on asyncio protocols like `http1.client` (the hub serves on the asyncio backend, uvicorn with uvloop); the
caller bounds the whole exchange with its connect timeout.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - asyncio protocols, as in http1.client: the hub serves on the asyncio backend
import ssl
from collections.abc import Callable
from typing import TypeVar, cast

from http1.proxy import Proxy, connect_request

__all__ = ["MAX_ANSWER_HEAD", "ProxyError", "open_tunnel"]

MAX_ANSWER_HEAD = 16 * 1024
"""Bytes of the proxy's answer head read at most (status line and headers)."""

P = TypeVar("P", bound=asyncio.Protocol)


class ProxyError(ConnectionError):
    """The proxy could not be reached, or it did not open the tunnel (the message says why)."""


class _ConnectAnswer(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT: the status line and headers, and nothing after them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[tuple[int, str]] = loop.create_future()
        self._head = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream transport (uvloop's is not a subclass)

    def data_received(self, data: bytes) -> None:
        if self.answer.done():
            return  # reading is paused once the head is complete; a late chunk changes nothing
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_ANSWER_HEAD:
                self._fail("the proxy's answer to CONNECT is too long")
            return
        status = _status(bytes(self._head[:end]).split(b"\r\n", 1)[0])
        if status is None:
            self._fail("the proxy's answer to CONNECT is not an HTTP answer")
        elif 200 <= status[0] < 300 and end + 4 != len(self._head):  # a refusal's body may follow; a tunnel's not
            self._fail("the proxy sent bytes after its answer to CONNECT")
        else:
            if self.transport is not None:
                self.transport.pause_reading()  # the tunnel's own protocol reads from here on
            self.answer.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(ProxyError("the proxy closed the connection before answering CONNECT"))

    def _fail(self, message: str) -> None:
        self.answer.set_exception(ProxyError(message))
        if self.transport is not None:
            self.transport.close()


def _status(line: bytes) -> tuple[int, str] | None:
    """(status, reason) of an `HTTP/1.x NNN reason` status line, or None."""
    version, _, rest = line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        return None
    return int(code), reason.decode("latin-1").strip()


async def open_tunnel(
    proxy: Proxy,
    factory: Callable[[], P],
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None,
    server_hostname: str | None,
) -> P:
    """Open a tunnel to `host:port` through `proxy`; TLS over it with `ssl_context`; `factory()`'s protocol on top.

    Raises:
        ProxyError: the proxy cannot be reached, closed early, or answered anything but a 2xx status.
        OSError: the TLS handshake with the origin failed (`ssl.SSLError`).
        ValueError: `host` cannot be written in a CONNECT request.
    """
    loop = asyncio.get_running_loop()
    request = connect_request(proxy, host, port)
    try:
        transport, reader = await loop.create_connection(lambda: _ConnectAnswer(loop), proxy.host, proxy.port)
    except OSError as exc:
        raise ProxyError(f"cannot reach the proxy: {exc.strerror or exc}") from None
    try:
        transport.write(request)
        status, reason = await reader.answer
        if not 200 <= status < 300:
            raise ProxyError(f"the proxy answered CONNECT with {status} {reason}".rstrip())
        if transport.is_closing():
            raise ProxyError("the proxy closed the tunnel as it opened it")
        protocol = factory()
        if ssl_context is None:
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            transport.resume_reading()
            return protocol
        tls = await loop.start_tls(transport, protocol, ssl_context, server_hostname=server_hostname)
        if tls is None:  # only for a transport already closing; start_tls raises otherwise
            raise ProxyError("the proxy closed the tunnel during the TLS handshake")
        protocol.connection_made(tls)
        return protocol
    except BaseException:
        transport.close()
        raise

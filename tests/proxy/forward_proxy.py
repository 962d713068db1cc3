"""A forward proxy for tests: `CONNECT host:port` tunnels and absolute-form `GET http://host/path` requests.

It records every request it reads (method, target, the `Proxy-Authorization` it carried) so a test can assert that
traffic went through it, and can be told to require credentials, to answer every request with a fixed status
(a proxy that refuses), or to read requests and never answer (a proxy that hangs).

It connects only to loopback targets (127.0.0.1, ::1, localhost) and answers 502 for any other, so a test can
name a remote host without the proxy ever resolving it. A tunnel pipes bytes both ways until either side closes.
An absolute-form request is rewritten to origin form and sent to its target with `Connection: close`, so each
forwarded request gets a connection (and a record) of its own.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

_HOP_BY_HOP = frozenset({"proxy-authorization", "proxy-connection", "connection", "keep-alive"})


@dataclass(frozen=True)
class Asked:
    """One request the proxy read."""

    method: str
    target: str
    """`host:port` for CONNECT, the absolute URL otherwise."""
    authorization: str | None
    """The `Proxy-Authorization` header, if any."""


class ForwardProxy:
    """The running proxy: its address and what it saw."""

    def __init__(self, port: int, *, credentials: tuple[str, str] | None, answer: int | None, hang: bool) -> None:
        self.port = port
        self.asked: list[Asked] = []
        self.asked_once = anyio.Event()
        """Set when the first request head was read."""
        self._credentials = credentials
        self._answer = answer
        self._hang = hang
        self._open = 0
        self._idle = anyio.Event()
        self._idle.set()

    @property
    def url(self) -> str:
        """The proxy's URL, with the credentials it requires (if any) as user information."""
        if self._credentials is None:
            return f"http://127.0.0.1:{self.port}"
        user, password = self._credentials
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    def tunnels(self) -> list[str]:
        """The `host:port` targets of every CONNECT, in order."""
        return [a.target for a in self.asked if a.method == "CONNECT"]

    def forwarded(self) -> list[str]:
        """`METHOD url` of every absolute-form request, in order."""
        return [f"{a.method} {a.target}" for a in self.asked if a.method != "CONNECT"]

    async def wait_idle(self) -> None:
        """Wait until no client connection is open (every tunnel was closed by one side)."""
        with anyio.fail_after(5):
            await self._idle.wait()

    async def handle(self, client: anyio.abc.SocketStream) -> None:
        self._open += 1
        self._idle = anyio.Event() if self._open == 1 else self._idle
        try:
            async with client:
                await self._serve(client)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.DelimiterNotFound):
            pass
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            self._open -= 1
            if self._open == 0:
                self._idle.set()

    async def _serve(self, client: anyio.abc.SocketStream) -> None:
        buffered = BufferedByteReceiveStream(client)
        head = (await buffered.receive_until(b"\r\n\r\n", 65536)).decode("latin-1")
        request_line, *lines = head.split("\r\n")
        method, target, _ = request_line.split(" ", 2)
        headers = [(name.strip().lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines)]
        authorization = next((value for name, value in headers if name == "proxy-authorization"), None)
        self.asked.append(Asked(method, target, authorization))
        self.asked_once.set()
        if self._hang:
            async for _ in buffered:  # read until the client gives up, never answer
                pass
            return
        if self._answer is not None:
            await client.send(_status(self._answer))
            return
        if self._credentials is not None and authorization != _basic(*self._credentials):
            await client.send(_status(407, b'Proxy-Authenticate: Basic realm="test"\r\n'))
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            try:
                upstream = await _connect(host.strip("[]"), int(port))
            except OSError:
                await client.send(_status(502))
                return
            await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await _pipe(buffered, client, upstream)
            return
        parts = urlsplit(target)
        if parts.scheme != "http" or parts.hostname is None:
            await client.send(_status(400))
            return
        try:
            upstream = await _connect(parts.hostname, parts.port or 80)
        except OSError:
            await client.send(_status(502))
            return
        path = parts.path or "/"
        kept = [f"{name}: {value}" for name, value in headers if name and name not in _HOP_BY_HOP]
        rewritten = "\r\n".join([f"{method} {path}{'?' + parts.query if parts.query else ''} HTTP/1.1", *kept])
        await upstream.send((rewritten + "\r\nConnection: close\r\n\r\n").encode("latin-1"))
        await _pipe(buffered, client, upstream)


async def _connect(host: str, port: int) -> anyio.abc.SocketStream:
    """A connection to a loopback target; any other name gets an OSError (the tests never leave the machine)."""
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise OSError(f"{host} is not a loopback target")
    return await anyio.connect_tcp(host, port)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _status(code: int, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d Refused\r\n%sContent-Length: 7\r\nConnection: close\r\n\r\nrefused" % (code, extra)


async def _pipe(
    client_in: BufferedByteReceiveStream, client: anyio.abc.SocketStream, upstream: anyio.abc.SocketStream
) -> None:
    """Copy bytes both ways until either side closes, then close both."""

    async def copy(source: anyio.abc.ByteReceiveStream, sink: anyio.abc.ByteSendStream) -> None:
        try:
            async for chunk in source:
                await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        tg.cancel_scope.cancel()

    async with upstream, anyio.create_task_group() as tg:
        tg.start_soon(copy, client_in, upstream)
        tg.start_soon(copy, upstream, client)


@asynccontextmanager
async def forward_proxy(
    *, credentials: tuple[str, str] | None = None, answer: int | None = None, hang: bool = False
) -> AsyncGenerator[ForwardProxy]:
    """Run a forward proxy on a free 127.0.0.1 port until the block ends.

    `credentials`: require `Proxy-Authorization: Basic` for them (else 407). `answer`: answer every request with this
    status. `hang`: read requests and never answer.
    """
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    proxy = ForwardProxy(
        listener.extra(anyio.abc.SocketAttribute.local_port), credentials=credentials, answer=answer, hang=hang
    )
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, proxy.handle)
        try:
            yield proxy
        finally:
            tg.cancel_scope.cancel()

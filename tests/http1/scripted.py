"""A scripted TCP server on 127.0.0.1 for the HTTP/1.1 client: it sends any bytes, at any pace, closes at any point.

Each accepted connection runs the script for its number (the last script serves any further connection). A script
gets a `Peer`: it reads whole requests (each is recorded, so a test can count what reached the server), sends raw
bytes, and either returns (the server closes the connection) or holds the connection open until the client closes
it (`hold`, which records any request that still arrives). The server notes, per connection, whether the client
closed it, so a test can assert that no connection was left open.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSStream


def response(body: bytes, *, status: str = "200 OK", extra: bytes = b"") -> bytes:
    """A complete HTTP/1.1 response with a Content-Length (`extra`: more header lines, each ending in CRLF)."""
    return b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        status.encode(),
        len(body),
        extra,
        body,
    )


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@dataclass
class Peer:
    """The server's end of one connection."""

    server: ScriptedServer
    number: int
    """1 for the first connection accepted."""
    stream: anyio.abc.ByteStream
    buffered: BufferedByteReceiveStream
    closed_by_client: bool = False

    async def read_request(self) -> bytes:
        """One request (head and Content-Length body), recorded; raises anyio.EndOfStream if the client closed."""
        head = await self.buffered.receive_until(b"\r\n\r\n", 1 << 20)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.buffered.receive_exactly(length) if length else b""
        request = head + b"\r\n\r\n" + body
        self.server.requests.append(request)
        self.server.request_seen.set()
        return request

    async def send(self, *pieces: bytes) -> None:
        """Send each piece with a separate write, letting the client run between them."""
        for piece in pieces:
            if piece:
                await self.stream.send(piece)
            await anyio.lowlevel.checkpoint()

    async def hold(self) -> None:
        """Keep the connection open until the client closes it, recording any request that still arrives."""
        while True:
            await self.read_request()


Script = Callable[[Peer], Awaitable[None]]


@dataclass
class ScriptedServer:
    port: int
    scripts: Sequence[Script]
    requests: list[bytes] = field(default_factory=list[bytes])
    """Every request read, on any connection, in order."""
    peers: list[Peer] = field(default_factory=list[Peer])
    request_seen: anyio.Event = field(default_factory=anyio.Event)
    """Set when the first request was read."""
    _ended: list[anyio.Event] = field(default_factory=list[anyio.Event])
    _accepted: anyio.Event = field(default_factory=anyio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp?x=1"

    @property
    def connections(self) -> int:
        return len(self.peers)

    async def all_ended(self, connections: int = 1) -> None:
        """Wait until at least `connections` were accepted and every one accepted has ended (closed by either side).

        The client may be done with a connection before the server got round to accepting it."""
        with anyio.fail_after(5):
            while len(self._ended) < connections:
                await self._accepted.wait()
            for ended in list(self._ended):
                await ended.wait()

    async def serve(self, stream: anyio.abc.SocketStream, tls: ssl.SSLContext | None) -> None:
        ended = anyio.Event()
        self._ended.append(ended)
        self._accepted.set()
        self._accepted = anyio.Event()
        conn: anyio.abc.ByteStream = stream
        peer = Peer(self, len(self.peers) + 1, conn, BufferedByteReceiveStream(conn))
        self.peers.append(peer)
        script = self.scripts[min(peer.number, len(self.scripts)) - 1]
        try:
            if tls is not None:
                conn = await TLSStream.wrap(stream, server_side=True, ssl_context=tls, standard_compatible=False)
                peer.stream, peer.buffered = conn, BufferedByteReceiveStream(conn)
            async with conn:
                await script(peer)
        except (anyio.EndOfStream, anyio.IncompleteRead):
            peer.closed_by_client = True
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError, OSError):
            peer.closed_by_client = True  # reset by the client, or a TLS handshake it gave up
        finally:
            await stream.aclose()  # closed already, unless the TLS handshake failed before `async with`
            ended.set()


@asynccontextmanager
async def serving(*scripts: Script, tls: ssl.SSLContext | None = None) -> AsyncGenerator[ScriptedServer]:
    """Run a server whose connection n follows `scripts[n-1]` (the last script for any further connection)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    server = ScriptedServer(listener.extra(anyio.abc.SocketAttribute.local_port), scripts)

    async def serve(stream: anyio.abc.SocketStream) -> None:
        await server.serve(stream, tls)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


def answering(*answers: bytes, then_hold: bool = False) -> Script:
    """Read a request and send the next of `answers` (raw bytes), for each; then close (or hold the connection)."""

    async def script(peer: Peer) -> None:
        for answer in answers:
            await peer.read_request()
            await peer.send(answer)
        if then_hold:
            await peer.hold()

    return script


async def keep_alive(peer: Peer) -> None:
    """A well-behaved keep-alive server: every request gets a JSON answer naming its size."""
    while True:
        request = await peer.read_request()
        await peer.send(response(b'{"echo":%d}' % len(request)))

"""The shared sessions' bus on the supervisor's socket (`hub.store.session_bus`): the workers of
`agenthub serve --workers N` relay and record ended sessions through their supervisor, so one machine needs no
Redis. Each worker holds two connections: its subscription, and one for its requests (one at a time: each is a
small frame and a smaller answer on a local socket; a broken connection is opened again once, which is safe as
asking and recording are idempotent)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from hub.doors.mcp_relay import SessionsUnavailable
from hub.store import session_bus as wire

__all__ = ["SocketBus"]

_BROKEN = (OSError, anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.IncompleteRead)


class _Connection:
    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)

    async def read_frame(self) -> tuple[int, int, bytes]:
        """(op, request id, data) of the next frame."""
        head = await self.reader.receive_exactly(wire.HEAD.size)
        size, op, rid = wire.HEAD.unpack(head)
        if size < 5 or size > wire.MAX_FRAME:
            raise SessionsUnavailable(f"the session bus sent a frame of {size} bytes")
        data = await self.reader.receive_exactly(size - 5) if size > 5 else b""
        return op, rid, data


class SocketBus:
    """`SessionBus` on the supervisor's session bus at `path`."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = anyio.Lock()
        self._requests: _Connection | None = None
        self._rid = 0

    async def listen(self, subscribed: Callable[[], None], deliver: Callable[[bytes], Awaitable[None]]) -> None:
        try:
            stream = await anyio.connect_unix(self._path)
        except OSError as exc:
            raise SessionsUnavailable(f"the supervisor's session bus: {exc}") from None
        connection = _Connection(stream)
        try:
            async with stream:
                await stream.send(wire.frame(wire.SUBSCRIBE, 0))
                op, _, _ = await connection.read_frame()
                if op != wire.ANSWER:
                    raise SessionsUnavailable(f"the session bus answered a subscription with operation {op}")
                subscribed()
                while True:
                    op, _, data = await connection.read_frame()
                    if op == wire.MESSAGE:
                        await deliver(data)
        except _BROKEN as exc:
            raise SessionsUnavailable(f"the supervisor's session bus: {exc or type(exc).__name__}") from None

    async def publish(self, payload: bytes) -> None:
        await self._request(wire.PUBLISH, payload, answered=False)

    async def ended(self, name: str) -> bool:
        return await self._request(wire.ENDED, name.encode()) == b"\x01"

    async def end(self, name: str, ttl_ms: int) -> None:
        ttl = max(0.001, ttl_ms / 1000.0)
        await self._request(wire.END, wire.TTL.pack(ttl) + name.encode())

    async def aclose(self) -> None:
        async with self._lock:
            await self._drop()

    async def _request(self, op: int, data: bytes, *, answered: bool = True) -> bytes:
        async with self._lock:
            try:
                return await self._exchange(op, data, answered)
            except _BROKEN:
                await self._drop()  # e.g. the supervisor's end of an idle connection was reset: once more, anew
            except BaseException:
                await self._drop()  # cancelled between a request and its answer: the connection is out of turn
                raise
            try:
                return await self._exchange(op, data, answered)
            except _BROKEN as exc:
                await self._drop()
                raise SessionsUnavailable(f"the supervisor's session bus: {exc or type(exc).__name__}") from None
            except BaseException:
                await self._drop()
                raise

    async def _drop(self) -> None:
        connection, self._requests = self._requests, None
        if connection is not None:
            with anyio.CancelScope(shield=True):
                await connection.stream.aclose()

    async def _exchange(self, op: int, data: bytes, answered: bool) -> bytes:
        if self._requests is None:
            self._requests = _Connection(await anyio.connect_unix(self._path))
        self._rid = (self._rid + 1) & 0xFFFFFFFF
        await self._requests.stream.send(wire.frame(op, self._rid, data))
        if not answered:
            return b""
        answer, rid, body = await self._requests.read_frame()
        if answer != wire.ANSWER or rid != self._rid:
            raise SessionsUnavailable(f"the session bus answered out of turn (operation {answer}, request {rid})")
        return body

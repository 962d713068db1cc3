"""`SocketCounters`: a worker's `Counters`, held by the supervisor's `CounterServer` over a Unix socket.

One persistent connection per worker, multiplexed: each request carries an id, any number of callers have
requests in flight at once, and one of the waiting callers at a time reads the connection and hands every answer
it finds to its caller (so no background task is needed and the answers of pipelined requests arrive in one read).

A `settle` is sent and not waited for: nothing the caller does depends on its answer, and the requests that
follow it on the connection are applied after it, so this worker reads its own usage; its answer is read with the
next ones. That saves one of the two round trips of every governed call.

A broken connection is replaced once per call: a `read` is sent again, and so are `reserve` and the settles the
old connection left unanswered, marked as resends, which the server answers from memory when it already applied
them (so a lost answer neither holds a reservation twice nor adds usage twice). A `reset` is not resent: it
reports the failure. Every operation is bounded by `timeout`; a server that cannot be reached or does not answer
in time is `CountersUnavailable`, which the limits stage turns into a refusal, exactly as with Redis.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Sequence
from typing import ClassVar

import anyio
import anyio.abc

from hub.governance.counters import ReserveResult, Slot, SlotValue
from hub.governance.errors import CountersUnavailable
from hub.store import counter_wire as wire

__all__ = ["SocketCounters", "counters_socket"]

logger = logging.getLogger(__name__)

_BROKEN = (OSError, anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, wire.Malformed)


class _Broken(Exception):
    """The connection broke before the answer came back."""


class _Waiter:
    __slots__ = ("answer", "wake")

    def __init__(self) -> None:
        self.answer: bytes | None = None
        self.wake = anyio.Event()


class _Link:
    """One connection to the server and the callers waiting on it."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._waiting: dict[int, _Waiter] = {}
        self._sending = anyio.Lock(fast_acquire=True)
        self._reading = False
        self.broken: BaseException | None = None
        self.unanswered: dict[int, bytes] = {}
        """Settles sent on this connection and not answered yet, by request id (resent if it breaks)."""

    async def post(self, rid: int, frame: bytes) -> None:
        """Send `frame` without waiting for its answer (kept in `unanswered` until it comes).

        Raises:
            _Broken: the connection broke (the frame stays in `unanswered`, for the next connection to resend).
        """
        self.unanswered[rid] = frame
        await self._send(frame)

    async def _send(self, frame: bytes) -> None:
        """Write `frame` whole, one sender at a time.

        Raises:
            _Broken: the connection broke before or while it was written.
        """
        async with self._sending:
            if self.broken is not None:
                raise _Broken(self.broken)
            try:
                await self._stream.send(frame)
            except _BROKEN as exc:
                await self._break(exc)
                raise _Broken(exc) from exc

    async def exchange(self, rid: int, frame: bytes) -> bytes:
        """Send `frame` and wait for the answer to request `rid`.

        Raises:
            _Broken: the connection broke first (the request may or may not have been applied).
        """
        waiter = self._waiting[rid] = _Waiter()
        try:
            await self._send(frame)
            while True:
                if waiter.answer is not None:
                    return waiter.answer
                if self.broken is not None:
                    raise _Broken(self.broken)
                if self._reading:
                    if waiter.wake.is_set():
                        waiter.wake = anyio.Event()
                    await waiter.wake.wait()
                else:
                    await self._read_for(waiter)
        finally:
            del self._waiting[rid]
            if not self._reading:
                self._hand_over(waiter)

    async def _read_for(self, waiter: _Waiter) -> None:
        """Read answers, handing each to its caller, until `waiter`'s own has come or the connection broke."""
        self._reading = True
        try:
            while waiter.answer is None:
                try:
                    self._buffer += await self._stream.receive()
                    while bodies := wire.split_frames(self._buffer):
                        self._deliver(bodies)
                except _BROKEN as exc:
                    await self._break(exc)
                    return
        finally:
            self._reading = False
            self._hand_over(waiter)

    def _deliver(self, bodies: list[bytes]) -> None:
        waiting = self._waiting
        for body in bodies:
            rid = wire.answer_id(body)
            other = waiting.get(rid)
            if other is not None:
                other.answer = body
                other.wake.set()
            elif self.unanswered.pop(rid, None) is not None and (message := wire.error_message(body)) is not None:
                logger.error("the counter server failed a settle: %s", message)
            # else: its caller gave up (timed out or was cancelled)

    def _hand_over(self, leaving: _Waiter) -> None:
        """Wake one caller still waiting for its answer, so that it reads in turn."""
        for other in self._waiting.values():
            if other is not leaving and other.answer is None:
                other.wake.set()
                return

    async def _break(self, exc: BaseException) -> None:
        if self.broken is None:
            self.broken = exc
            for other in self._waiting.values():
                other.wake.set()
        with anyio.CancelScope(shield=True):
            await self._stream.aclose()

    async def aclose(self) -> None:
        await self._break(anyio.ClosedResourceError())


def counters_socket() -> str | None:
    """The counter server's path when this process is one of the workers of `agenthub serve --workers N`."""
    return os.environ.get(wire.ENVIRONMENT) or None


class SocketCounters:
    """`Counters` held by a `CounterServer` at `path`; share one instance per worker process.

    Args:
        path: the server's Unix socket (`AGENTHUB_COUNTERS_SOCKET`).
        timeout: seconds an operation may take, reconnecting and resending included; keep it well under the
            server's `remember`.
    """

    awaits_io: ClassVar[bool] = True

    def __init__(self, path: str, *, timeout: float = 2.0) -> None:
        self.path = path
        self._timeout = timeout
        self._link: _Link | None = None
        self._connecting = anyio.Lock()
        self._ids = itertools.count(1)
        self._closed = False

    async def reserve(self, slots: Sequence[Slot], *, hold_id: str, now: float, lease: float) -> ReserveResult:
        """See `Counters.reserve`."""
        rid = self._rid()
        frame = wire.encode_reserve(rid, slots, hold_id=hold_id, now=now, lease=lease)
        body = await self._call(rid, frame, "reserve", resend=True)
        refused, values = self._values(body, refused=True)
        return ReserveResult(refused, values)

    async def settle(self, slots: Sequence[Slot], *, hold_id: str, now: float) -> None:
        """See `Counters.settle`; sent, not waited for (see the module's docstring).

        Raises:
            CountersUnavailable: the server cannot be reached to send it.
        """
        rid = self._rid()
        frame = wire.encode_settle(rid, slots, hold_id=hold_id, now=now)
        try:
            with anyio.fail_after(self._timeout):
                try:
                    await (await self._connected()).post(rid, frame)
                except _Broken:
                    await self._connected()  # a new connection resends it, with what else the old one left
        except TimeoutError:
            raise CountersUnavailable(
                f"counter server at {self.path} did not take a settle within {self._timeout:g} s"
            ) from None
        except (_Broken, OSError) as exc:
            raise CountersUnavailable(f"counter server at {self.path} is unreachable: {exc}") from None

    async def read(self, keys: Sequence[str], *, now: float) -> list[SlotValue]:
        """See `Counters.read`."""
        rid = self._rid()
        body = await self._call(rid, wire.encode_keys(wire.READ, rid, keys, now=now), "read", resend=True)
        return list(self._values(body, refused=False)[1])

    async def reset(self, keys: Sequence[str], *, now: float) -> None:
        """See `Counters.reset`."""
        rid = self._rid()
        await self._call(rid, wire.encode_keys(wire.RESET, rid, keys, now=now), "reset", resend=False)

    async def aclose(self) -> None:
        """Wait (up to `timeout`) until the server has applied the settles sent, then close the connection; later
        calls fail with `CountersUnavailable`."""
        link = self._link
        if link is not None and link.unanswered:
            try:
                await self.read([], now=0.0)  # answered after every request sent before it
            except CountersUnavailable as exc:
                logger.warning("closing the counters with %d settles unconfirmed: %s", len(link.unanswered), exc)
        self._closed = True
        link, self._link = self._link, None
        if link is not None:
            await link.aclose()

    def _rid(self) -> int:
        return next(self._ids) & 0xFFFFFFFF

    def _values(self, body: bytes, *, refused: bool) -> tuple[int, tuple[SlotValue, ...]]:
        try:
            return wire.values_of(body, refused=refused)
        except wire.Malformed as exc:
            raise CountersUnavailable(f"counter server at {self.path} sent a malformed answer: {exc}") from None

    async def _call(self, rid: int, frame: bytes, what: str, *, resend: bool) -> bytes:
        try:
            with anyio.fail_after(self._timeout):
                try:
                    body = await (await self._connected()).exchange(rid, frame)
                except _Broken as broken:
                    if not resend:
                        raise CountersUnavailable(
                            f"connection to the counter server at {self.path} broke during {what}; it may or may "
                            f"not have been applied: {broken}"
                        ) from None
                    body = await (await self._connected()).exchange(rid, wire.resent(frame))
        except TimeoutError:
            raise CountersUnavailable(
                f"counter server at {self.path} did not answer {what} within {self._timeout:g} s"
            ) from None
        except (_Broken, OSError) as exc:
            raise CountersUnavailable(f"counter server at {self.path} is unreachable: {exc}") from None
        try:
            message = wire.error_message(body)
        except wire.Malformed as exc:
            raise CountersUnavailable(f"counter server at {self.path} sent a malformed answer: {exc}") from None
        if message is not None:
            raise CountersUnavailable(f"counter server at {self.path} failed {what}: {message}")
        return body

    async def _connected(self) -> _Link:
        link = self._link
        if link is not None and link.broken is None:
            return link
        async with self._connecting:
            link = self._link
            if link is None or link.broken is not None:
                if self._closed:
                    raise CountersUnavailable(f"counters at {self.path} are closed")
                old = link
                link = self._link = _Link(await anyio.connect_unix(self.path))
                if old is not None and old.unanswered:  # settles whose answers the old connection lost
                    carried, old.unanswered = old.unanswered, {}
                    for rid, frame in carried.items():
                        await link.post(rid, wire.resent(frame))
            return link

"""The syslog forwarder against real TCP and UDP receivers on 127.0.0.1, through an outage and recovery."""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Sequence

import anyio
import anyio.abc
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from hub.audit.chain import AuditChain, AuditEntry, AuditEvent, Keyring
from hub.audit.forward import (
    AuditForwarder,
    Backoff,
    ForwardError,
    InMemoryCursor,
    SyslogTransport,
    TcpSyslogTransport,
    UdpSyslogTransport,
)
from hub.governance.clock import ManualClock
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

SEQ = re.compile(r' seq="(\d+)"')


class ListSource:
    """The stored chain: a list that grows."""

    def __init__(self) -> None:
        self.chain = AuditChain(Keyring({"k": b"k" * 32}, active="k"), clock=ManualClock())
        self.entries: list[AuditEntry] = []

    def append(self, count: int) -> None:
        for _ in range(count):
            self.entries.append(self.chain.append(AuditEvent("admin", "key.rotate", "key", "k1")))

    async def entries_after(self, seq: int, limit: int) -> Sequence[AuditEntry]:
        return [e for e in self.entries if e.seq > seq][:limit]


class Receiver:
    """Collects syslog messages and lets a test wait for a count."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self._arrived = anyio.Event()
        self._scope = anyio.CancelScope()
        self.stopped = anyio.Event()
        self.port = 0

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        raise NotImplementedError

    def got(self, message: str) -> None:
        self.messages.append(message)
        self._arrived.set()

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(PATIENCE):
            while len(self.messages) < count:
                self._arrived = anyio.Event()
                await self._arrived.wait()

    def seqs(self) -> list[int]:
        return [int(m[1]) for m in (SEQ.search(msg) for msg in self.messages) if m]

    async def stop(self) -> None:
        """Cancel serving and wait until every socket is closed."""
        self._scope.cancel()
        with anyio.fail_after(PATIENCE):
            await self.stopped.wait()


class TcpReceiver(Receiver):
    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._scope, self.stopped = anyio.CancelScope(), anyio.Event()
        try:
            await self._serve_tcp(task_status)
        finally:
            self.stopped.set()

    async def _serve_tcp(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        with self._scope:
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
            async with listener:
                task_status.started()
                await listener.serve(self._handle)

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            buffer = b""
            async for chunk in stream:
                buffer += chunk
                while b" " in buffer:  # RFC 6587 octet counting: MSG-LEN SP SYSLOG-MSG
                    length, _, rest = buffer.partition(b" ")
                    if len(rest) < int(length):
                        break
                    self.got(rest[: int(length)].decode())
                    buffer = rest[int(length) :]


class UdpReceiver(Receiver):
    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self._scope, self.stopped = anyio.CancelScope(), anyio.Event()
        try:
            await self._serve_udp(task_status)
        finally:
            self.stopped.set()

    async def _serve_udp(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        with self._scope:
            async with await anyio.create_udp_socket(
                family=socket.AF_INET, local_host="127.0.0.1", local_port=self.port
            ) as udp:
                self.port = udp.extra(anyio.abc.SocketAttribute.local_port)
                task_status.started()
                async for data, _ in udp:
                    self.got(data.decode())


class ManualSleep:
    """The forwarder's sleep: reports each delay, then waits until the test lets it go on."""

    def __init__(self) -> None:
        self.calls: tuple[MemoryObjectSendStream[float], MemoryObjectReceiveStream[float]]
        self.calls = anyio.create_memory_object_stream[float](100)
        self.resumes = anyio.create_memory_object_stream[None]()

    async def __call__(self, delay: float) -> None:
        await self.calls[0].send(delay)
        await self.resumes[1].receive()

    async def next_delay(self) -> float:
        with anyio.fail_after(PATIENCE):
            return await self.calls[1].receive()

    async def resume(self) -> None:
        with anyio.fail_after(PATIENCE):
            await self.resumes[0].send(None)

    def close(self) -> None:
        """Close both ends of both streams (left open, each one is a ResourceWarning when collected)."""
        for stream in (*self.calls, *self.resumes):
            stream.close()


async def _outage_and_recovery(receiver: Receiver, transport: SyslogTransport) -> None:
    source, cursor, sleep = ListSource(), InMemoryCursor(), ManualSleep()
    forwarder = AuditForwarder(source, cursor, transport, sleep=sleep, backoff=Backoff(0.5, 4.0), poll_interval=60)
    with contextlib.closing(sleep):
        await _run_outage_and_recovery(receiver, source, cursor, sleep, forwarder)


async def _run_outage_and_recovery(
    receiver: Receiver, source: ListSource, cursor: InMemoryCursor, sleep: ManualSleep, forwarder: AuditForwarder
) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(receiver.serve)
        await tg.start(forwarder.run)
        source.append(3)
        forwarder.notify()
        await receiver.wait_for(3)

        await receiver.stop()  # the receiver goes down
        source.append(3)
        forwarder.notify()
        assert await sleep.next_delay() == 0.5
        assert cursor.seq == 3  # nothing was counted as sent while the receiver was away
        await sleep.resume()
        assert await sleep.next_delay() == 1.0  # still down: the delay doubles
        assert cursor.seq == 3

        await tg.start(receiver.serve)  # back on the same port
        await sleep.resume()
        await receiver.wait_for(6)
        assert receiver.seqs() == [1, 2, 3, 4, 5, 6]
        source.append(1)
        forwarder.notify()
        await receiver.wait_for(7)
        assert cursor.seq == 7
        assert forwarder.failures == 2
        tg.cancel_scope.cancel()


async def test_tcp_forwarding_survives_a_receiver_outage():
    receiver = TcpReceiver()
    async with anyio.create_task_group() as tg:  # learn a free port first
        await tg.start(receiver.serve)
        await receiver.stop()
    await _outage_and_recovery(receiver, TcpSyslogTransport("127.0.0.1", receiver.port))


async def test_udp_forwarding_survives_a_receiver_outage():
    receiver = UdpReceiver()
    async with anyio.create_task_group() as tg:
        await tg.start(receiver.serve)
        await receiver.stop()
    await _outage_and_recovery(receiver, UdpSyslogTransport("127.0.0.1", receiver.port))


async def test_forward_pending_stops_at_the_first_failure():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source, cursor = ListSource(), InMemoryCursor()
    source.append(2)
    transport = TcpSyslogTransport("127.0.0.1", port, connect_timeout=2)
    forwarder = AuditForwarder(source, cursor, transport)
    with pytest.raises(ForwardError, match="syslog tcp"):
        await forwarder.forward_pending()
    assert cursor.seq == 0
    await transport.aclose()


def test_backoff_doubles_up_to_the_maximum_and_resets():
    backoff = Backoff(1, 5)
    assert [backoff.next() for _ in range(5)] == [1, 2, 4, 5, 5]
    backoff.reset()
    assert backoff.next() == 1

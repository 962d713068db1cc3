"""Forward the audit chain to a syslog receiver without losing an entry while the receiver is down.

The forwarder reads entries after a persisted cursor (the last forwarded seq), sends each as an RFC 5424
line, and advances the cursor only after the send succeeded; on failure it backs off and resends from the
cursor. Delivery is at least once: a receiver may see an entry twice after a reconnect and should dedupe by
`seq` (carried in the structured data).

- TCP (`TcpSyslogTransport`): RFC 6587 octet counting. Before each send the socket is checked for a close
  by the peer, so a receiver restart is noticed before an entry is written into a dead connection.
- UDP (`UdpSyslogTransport`): one datagram per entry on a connected socket; a refusal reported by the OS
  (ICMP port unreachable) fails the send. UDP cannot confirm delivery across a network: prefer TCP.

Run one forwarder per chain (for many replicas, the one holding a lease or lock).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import anyio
import anyio.abc

from hub.audit.chain import AuditEntry
from hub.audit.export import frame_octet_counted, to_syslog

__all__ = [
    "AuditForwarder",
    "AuditSource",
    "Backoff",
    "CursorStore",
    "ForwardError",
    "InMemoryCursor",
    "SyslogTransport",
    "TcpSyslogTransport",
    "UdpSyslogTransport",
]


class ForwardError(Exception):
    """The receiver could not be reached or refused the message."""


class AuditSource(Protocol):
    """Where the entries are stored (the hub's audit store)."""

    async def entries_after(self, seq: int, limit: int) -> Sequence[AuditEntry]:
        """Up to `limit` entries with seq greater than `seq`, in seq order."""
        ...


class CursorStore(Protocol):
    """Persists the seq of the last entry forwarded (0 when none)."""

    async def load(self) -> int:
        """The last forwarded seq."""
        ...

    async def save(self, seq: int) -> None:
        """Record that every entry up to `seq` was forwarded."""
        ...


class InMemoryCursor:
    """A `CursorStore` in memory (tests, or when restarts may resend everything)."""

    def __init__(self, seq: int = 0) -> None:
        self.seq = seq

    async def load(self) -> int:
        """See `CursorStore.load`."""
        return self.seq

    async def save(self, seq: int) -> None:
        """See `CursorStore.save`."""
        self.seq = seq


class SyslogTransport(Protocol):
    """Sends one syslog message."""

    async def send(self, message: str) -> None:
        """Deliver `message` or raise `ForwardError`."""
        ...

    async def aclose(self) -> None:
        """Close the connection."""
        ...


class TcpSyslogTransport:
    """Syslog over TCP with octet-counting framing; reconnects on the next send after a failure.

    Uses a plain non-blocking socket (so the peer-close check can peek at it) driven by anyio's
    `wait_writable`.
    """

    def __init__(self, host: str, port: int, *, connect_timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self._timeout = connect_timeout
        self._sock: socket.socket | None = None

    async def _connected(self) -> socket.socket:
        sock = self._sock
        if sock is not None and _peer_closed(sock):
            await self.aclose()
            sock = None
        if sock is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            self._sock = sock
            sock.setblocking(False)
            code = sock.connect_ex((self.host, self.port))
            if code not in (0, errno.EINPROGRESS):
                raise OSError(code, errno.errorcode.get(code, "connect failed"))
            with anyio.fail_after(self._timeout):
                await anyio.wait_writable(sock)
            _raise_pending(sock)
        return sock

    async def send(self, message: str) -> None:
        """See `SyslogTransport.send`."""
        try:
            sock = await self._connected()
            data = memoryview(frame_octet_counted(message))
            while data:
                try:
                    data = data[sock.send(data) :]
                except BlockingIOError:
                    with anyio.fail_after(self._timeout):
                        await anyio.wait_writable(sock)
        except (OSError, TimeoutError) as exc:
            await self.aclose()
            raise ForwardError(f"syslog tcp {self.host}:{self.port}: {exc!r}") from exc

    async def aclose(self) -> None:
        """See `SyslogTransport.aclose`."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def _peer_closed(sock: socket.socket) -> bool:
    """Whether the peer has closed or reset the connection (a syslog receiver never sends data)."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class UdpSyslogTransport:
    """Syslog over UDP, one datagram per message; fails when the OS reports the port unreachable."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._sock: socket.socket | None = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect((self.host, self.port))
            self._sock = sock
        return self._sock

    async def send(self, message: str) -> None:
        """See `SyslogTransport.send`."""
        await anyio.lowlevel.checkpoint()
        try:
            sock = self._socket()
            _raise_pending(sock)  # an error left by an earlier datagram
            sock.send(message.encode())
            _raise_pending(sock)
        except OSError as exc:
            await self.aclose()
            raise ForwardError(f"syslog udp {self.host}:{self.port}: {exc!r}") from exc

    async def aclose(self) -> None:
        """See `SyslogTransport.aclose`."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def _raise_pending(sock: socket.socket) -> None:
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, errno.errorcode.get(code, "socket error"))


class Backoff:
    """Exponential backoff: `initial`, doubling up to `maximum`; `reset()` after a success."""

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._next = initial

    def next(self) -> float:
        """The delay before the next attempt."""
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return delay

    def reset(self) -> None:
        """Start again from `initial`."""
        self._next = self.initial


class AuditForwarder:
    """Ships every entry after the cursor to a syslog transport, in order, retrying with backoff.

    Args:
        source: the stored entries.
        cursor: persists the last forwarded seq.
        transport: TCP or UDP syslog.
        format: entry -> syslog line (default `to_syslog` with its defaults).
        batch: entries read per query.
        backoff: delays between failed attempts.
        sleep: awaited with each backoff delay (injected in tests).
        poll_interval: seconds between looks at the source when nobody calls `notify`.
    """

    def __init__(
        self,
        source: AuditSource,
        cursor: CursorStore,
        transport: SyslogTransport,
        *,
        format: Callable[[AuditEntry], str] = to_syslog,
        batch: int = 100,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        poll_interval: float = 5.0,
    ) -> None:
        self.source = source
        self.cursor = cursor
        self.transport = transport
        self._format = format
        self._batch = batch
        self.backoff = backoff or Backoff()
        self._sleep = sleep
        self._poll_interval = poll_interval
        self._wake = anyio.Event()
        self.failures = 0
        """Failed attempts so far (for metrics)."""

    def notify(self) -> None:
        """Tell the forwarder new entries were appended."""
        self._wake.set()

    async def forward_pending(self) -> int:
        """Send every entry after the cursor; returns how many were sent.

        Raises:
            ForwardError: the transport failed; the cursor points at the last entry that was sent.
        """
        sent = 0
        seq = await self.cursor.load()
        while True:
            entries = await self.source.entries_after(seq, self._batch)
            if not entries:
                return sent
            for entry in entries:
                await self.transport.send(self._format(entry))
                seq = entry.seq
                await self.cursor.save(seq)
                sent += 1

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Forward forever: after each pass wait for `notify` (or the poll interval); back off on failure."""
        task_status.started()
        try:
            while True:
                self._wake = anyio.Event()
                try:
                    await self.forward_pending()
                except ForwardError:
                    self.failures += 1
                    await self._sleep(self.backoff.next())
                    continue
                self.backoff.reset()
                with anyio.move_on_after(self._poll_interval):
                    await self._wake.wait()
        finally:
            with anyio.CancelScope(shield=True):
                await self.transport.aclose()

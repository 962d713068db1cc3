"""`SessionBusServer`: what Redis provides the replicas' shared MCP sessions (`hub.doors.mcp_cluster`), provided by
the supervisor of `agenthub serve --workers N` to its workers over a Unix socket, so that N workers on one machine
need no Redis.

Two things, as in Redis:

- **a pub/sub channel**: a connection that subscribes receives every message any connection publishes from then
  on (the relay of messages a session's server sends outside a request, and of clients' answers to
  server-to-client requests);
- **the ended sessions**: a name (a digest of a deleted session's id) recorded until its session id would have
  expired, and asked for on every request of a session.

It lives in the supervisor, so it outlives any worker: a worker that restarts finds the deleted sessions where
they were. It ends with the supervisor, as do the sessions (their ids are sealed with a key the supervisor made
for its run, unless `AGENTHUB_MASTER_KEY` is set).

Threads, not an event loop, as in `hub.store.shared_counters`: one thread accepts, one per connection reads frames
(each worker holds two: its subscription and its requests). Standard library only: it runs in the supervisor,
whose memory is budgeted.

Wire: frames of `u32 size | u8 op | u32 request id | data`, size counting what follows it:

```
SUBSCRIBE  (client)  nothing            answered by ANSWER, then MESSAGE frames for as long as the connection lives
PUBLISH    (client)  payload            not answered
MESSAGE    (server)  payload            to every subscriber
END        (client)  f64 ttl s | name   answered by ANSWER
ENDED      (client)  name               answered by ANSWER with u8 1 (ended) or 0
ANSWER     (server)  data
```

A malformed frame closes the connection that sent it, with the reason logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable

__all__ = [
    "ANSWER",
    "END",
    "ENDED",
    "KEY_ENV",
    "MAX_FRAME",
    "MESSAGE",
    "PUBLISH",
    "SOCKET_ENV",
    "SUBSCRIBE",
    "SessionBusServer",
    "frame",
    "write_key",
]

SOCKET_ENV = "AGENTHUB_SESSIONS_SOCKET"
"""A worker finds the supervisor's session bus at this Unix socket path."""
KEY_ENV = "AGENTHUB_SESSION_KEY_FILE"
"""A worker reads the key that seals session ids from this file (mode 0600, in the supervisor's private directory)
when `AGENTHUB_MASTER_KEY` is not set."""

ANSWER, SUBSCRIBE, PUBLISH, MESSAGE, END, ENDED = 0, 1, 2, 3, 4, 5
MAX_FRAME = 16 << 20
"""Largest frame either side accepts (a relayed message is one JSON-RPC message)."""
HEAD = struct.Struct(">IBI")
"""size, op, request id."""
TTL = struct.Struct(">d")
SEND_TIMEOUT_S = 5.0
"""A subscriber that takes no message for this long (a stopped worker whose socket buffer is full) is dropped; it
subscribes again when it runs again."""

logger = logging.getLogger(__name__)


def frame(op: int, rid: int, data: bytes = b"") -> bytes:
    return HEAD.pack(len(data) + 5, op, rid) + data


def write_key(path: str) -> None:
    """A new random key (256 bits, hex) in a new file only this user can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(os.urandom(32).hex())


class _Malformed(ValueError):
    pass


class _Subscriber:
    __slots__ = ("connection", "lock")

    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        self.lock = threading.Lock()


class SessionBusServer:
    """Serve the channel and the ended sessions on a Unix socket at `path`.

    Args:
        path: the socket file; a stale one (nobody listening) is replaced, a live one refused.
        clock: monotonic seconds, for the ended sessions' lifetimes (injected by tests).
    """

    def __init__(self, path: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._ended: dict[bytes, float] = {}
        """name -> when it is forgotten."""
        self._next_sweep = 0.0
        self._subscribers: list[_Subscriber] = []
        self._listener: socket.socket | None = None
        self._inode = 0
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()

    def start(self) -> None:
        """Bind the socket (readable and writable by this user only) and serve in daemon threads.

        Raises:
            OSError: the path is in use by a live server, or cannot be bound.
        """
        self._remove_stale()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_mask = os.umask(0o177)
            try:
                listener.bind(self.path)
            finally:
                os.umask(old_mask)
            self._inode = os.stat(self.path).st_ino
            listener.listen(128)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._spawn(self._accept, listener, name="session-bus")

    def close(self) -> None:
        """Stop serving: close the listener and every connection, wait for the threads, remove the socket file."""
        if self._closing.is_set():
            return
        self._closing.set()
        listener = self._listener
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join()
        if listener is not None:
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == self._inode:
                    os.unlink(self.path)

    def __enter__(self) -> SessionBusServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def ended_count(self) -> int:
        """How many ended sessions are remembered (for tests)."""
        with self._lock:
            return len(self._ended)

    def _remove_stale(self) -> None:
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise OSError(f"{self.path} exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(self.path)
            except ConnectionRefusedError:
                os.unlink(self.path)
                return
        raise OSError(f"a session bus already listens on {self.path}")

    def _spawn(self, target: Callable[[socket.socket], None], sock: socket.socket, *, name: str) -> None:
        thread = threading.Thread(target=target, args=(sock,), name=name, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while not self._closing.is_set():
            try:
                connection, _ = listener.accept()
            except OSError as exc:
                if self._closing.is_set():
                    return
                logger.error("session bus: accept failed: %s", exc)
                self._closing.wait(0.1)  # e.g. out of file descriptors: let connections close before retrying
                continue
            with self._lock:
                if self._closing.is_set():
                    connection.close()
                    return
                self._connections.add(connection)
            self._spawn(self._serve, connection, name="session-bus-connection")

    def _serve(self, connection: socket.socket) -> None:
        buffer = bytearray()
        subscriber: _Subscriber | None = None
        try:
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                while len(buffer) >= 4:
                    size = int.from_bytes(buffer[:4], "big")
                    if size < 5 or size > MAX_FRAME:
                        raise _Malformed(f"frame of {size} bytes")
                    if len(buffer) < 4 + size:
                        break
                    op, rid = buffer[4], int.from_bytes(buffer[5:9], "big")
                    data = bytes(buffer[9 : 4 + size])
                    del buffer[: 4 + size]
                    if op == SUBSCRIBE and subscriber is None:
                        subscriber = _Subscriber(connection)
                        _send_timeout(connection)
                        with subscriber.lock:
                            connection.sendall(frame(ANSWER, rid))
                        with self._lock:
                            self._subscribers.append(subscriber)
                    else:
                        answer = self._apply(op, rid, data)
                        if answer is not None:
                            connection.sendall(answer)
        except _Malformed as exc:
            logger.warning("session bus: closing a connection that sent a malformed frame: %s", exc)
        except OSError as exc:
            if not self._closing.is_set():
                logger.info("session bus: a connection ended: %s", exc)
        except Exception:
            logger.exception("session bus: closing a connection after an unexpected error")
        finally:
            with self._lock:
                self._connections.discard(connection)
                if subscriber is not None and subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)
            connection.close()

    def _apply(self, op: int, rid: int, data: bytes) -> bytes | None:
        if op == PUBLISH:
            self._publish(frame(MESSAGE, 0, data))
            return None
        if op == ENDED:
            now = self._clock()
            with self._lock:
                until = self._ended.get(data)
            return frame(ANSWER, rid, b"\x01" if until is not None and until > now else b"\x00")
        if op == END:
            if len(data) <= TTL.size:
                raise _Malformed("END without a name")
            (ttl,) = TTL.unpack_from(data)
            if not ttl > 0:
                raise _Malformed("END with a lifetime that is not positive")
            now = self._clock()
            with self._lock:
                self._ended[data[TTL.size :]] = now + min(ttl, 366 * 86400.0)
                self._sweep(now)
            return frame(ANSWER, rid)
        raise _Malformed(f"unknown operation {op}")

    def _sweep(self, now: float) -> None:
        """Forget ended sessions whose ids expired (at most once a minute; called under the lock)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + 60.0
        for name in [name for name, until in self._ended.items() if until <= now]:
            del self._ended[name]

    def _publish(self, message: bytes) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                with subscriber.lock:
                    subscriber.connection.sendall(message)
            except OSError as exc:
                logger.warning("session bus: dropping a subscriber that does not take messages: %s", exc)
                with self._lock:
                    if subscriber in self._subscribers:
                        self._subscribers.remove(subscriber)
                with contextlib.suppress(OSError):
                    subscriber.connection.shutdown(socket.SHUT_RDWR)


def _send_timeout(connection: socket.socket) -> None:
    """Bound how long a send to this connection may block (its reads stay blocking)."""
    seconds = int(SEND_TIMEOUT_S)
    timeval = struct.pack("@ll", seconds, int((SEND_TIMEOUT_S - seconds) * 1e6))
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)

"""`CounterServer`: one `InMemoryCounters` shared by the worker processes of one machine over a Unix socket.

With `agenthub serve --workers N` each worker is a process of its own, so counters in a worker's memory would
let every worker admit the whole limit. The supervisor runs this server instead and tells each worker its path
(`AGENTHUB_COUNTERS_SOCKET`); the workers count through `hub.store.socket_counters.SocketCounters`. Every
operation runs under one lock on one `InMemoryCounters`, so limits stay exact across the workers exactly as they
are within one process, and without Redis.

The server lives in the supervisor, so the counters outlive any worker: a worker that crashes and restarts finds
the usage where it was, and nothing is seeded or added again when it starts. Its leases (reservations in flight
when it died) expire at their deadline, as a crashed replica's do in Redis.

Threads, not an event loop: one thread accepts, one per connection (one per worker) reads frames, applies them and
writes the answers, batched when a worker pipelines several requests. The supervisor imports nothing else of the
hub for it (its memory is budgeted): the standard library, the wire format and `InMemoryCounters`.

**Resends.** A worker whose connection breaks before an answer arrives reconnects once and sends the request
again, marked as a resend (`hub.store.counter_wire.RESEND`). The server remembers, by hold id, the answer it gave
to each reserve and settle for `remember` seconds (a reserve's until its settle arrives), and answers a resend it
already applied from that memory: a reservation is never held twice, nor usage added twice. A worker resends in
the call that finds its connection broken, within its timeout (2 s), well inside `remember` (10 s). The memory
this takes grows with the call rate: about 530 bytes per governed call for 10 s (measured with `tracemalloc`), some
16 MB at 3,000 calls a second, nothing when idle.

A malformed frame closes the connection that sent it, with the reason logged; the server and the other
connections go on.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from hub.store import counter_wire as wire
from hub.store.counters import InMemoryCounters

__all__ = ["ENVIRONMENT", "CounterServer"]

ENVIRONMENT = wire.ENVIRONMENT
"""The variable the supervisor sets in each worker's environment to the server's path."""

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


def _complete(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine that never awaits (`InMemoryCounters`'s methods: `awaits_io` is False) to its result."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("in-memory counters awaited")


class CounterServer:
    """Serve one `InMemoryCounters` on a Unix socket at `path`.

    Args:
        path: the socket file; a stale one (nobody listening) is replaced, a live one refused.
        remember: seconds the answer to each reserve and settle is kept for a resend.
        clock: monotonic seconds, for `remember` (injected by tests).
        counters: the counters to serve (a fresh `InMemoryCounters` by default).
    """

    def __init__(
        self,
        path: str,
        *,
        remember: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        counters: InMemoryCounters | None = None,
    ) -> None:
        self.path = path
        self.counters = counters if counters is not None else InMemoryCounters()
        self._remember = remember
        self._clock = clock
        self._lock = threading.Lock()
        self._answers: dict[tuple[int, str], tuple[float, bytes]] = {}
        """(op, hold id) -> when to forget it, and the payload answered."""
        self._expiry: collections.deque[tuple[float, tuple[int, str]]] = collections.deque()
        self._listener: socket.socket | None = None
        self._inode = 0
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()

    # -- lifetime -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the socket (readable and writable by this user only) and serve in daemon threads.

        Returns once the socket accepts connections.

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
        self._spawn(self._accept, listener, name="counter-server")

    def close(self) -> None:
        """Stop serving: close the listener and every connection, wait for the threads, remove the socket file."""
        if self._closing.is_set():
            return
        self._closing.set()
        listener = self._listener
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in recv()
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join()
        if listener is not None:
            with contextlib.suppress(OSError):
                if os.stat(self.path).st_ino == self._inode:  # still ours, not a successor's
                    os.unlink(self.path)

    def __enter__(self) -> CounterServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
            except ConnectionRefusedError:  # left by a server that died: nobody listens
                os.unlink(self.path)
                return
        raise OSError(f"a counter server already listens on {self.path}")

    def _spawn(self, target: Callable[[socket.socket], None], sock: socket.socket, *, name: str) -> None:
        thread = threading.Thread(target=target, args=(sock,), name=name, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    # -- serving --------------------------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while not self._closing.is_set():
            try:
                connection, _ = listener.accept()
            except OSError as exc:
                if self._closing.is_set():
                    return
                logger.error("counter server: accept failed: %s", exc)
                self._closing.wait(0.1)  # e.g. out of file descriptors: let connections close before retrying
                continue
            with self._lock:
                if self._closing.is_set():
                    connection.close()
                    return
                self._connections.add(connection)
            self._spawn(self._serve, connection, name="counter-connection")

    def _serve(self, connection: socket.socket) -> None:
        buffer = bytearray()
        try:
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                out: list[bytes] = []
                try:
                    while bodies := wire.split_frames(buffer):
                        for body in bodies:
                            request = wire.decode_request(body)
                            out.append(wire.answer(request.rid, self._apply(request)))
                finally:
                    if out:  # answer what was valid before a malformed frame
                        connection.sendall(b"".join(out))
        except wire.Malformed as exc:
            logger.warning("counter server: closing a connection that sent a malformed frame: %s", exc)
        except OSError as exc:
            if not self._closing.is_set():
                logger.info("counter server: a connection ended: %s", exc)
        except Exception:
            logger.exception("counter server: closing a connection after an unexpected error")
        finally:
            with self._lock:
                self._connections.discard(connection)
            connection.close()

    def _apply(self, request: wire.Request) -> bytes:
        """Run one request on the counters and return its answer's payload (status and fields)."""
        with self._lock:
            if request.op != wire.RESERVE and request.op != wire.SETTLE:
                return self._answer(request)
            now = self._clock()
            self._forget(now)
            key = (request.op, request.hold_id)
            if request.resend:
                kept = self._answers.get(key)
                if kept is not None:
                    return kept[1]
            payload = self._answer(request)
            until = now + self._remember
            self._answers[key] = (until, payload)
            self._expiry.append((until, key))
            if request.op == wire.SETTLE:  # its reservation's answer was received: that reserve is never resent
                self._answers.pop((wire.RESERVE, request.hold_id), None)
            return payload

    def _answer(self, request: wire.Request) -> bytes:
        try:
            return self._run(request)
        except Exception as exc:  # an answer, not a dead connection: the worker reports it
            logger.exception("counter server: operation %d failed", request.op)
            return wire.error_payload(f"{type(exc).__name__}: {exc}")

    def _run(self, request: wire.Request) -> bytes:
        counters = self.counters
        op = request.op
        if op == wire.RESERVE:
            coroutine = counters.reserve(request.slots, hold_id=request.hold_id, now=request.now, lease=request.lease)
            result = _complete(coroutine)
            return wire.values_payload(result.values, result.refused)
        if op == wire.SETTLE:
            _complete(counters.settle(request.slots, hold_id=request.hold_id, now=request.now))
            return wire.OK_PAYLOAD
        if op == wire.READ:
            return wire.values_payload(_complete(counters.read(request.keys, now=request.now)))
        _complete(counters.reset(request.keys, now=request.now))
        return wire.OK_PAYLOAD

    def _forget(self, now: float) -> None:
        expiry = self._expiry
        answers = self._answers
        while expiry and expiry[0][0] <= now:
            until, key = expiry.popleft()
            kept = answers.get(key)
            if kept is not None and kept[0] <= until:  # not replaced by a later answer for the same hold id
                del answers[key]

    def remembered(self) -> int:
        """How many answers are kept for resends (for tests and metrics)."""
        with self._lock:
            return len(self._answers)


def main(argv: list[str] | None = None) -> None:
    """`python -m hub.store.shared_counters PATH`: serve at PATH until SIGTERM or SIGINT, then remove it.

    Prints `listening on PATH` once the socket accepts (for benchmarks, tests and running one by hand).
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m hub.store.shared_counters SOCKET_PATH")
    stopping = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stopping)  # the serving threads inherit the mask
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with CounterServer(args[0]) as server:
        sys.stdout.write(f"listening on {server.path}\n")
        sys.stdout.flush()
        signal.sigwait(stopping)


if __name__ == "__main__":
    main()

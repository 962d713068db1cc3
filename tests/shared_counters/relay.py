"""A relay between `SocketCounters` and a `CounterServer` that breaks the first connection at a chosen moment.

`cut="answer"`: the first request reaches the server and is applied, then the connection to the worker closes
before the answer is passed on (a lost answer). `cut="request"`: the first connection closes once the request has
arrived, without passing it on (a request that never reached the server). Later connections pass everything
through. The relay records the operation code of every request it sees, per connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Literal

from hub.store import counter_wire as wire


class _Frames:
    """Whole frames read from one socket, one at a time (a read may bring several)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.ready: list[bytes] = []

    def next(self) -> bytes:
        while not self.ready:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buffer += chunk
            self.ready = wire.split_frames(self.buffer)
        body = self.ready.pop(0)
        return len(body).to_bytes(4) + body


class Relay:
    def __init__(self, target: str, path: str, cut: Literal["answer", "request"]) -> None:
        self.target = target
        self.path = path
        self.cut = cut
        self.seen: list[list[int]] = []
        """Per connection, the op byte of each request (`RESEND` included)."""
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Relay:
        self._listener.bind(self.path)
        self._listener.listen()
        self._start(self._accept)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join()
        for sock in sockets:
            sock.close()

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # pyright: ignore[reportArgumentType]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self._lock:
                self._sockets += (client, upstream)
                ops: list[int] = []
                self.seen.append(ops)
                first = len(self.seen) == 1
            if first:
                self._start(self._break_first, client, upstream, ops)
            else:
                self._start(self._requests, client, upstream, ops)
                self._start(self._answers, upstream, client)

    def _break_first(self, client: socket.socket, upstream: socket.socket, ops: list[int]) -> None:
        with contextlib.suppress(OSError, EOFError):
            frame = _Frames(client).next()
            ops.append(frame[4])
            if self.cut == "answer":
                upstream.sendall(frame)
                _Frames(upstream).next()  # applied by the server; the worker never sees the answer
            client.shutdown(socket.SHUT_RDWR)

    def _requests(self, client: socket.socket, upstream: socket.socket, ops: list[int]) -> None:
        frames = _Frames(client)
        with contextlib.suppress(OSError, EOFError):
            while True:
                frame = frames.next()
                ops.append(frame[4])
                upstream.sendall(frame)

    def _answers(self, upstream: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := upstream.recv(65536):
                client.sendall(chunk)

"""One HTTP/1.1 connection of the pool: an asyncio protocol that sends a request and parses its one response.

The bytes are parsed in the read callback by `httptools` (llhttp, the C parser the hub's server side uses too),
and the waiting request is woken once, when its answer is whole (for a stream: when the headers are in, then as
body pieces arrive). Where leniency would let a response be read wrong, the reading is strict:

- one response per request. llhttp parses a byte stream, so bytes after a complete response (a second status
  line, more body than the length announced) would begin another message: the first such byte stops parsing and
  closes the connection (never pooled, the bytes never read as part of anything), and the request gets the first
  response, whole, or an error;
- interim responses (100 Continue, 103 Early Hints) are skipped, headers and all; 101 is an error, since the
  client never asks to switch protocols;
- a duplicate or malformed Content-Length, Content-Length beside Transfer-Encoding, or a chunk size that is not
  hex is an error (llhttp), and so is a transfer coding other than `chunked` (the client never offers one);
- the response to HEAD ends with its headers, whatever length they announce;
- a body without a length (HTTP/1.0 style) ends when the server closes the connection, which is then gone; a
  connection that closes before a framed body is whole is an error, never a truncated success;
- the header section is capped at `max_head` bytes (interim responses count), the body at `max_body`.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - asyncio protocols: the hub serves on the asyncio backend (uvicorn)
import select
from collections.abc import Callable
from typing import cast

import httptools

from http1.errors import BodyTooLarge, HttpError, RequestMayHaveBeenProcessed
from http1.response import HttpResponse

__all__ = ["KEEP_ALIVE_MARGIN", "Connection", "keep_alive_seconds"]

MAX_BUFFERED_CHUNKS = 64
"""Body chunks a streamed response holds before the connection stops reading (until the reader catches up)."""
KEEP_ALIVE_MARGIN = 1.0
"""Seconds taken off a server's `Keep-Alive: timeout=`: a connection is not picked that close to the moment the
server may close it (its clock started when it sent the response, a little before ours)."""

_FRAMING = frozenset({"content-length", "transfer-encoding", "keep-alive"})
_PARSE_ERRORS = (httptools.HttpParserError, httptools.HttpParserUpgrade)


def keep_alive_seconds(value: str) -> float | None:
    """How long the pool may keep a connection idle, from a `Keep-Alive` header value (`timeout=5, max=100`).

    The server's timeout less `KEEP_ALIVE_MARGIN` (at least 0); 0 when it allows no more requests (`max=0`);
    None when it names no timeout. Parameters that are not whole numbers are ignored.
    """
    seconds: float | None = None
    for part in value.split(","):
        name, _, number = part.partition("=")
        number = number.strip()
        if not number.isdigit():
            continue
        name = name.strip().lower()
        if name == "max" and int(number) == 0:
            return 0.0
        if name == "timeout":
            seconds = max(0.0, int(number) - KEEP_ALIVE_MARGIN)
    return seconds


class _Stop(Exception):
    """Raised from a parser callback to stop reading the bytes at hand; the callback has dealt with the cause."""


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; parses one response at a time."""

    def __init__(self, max_body: int, max_head: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        """Whether the connection may not serve another request (closed, closing, or out of step)."""
        self.reuse_until = 0.0
        """Until when the pool may pick it (set as it returns to the pool)."""
        self.server_keep_s: float | None = None
        """From the last response's `Keep-Alive` header: see `keep_alive_seconds` (None: not advertised)."""
        self._max_body = max_body
        self._max_head = max_head
        self._parser = httptools.HttpResponseParser(self)
        self._poll: select.poll | None = None
        self._no_body = False
        self._reset()

    def _reset(self) -> None:
        if self._no_body:  # after HEAD, llhttp still waits for the body the headers announced: start afresh
            self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._headers: list[tuple[str, str]] = []
        self._chunks: list[bytes] = []
        self._size = 0
        self._head_size = 0
        self._length = 0
        self._status = 0
        self._headers_done = False
        self._complete = False
        self._framed = False
        """Whether the body has a length of its own (Content-Length or chunked), rather than ending at close."""
        self._active = False
        """Whether a request is under way (bytes arriving otherwise put the connection out of step)."""
        self._no_body = False
        self._streaming = False
        self._paused = False
        self._error: Exception | None = None
        self.answered = False
        """Whether any byte of the current response arrived."""

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream transport (uvloop's is not a subclass)
        sock = transport.get_extra_info("socket")
        if sock is not None and hasattr(select, "poll"):
            self._poll = select.poll()
            self._poll.register(sock.fileno(), select.POLLIN)

    def data_received(self, data: bytes) -> None:
        if not self._active:  # bytes while idle: the connection is out of step, never reuse it
            self.close()
            return
        self.answered = True
        try:
            self._parser.feed_data(data)
        except _PARSE_ERRORS as exc:
            if self._complete or self._error is not None:  # bytes after the response, or a callback's verdict
                self.close()
            else:
                self._fail(HttpError(f"malformed HTTP response: {exc}"))
            return
        if not self._headers_done:
            self._head_size += len(data)
            if self._head_size > self._max_head and not self._complete:
                self._fail(HttpError(f"response header section larger than {self._max_head} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self._active or self._complete or self._error is not None:
            return
        if exc is None and self._headers_done and not self._framed:  # a body that ends with the connection
            self._finish()
            return
        self._fail(
            RequestMayHaveBeenProcessed()
            if not self.answered
            else HttpError("the connection closed in the middle of the response")
        )

    def idle_but_readable(self) -> bool:
        """Whether bytes or the server's close already wait on this idle connection (not yet seen by the loop):
        either way it must not carry another request."""
        return self._poll is not None and bool(self._poll.poll(0))

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        if self._complete:  # a second response to one request: the connection is out of step
            raise _Stop

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._headers_done:  # a trailer after a chunked body: not one of the response's headers
            return
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key in _FRAMING:
            if key == "content-length":  # inline: every response but a chunked one has it
                self._framed = True
                self._length = int(text) if text.isdigit() else 0  # llhttp refuses anything but digits
            else:
                self._framing(key, text)
        self._headers.append((key, text))

    def _framing(self, key: str, text: str) -> None:
        if key == "transfer-encoding":
            if text.strip().lower() != "chunked":
                self._fail(HttpError(f"unsupported transfer coding {text!r} (only chunked is accepted)"))
                raise _Stop
            self._framed = True
        else:
            self.server_keep_s = keep_alive_seconds(text)

    def on_headers_complete(self) -> None:
        status = self._status = self._parser.get_status_code()
        if status < 200:
            if status == 101:
                self._fail(HttpError("the server switched protocols, which the client never asks for"))
                raise _Stop
            return  # an interim response: it ends here (on_message_complete) and is forgotten
        self._headers_done = True
        if self._length > self._max_body:
            self._fail(BodyTooLarge(f"response body larger than {self._max_body} bytes"))
            raise _Stop
        if self._no_body:  # the response to HEAD: whatever length it announces, no body follows
            if not self._parser.should_keep_alive():
                self.closed = True
            self._finish()
        elif self._streaming:
            self._wake()

    def on_body(self, body: bytes) -> None:
        if self._complete:  # bytes after the response to HEAD
            raise _Stop
        self._size += len(body)
        if self._size > self._max_body:
            self._fail(BodyTooLarge(f"response body larger than {self._max_body} bytes"))
            raise _Stop
        self._chunks.append(body)
        if self._streaming:
            if len(self._chunks) > MAX_BUFFERED_CHUNKS and not self._paused and self.transport is not None:
                self._paused = True  # the reader is behind: stop reading until it catches up
                self.transport.pause_reading()
            self._wake()

    def on_message_complete(self) -> None:
        if self._status < 200:  # the end of an interim response: wait for the final one
            self._headers = []
            self._framed = False
            self._length = 0
            self.server_keep_s = None
            return
        if self._complete:  # the response to HEAD ended at its headers already
            return
        if not self._parser.should_keep_alive():
            self.closed = True
        self._finish()

    # -- the request

    async def exchange(self, request: bytes, head: bool) -> HttpResponse:
        """Send one request and wait for its whole response (`head`: the request is HEAD, no body follows)."""
        await self._wait(self._begin(head), request)
        response = HttpResponse(self._status, self._headers, b"".join(self._chunks))
        self._reset()
        return response

    async def start(self, request: bytes, head: bool) -> tuple[int, list[tuple[str, str]]]:
        """Send one request and wait for the status and headers; the body follows through `next_chunk`."""
        self._streaming = True
        await self._wait(self._begin(head), request)
        if self._error is not None:
            raise self._error
        return self._status, self._headers

    def _begin(self, head: bool) -> Callable[[bytes], object]:
        """Mark a request under way; the function that sends its bytes."""
        transport = self.transport
        if transport is None or self.closed:
            raise HttpError("the connection is closed")
        self._active = True
        self._no_body = head
        self.server_keep_s = None
        return transport.write

    async def next_chunk(self) -> bytes | None:
        """The body bytes received since the last call, waiting for some; None once the body is complete."""
        while True:
            if self._chunks:
                data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
                self._chunks.clear()
                if self._paused and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return data
            if self._error is not None:
                raise self._error
            if self._complete:
                return None
            await self._wait()

    def release(self) -> bool:
        """After a streamed response: True when the connection may serve another request (else it is closed)."""
        if self._complete and self._error is None and not self.closed:
            self._reset()
            return True
        self.close()
        return False

    async def _wait(self, send: Callable[[bytes], object] | None = None, data: bytes = b"") -> None:
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        if send is not None:
            send(data)
        try:
            await waiter
        except BaseException:
            self.close()
            raise
        finally:
            self._waiter = None

    def expire(self) -> None:
        """The caller's time ran out: fail what waits and close the connection."""
        self._fail(TimeoutError("no response within the timeout"))

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _finish(self) -> None:
        self._complete = True
        self._wake()

    def _fail(self, exc: Exception) -> None:
        self.close()
        self._error = exc
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def close(self) -> None:
        """Close the connection (it may not be reused)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

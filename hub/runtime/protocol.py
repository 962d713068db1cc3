"""uvicorn's httptools protocol, writing a response with a `Content-Length` in one piece, and holding clients to
the serving limits.

Stock uvicorn writes a response's status line and headers as soon as the app sends `http.response.start`, and
the body with the next `http.response.body`: two writes (two syscalls), and on a keep-alive connection the
client typically wakes up twice. A response with a `Content-Length` has its whole body ready in almost every
case (the MCP fast path, Starlette's `Response`), so this protocol holds the header bytes and writes them with
the first body chunk. Responses without a length (chunked, SSE streams, 204/304) and answers to `HEAD` (no body
follows) are written exactly as uvicorn writes them, headers at once, so a stream's client sees its headers
before its first event. Held headers are also written when the app closes the connection (an error after the
response started).

The status line and headers are built by `_header_block` rather than uvicorn's `send`, which checks, lowers and
copies each header in Python (about fifty bytecodes a header; an LLM response carries fifteen or more): the same
checks (uvicorn's own expressions, so no name or value with CR, LF or another control character goes out) run once
over all names and once over all values, and the block is joined in C. What is written is byte for byte what
uvicorn writes; a header set of an unusual shape (`connection` or `transfer-encoding` headers, two lengths, a
refused name or value) goes through uvicorn's own `send`, which writes or refuses it as it always did.

`LimitedHttpToolsProtocol` adds the limits of `hub.runtime.limits.ServingLimits` (`limited_protocol` binds a class to
one server's limits and connection table):

- a request's headers must be complete `header_timeout_s` after its first byte (after the connection opened, for
  its first request), its body `body_timeout_s` after its headers; otherwise the connection is closed, after a
  408 when part of a request came and nothing of a response went out yet;
- an idle keep-alive connection is closed after `keep_alive_timeout_s` (uvicorn's own keep-alive timer);
- at most `max_connections` are open: a new connection at the cap closes the one that has waited longest without a
  complete request, or is closed at once when every connection is busy with a request.

A connection has at most one timer at a time (the header or body deadline, or uvicorn's keep-alive timer), set with
the loop's `call_later`. Deadlines are armed after the parser has seen the data, only for what is still missing, so
a request that arrives whole in one read sets none (a new connection sets one, from its opening, which its first
request cancels). The body deadline also runs while uvicorn has paused reading because the app has not taken the
body yet: the apps served here read a request's body before anything else.

This is the one module that touches uvicorn's internals. Everything it relies on (the protocol's and the cycle's
attributes and methods, listed in `UVICORN_INTERNALS` and `UVICORN_SIGNATURES`) is checked against the installed
uvicorn by `tests/runtime/test_uvicorn_internals.py`, on a live connection, so an upgrade that moves them fails
there. At start-up `limited_protocol` checks the version range and the method signatures again (`check_uvicorn`):
a uvicorn installed past the pin stops `agenthub serve` with the reason, instead of serving without its limits.
docs/performance.md has the gain that pays for this.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - uvicorn's protocols are asyncio protocols
import inspect
from collections.abc import Iterable
from typing import Any, ClassVar

from uvicorn import __version__ as uvicorn_version
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from hub.runtime.limits import TICKS, ConnectionTable, ServingLimits
from hub.settings import ConfigError

__all__ = [
    "SUPPORTED_UVICORN",
    "UVICORN_INTERNALS",
    "UVICORN_CYCLE_SIGNATURES",
    "UVICORN_SIGNATURES",
    "IncompatibleUvicorn",
    "LimitedHttpToolsProtocol",
    "OneWriteHttpToolsProtocol",
    "check_uvicorn",
    "limited_protocol",
    "uvicorn_mismatches",
]

SUPPORTED_UVICORN = ((0, 34), (0, 55))
"""The uvicorn versions this module is known to work with: from the first up to, not including, the second (the
range pyproject.toml pins; `tests/runtime/test_uvicorn_internals.py` checks that both say the same)."""

UVICORN_SIGNATURES: dict[str, tuple[str, ...]] = {
    "connection_made": ("self", "transport"),
    "connection_lost": ("self", "exc"),
    "data_received": ("self", "data"),
    "on_headers_complete": ("self",),
    "on_response_complete": ("self",),
    "handle_websocket_upgrade": ("self",),
}
"""The `HttpToolsProtocol` methods this module overrides or calls, with their parameters."""

UVICORN_CYCLE_SIGNATURES: dict[str, tuple[str, ...]] = {"send": ("self", "message")}
"""The `RequestResponseCycle` methods this module overrides and calls, with their parameters."""

UVICORN_INTERNALS: dict[str, tuple[str, ...]] = {
    "HttpToolsProtocol methods": tuple(UVICORN_SIGNATURES),
    "HttpToolsProtocol attributes": (
        "transport",
        "loop",
        "cycle",
        "pipeline",
        "timeout_keep_alive",
        "timeout_keep_alive_task",
    ),
    "RequestResponseCycle attributes": (
        "transport",
        "scope",
        "response_started",
        "response_complete",
        "chunked_encoding",
        "more_body",
        "disconnected",
        "message_event",
        "flow",
        "access_log",
        "default_headers",
        "keep_alive",
        "waiting_for_100_continue",
        "expected_content_length",
    ),
    "RequestResponseCycle methods": tuple(UVICORN_CYCLE_SIGNATURES),
    "httptools_impl names": ("HEADER_RE", "HEADER_VALUE_RE", "STATUS_LINE"),
}
"""What this module uses of uvicorn beyond the asyncio protocol interface (the methods it overrides or calls, the
attributes it reads or sets)."""


class IncompatibleUvicorn(ConfigError):
    """The installed uvicorn is outside the range this module works with, or has changed what it relies on."""


def uvicorn_mismatches(
    version: str = uvicorn_version,
    protocol: type[HttpToolsProtocol] = HttpToolsProtocol,
    cycle: type[RequestResponseCycle] = RequestResponseCycle,
) -> list[str]:
    """What keeps this module from working with uvicorn `version` whose protocol is `protocol` and request cycle
    `cycle`: a version outside `SUPPORTED_UVICORN`, a method of `UVICORN_SIGNATURES` or `UVICORN_CYCLE_SIGNATURES`
    that is gone or takes other parameters (empty: none)."""
    found: list[str] = []
    release: tuple[int, ...]
    try:
        release = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        release = ()
    low, high = SUPPORTED_UVICORN
    if not low <= release < high:
        found.append(f"version {version} is outside >={low[0]}.{low[1]},<{high[0]}.{high[1]}")
    checked: tuple[tuple[str, type[Any], dict[str, tuple[str, ...]]], ...] = (
        ("HttpToolsProtocol", protocol, UVICORN_SIGNATURES),
        ("RequestResponseCycle", cycle, UVICORN_CYCLE_SIGNATURES),
    )
    for owner, cls, signatures in checked:
        for name, expected in signatures.items():
            method = getattr(cls, name, None)
            if not callable(method):
                found.append(f"{owner}.{name}() is gone")
                continue
            parameters = tuple(inspect.signature(method).parameters)
            if parameters != expected:
                found.append(f"{owner}.{name} takes ({', '.join(parameters)}), not ({', '.join(expected)})")
    return found


def check_uvicorn(version: str = uvicorn_version, protocol: type[HttpToolsProtocol] = HttpToolsProtocol) -> None:
    """Refuse to serve with a uvicorn this module does not fit (see `uvicorn_mismatches`).

    Raises:
        IncompatibleUvicorn: naming each mismatch and the range to install.
    """
    found = uvicorn_mismatches(version, protocol)
    if found:
        low, high = SUPPORTED_UVICORN
        raise IncompatibleUvicorn(
            f"the installed uvicorn does not fit hub.runtime.protocol ({'; '.join(found)}): "
            f"install uvicorn>={low[0]}.{low[1]},<{high[0]}.{high[1]}"
        )


_JOIN_LIMIT = 64 * 1024
"""Above this body size the held headers and the body go out as two buffers of one `writelines` (no copy)."""


class _HeadersWithBody(asyncio.Transport):
    """One response's view of the connection: the header block of a response with a `Content-Length` waits
    for the body's first write (or a close), every other write passes straight through. Once the header block
    is out, the cycle is handed the connection itself (a stream's events skip this view)."""

    __slots__ = ("_cycle", "_held", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        super().__init__()
        self._transport = transport
        self._cycle = cycle
        self._pending = not cycle.response_started
        """Whether the header block is still to come (the first write once the response started)."""
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._cycle.transport = self._transport  # the header block leaves now: later writes go straight through
            if len(data) <= _JOIN_LIMIT:
                self._transport.write(held + bytes(data))
            else:
                self._transport.writelines((held, data))
            return
        if self._pending and self._cycle.response_started:  # this write is the status line and headers
            self._pending = False
            cycle = self._cycle
            if cycle.chunked_encoding is False and cycle.scope["method"] != "HEAD":  # a length, and a body follows
                self._held = bytes(data)
                return
            cycle.transport = self._transport  # nothing to hold: a stream's events go straight through
        self._transport.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview[Any]]) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)


_SPECIAL = (b"connection", b"transfer-encoding")
"""Header names whose values change how uvicorn frames the response: a header set with one of them is written by
uvicorn's own code (the hub sends neither)."""


def _header_block(cycle: RequestResponseCycle, message: Any) -> bytes | None:
    """The status line and header block uvicorn's `send` writes for the `http.response.start` `message`, with the
    cycle's framing state set as that `send` sets it; None, and the cycle left as it was, when the headers are not
    the common shape (a `connection` or `transfer-encoding` header, two `Content-Length`s, a name or value uvicorn
    refuses, anything that is not a list of byte pairs): uvicorn's own `send` then writes or refuses them.

    uvicorn checks each name and each value against its two expressions (`HEADER_RE`, `HEADER_VALUE_RE`: no control
    character, so no CR or LF, and no separator in a name), lowers each name and looks at it in Python, about fifty
    bytecodes a header. The same expressions run here once over all names and once over all values joined (they
    match single characters, so a joined set matches exactly when one of its parts does), and names are lowered and
    the block joined in C."""
    headers = cycle.default_headers + list(message.get("headers", ()))
    try:
        names, values = zip(*headers, strict=True)
        if HEADER_RE.search(b"".join(names)) or HEADER_VALUE_RE.search(b"".join(values)):
            return None
        lowered = b"\n".join(names).lower().split(b"\n")  # no name holds a line feed (checked above)
        if _SPECIAL[0] in lowered or _SPECIAL[1] in lowered or cycle.chunked_encoding is not None:
            return None
        lengths = lowered.count(b"content-length")
        if lengths > 1:
            return None
        length = int(values[lowered.index(b"content-length")].decode()) if lengths else 0
        status = message["status"]
        line = STATUS_LINE[status]
    except (TypeError, ValueError, AttributeError, KeyError):  # uvicorn's own `send` raises what it raises
        return None
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    block = [line, b"\r\n".join(map(b": ".join, zip(lowered, values, strict=True))), b"\r\n"]
    if lengths:
        cycle.expected_content_length = length
        cycle.chunked_encoding = False
    if not cycle.keep_alive:
        block.append(b"connection: close\r\n")
    if not lengths and cycle.scope["method"] != "HEAD" and status not in (204, 304):
        cycle.chunked_encoding = True
        block.append(b"transfer-encoding: chunked\r\n")
    block.append(b"\r\n")
    return b"".join(block)


class _OneWriteCycle(RequestResponseCycle):
    """uvicorn's request-response cycle whose `send` writes the status line and headers of a response without
    uvicorn's checks one header at a time (`_header_block`: the same checks, once per header set); the bytes it
    writes are those uvicorn writes, and everything else (bodies, refusals, access logs, a paused or closed
    connection) goes through uvicorn's own `send`. The protocol turns each new cycle into one."""

    async def send(self, message: Any) -> None:
        if (
            not self.response_started
            and not self.disconnected
            and not self.access_log
            and not self.flow.write_paused
            and message["type"] == "http.response.start"
        ):
            block = _header_block(self, message)
            if block is not None:
                self.transport.write(block)
                return
        await RequestResponseCycle.send(self, message)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` whose responses with a `Content-Length` leave in one write (pass the class as
    `uvicorn.Config(http=...)`)."""

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not previous:  # a new request (an upgrade leaves the cycle as it was, possibly None)
            cycle.__class__ = _OneWriteCycle
            cycle.transport = _HeadersWithBody(self.transport, cycle)


_OPENED = 0
"""No byte of the connection's first request yet; its header deadline runs from the connection's opening."""
_HEADERS = 1
"""Bytes came on a connection with no request in flight: a request has begun (or the rest of the body of one that
was answered early is coming), and its headers are not complete."""
_REQUEST = 2
"""A request's headers are complete: its body is arriving, or the app is answering it."""
_IDLE = 3
"""Between requests on a keep-alive connection: uvicorn's keep-alive timer runs until data comes. (Bytes of a next
request that came while one was in flight, pipelined, count from the response on: the keep-alive timer runs for
them, and the header deadline from their next bytes.)"""
_HANDED_OFF = 4
"""Upgraded to a WebSocket: another protocol owns the connection."""

_NO_DEADLINE, _HEADER_DEADLINE, _BODY_DEADLINE = 0, 1, 2

_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 15\r\n"
    b"connection: close\r\n\r\nRequest Timeout"
)


class LimitedHttpToolsProtocol(OneWriteHttpToolsProtocol):
    """`OneWriteHttpToolsProtocol` under the serving limits: header and body deadlines, the keep-alive timeout and
    the connection cap. Serve a class made by `limited_protocol`, which binds the limits and a connection table."""

    serving_limits: ClassVar[ServingLimits]
    connection_table: ClassVar[ConnectionTable[LimitedHttpToolsProtocol]]

    _phase: int = _OPENED
    waiting_since: int | None = None
    _deadline: int = _NO_DEADLINE
    _deadline_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self.timeout_keep_alive = self.serving_limits.keep_alive_timeout_s  # read by uvicorn after each response
        if not self.connection_table.admit(self):
            transport.close()
            return
        self._arm(_HEADER_DEADLINE)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.connection_table.leave(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase == _IDLE or phase == _OPENED:  # no request in flight: these bytes begin one
            self._phase = _HEADERS
        HttpToolsProtocol.data_received(self, data)  # `super()`, spelled out: this runs for every request
        if self._phase != _REQUEST or self._deadline != _NO_DEADLINE or self.cycle.more_body:
            self._retime()  # else a whole request came, and no deadline runs: nothing to do (the hot path)

    def on_headers_complete(self) -> None:
        previous = self.cycle
        HttpToolsProtocol.on_headers_complete(self)  # what `OneWriteHttpToolsProtocol` does, one call less
        cycle = self.cycle
        if cycle is not previous:
            cycle.__class__ = _OneWriteCycle
            cycle.transport = _HeadersWithBody(self.transport, cycle)
        self._phase = _REQUEST
        self.waiting_since = None  # a request in flight: not closed to make room (`ConnectionTable.busy`)

    def on_response_complete(self) -> None:
        HttpToolsProtocol.on_response_complete(self)
        if self.timeout_keep_alive_task is not None:  # uvicorn waits for the next request: none is in flight
            self._phase = _IDLE
            if self._deadline != _NO_DEADLINE:  # the body of the answered request was still coming
                self._disarm()
            self.waiting_since = next(TICKS)  # waits from now on (`ConnectionTable.waiting`; ignored once it left)
        elif not self.transport.is_closing():  # a pipelined request started: its body may still be on its way
            self._retime()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        self._phase = _HANDED_OFF
        self.connection_table.leave(self)  # the connection belongs to the WebSocket protocol from here on
        super().handle_websocket_upgrade()

    def evict(self) -> None:
        """Close this connection to make room for a new one (it waits for a request: none is in flight), with a
        408 when part of one came."""
        self._close(answer=self._phase == _HEADERS)

    def _retime(self) -> None:
        """Arm the deadline the connection's state calls for, unless it runs already (the fast path: none)."""
        phase = self._phase
        if phase == _REQUEST:
            cycle = self.cycle
            body_missing = cycle.more_body and not cycle.response_complete and not self.pipeline
            wanted = _BODY_DEADLINE if body_missing else _NO_DEADLINE
        elif phase == _IDLE or phase == _HANDED_OFF:
            wanted = _NO_DEADLINE
        else:
            wanted = _HEADER_DEADLINE
        if wanted != self._deadline:
            self._arm(wanted)

    def _arm(self, deadline: int) -> None:
        self._disarm()
        self._deadline = deadline
        if deadline == _HEADER_DEADLINE:
            self._deadline_timer = self.loop.call_later(self.serving_limits.header_timeout_s, self._expired)
        elif deadline == _BODY_DEADLINE:
            self._deadline_timer = self.loop.call_later(self.serving_limits.body_timeout_s, self._expired)

    def _disarm(self) -> None:
        timer = self._deadline_timer
        if timer is not None:
            timer.cancel()
            self._deadline_timer = None
        self._deadline = _NO_DEADLINE

    def _expired(self) -> None:
        deadline = self._deadline
        self._deadline_timer, self._deadline = None, _NO_DEADLINE
        if self.transport.is_closing():
            return
        if deadline == _BODY_DEADLINE:
            cycle = self.cycle
            answer = not cycle.response_started
            cycle.disconnected = True  # the app's next receive() reports a disconnect, and what it sends is dropped
            cycle.message_event.set()
        else:
            answer = self._phase == _HEADERS  # bytes came, and no response is under way (else just close)
        self._close(answer)

    def _close(self, answer: bool) -> None:
        self._disarm()
        self.connection_table.leave(self)
        transport = self.transport
        if answer:
            transport.write(_REQUEST_TIMEOUT)
        transport.close()


def limited_protocol(limits: ServingLimits) -> type[LimitedHttpToolsProtocol]:
    """A protocol class for one server (pass it as `uvicorn.Config(http=...)`), with `limits` and a connection table
    of its own.

    Raises:
        IncompatibleUvicorn: the installed uvicorn is not one this module works with (`check_uvicorn`).
    """
    check_uvicorn()

    class ServedHttpToolsProtocol(LimitedHttpToolsProtocol):
        serving_limits = limits
        connection_table = ConnectionTable[LimitedHttpToolsProtocol](limits.max_connections)

    return ServedHttpToolsProtocol

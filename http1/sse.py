"""Server-sent events: an incremental decoder over byte chunks, a reader of whole bodies, and a small encoder.

Both back ends read SSE bodies (streamed LLM completions, Streamable HTTP answers of MCP upstreams), and neither
may import the other, so the SSE rules live here, beside the HTTP client that delivers the bytes. The whole-body
reader (`message_data`) follows the same rules as the decoder (a property test holds them together).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = ["EventTooLarge", "SSEDecoder", "SSEEvent", "encode_sse", "message_data"]

_LF, _CR = 10, 13
"""Line ends as byte values: `13 in chunk` is a plain scan, while `b"\r" in chunk` first tries to read `b"\r"` as
an integer and clears the TypeError (about 2,000 instructions, on every chunk)."""


class EventTooLarge(ValueError):
    """One event (or one line of it) grew past the decoder's `max_event_bytes`."""


@dataclass(slots=True)
class SSEEvent:
    """One dispatched event: its `event` name ("message" when unnamed) and its joined `data` lines.

    A plain record, not frozen: one is made per event on streaming paths, and a frozen dataclass's `__init__` costs
    twice as much (it sets each field through `object.__setattr__`).
    """

    event: str
    data: str


class SSEDecoder:
    """Feed it byte chunks as they arrive; it returns the events completed so far.

    Lines end with LF or CRLF; `data:` lines are joined with LF; comments (`:`) and the `id:` and `retry:` fields
    are skipped (nothing here reconnects). The common lines (`data: `, `event: `) are handled inline and CRLF is
    turned into LF once per chunk, in C: this runs once per streamed event. A single event larger than
    `max_event_bytes` raises `too_large` (a peer that never ends a line).
    """

    __slots__ = ("_buf", "_data", "_event", "_max")

    too_large: ClassVar[type[Exception]] = EventTooLarge
    """What an oversized event raises; a back end that reports its own error type sets its own (no wrapper frame
    on the per-chunk path)."""

    def __init__(self, max_event_bytes: int = 8 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self._event = ""
        self._data: list[str] = []
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume `chunk`; return the events it completed."""
        buf = self._buf
        if _LF not in chunk:
            buf += chunk
            if len(buf) > self._max:
                raise self.too_large("server-sent event too large")
            return []
        if buf:  # a line began in an earlier chunk (a CR that ends it is still in `buf`)
            buf += chunk
            chunk = bytes(buf)
            buf.clear()
        if _CR in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        lines = chunk.split(b"\n")
        buf += lines.pop()
        if len(buf) > self._max:
            raise self.too_large("server-sent event too large")
        events: list[SSEEvent] = []
        data = self._data
        for line in lines:
            if line[:6] == b"data: ":
                data.append(line[6:].decode("utf-8", "replace"))
            elif line[:7] == b"event: ":
                self._event = line[7:].decode("utf-8", "replace")
            elif line:
                self._field(line)
            elif data or self._event:
                events.append(SSEEvent(self._event or "message", "\n".join(data)))
                self._event = ""
                data = self._data = []
        return events

    def _field(self, line: bytes) -> None:
        if line[:1] == b":":
            return
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")


def message_data(body: bytes) -> list[bytes]:
    """The data of each `message` event (unnamed or named "message") in a whole SSE body, by the rules of
    `SSEDecoder`, with every line end SSE allows (LF, CRLF, a lone CR); the last event counts even without its
    closing blank line.

    For a body the HTTP framing proved whole (a `content-length` or chunked body read to its end), where a missing
    last blank line is a peer's shortcut, not a cut; a live stream goes through `SSEDecoder`, which keeps an
    unfinished event back. It stays in bytes (JSON parsers read them as they are) and keeps nothing between calls:
    this runs once per answer on the lean MCP path, where an `SSEDecoder` cost a tool call three times as many
    instructions.
    """
    found: list[bytes] = []
    data: list[bytes] | None = None
    named = False
    for line in body.splitlines():
        if line[:6] == b"data: ":
            value = line[6:]
        elif line[:7] == b"event: ":
            named = line[7:] not in (b"", b"message")
            continue
        elif not line:
            if data is not None and not named:
                found.append(data[0] if len(data) == 1 else b"\n".join(data))
            data = None
            named = False
            continue
        elif line[:1] == b":":
            continue
        else:
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"event":
                named = value not in (b"", b"message")
            if name != b"data":
                continue
        if data is None:
            data = [value]
        else:
            data.append(value)
    if data is not None and not named:
        found.append(data[0] if len(data) == 1 else b"\n".join(data))
    return found


def encode_sse(data: bytes | str, event: str | None = None) -> bytes:
    """Encode one event (`data` must not contain newlines; JSON from orjson never does)."""
    raw = data.encode() if isinstance(data, str) else data
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + raw + b"\n\n"

"""Server-sent events: an incremental decoder over byte chunks and a small encoder."""

from __future__ import annotations

from dataclasses import dataclass

from llm.errors import ProviderResponseError

__all__ = ["SSEDecoder", "SSEEvent", "encode_sse"]


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its `event` name ("message" when unnamed) and its joined `data` lines."""

    event: str
    data: str


class SSEDecoder:
    """Feed it byte chunks as they arrive; it returns the events completed so far.

    Lines end with LF or CRLF; `data:` lines are joined with LF; comments (`:`) are skipped. A single event
    larger than `max_event_bytes` raises `ProviderResponseError` (a provider that never ends a line).
    """

    __slots__ = ("_buf", "_data", "_event", "_max")

    def __init__(self, max_event_bytes: int = 8 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self._event = ""
        self._data: list[str] = []
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume `chunk`; return the events it completed."""
        buf = self._buf
        if b"\n" not in chunk:
            buf += chunk
            if len(buf) > self._max:
                raise ProviderResponseError("server-sent event too large")
            return []
        if buf:
            buf += chunk
            lines = bytes(buf).split(b"\n")
            buf.clear()
        else:
            lines = chunk.split(b"\n")
        buf += lines.pop()
        if len(buf) > self._max:
            raise ProviderResponseError("server-sent event too large")
        events: list[SSEEvent] = []
        data = self._data
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if line[:6] == b"data: ":  # the common line, handled inline
                data.append(line[6:].decode("utf-8", "replace"))
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


def encode_sse(data: bytes | str, event: str | None = None) -> bytes:
    """Encode one event (`data` must not contain newlines; JSON from orjson never does)."""
    raw = data.encode() if isinstance(data, str) else data
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + raw + b"\n\n"

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
        self._buf += chunk
        events: list[SSEEvent] = []
        start = 0
        buf = self._buf
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            line = bytes(buf[start:end])
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            event = self._line(line)
            if event is not None:
                events.append(event)
        del buf[:start]
        if len(buf) > self._max:
            raise ProviderResponseError("server-sent event too large")
        return events

    def _line(self, line: bytes) -> SSEEvent | None:
        if not line:
            if not self._data and not self._event:
                return None
            event = SSEEvent(self._event or "message", "\n".join(self._data))
            self._event = ""
            self._data = []
            return event
        if line[:1] == b":":
            return None
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        return None


def encode_sse(data: bytes | str, event: str | None = None) -> bytes:
    """Encode one event (`data` must not contain newlines; JSON from orjson never does)."""
    raw = data.encode() if isinstance(data, str) else data
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + raw + b"\n\n"

"""Reading an Anthropic response that the hub passes on unchanged: usage, stop reason, text and tool input.

For an Anthropic deployment the hub forwards the provider's bytes as they are (signatures, citations, server
tool blocks and all). It still needs to know what they said: the usage for cost and budgets, the text for
output guardrails, and the input of each `tool_use` (streamed as `input_json_delta` pieces, assembled per
block index). `read_message` reads a whole response body; `MessagesStreamObserver` reads an event stream as
its bytes go by, and never changes them: `feed` returns the events it decoded, for a caller that checks deltas as
they come; `split` parses only the events that carry usage, the stop reason or an error, for a relay that sends
the bytes on and reads the other events only if something asks for them (`llm.messaging.StreamItem`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import orjson

from llm.errors import ProviderResponseError
from llm.messages.usage import MessagesUsage
from llm.schema import JSON
from llm.sse import SSEDecoder

__all__ = ["MessageSummary", "MessagesStreamObserver", "SplitEvents", "ToolUse", "read_message"]

_OBSERVED = frozenset({b"event: message_start", b"event: message_delta", b"event: message_stop", b"event: error"})
"""The events `split` parses: what the observer reports beyond the content (usage, stop reason, completion, errors)."""
_MAX_EVENT = 8 * 1024 * 1024
_EVENT_LINE = b"event: "
_DATA_LINE = b"data: "


@dataclass(slots=True)
class SplitEvents:
    """The events of one chunk as `MessagesStreamObserver.split` found them: each one's `event:` line and `data:`
    line as received, and the few the observer parsed, by position. The others are parsed when `events()` is
    called: a relay that only forwards the bytes never does."""

    names: list[bytes]
    """Each event's `event: <type>` line."""
    data: list[bytes]
    """Each event's `data: <JSON>` line."""
    parsed: dict[int, JSON] = field(default_factory=dict[int, JSON])

    def types(self) -> list[str]:
        """The type of each event, as its `event:` line names it."""
        return [name[7:].decode("utf-8", "replace") for name in self.names]

    def events(self) -> list[JSON]:
        """Each event's data parsed, an event whose data is not a JSON object left out."""
        out: list[JSON] = []
        parsed = self.parsed
        for at, line in enumerate(self.data):
            event = parsed.get(at)
            if event is None:
                try:
                    event = orjson.loads(line[6:])
                except orjson.JSONDecodeError:
                    continue
            if type(event) is dict:
                out.append(event)
        return out


@dataclass(frozen=True, slots=True)
class ToolUse:
    """One `tool_use` block: `input` is the parsed object, or None when `partial_json` is not valid JSON."""

    id: str
    name: str
    input: Any
    partial_json: str = ""


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """What the hub reads from one Messages response."""

    id: str = ""
    model: str = ""
    usage: MessagesUsage = field(default_factory=MessagesUsage)
    stop_reason: str | None = None
    stop_sequence: str | None = None
    text: str = ""
    """The text of every `text` block, joined."""
    tool_uses: tuple[ToolUse, ...] = ()


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def read_message(body: bytes | Mapping[str, Any]) -> MessageSummary:
    """Summarise a (non-streamed) Messages response body; a body that is not a message summarises as empty."""
    data: Any = body
    if isinstance(body, bytes):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return MessageSummary()
    if not isinstance(data, Mapping):
        return MessageSummary()
    texts: list[str] = []
    tools: list[ToolUse] = []
    content = data.get("content")
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, Mapping):
            continue
        if block.get("type") == "text":
            texts.append(_str(block.get("text")))
        elif block.get("type") == "tool_use":
            value = block.get("input")
            tools.append(ToolUse(_str(block.get("id")), _str(block.get("name")), value, orjson.dumps(value).decode()))
    return MessageSummary(
        id=_str(data.get("id")),
        model=_str(data.get("model")),
        usage=MessagesUsage.read(data.get("usage")),
        stop_reason=data.get("stop_reason") if isinstance(data.get("stop_reason"), str) else None,
        stop_sequence=data.get("stop_sequence") if isinstance(data.get("stop_sequence"), str) else None,
        text="".join(texts),
        tool_uses=tuple(tools),
    )


@dataclass(slots=True)
class _Block:
    kind: str
    member: str
    """The delta member that carries this block's content: `text`, or `partial_json` for a tool's input."""
    id: str = ""
    name: str = ""
    pieces: list[str] = field(default_factory=list[str])


class MessagesStreamObserver:
    """Watches the bytes of one Messages event stream on their way to the client.

    `feed(chunk)` takes the bytes exactly as they are forwarded and returns the events they completed, parsed.
    An event whose data is not JSON is counted in `malformed` and skipped: the bytes still go to the client,
    which judges them as Anthropic's SDKs do.
    """

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self._blocks: dict[int, _Block] = {}
        self.id = ""
        self.model = ""
        self.usage = MessagesUsage()
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.error: JSON | None = None
        """The `error` object of an `error` event, if the stream ended with one."""
        self.complete = False
        """True once `message_stop` went by."""
        self.malformed = 0
        self._rest = b""
        """`split`: the bytes of an event not complete yet."""

    def feed(self, chunk: bytes) -> list[JSON]:
        """Read `chunk` (forwarded unchanged by the caller); return the events it completed."""
        events: list[JSON] = []
        for sse in self._decoder.feed(chunk):
            data = sse.data
            if not data:
                continue
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                self.malformed += 1
                continue
            if type(event) is dict:
                self.observe(event)
                events.append(event)
        return events

    def split(self, chunk: bytes) -> SplitEvents:
        """Read `chunk` (forwarded unchanged by the caller) and return the events it completed, unparsed except those
        the observer reports on (`message_start`, `message_delta`, `message_stop`, `error`): a relay reads the usage
        without decoding every delta. The content blocks' text and tool input are assembled only by `feed`; use one
        of the two on a stream.

        Anthropic writes each event as an `event:` line naming its type and one `data:` line: when every event of
        the chunk has that shape, it is split into lines in one step, without a step per event. An event of another
        shape (several `data:` lines, comments, extra blank lines, no name) sends the chunk through the rules of
        `feed`, an unnamed event typed by its data. CRLF line ends are read as LF, as `feed` does.

        Raises:
            ProviderResponseError: one event grew past 8 MiB (a peer that never ends it).
        """
        data = self._rest + chunk if self._rest else chunk
        if 13 in data:  # CR
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(b"\n\n") + 2
        rest = self._rest = data[end:] if end > 1 else data
        if len(rest) > _MAX_EVENT:
            raise ProviderResponseError("server-sent event too large")
        if end < 2:
            return SplitEvents([], [])
        lines = data[:end].split(b"\n")
        names = lines[0:-1:3]
        values = lines[1::3]
        count = len(names)
        if (
            len(lines) != 3 * count + 1
            or any(lines[2::3])
            or not all(map(bytes.startswith, names, repeat(_EVENT_LINE, count)))
            or not all(map(bytes.startswith, values, repeat(_DATA_LINE, count)))
        ):
            return self._split_slowly(data[:end])
        out = SplitEvents(names, values)
        if not _OBSERVED.isdisjoint(names):
            for at, name in enumerate(names):
                if name in _OBSERVED:
                    self._parse(values[at][6:], at, out)
        return out

    def _parse(self, payload: bytes, at: int, out: SplitEvents) -> JSON | None:
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.malformed += 1
            return None
        if type(event) is not dict:
            return None
        self.observe(event)
        out.parsed[at] = event
        return event

    def _split_slowly(self, complete: bytes) -> SplitEvents:
        """Events of other shapes than Anthropic's two lines, by the SSE decoder's rules."""
        out = SplitEvents([], [])
        for sse in SSEDecoder().feed(complete):
            payload = sse.data.encode()
            if not payload:
                continue
            kind = sse.event
            at = len(out.names)
            if kind == "message":  # unnamed: its data says what it is
                event = self._parse(payload, at, out)
                named = event.get("type") if event is not None else None
                kind = named if isinstance(named, str) else kind
            elif _EVENT_LINE + kind.encode() in _OBSERVED:
                self._parse(payload, at, out)
            out.names.append(_EVENT_LINE + kind.encode())
            out.data.append(_DATA_LINE + payload)
        return out

    def observe(self, event: JSON) -> None:
        """Take one parsed event (a JSON object) into account."""
        kind = event.get("type")
        if kind == "content_block_delta":  # most events: checked first, with exact type tests (no ABC checks)
            block = self._blocks.get(event.get("index", -1))
            if block is not None:
                delta = event.get("delta")
                piece = delta.get(block.member) if type(delta) is dict else None
                if type(piece) is str:
                    block.pieces.append(piece)
        elif kind == "content_block_start":
            self._start(event)
        elif kind == "message_start":
            message = event.get("message")
            if isinstance(message, Mapping):
                self.id = _str(message.get("id"))
                self.model = _str(message.get("model"))
                self.usage = self.usage.updated(message.get("usage"))
        elif kind == "message_delta":
            delta = event.get("delta")
            if isinstance(delta, Mapping):
                self.stop_reason = _str(delta.get("stop_reason")) or self.stop_reason
                self.stop_sequence = _str(delta.get("stop_sequence")) or None
            self.usage = self.usage.updated(event.get("usage"))
        elif kind == "message_stop":
            self.complete = True
        elif kind == "error":
            error = event.get("error")
            self.error = dict(error) if isinstance(error, Mapping) else {}

    def _start(self, event: Mapping[str, Any]) -> None:
        index, block = event.get("index"), event.get("content_block")
        if not isinstance(index, int) or not isinstance(block, Mapping):
            return
        kind = _str(block.get("type"))
        if kind == "text":
            self._blocks[index] = _Block("text", "text", pieces=[_str(block.get("text"))])
        elif kind == "tool_use":
            # The start carries `input: {}`; the input itself follows as `partial_json` pieces.
            self._blocks[index] = _Block("tool_use", "partial_json", _str(block.get("id")), _str(block.get("name")))

    @property
    def text(self) -> str:
        """The text of the `text` blocks so far, in block order."""
        return "".join("".join(b.pieces) for _, b in sorted(self._blocks.items()) if b.kind == "text")

    @property
    def tool_uses(self) -> tuple[ToolUse, ...]:
        """The `tool_use` blocks so far, each with its input assembled from its pieces."""
        out: list[ToolUse] = []
        for _, block in sorted(self._blocks.items()):
            if block.kind != "tool_use":
                continue
            raw = "".join(block.pieces)
            try:
                value: Any = orjson.loads(raw) if raw else {}
            except orjson.JSONDecodeError:
                value = None
            out.append(ToolUse(block.id, block.name, value, raw))
        return tuple(out)

    def summary(self) -> MessageSummary:
        """Everything read so far, as `read_message` reports a whole body."""
        return MessageSummary(
            self.id, self.model, self.usage, self.stop_reason, self.stop_sequence, self.text, self.tool_uses
        )

"""Scripting the fakes: what the next request gets (a reply, a fault, or raw bytes)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from llm.schema import JSON

__all__ = ["FakeRequest", "FakeScript", "Fault", "Raw", "Reply", "Script", "ToolCall"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the fake model makes; `id` is generated when None."""

    name: str
    arguments: JSON = field(default_factory=dict[str, Any])
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful model turn. Streams split `text` into pieces of `piece` characters."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] | list[ToolCall] = ()
    finish: Literal["stop", "length", "tool_calls"] | None = None
    prompt_tokens: int = 12
    completion_tokens: int | None = None
    """Defaults to the number of stream pieces plus tool calls."""
    usage: bool = True
    """False omits usage entirely (the "missing usage" fault)."""
    piece: int = 4
    # Below: what only some wires carry; the fakes of the other wires ignore it.
    thinking: str = ""
    """Reasoning text: the Anthropic fake sends it first, as a `thinking` block signed with `signature`."""
    signature: str = "fake-thinking-signature"
    redacted_thinking: tuple[str, ...] = ()
    """The opaque data of `redacted_thinking` blocks, sent after the thinking block."""
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    """Tokens written to the 5-minute cache."""
    cache_write_1h_tokens: int = 0
    """Tokens written to the 1-hour cache."""
    reasoning_tokens: int = 0
    """Of the completion tokens, those spent reasoning (OpenAI's `completion_tokens_details`)."""
    stop_sequence: str | None = None
    """The stop string that ended the turn (Anthropic's `stop_reason: stop_sequence`)."""
    service_tier: str = "standard"

    def pieces(self) -> list[str]:
        """The text as streamed pieces."""
        return [self.text[i : i + self.piece] for i in range(0, len(self.text), self.piece)]

    def output_tokens(self) -> int:
        """Completion tokens reported."""
        if self.completion_tokens is not None:
            return self.completion_tokens
        return len(self.pieces()) + len(self.tool_calls)

    def finish_reason(self) -> str:
        """OpenAI finish reason."""
        return self.finish or ("tool_calls" if self.tool_calls else "stop")


@dataclass(frozen=True, slots=True)
class Fault:
    """A failure: an error status, or a stall / reset / malformed / huge body, optionally mid-stream.

    `after` is the number of wire events sent before a stall, reset or error event (0: before any).
    """

    kind: Literal["status", "stall", "reset", "malformed", "huge", "event"]
    status: int = 500
    retry_after: float | None = None
    code: str | None = None
    after: int = 0
    size: int = 0
    reply: Reply | None = None
    """For stream faults: the reply whose first `after` events are sent before the fault."""

    @classmethod
    def http(cls, status: int, *, retry_after: float | None = None, code: str | None = None) -> Fault:
        """An error response with the wire's error body (and Retry-After when given)."""
        return cls("status", status=status, retry_after=retry_after, code=code)

    @classmethod
    def stall(cls, after: int = 0, reply: Reply | None = None) -> Fault:
        """Send `after` events (or headers only), then go silent until the client leaves."""
        return cls("stall", after=after, reply=reply)

    @classmethod
    def reset(cls, after: int = 0, reply: Reply | None = None) -> Fault:
        """Send `after` events (or headers only), then drop the connection."""
        return cls("reset", after=after, reply=reply)

    @classmethod
    def malformed(cls, after: int = 0, reply: Reply | None = None) -> Fault:
        """A 200 whose body (or, streaming, the event after the first `after`) is not valid JSON."""
        return cls("malformed", after=after, reply=reply)

    @classmethod
    def error_event(
        cls, code: str = "overloaded_error", *, status: int = 529, after: int = 0, reply: Reply | None = None
    ) -> Fault:
        """A stream that sends `after` events, then the wire's in-stream error event with `code` (Anthropic's
        `error` event); a non-streamed request gets `status` with that error instead. Fakes whose wire has no
        in-stream error drop the connection there."""
        return cls("event", status=status, code=code, after=after, reply=reply)

    @classmethod
    def huge(cls, size: int = 1_000_000) -> Fault:
        """A 200 with a valid but `size`-byte JSON body."""
        return cls("huge", size=size)


@dataclass(frozen=True, slots=True)
class Raw:
    """Exact bytes to answer with (replaying a recorded payload)."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict[str, str])


@dataclass(frozen=True, slots=True)
class FakeRequest:
    """What a fake received: its wire, path, headers (lowercase), JSON body, model, stream flag and operation."""

    wire: str
    path: str
    headers: dict[str, str]
    body: JSON
    model: str
    stream: bool
    operation: str = "chat"
    raw: bytes = b""
    """The body exactly as received (set by the fakes that record it: the Anthropic fake)."""
    query: str = ""
    """The query string, e.g. `beta=true`."""


Script = Callable[[FakeRequest], "Reply | Fault | Raw"]


class FakeScript:
    """A queue of answers (or callables of the request); `default` answers once it is empty.

    Every request is recorded in `requests`.
    """

    def __init__(self, *items: Reply | Fault | Raw | Script, default: Reply | Fault | Raw | None = None) -> None:
        self._queue: deque[Reply | Fault | Raw | Script] = deque(items)
        self.default = default or Reply("ok")
        self.requests: list[FakeRequest] = []

    def push(self, *items: Reply | Fault | Raw | Script) -> None:
        """Queue more answers."""
        self._queue.extend(items)

    def __call__(self, request: FakeRequest) -> Reply | Fault | Raw:
        self.requests.append(request)
        item = self._queue.popleft() if self._queue else self.default
        if isinstance(item, Reply | Fault | Raw):
            return item
        return item(request)

"""OpenAI chat chunks as Anthropic Messages stream events, in Anthropic's order, and their SSE encoding.

Anthropic's order: `message_start`; then per content block `content_block_start`, its deltas, and
`content_block_stop`, one block at a time with indexes counting up from 0 (a `ping` follows the first block's
start, as on Anthropic's wire); then `message_delta` (stop reason, stop sequence, usage) and `message_stop`.

An OpenAI stream mixes kinds in one delta sequence. Each change of kind closes the open block and opens the
next: reasoning text (`reasoning_content` or `reasoning`) -> a `thinking` block of `thinking_delta`s, ended by a
`signature_delta` when the provider signs it (a `thinking_blocks` entry with a `signature`; one holding
`redacted_thinking` is sent as that whole block), text -> a
`text` block of `text_delta`s, each tool call -> its own `tool_use` block whose arguments stream as
`input_json_delta`s (`partial_json`, passed on as they arrive). Providers stream parallel calls one after the
other; a late fragment for a call whose block is already closed is still sent, on that call's index, so the
arguments stay whole for a client that accumulates by index (as Anthropic's SDKs do).

The usage comes last on an OpenAI stream (a chunk after the finish reason, when `stream_options.include_usage`
is set), so the `message_delta` waits for it: it is sent once both the finish reason and the usage are known,
or by `close()` at the end of the stream. Its usage carries the input and cache counts too, which Anthropic's
clients read as the cumulative totals; `message_start` can only carry an estimate of the input tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from llm.messages.response import message_id, stop_reason, usage_from_chat
from llm.schema import JSON
from llm.sse import encode_sse

__all__ = ["ChatStreamTranslator", "encode_event"]

_NO_TOOL = -1


def encode_event(event: Mapping[str, Any]) -> bytes:
    """One event as SSE bytes: `event: <type>` and its JSON `data` line (Anthropic's clients need both)."""
    return encode_sse(orjson.dumps(event), event=event["type"])


class ChatStreamTranslator:
    """Feed it the chunks of one OpenAI chat stream (dicts), in order; it returns the Anthropic events each
    completes. Call `close()` when the chunks end: it finishes the message if the stream did not.

    `model` is the name the client asked for; `input_tokens`, an estimate for `message_start` (the true count
    follows in `message_delta`); `stop_sequences`, the request's, to report a matched stop string when the
    provider names it.
    """

    def __init__(self, model: str, *, stop_sequences: Sequence[str] = (), input_tokens: int = 0) -> None:
        self.model = model
        self.id = message_id()
        self.stop_sequences = tuple(stop_sequences)
        self.input_tokens = input_tokens
        self.done = False
        """True once `message_stop` was produced; later chunks are ignored."""
        self._started = False
        self._pinged = False
        self._next = 0
        self._open: tuple[str, int] | None = None  # (kind, OpenAI tool index or _NO_TOOL)
        self._tools: dict[int, tuple[int, str]] = {}  # OpenAI tool index -> (block index, call id)
        self._finish: str | None = None
        self._matched: Any = None
        self._usage: JSON | None = None

    def feed(self, chunk: Mapping[str, Any]) -> list[JSON]:
        """The events that `chunk` completes."""
        if self.done:
            return []
        events: list[JSON] = []
        if not self._started:
            self._start(events)
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, events)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        if self._finish is not None and self._usage is not None:
            self._end(events)
        return events

    def close(self) -> list[JSON]:
        """The events that end the message, if the chunks did not (no usage chunk, or no finish reason)."""
        if self.done:
            return []
        events: list[JSON] = []
        if not self._started:
            self._start(events)
        self._end(events)
        return events

    def _start(self, events: list[JSON]) -> None:
        self._started = True
        message: JSON = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
        }
        events.append({"type": "message_start", "message": message})

    def _choice(self, choice: Mapping[str, Any], events: list[JSON]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for field in ("reasoning_content", "reasoning"):
                value = delta.get(field)
                if isinstance(value, str) and value:
                    self._delta(events, "thinking", {"type": "thinking_delta", "thinking": value})
                    break
            blocks = delta.get("thinking_blocks")
            for block in blocks if isinstance(blocks, list) else []:
                if isinstance(block, dict):
                    self._signed(events, block)
            for field in ("content", "refusal"):
                value = delta.get(field)
                if isinstance(value, str) and value:
                    self._delta(events, "text", {"type": "text_delta", "text": value})
            calls = delta.get("tool_calls")
            for call in calls if isinstance(calls, list) else []:
                if isinstance(call, dict):
                    self._tool(events, call)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            self._finish = finish
            self._matched = choice.get("stop_reason")
            self._close_block(events)

    def _open_block(self, events: list[JSON], kind: str, tool: int, block: JSON) -> int:
        self._close_block(events)
        index = self._next
        self._next += 1
        self._open = (kind, tool)
        events.append({"type": "content_block_start", "index": index, "content_block": block})
        if not self._pinged:
            self._pinged = True
            events.append({"type": "ping"})
        return index

    def _close_block(self, events: list[JSON]) -> None:
        if self._open is not None:
            events.append({"type": "content_block_stop", "index": self._next - 1})
            self._open = None

    def _delta(self, events: list[JSON], kind: str, delta: JSON) -> None:
        if self._open != (kind, _NO_TOOL):
            empty: JSON = {"type": "text", "text": ""} if kind == "text" else {"type": kind, kind: "", "signature": ""}
            self._open_block(events, kind, _NO_TOOL, empty)
        events.append({"type": "content_block_delta", "index": self._next - 1, "delta": delta})

    def _signed(self, events: list[JSON], block: Mapping[str, Any]) -> None:
        """A signature for the thinking block being streamed (a `signature_delta`, which ends it: more reasoning
        opens a new block), or a whole `redacted_thinking` block."""
        if block.get("type") == "redacted_thinking" and isinstance(block.get("data"), str):
            self._open_block(events, "redacted", _NO_TOOL, {"type": "redacted_thinking", "data": block["data"]})
            self._close_block(events)
            return
        signature = block.get("signature")
        if block.get("type") != "thinking" or not isinstance(signature, str) or not signature:
            return
        if self._open != ("thinking", _NO_TOOL):
            self._open_block(events, "thinking", _NO_TOOL, {"type": "thinking", "thinking": "", "signature": ""})
        events.append(
            {
                "type": "content_block_delta",
                "index": self._next - 1,
                "delta": {"type": "signature_delta", "signature": signature},
            }
        )
        self._open = ("signed", _NO_TOOL)

    def _tool(self, events: list[JSON], call: Mapping[str, Any]) -> None:
        position = call.get("index", 0)
        position = position if isinstance(position, int) else 0
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        call_id = call.get("id")
        known = self._tools.get(position)
        if known is None or (isinstance(call_id, str) and call_id and call_id != known[1]):
            # A new call (or a provider that numbers every call 0 but gives each its own id).
            new_id = call_id if isinstance(call_id, str) and call_id else f"toolu_{message_id()[4:]}"
            block = {"type": "tool_use", "id": new_id, "name": function.get("name") or "", "input": {}}
            known = (self._open_block(events, "tool", position, block), new_id)
            self._tools[position] = known
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            events.append({"type": "content_block_delta", "index": known[0], "delta": delta})

    def _end(self, events: list[JSON]) -> None:
        self._close_block(events)
        reason, sequence = stop_reason(self._finish, self._matched, self.stop_sequences, bool(self._tools))
        usage = usage_from_chat(self._usage) if self._usage is not None else {"output_tokens": 0}
        events.append(
            {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence}, "usage": usage}
        )
        events.append({"type": "message_stop"})
        self.done = True

"""A scripted Anthropic Messages upstream (`POST /v1/messages`, `POST /v1/messages/count_tokens`).

    fake = MessagesFake([
        (Thinking("look it up", "sig-1"), ToolUse("mcp__fixture__echo", {"message": "hi"})),
        (Text("The tool said hi."),),
    ])
    recorder = fake.recorder()

Turn N answers the request that carries N `tool_result` blocks, counted over the whole conversation. Counting
results rather than assistant messages matters: Claude Code merges consecutive assistant turns (a `ToolSearch`
call and the tool call after it) into one message, and a fake that counted messages would replay a turn forever.
A request past the last turn gets a 400 `invalid_request_error`, so a runaway loop ends at once.

Streams follow the order the API sends: `message_start`, then per block `content_block_start` (the first one
followed by a `ping`), its deltas (`text_delta`, `thinking_delta` + `signature_delta`, `input_json_delta` in
small pieces), `content_block_stop`; then `message_delta` (stop reason, usage) and `message_stop`. Without
`stream: true` the same turn comes back as one `message` object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

import orjson
from starlette.responses import JSONResponse, Response, StreamingResponse

from llm.schema import JSON
from tests.agents.recorder import RecordedRequest, Recorder

__all__ = ["Block", "MessagesFake", "Text", "Thinking", "ToolUse", "Turn", "sse_events", "tool_results"]

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
PIECE = 7
"""Characters per delta: small, so a client must join many deltas into one block."""
INPUT_TOKENS = 25
COUNTED_TOKENS = 1234
"""What `count_tokens` answers, whatever the request."""


@dataclass(frozen=True)
class Text:
    """A text block."""

    text: str


@dataclass(frozen=True)
class Thinking:
    """A thinking block with the signature a client must send back unchanged."""

    thinking: str
    signature: str


@dataclass(frozen=True)
class ToolUse:
    """A `tool_use` block; its id is `toolu_<turn>_<index>` unless given."""

    name: str
    input: JSON
    id: str | None = None


Block = Text | Thinking | ToolUse
Turn = Sequence[Block]


def tool_results(body: JSON) -> list[JSON]:
    """Every `tool_result` block in a Messages request body, in conversation order."""
    found: list[JSON] = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            found.extend(b for b in content if isinstance(b, dict) and b.get("type") == "tool_result")
    return found


def _error(status: int, kind: str, message: str) -> Response:
    return JSONResponse({"type": "error", "error": {"type": kind, "message": message}}, status_code=status)


def _pieces(text: str) -> list[str]:
    return [text[i : i + PIECE] for i in range(0, len(text), PIECE)] or [""]


def _stop_reason(turn: Turn) -> str:
    return "tool_use" if any(isinstance(block, ToolUse) for block in turn) else "end_turn"


def _output_tokens(turn: Turn) -> int:
    return sum(len(orjson.dumps(block.__dict__)) // 4 + 1 for block in turn)


def _tool_id(block: ToolUse, number: int, index: int) -> str:
    return block.id or f"toolu_{number:02d}_{index}"


def _complete_block(block: Block, number: int, index: int) -> JSON:
    if isinstance(block, Text):
        return {"type": "text", "text": block.text}
    if isinstance(block, Thinking):
        return {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
    return {"type": "tool_use", "id": _tool_id(block, number, index), "name": block.name, "input": block.input}


def _message(turn: Turn, number: int, model: str, *, streaming: bool) -> JSON:
    usage: JSON = {
        "input_tokens": INPUT_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 1 if streaming else _output_tokens(turn),
        "service_tier": "standard",
    }
    return {
        "id": f"msg_fake{number:04d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [] if streaming else [_complete_block(b, number, i) for i, b in enumerate(turn)],
        "stop_reason": None if streaming else _stop_reason(turn),
        "stop_sequence": None,
        "usage": usage,
    }


def _block_events(block: Block, number: int, index: int) -> Iterator[JSON]:
    if isinstance(block, Text):
        yield {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
        for piece in _pieces(block.text):
            yield {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}
    elif isinstance(block, Thinking):
        start = {"type": "thinking", "thinking": "", "signature": ""}
        yield {"type": "content_block_start", "index": index, "content_block": start}
        for piece in _pieces(block.thinking):
            delta = {"type": "thinking_delta", "thinking": piece}
            yield {"type": "content_block_delta", "index": index, "delta": delta}
        signature = {"type": "signature_delta", "signature": block.signature}
        yield {"type": "content_block_delta", "index": index, "delta": signature}
    else:
        start = {"type": "tool_use", "id": _tool_id(block, number, index), "name": block.name, "input": {}}
        yield {"type": "content_block_start", "index": index, "content_block": start}
        for piece in _pieces(orjson.dumps(block.input).decode()):
            delta = {"type": "input_json_delta", "partial_json": piece}
            yield {"type": "content_block_delta", "index": index, "delta": delta}
    yield {"type": "content_block_stop", "index": index}


def sse_events(turn: Turn, number: int, model: str) -> list[JSON]:
    """The events of one streamed turn, in the order the API sends them."""
    events: list[JSON] = [{"type": "message_start", "message": _message(turn, number, model, streaming=True)}]
    for index, block in enumerate(turn):
        for event in _block_events(block, number, index):
            events.append(event)
            if index == 0 and event["type"] == "content_block_start":
                events.append({"type": "ping"})
    delta = {"stop_reason": _stop_reason(turn), "stop_sequence": None}
    events.append({"type": "message_delta", "delta": delta, "usage": {"output_tokens": _output_tokens(turn)}})
    events.append({"type": "message_stop"})
    return events


def _encode(event: JSON) -> bytes:
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


class MessagesFake:
    """Answers `/v1/messages` from a script of turns; see the module docstring for how a turn is chosen."""

    def __init__(self, turns: Sequence[Turn]) -> None:
        self.turns = list(turns)

    def recorder(self) -> Recorder:
        """A recorder that routes the Messages endpoints here."""
        return Recorder(
            {("POST", MESSAGES): self.messages, ("POST", COUNT_TOKENS): self.count_tokens},
            not_found=self.not_found,
        )

    def messages(self, request: RecordedRequest) -> Response:
        """`POST /v1/messages`: the turn chosen by the number of tool results, streamed or whole."""
        body = request.body
        model = body.get("model")
        if not isinstance(model, str) or not isinstance(body.get("messages"), list):
            return _error(400, "invalid_request_error", "model and messages are required")
        number = len(tool_results(body))
        if number >= len(self.turns):
            return _error(400, "invalid_request_error", f"the script has no turn {number}")
        turn = self.turns[number]
        if body.get("stream") is True:
            chunks = [_encode(event) for event in sse_events(turn, number, model)]

            async def stream() -> AsyncIterator[bytes]:
                for chunk in chunks:
                    yield chunk

            return StreamingResponse(stream(), media_type="text/event-stream")
        return JSONResponse(_message(turn, number, model, streaming=False))

    def count_tokens(self, request: RecordedRequest) -> Response:
        """`POST /v1/messages/count_tokens`: a fixed count."""
        return JSONResponse({"input_tokens": COUNTED_TOKENS})

    def not_found(self, request: RecordedRequest) -> Response:
        """Any other route: the API's 404 body."""
        return _error(404, "not_found_error", f"{request.method} {request.path} is not served by this fake")

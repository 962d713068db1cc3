"""A scripted OpenAI Responses upstream (`POST /v1/responses`), as the Codex CLI and the `openai` SDK read it.

    fake = ResponsesFake([
        (FunctionCall("echo", {"message": "hi"}, namespace="mcp__fixture"),),
        (OutputText("The tool said hi."),),
    ])
    recorder = fake.recorder()

Turn N answers the request whose `input` carries N tool outputs (`function_call_output`,
`custom_tool_call_output`, `tool_search_output`): Codex sends no `previous_response_id` (`store: false`), it
resends the whole conversation, so the outputs in `input` say how far the conversation has gone. A request past
the last turn gets a 400 error, so a runaway loop ends at once.

A streamed turn is `response.created`, `response.in_progress`, then per output item `response.output_item.added`,
its deltas (`response.content_part.added`, `response.output_text.delta`..., `response.output_text.done`,
`response.content_part.done` for a message; `response.function_call_arguments.delta`... and `.done` for a
function call) and `response.output_item.done`, and last `response.completed` with the whole response and its
usage. Every event carries a `sequence_number`. Codex builds its items from `response.output_item.done` and ends
the turn on `response.completed`. Without `stream: true` the completed response comes back as one object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

import orjson
from starlette.responses import JSONResponse, Response, StreamingResponse

from llm.schema import JSON
from tests.agents.recorder import RecordedRequest, Recorder

__all__ = ["FunctionCall", "Item", "OutputText", "ResponsesFake", "ToolSearchCall", "Turn", "stream_events"]

RESPONSES = "/v1/responses"
PIECE = 7
"""Characters per delta: small, so a client must join many deltas."""
OUTPUT_KINDS = frozenset({"function_call_output", "custom_tool_call_output", "tool_search_output"})
USAGE: JSON = {
    "input_tokens": 25,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 5,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 30,
}


@dataclass(frozen=True)
class OutputText:
    """An assistant message with one `output_text` part."""

    text: str


@dataclass(frozen=True)
class FunctionCall:
    """A `function_call` item; `namespace` names the tool group (Codex puts each MCP server in one)."""

    name: str
    arguments: JSON
    namespace: str | None = None
    call_id: str | None = None


@dataclass(frozen=True)
class ToolSearchCall:
    """A client-executed `tool_search_call`: the client searches its deferred tools and sends the matches back."""

    query: str
    limit: int = 8


Item = OutputText | FunctionCall | ToolSearchCall
Turn = Sequence[Item]


def tool_outputs(body: JSON) -> list[JSON]:
    """Every tool output item in a Responses request's `input`, in order."""
    items = body.get("input")
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, dict) and item.get("type") in OUTPUT_KINDS]


def _pieces(text: str) -> list[str]:
    return [text[i : i + PIECE] for i in range(0, len(text), PIECE)] or [""]


def _item(item: Item, number: int, index: int) -> JSON:
    if isinstance(item, OutputText):
        part = {"type": "output_text", "text": item.text, "annotations": []}
        return {
            "type": "message",
            "id": f"msg_fake{number:02d}{index}",
            "role": "assistant",
            "status": "completed",
            "content": [part],
        }
    if isinstance(item, FunctionCall):
        call: JSON = {
            "type": "function_call",
            "id": f"fc_fake{number:02d}{index}",
            "call_id": item.call_id or f"call_fake{number:02d}{index}",
            "name": item.name,
            "arguments": orjson.dumps(item.arguments).decode(),
            "status": "completed",
        }
        if item.namespace is not None:
            call["namespace"] = item.namespace
        return call
    return {
        "type": "tool_search_call",
        "id": f"ts_fake{number:02d}{index}",
        "call_id": f"call_fake{number:02d}{index}",
        "execution": "client",
        "status": "completed",
        "arguments": {"query": item.query, "limit": item.limit},
    }


def _response(body: JSON, turn: Turn, number: int, *, done: bool) -> JSON:
    return {
        "id": f"resp_fake{number:04d}",
        "object": "response",
        "created_at": 1_700_000_000 + number,
        "status": "completed" if done else "in_progress",
        "model": body.get("model"),
        "output": [_item(item, number, i) for i, item in enumerate(turn)] if done else [],
        "usage": USAGE if done else None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "metadata": {},
        "parallel_tool_calls": bool(body.get("parallel_tool_calls", True)),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": [],
        "store": bool(body.get("store", True)),
        "previous_response_id": body.get("previous_response_id"),
    }


def _item_events(item: Item, number: int, index: int) -> Iterator[JSON]:
    done = _item(item, number, index)
    where: JSON = {"output_index": index, "item_id": done["id"]}
    if isinstance(item, OutputText):
        yield {"type": "response.output_item.added", "output_index": index, "item": {**done, "content": []}}
        part = {"type": "output_text", "text": "", "annotations": []}
        yield {"type": "response.content_part.added", **where, "content_index": 0, "part": part}
        for piece in _pieces(item.text):
            yield {"type": "response.output_text.delta", **where, "content_index": 0, "delta": piece, "logprobs": []}
        yield {"type": "response.output_text.done", **where, "content_index": 0, "text": item.text, "logprobs": []}
        yield {"type": "response.content_part.done", **where, "content_index": 0, "part": done["content"][0]}
    elif isinstance(item, FunctionCall):
        added = {**done, "arguments": "", "status": "in_progress"}
        yield {"type": "response.output_item.added", "output_index": index, "item": added}
        for piece in _pieces(done["arguments"]):
            yield {"type": "response.function_call_arguments.delta", **where, "delta": piece}
        yield {"type": "response.function_call_arguments.done", **where, "arguments": done["arguments"]}
    else:
        yield {"type": "response.output_item.added", "output_index": index, "item": done}
    yield {"type": "response.output_item.done", "output_index": index, "item": done}


def stream_events(body: JSON, turn: Turn, number: int) -> list[JSON]:
    """The events of one streamed turn, numbered."""
    started = _response(body, turn, number, done=False)
    events: list[JSON] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
    ]
    for index, item in enumerate(turn):
        events.extend(_item_events(item, number, index))
    events.append({"type": "response.completed", "response": _response(body, turn, number, done=True)})
    return [{**event, "sequence_number": n} for n, event in enumerate(events)]


def _error(status: int, message: str) -> Response:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    return JSONResponse({"error": error}, status_code=status)


class ResponsesFake:
    """Answers `/v1/responses` from a script of turns; see the module docstring for how a turn is chosen."""

    def __init__(self, turns: Sequence[Turn]) -> None:
        self.turns = list(turns)

    def recorder(self) -> Recorder:
        """A recorder that routes `POST /v1/responses` here."""
        return Recorder({("POST", RESPONSES): self.responses}, not_found=self.not_found)

    def responses(self, request: RecordedRequest) -> Response:
        """`POST /v1/responses`: the turn chosen by the number of tool outputs, streamed or whole."""
        body = request.body
        if not isinstance(body.get("model"), str) or "input" not in body:
            return _error(400, "model and input are required")
        number = len(tool_outputs(body))
        if number >= len(self.turns):
            return _error(400, f"the script has no turn {number}")
        turn = self.turns[number]
        if body.get("stream") is True:
            chunks = [
                b"event: " + str(e["type"]).encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n"
                for e in stream_events(body, turn, number)
            ]

            async def stream() -> AsyncIterator[bytes]:
                for chunk in chunks:
                    yield chunk

            return StreamingResponse(stream(), media_type="text/event-stream")
        return JSONResponse(_response(body, turn, number, done=True))

    def not_found(self, request: RecordedRequest) -> Response:
        """Any other route: the API's 404 error body."""
        return _error(404, f"{request.method} {request.path} is not served by this fake")

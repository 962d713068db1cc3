"""Agent Mode in the OpenAI Chat Completions format (`/v1/chat/completions`): the loop's `Dialect` for it.

Each model turn is an `llm.chat` call of the OpenAI door. Tool results go back as `role: "tool"` messages. A
streaming client gets every turn's chunks as they come (tool-call deltas included), a chunk per tool run and one
when the loop stops for approval (`choices: []` with an `agenthub` event), and a final chunk with the summed usage
and the loop's summary (with the `finish_reason` the response would have when the deadline stopped the loop).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson

from hub.call import Call
from hub.executors.agent_runner import Turn, turn_call
from hub.executors.agent_tools import LoopState, OfferedTool, ToolRequest, ToolResult

__all__ = ["ChatDialect", "chat_tool", "chat_tool_name"]

JSON = dict[str, Any]
_CUT_FINISH = {"model": "length", "tools": "tool_calls"}


def chat_tool(tool: OfferedTool) -> JSON:
    """An offered tool in the OpenAI `tools` format."""
    function: JSON = {"name": tool.name, "parameters": tool.schema}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def chat_tool_name(tool: Any) -> str | None:
    """The name of one of the application's own tools."""
    function = tool.get("function") if isinstance(tool, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else None


class ChatDialect:
    """The OpenAI Chat Completions wire format of one loop (it remembers the stream's chunk id)."""

    usage_fields: tuple[str, ...] = ("prompt_tokens", "completion_tokens", "total_tokens")

    def __init__(self) -> None:
        self.chunk_id = ""

    def turn_call(self, loop: Call, request: JSON, stream: bool) -> Call:
        return turn_call(loop, "openai", "llm.chat", request, stream, request["messages"])

    def read(self, response: Mapping[str, Any]) -> Turn:
        message = _first_message(response)
        return Turn(message, [_request(c) for c in message.get("tool_calls") or []], response.get("usage"))

    def step(self, turn: Turn, results: Sequence[ToolResult]) -> list[JSON]:
        assistant = {"role": "assistant", "content": turn.message.get("content"), "tool_calls": _raw(turn.calls)}
        return [assistant, *({"role": "tool", "tool_call_id": r.id, "content": r.content} for r in results)]

    def pending_response(self, response: Mapping[str, Any], turn: Turn, pending: Sequence[ToolRequest]) -> JSON:
        choice = dict((response.get("choices") or [{}])[0])
        choice["message"] = {**turn.message, "tool_calls": _raw(pending)}
        choice["finish_reason"] = "tool_calls"
        return {**response, "choices": [choice]}

    def expired(self, state: LoopState, request: JSON, last: Mapping[str, Any], tools_ran: bool) -> JSON:
        """While tools ran: that turn's response, its calls pending (none of them is in `executed_messages`).
        While the model answered: no content and no tool call (those of earlier turns ran), `finish_reason:
        "length"`."""
        if tools_ran:
            return dict(last)
        return {
            "id": last.get("id") or state.loop_id,
            "object": "chat.completion",
            "created": last.get("created") or int(time.time()),
            "model": last.get("model") or str(request.get("model")),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "length"}],
        }

    def finish(self, response: Mapping[str, Any], state: LoopState) -> JSON:
        out = dict(response)
        if state.turns > 1 or state.steps or state.stopped == "deadline":
            out["usage"] = dict(state.usage)
        out["agenthub"] = state.summary()
        return out

    # -- streaming --------------------------------------------------------------------------------------------

    def reader(self, state: LoopState, first: bool) -> _ChunkReader:
        return _ChunkReader(self)

    def tool_event(self, state: LoopState, step: JSON) -> JSON:
        return self._event({**step})

    def approval_event(self, state: LoopState, pending: Sequence[ToolRequest]) -> JSON:
        return self._event({"type": "approval_required", "tool_calls": _raw(pending)})

    def end(self, state: LoopState, request: JSON, cut: str | None) -> Iterator[JSON]:
        """The summary chunk: summed usage and the summary; when the deadline cut a turn or the tool runs, it
        carries the `finish_reason` the response would (`length` or `tool_calls`)."""
        finish = None if cut is None else _CUT_FINISH[cut]
        choices = [] if finish is None else [{"index": 0, "delta": {}, "finish_reason": finish}]
        yield {
            "id": state.loop_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": str(request.get("model")),
            "choices": choices,
            "usage": dict(state.usage),
            "agenthub": {"type": "summary", **state.summary()},
        }

    def _event(self, event: JSON) -> JSON:
        return {
            "id": self.chunk_id or "agenthub",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": "agenthub",
            "choices": [],
            "agenthub": event,
        }


class _ChunkReader:
    """Passes a turn's chunks on and rebuilds its assistant message (content and tool calls) from them."""

    def __init__(self, dialect: ChatDialect) -> None:
        self._dialect = dialect
        self._content: list[str] = []
        self._calls: dict[int, JSON] = {}
        self._usage: Mapping[str, Any] | None = None

    def add(self, item: JSON) -> list[JSON]:
        self._dialect.chunk_id = str(item.get("id") or self._dialect.chunk_id)
        if item.get("usage"):
            self._usage = item["usage"]
        for choice in item.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self._content.append(delta["content"])
            for part in delta.get("tool_calls") or []:
                slot = self._calls.setdefault(
                    int(part.get("index", 0)), {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                )
                if part.get("id"):
                    slot["id"] = part["id"]
                function = part.get("function") or {}
                slot["function"]["name"] += function.get("name") or ""
                slot["function"]["arguments"] += function.get("arguments") or ""
        return [item]

    def turn(self) -> Turn:
        message: JSON = {"role": "assistant", "content": "".join(self._content) or None}
        calls = [self._calls[i] for i in sorted(self._calls)]
        if calls:
            message["tool_calls"] = calls
        return Turn(message, [_request(c) for c in calls], self._usage)

    def pending(self, calls: Sequence[ToolRequest]) -> list[JSON]:
        return []  # the calls were streamed as the model made them


def _first_message(response: Mapping[str, Any]) -> JSON:
    choices = response.get("choices") or [{}]
    message: JSON = choices[0].get("message") or {}
    return message


def _request(call: Mapping[str, Any]) -> ToolRequest:
    """A chat tool call read for the loop (its arguments are a JSON string)."""
    function = call.get("function") or {}
    raw = function.get("arguments") or "{}"
    call_id = str(call.get("id") or "")
    name = str(function.get("name"))
    try:
        value = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        return ToolRequest(call_id, name, call, None, "the model sent tool arguments that are not valid JSON")
    if not isinstance(value, dict):
        return ToolRequest(call_id, name, call, None, "tool arguments must be a JSON object")
    return ToolRequest(call_id, name, call, value)


def _raw(calls: Sequence[ToolRequest]) -> list[Any]:
    return [c.raw for c in calls]

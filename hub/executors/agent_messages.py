"""Agent Mode in Anthropic's Messages format (`/v1/messages`): the loop's `Dialect` for it.

Each model turn is an `llm.messages` call of the Anthropic door (its `anthropic-*` headers and `?beta=true` passed
on), so a translated provider serves it as well as an Anthropic one. The hub's MCP tools are offered as Anthropic
tools (`name`, `description`, `input_schema`); a turn's `tool_use` blocks the hub runs are answered in the next
`user` message with `tool_result` blocks (`is_error` when the tool failed).

What the client sees is one Anthropic message:

- not streamed: the last turn's message (when the loop stopped for approval, without the `tool_use` blocks the hub
  ran: every `tool_use` left in it is the client's to answer, `stop_reason: "tool_use"`), `usage` summed over the
  turns, and the loop's summary in `agenthub` (`executed_messages` in Anthropic's format);
- streamed: one `message_start` (the first turn's), every turn's content blocks as they come, numbered as one
  message, except the `tool_use` blocks of tools the hub may run: those are held until the turn ends and sent only
  if the hub leaves them to the client; an `agenthub` event (`{"type": "agenthub", "agenthub": {...}}`, the same
  entries as the OpenAI door's `agenthub` chunks) per tool run, when the loop stops for approval, and with the
  summary; then `message_delta` (the last stop reason, the summed usage) and `message_stop`.

Anthropic's clients skip event types they do not know, as Anthropic's versioning policy asks of them. A message
holds no `tool_use` without its answer, so a client appends it to its conversation as it is.

The deadline fails the request with `timeout_error` (504): streamed, the `agenthub` summary and then Anthropic's
`error` event end the stream (never a cut-off connection); the turns and tool runs done are in the request log,
under the loop's id.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson

from hub.call import Call
from hub.errors import UpstreamTimedOut
from hub.executors.agent_options import AgentOptions
from hub.executors.agent_runner import Turn, turn_call
from hub.executors.agent_tools import LoopState, OfferedTool, ToolRequest, ToolResult
from hub.executors.code import EXECUTE
from llm.messages import encode_event

__all__ = ["MessagesDialect", "messages_tool", "messages_tool_name", "stream_item"]

JSON = dict[str, Any]
USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def messages_tool(tool: OfferedTool) -> JSON:
    """An offered tool in Anthropic's `tools` format."""
    out: JSON = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    out["input_schema"] = tool.schema
    return out


def messages_tool_name(tool: Any) -> str | None:
    """The name of one of the client's own tools (server tools have one too)."""
    name = tool.get("name") if isinstance(tool, dict) else None
    return name if isinstance(name, str) else None


def stream_item(*events: JSON) -> JSON:
    """A stream item of the Messages door: the events and their bytes."""
    return {"raw": b"".join(encode_event(e) for e in events), "events": list(events)}


class MessagesDialect:
    """The Anthropic Messages wire format of one loop (it numbers the streamed content blocks across turns)."""

    usage_fields: tuple[str, ...] = USAGE_FIELDS

    def __init__(self, options: AgentOptions, mcp_names: set[str]) -> None:
        self._options = options
        self._mcp_names = mcp_names
        self.next_index = 0
        """The index the next content block sent to the client gets."""
        self.stop_reason: Any = None
        self.stop_sequence: Any = None

    def holds(self, name: Any) -> bool:
        """Whether a streamed `tool_use` block is held back: the hub may run it (decided when the turn ends)."""
        return name in self._mcp_names and (name == EXECUTE or self._options.approves(name))

    def turn_call(self, loop: Call, request: JSON, stream: bool) -> Call:
        return turn_call(loop, "anthropic", "llm.messages", request, stream, request)

    def read(self, response: Mapping[str, Any]) -> Turn:
        content: list[Any] = list(response.get("content") or [])
        calls = [_request(b) for b in content if isinstance(b, dict) and b.get("type") == "tool_use"]
        return Turn({"role": "assistant", "content": content}, calls, response.get("usage"))

    def step(self, turn: Turn, results: Sequence[ToolResult]) -> list[JSON]:
        blocks: list[JSON] = []
        for result in results:
            block: JSON = {"type": "tool_result", "tool_use_id": result.id, "content": result.content}
            if result.is_error:
                block["is_error"] = True
            blocks.append(block)
        return [_replayable(turn.message), {"role": "user", "content": blocks}]

    def pending_response(self, response: Mapping[str, Any], turn: Turn, pending: Sequence[ToolRequest]) -> JSON:
        left = {c.id for c in pending}
        content = [b for b in turn.message["content"] if not _tool_use(b) or b.get("id") in left]
        return {**response, "content": content, "stop_reason": "tool_use", "stop_sequence": None}

    def expired(self, state: LoopState, request: JSON, last: Mapping[str, Any], tools_ran: bool) -> JSON:
        raise self._deadline(state, tools_ran)

    def _deadline(self, state: LoopState, tools_ran: bool) -> UpstreamTimedOut:
        waiting = "the tools ran" if tools_ran else "the model answered"
        return UpstreamTimedOut(
            f"Agent Mode's deadline ({self._options.deadline_s:g} s) passed while {waiting} "
            f"(loop {state.loop_id}, {state.turns} turns and {len(state.steps)} tool runs done)"
        )

    def finish(self, response: Mapping[str, Any], state: LoopState) -> JSON:
        out = dict(response)
        if state.turns > 1 or state.steps:
            usage = out.get("usage")
            out["usage"] = {**(usage if isinstance(usage, dict) else {}), **state.usage}
        out["agenthub"] = state.summary()
        return out

    # -- streaming --------------------------------------------------------------------------------------------

    def reader(self, state: LoopState, first: bool) -> _BlockReader:
        return _BlockReader(self, first)

    def tool_event(self, state: LoopState, step: JSON) -> JSON:
        return stream_item({"type": "agenthub", "agenthub": {**step}})

    def approval_event(self, state: LoopState, pending: Sequence[ToolRequest]) -> JSON:
        event = {"type": "approval_required", "tool_use_ids": [c.id for c in pending]}
        return stream_item({"type": "agenthub", "agenthub": event})

    def end(self, state: LoopState, request: JSON, cut: str | None) -> Iterator[JSON]:
        """The summary, then `message_delta` (stop reason, summed usage) and `message_stop`; when the deadline
        stopped the loop, the summary and then the error (the door sends it as Anthropic's `error` event)."""
        yield stream_item({"type": "agenthub", "agenthub": {"type": "summary", **state.summary()}})
        if cut is not None:
            raise self._deadline(state, cut == "tools")
        stop = "tool_use" if state.stopped in ("approval_required", "max_depth") else self.stop_reason
        delta = {"stop_reason": stop, "stop_sequence": None if stop == "tool_use" else self.stop_sequence}
        yield stream_item(
            {"type": "message_delta", "delta": delta, "usage": dict(state.usage)},
            {"type": "message_stop"},
        )


class _BlockReader:
    """One streamed turn: its events renumbered into the client's one message, the `tool_use` blocks the hub may
    run held back, and the turn's content rebuilt from the deltas."""

    def __init__(self, dialect: MessagesDialect, first: bool) -> None:
        self._dialect = dialect
        self._first = first
        self._blocks: dict[int, JSON] = {}
        self._inputs: dict[int, str] = {}
        self._sent: dict[int, int] = {}
        """Local index of a block sent on -> its index in the client's message."""
        self._held: dict[int, list[JSON]] = {}
        self._usage: JSON = {}

    def add(self, item: JSON) -> list[JSON]:
        out: list[JSON] = []
        for event in item["events"]:
            kind = event.get("type")
            if kind == "message_start":
                message = event.get("message") or {}
                self._usage.update(message.get("usage") or {})
                if self._first:
                    out.append(event)
            elif kind in ("content_block_start", "content_block_delta", "content_block_stop"):
                self._block(kind, event, out)
            elif kind == "message_delta":
                delta = event.get("delta") or {}
                self._dialect.stop_reason = delta.get("stop_reason")
                self._dialect.stop_sequence = delta.get("stop_sequence")
                self._usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            elif kind != "message_stop":
                out.append(event)  # ping, and any event this hub does not know
        return [stream_item(*out)] if out else []

    def _block(self, kind: Any, event: JSON, out: list[JSON]) -> None:
        index = int(event.get("index", 0))
        if kind == "content_block_start":
            block = dict(event.get("content_block") or {})
            self._blocks[index] = block
            if block.get("type") == "tool_use" and self._dialect.holds(block.get("name")):
                self._held[index] = [event]
                return
            self._sent[index] = self._dialect.next_index
            self._dialect.next_index += 1
        elif kind == "content_block_delta":
            self._delta(index, event.get("delta") or {})
        if index in self._held:
            self._held[index].append(event)
        elif index in self._sent:
            out.append({**event, "index": self._sent[index]})

    def _delta(self, index: int, delta: Mapping[str, Any]) -> None:
        block = self._blocks.get(index)
        if block is None:
            return
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = str(block.get("text") or "") + str(delta.get("text") or "")
        elif kind == "thinking_delta":
            block["thinking"] = str(block.get("thinking") or "") + str(delta.get("thinking") or "")
        elif kind == "signature_delta":
            block["signature"] = delta.get("signature")
        elif kind == "input_json_delta":
            self._inputs[index] = self._inputs.get(index, "") + str(delta.get("partial_json") or "")
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta.get("citation"))

    def turn(self) -> Turn:
        content: list[JSON] = []
        for index in sorted(self._blocks):
            block = self._blocks[index]
            if _tool_use(block):
                text = self._inputs.get(index, "")
                try:
                    block["input"] = orjson.loads(text) if text else block.get("input") or {}
                except orjson.JSONDecodeError:
                    block["input"] = text
            content.append(block)
        calls = [_request(b) for b in content if _tool_use(b)]
        return Turn({"role": "assistant", "content": content}, calls, self._usage)

    def pending(self, calls: Sequence[ToolRequest]) -> list[JSON]:
        ids = {c.id for c in calls}
        out: list[JSON] = []
        for index, events in self._held.items():
            if self._blocks[index].get("id") not in ids:
                continue
            at = self._dialect.next_index
            self._dialect.next_index += 1
            out += [{**e, "index": at} for e in events]
        return [stream_item(*out)] if out else []


def _tool_use(block: Any) -> bool:
    return isinstance(block, dict) and block.get("type") == "tool_use"


def _request(block: Mapping[str, Any]) -> ToolRequest:
    """A `tool_use` block read for the loop (its input is an object; a streamed one that was not valid JSON is
    kept as its text, and running it fails)."""
    arguments = block.get("input")
    call_id, name = str(block.get("id") or ""), str(block.get("name"))
    if not isinstance(arguments, dict):
        return ToolRequest(call_id, name, block, None, "the model sent tool input that is not a JSON object")
    return ToolRequest(call_id, name, block, dict(arguments))


def _replayable(message: JSON) -> JSON:
    """An assistant turn as the conversation takes it back: a `tool_use` input that was not valid JSON becomes an
    empty object (its result says why)."""
    content = [
        {**b, "input": {}} if _tool_use(b) and not isinstance(b.get("input"), dict) else b for b in message["content"]
    ]
    return {"role": "assistant", "content": content}

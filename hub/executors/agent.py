"""Agent Mode: MCP tools in chat completions, and the model <-> tool loop run in the hub for approved tools.

Tool injection: a key's `chat_tools` globs (narrowed, never widened, by the request's `agenthub.chat_tools`)
choose which MCP tools the model is offered, in the OpenAI `tools` format, next to the application's own tools
(on a name collision the application's tool wins and the MCP tool is left out). Code Mode tools are offered
as the four meta-tools instead.

Explicit execution (the default): the model's tool calls come back unchanged; the application runs them with
`POST /v1/mcp/tool/execute` and calls the model again.

Agent Mode (a key's `auto_execute` globs, narrowed by the request): while the model asks only for approved
tools, the hub runs them (in parallel), appends the results and calls the model again, up to `max_agent_depth`
turns and an overall deadline. When the model asks for anything else, the hub stops and returns the response
with `finish_reason: "tool_calls"` and only the pending calls; the messages it already added to the
conversation come back in `agenthub.executed_messages`, ready to append verbatim, with one entry per executed
tool in `agenthub.steps`. Every model turn is an `llm.chat` call and every tool run an `mcp.tool` call through the
pipeline (limits, guardrails, request log), all linked by the loop's id as parent.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson

from connectors.registry import RegistryView
from hub.call import Call, Operation, Outcome, Principal
from hub.errors import BadRequest, HubError, Internal
from hub.executors.code import EXECUTE, CodeMode
from hub.executors.deadline import EXPIRED, Deadline
from hub.executors.llm import output_estimate
from hub.executors.mcp import tool_message_content
from hub.executors.stream import AgentStream, OutcomeStream
from hub.governance.filters import GlobSet
from hub.pipeline import Handler

DEFAULT_DEADLINE_S = 300.0


@dataclass(frozen=True)
class AgentOptions:
    """What one request may do: offered MCP tools, auto-approved tools, depth and deadline."""

    chat_tools: GlobSet
    auto_execute: GlobSet
    max_depth: int
    deadline_s: float
    narrowed_chat: GlobSet | None = None
    narrowed_auto: GlobSet | None = None

    def offers(self, name: str) -> bool:
        return self.chat_tools.matches(name) and (self.narrowed_chat is None or self.narrowed_chat.matches(name))

    def approves(self, name: str) -> bool:
        return self.auto_execute.matches(name) and (self.narrowed_auto is None or self.narrowed_auto.matches(name))

    @property
    def active(self) -> bool:
        """Whether the loop may run at all (some tool is auto-approved)."""
        return bool(self.auto_execute.patterns) and (self.narrowed_auto is None or bool(self.narrowed_auto.patterns))

    def confine(self, principal: Principal) -> Principal:
        """`principal` limited to the auto-approved tools (for a program the hub runs without asking)."""
        confined = principal.narrowed(self.auto_execute)
        return confined if self.narrowed_auto is None else confined.narrowed(self.narrowed_auto)


def agent_options(principal: Principal, overrides: Any) -> AgentOptions:
    """The key's agent settings, narrowed by the request's `agenthub` field.

    Raises:
        BadRequest: the `agenthub` field is malformed.
    """
    key = principal.key
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise BadRequest("'agenthub' must be an object")
    unknown = set(overrides) - {"chat_tools", "auto_execute", "max_agent_depth", "deadline_s"}
    if unknown:
        raise BadRequest(f"unknown 'agenthub' fields: {', '.join(sorted(unknown))}")
    depth = overrides.get("max_agent_depth", key.max_agent_depth)
    deadline = overrides.get("deadline_s", DEFAULT_DEADLINE_S)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise BadRequest("'agenthub.max_agent_depth' must be a positive integer")
    if isinstance(deadline, bool) or not isinstance(deadline, int | float) or deadline <= 0:
        raise BadRequest("'agenthub.deadline_s' must be a positive number")
    return AgentOptions(
        chat_tools=GlobSet(key.chat_tools),
        auto_execute=GlobSet(key.auto_execute),
        max_depth=min(depth, key.max_agent_depth),
        deadline_s=min(float(deadline), DEFAULT_DEADLINE_S),
        narrowed_chat=_globs(overrides, "chat_tools"),
        narrowed_auto=_globs(overrides, "auto_execute"),
    )


def _globs(overrides: Mapping[str, Any], name: str) -> GlobSet | None:
    value = overrides.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"'agenthub.{name}' must be a list of strings")
    return GlobSet(value)


@dataclass
class LoopState:
    """One loop's running record."""

    loop_id: str
    steps: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    executed: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    usage: dict[str, int] = field(
        default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    )
    turns: int = 0
    stopped: str | None = None


class AgentMode:
    """The executor of Agent Mode requests (`hub.call.agent_loop`): tool injection and the loop.

    The request itself is not metered or scanned: every model turn is an `llm.chat` call and every tool run an
    `mcp.tool` (or Code Mode) call through the pipeline, with the request's call id as parent.
    """

    def __init__(
        self, pipeline: Callable[[], Handler | None], view: Callable[[], RegistryView], codemode: CodeMode
    ) -> None:
        self._pipeline = pipeline
        self._view = view
        self._codemode = codemode

    def _run(self) -> Handler:
        pipeline = self._pipeline()
        if pipeline is None:
            raise Internal("the hub is not running")
        return pipeline

    async def __call__(self, call: Call) -> Outcome:
        principal = call.principal
        assert principal is not None
        body: dict[str, Any] = call.payload
        options = agent_options(principal, body.get("agenthub"))
        stream = bool(call.context.get("stream"))
        if not options.active:  # tools offered, the application runs them (one turn)
            request, _ = self.inject(body, principal, options)
            return await self._run()(self._turn_call(call, request, stream))
        if stream:
            return Outcome(AgentStream(self.stream(call, body, options)))
        return await self.complete(call, body, options)

    def _turn_call(self, loop: Call, request: dict[str, Any], stream: bool) -> Call:
        estimate = len(orjson.dumps(request["messages"])) // 4
        context = {
            **loop.context,
            "stream": stream,
            "prompt_estimate": estimate,
            "token_estimate": estimate + output_estimate(request),
        }
        return Call(
            door="openai",
            operation="llm.chat",
            target=loop.target,
            payload={**request, "stream": stream},
            principal=loop.principal,
            parent_id=loop.call_id,
            context=context,
        )

    # -- tools offered -----------------------------------------------------------------------------------------

    def mcp_tools(self, principal: Principal, options: AgentOptions) -> list[dict[str, Any]]:
        """The MCP tools offered to the model for this key, as OpenAI tool definitions (sorted by name)."""
        key = principal.key
        view = self._view()
        tools: list[dict[str, Any]] = []
        hidden = False
        for name in sorted(view.tools):
            entry = view.tools[name]
            if not principal.grant.allows(entry) or not options.offers(name):
                continue
            if self._codemode.hides(key, entry):
                hidden = True
                continue
            definition = entry.definition.model_dump(by_alias=True, mode="json", exclude_none=True)
            tools.append(_openai_tool(name, definition.get("description"), definition.get("inputSchema")))
        if hidden:
            meta = self._codemode.meta_tools(principal, view)
            tools = [_openai_tool(str(t["name"]), t.get("description"), t.get("inputSchema")) for t in meta] + tools
        return tools

    def inject(
        self, body: dict[str, Any], principal: Principal, options: AgentOptions
    ) -> tuple[dict[str, Any], set[str]]:
        """The request body with the MCP tools merged in (the application's tools win name collisions), and the
        names of the MCP tools that were added."""
        own = body.get("tools") or []
        if not isinstance(own, list):
            raise BadRequest("'tools' must be an array")
        taken = {t.get("function", {}).get("name") for t in own if isinstance(t, dict)}
        added = [t for t in self.mcp_tools(principal, options) if t["function"]["name"] not in taken]
        names = {t["function"]["name"] for t in added}
        out = {k: v for k, v in body.items() if k != "agenthub"}
        if added:
            out["tools"] = [*own, *added]
        return out, names

    # -- one turn and its tools ----------------------------------------------------------------------------------

    def _approved(
        self, principal: Principal, options: AgentOptions, mcp_names: set[str], call: Mapping[str, Any]
    ) -> bool:
        name = call.get("function", {}).get("name")
        if name not in mcp_names:
            return False
        if name == EXECUTE:
            code = _arguments(call).get("code")
            return (
                options.approves(EXECUTE)
                or isinstance(code, str)
                and self._codemode.auto_approved(principal, self._view(), code, options.approves)
            )
        return options.approves(name)

    def _to_run(
        self,
        principal: Principal,
        options: AgentOptions,
        mcp_names: set[str],
        calls: Sequence[Mapping[str, Any]],
        state: LoopState,
    ) -> list[Mapping[str, Any]]:
        """The tool calls of a turn the loop runs now; none when the loop stops (with why, in `state.stopped`)."""
        if not calls:
            return []
        approved = [c for c in calls if self._approved(principal, options, mcp_names, c)]
        if not approved or state.turns >= options.max_depth:
            state.stopped = "max_depth" if approved else "approval_required"
            return []
        return approved

    async def _run_tool(
        self, principal: Principal, options: AgentOptions, call: Mapping[str, Any], state: LoopState
    ) -> dict[str, Any]:
        """Execute one approved tool call; failures become the tool message the model reads.

        A program approved because every tool it names is approved runs with the principal narrowed to the
        approved tools: whatever the program does at run time, its tool calls are authorised one by one."""
        name = str(call.get("function", {}).get("name"))
        started = time.perf_counter()
        view = self._view()
        error = False
        try:
            arguments = _arguments(call)
            operation: Operation = "mcp.tool"
            runner = principal
            if self._codemode.handles(principal, view, name):
                operation = "code.run" if name == EXECUTE else "code.read"
                if name == EXECUTE and not options.approves(EXECUTE):
                    runner = options.confine(principal)
            outcome = await self._run()(
                Call(
                    door="agent",
                    operation=operation,
                    target=name,
                    payload=arguments,
                    principal=runner,
                    parent_id=state.loop_id,
                )
            )
            result: dict[str, Any] = outcome.value
            content = tool_message_content(result)
            error = bool(result.get("isError"))
        except HubError as exc:
            content, error = f"error: {exc.message}", True
        state.steps.append(
            {
                "type": "tool_execution",
                "tool_call_id": call.get("id"),
                "name": name,
                "is_error": error,
                "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            }
        )
        return {"role": "tool", "tool_call_id": call.get("id"), "content": content}

    async def _run_tools(
        self, principal: Principal, options: AgentOptions, calls: Sequence[Mapping[str, Any]], state: LoopState
    ) -> list[dict[str, Any]]:
        results: list[dict[str, Any] | None] = [None] * len(calls)

        async def one(i: int, call: Mapping[str, Any]) -> None:
            results[i] = await self._run_tool(principal, options, call, state)

        async with anyio.create_task_group() as tg:
            for i, call in enumerate(calls):
                tg.start_soon(one, i, call)
        return [r for r in results if r is not None]

    # -- the loop (non-streaming) ----------------------------------------------------------------------------------

    async def complete(self, loop: Call, body: dict[str, Any], options: AgentOptions) -> Outcome:
        """Run the loop without streaming; the final OpenAI response with the `agenthub` field."""
        principal = loop.principal
        assert principal is not None
        request, mcp_names = self.inject(body, principal, options)
        state = LoopState(loop_id=loop.call_id)
        messages = list(request["messages"])
        response: dict[str, Any] = {}
        headers: dict[str, str] = {}
        deadline = Deadline(options.deadline_s)
        while True:
            turn = self._turn_call(loop, {**request, "messages": messages}, False)
            outcome = await deadline.within(self._run(), turn)
            if outcome is EXPIRED:  # the model has not answered: nothing to run, nothing pending
                state.stopped = "deadline"
                response = _cut_response(state, str(body.get("model")), response)
                break
            response = outcome.value
            headers = outcome.headers
            state.turns += 1
            _add_usage(state.usage, response.get("usage"))
            message = _first_message(response)
            calls = message.get("tool_calls") or []
            approved = self._to_run(principal, options, mcp_names, calls, state)
            if not approved:
                break
            results = await deadline.within(self._run_tools, principal, options, approved, state)
            if results is EXPIRED:  # the turn's tool calls come back pending, as the model made them
                state.stopped = "deadline"
                break
            step = [_assistant(message, calls), *results]
            pending = [c for c in calls if c not in approved]
            state.executed.extend(step)
            messages.extend(step)
            if pending:
                state.stopped = "approval_required"
                response = _pending_response(response, message, pending)
                break
        shown = {k: v for k, v in headers.items() if k.startswith(("x-agenthub-", "x-ratelimit"))}
        return Outcome(self._finish(response, state), headers=shown)

    def _finish(self, response: dict[str, Any], state: LoopState) -> dict[str, Any]:
        out = dict(response)
        if state.turns > 1 or state.steps or state.stopped == "deadline":
            out["usage"] = dict(state.usage)
        out["agenthub"] = {
            "loop_id": state.loop_id,
            "turns": state.turns,
            "steps": state.steps,
            "executed_messages": state.executed,
            "stopped": state.stopped,
        }
        return out

    # -- the loop (streaming) -------------------------------------------------------------------------------------

    async def stream(
        self, loop: Call, body: dict[str, Any], options: AgentOptions
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Run the loop streaming: every turn's chunks as they come, a chunk per tool execution (with
        `choices: []` and an `agenthub` event), and a final chunk with the loop's summary.

        The deadline bounds the loop's own waits (opening a turn, each of its chunks, the tool runs), each in a
        scope closed before the next `yield` (see `hub.executors.deadline`): the reader's time between chunks is
        never cut, and a loop stopped by the deadline still ends with its final chunk (with a `finish_reason`)."""
        principal = loop.principal
        assert principal is not None
        request, mcp_names = self.inject(body, principal, options)
        state = LoopState(loop_id=loop.call_id)
        messages = list(request["messages"])
        deadline = Deadline(options.deadline_s)
        finish: str | None = None
        while True:
            acc = _Accumulator()
            turn = self._turn_call(loop, {**request, "messages": messages}, True)
            opened = await deadline.within(self._run(), turn)
            if opened is EXPIRED:
                state.stopped, finish = "deadline", "length"
                break
            chunks: OutcomeStream = opened.value
            source = aiter(chunks)
            try:
                while True:
                    chunk = await deadline.within(_next, source)
                    if chunk is None or chunk is EXPIRED:
                        break
                    acc.add(chunk)
                    yield chunk
            finally:
                await chunks.aclose()
            if chunk is EXPIRED:  # the turn was cut: the model's answer is incomplete
                state.stopped, finish = "deadline", "length"
                break
            state.turns += 1
            _add_usage(state.usage, acc.usage)
            message = acc.message()
            calls = message.get("tool_calls") or []
            approved = self._to_run(principal, options, mcp_names, calls, state)
            if not approved:
                break
            before = len(state.steps)
            results = await deadline.within(self._run_tools, principal, options, approved, state)
            if results is EXPIRED:  # the turn's tool calls, as streamed, are pending
                state.stopped, finish = "deadline", "tool_calls"
                break
            for step in state.steps[before:]:
                yield _event_chunk(acc.chunk_id, {**step})
            executed = [_assistant(message, calls), *results]
            state.executed.extend(executed)
            messages.extend(executed)
            pending = [c for c in calls if c not in approved]
            if pending:
                state.stopped = "approval_required"
                yield _event_chunk(acc.chunk_id, {"type": "approval_required", "tool_calls": pending})
                break
        yield _summary_chunk(self._finish({}, state)["agenthub"], state, str(body.get("model")), finish)


class _Accumulator:
    """Rebuilds the assistant message (content and tool calls) from a turn's streamed chunks."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.usage: Mapping[str, Any] | None = None
        self.chunk_id = ""

    def add(self, chunk: Mapping[str, Any]) -> None:
        self.chunk_id = str(chunk.get("id") or self.chunk_id)
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.content.append(delta["content"])
            for part in delta.get("tool_calls") or []:
                slot = self.calls.setdefault(
                    int(part.get("index", 0)), {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                )
                if part.get("id"):
                    slot["id"] = part["id"]
                function = part.get("function") or {}
                slot["function"]["name"] += function.get("name") or ""
                slot["function"]["arguments"] += function.get("arguments") or ""

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or None}
        if self.calls:
            message["tool_calls"] = [self.calls[i] for i in sorted(self.calls)]
        return message


def _openai_tool(name: str, description: Any, schema: Any) -> dict[str, Any]:
    parameters = schema if isinstance(schema, dict) and schema else {"type": "object", "properties": {}}
    function: dict[str, Any] = {"name": name, "parameters": parameters}
    if description:
        function["description"] = str(description)
    return {"type": "function", "function": function}


def _arguments(call: Mapping[str, Any]) -> dict[str, Any]:
    raw = call.get("function", {}).get("arguments") or "{}"
    try:
        value = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError:
        raise BadRequest("the model sent tool arguments that are not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest("tool arguments must be a JSON object")
    return value


def _first_message(response: Mapping[str, Any]) -> dict[str, Any]:
    choices = response.get("choices") or [{}]
    message: dict[str, Any] = choices[0].get("message") or {}
    return message


def _assistant(message: Mapping[str, Any], calls: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"role": "assistant", "content": message.get("content"), "tool_calls": list(calls)}


def _pending_response(response: dict[str, Any], message: Mapping[str, Any], pending: list[Any]) -> dict[str, Any]:
    choice = dict((response.get("choices") or [{}])[0])
    choice["message"] = {**message, "tool_calls": pending}
    choice["finish_reason"] = "tool_calls"
    return {**response, "choices": [choice]}


def _add_usage(total: dict[str, int], usage: Any) -> None:
    if isinstance(usage, dict):
        for name in total:
            value = usage.get(name)
            if isinstance(value, int):
                total[name] += value


async def _next(source: AsyncIterator[dict[str, Any]]) -> dict[str, Any] | None:
    """The next item of `source`, or None at its end."""
    return await anext(source, None)


def _cut_response(state: LoopState, model: str, last: Mapping[str, Any]) -> dict[str, Any]:
    """The response of a loop whose deadline came while the model was answering: no message content and no
    tool call (those of earlier turns ran and are in `executed_messages`), `finish_reason: "length"`."""
    return {
        "id": last.get("id") or state.loop_id,
        "object": "chat.completion",
        "created": last.get("created") or int(time.time()),
        "model": last.get("model") or model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "length"}],
    }


def _summary_chunk(summary: dict[str, Any], state: LoopState, model: str, finish: str | None) -> dict[str, Any]:
    """The last chunk of a streamed loop: summed usage and the summary. When the loop did not end with a turn's
    own finish (the deadline cut a turn or the tool runs), it carries the `finish_reason` the response would."""
    choices = [] if finish is None else [{"index": 0, "delta": {}, "finish_reason": finish}]
    return {
        "id": state.loop_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": dict(state.usage),
        "agenthub": {"type": "summary", **summary},
    }


def _event_chunk(chunk_id: str, event: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": chunk_id or "agenthub",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "agenthub",
        "choices": [],
        "agenthub": event,
    }


__all__ = ["AgentMode", "AgentOptions", "agent_options"]

"""Agent Mode's model <-> tool loop, once for every wire format.

The loop calls the model (a turn: a call through the pipeline, the request's id as parent), runs the tool calls
the key approves (`hub.executors.agent_tools`), appends the turn and the results to the conversation and calls the
model again, until the model asks for nothing the hub may run, the depth is reached, or the deadline passes. What
differs between the OpenAI and the Anthropic door (the turn's operation, how a response and its tool calls read,
how results are written back, what a streaming client sees) is a `Dialect`; the control flow, the approval rule,
the depth and the deadline live here only.

The deadline bounds the loop's own waits (opening a turn, each of its items, the tool runs), each in a scope closed
before the next `yield` (`hub.executors.deadline`): a streaming reader's time between items is never cut.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from hub.call import Call, Door, Operation, Outcome, Principal
from hub.executors.agent_options import AgentOptions
from hub.executors.agent_tools import AgentTools, LoopState, ToolRequest, ToolResult
from hub.executors.deadline import EXPIRED, Deadline
from hub.executors.llm import output_estimate
from hub.executors.stream import OutcomeStream

__all__ = ["Dialect", "ToolLoop", "Turn", "TurnReader"]

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Turn:
    """One model turn as the loop reads it: the assistant message to append to the conversation, its tool calls
    and its usage."""

    message: JSON
    calls: list[ToolRequest]
    usage: Mapping[str, Any] | None


class TurnReader(Protocol):
    """Reads one streamed turn: which of its items the client gets now, and the turn once it has ended."""

    def add(self, item: JSON) -> list[JSON]:
        """The items to send the client for `item`."""
        ...

    def turn(self) -> Turn:
        """The turn read so far (called once its stream has ended)."""
        ...

    def pending(self, calls: Sequence[ToolRequest]) -> list[JSON]:
        """The items that show the client `calls`, left to it, if `add` held them back."""
        ...


class Dialect(Protocol):
    """What the loop needs to know about one wire format."""

    usage_fields: tuple[str, ...]
    """The integer usage members summed over the turns."""

    def turn_call(self, loop: Call, request: JSON, stream: bool) -> Call:
        """The call of one model turn on `request` (the conversation so far)."""
        ...

    def read(self, response: Mapping[str, Any]) -> Turn:
        """A non-streamed turn's response."""
        ...

    def step(self, turn: Turn, results: Sequence[ToolResult]) -> list[JSON]:
        """The messages a turn and its tool results add to the conversation."""
        ...

    def pending_response(self, response: Mapping[str, Any], turn: Turn, pending: Sequence[ToolRequest]) -> JSON:
        """A turn's response, showing only the calls left to the client."""
        ...

    def expired(self, state: LoopState, request: JSON, last: Mapping[str, Any], tools_ran: bool) -> JSON:
        """The response of a loop stopped by its deadline (`tools_ran`: while tools ran, `last` being the turn
        that asked for them; otherwise while the model answered), or raise the door's error for it."""
        ...

    def finish(self, response: Mapping[str, Any], state: LoopState) -> JSON:
        """The loop's final response: `response` with the summed usage and the loop's summary."""
        ...

    def reader(self, state: LoopState, first: bool) -> TurnReader:
        """A reader for the next streamed turn (`first`: the first of the loop)."""
        ...

    def tool_event(self, state: LoopState, step: JSON) -> JSON:
        """The item telling a streaming client that a tool ran."""
        ...

    def approval_event(self, state: LoopState, pending: Sequence[ToolRequest]) -> JSON:
        """The item telling a streaming client that the loop stopped for calls it must approve."""
        ...

    def end(self, state: LoopState, request: JSON, cut: str | None) -> Iterator[JSON]:
        """The last items of a streamed loop (`cut`: what the deadline stopped, `model` or `tools`, else None); may
        raise the door's error for a loop stopped by the deadline, after yielding what the client should see."""
        ...


class ToolLoop:
    """Runs Agent Mode loops on the pipeline, for any `Dialect`."""

    def __init__(self, tools: AgentTools) -> None:
        self.tools = tools

    async def complete(
        self, dialect: Dialect, loop: Call, request: JSON, mcp_names: set[str], options: AgentOptions
    ) -> Outcome:
        """Run the loop without streaming: the final response (the door's wire format) with `agenthub`."""
        principal = _principal(loop)
        state = LoopState(loop.call_id, dict.fromkeys(dialect.usage_fields, 0))
        messages = list(request["messages"])
        response: Mapping[str, Any] = {}
        headers: dict[str, str] = {}
        deadline = Deadline(options.deadline_s)
        while True:
            turn_call = dialect.turn_call(loop, {**request, "messages": messages}, False)
            outcome = await deadline.within(self.tools.run(), turn_call)
            if outcome is EXPIRED:  # the model has not answered: nothing to run, nothing pending
                state.stopped = "deadline"
                response = dialect.expired(state, request, response, False)
                break
            response = outcome.value
            headers = outcome.headers
            state.turns += 1
            turn = dialect.read(response)
            state.add_usage(turn.usage)
            approved = self.tools.to_run(principal, options, mcp_names, turn.calls, state)
            if not approved:
                break
            results = await deadline.within(self.tools.run_all, principal, options, approved, state)
            if results is EXPIRED:  # the turn's tool calls come back pending, as the model made them
                state.stopped = "deadline"
                response = dialect.expired(state, request, response, True)
                break
            step = dialect.step(turn, results)
            state.executed.extend(step)
            messages.extend(step)
            pending = [c for c in turn.calls if c not in approved]
            if pending:
                state.stopped = "approval_required"
                response = dialect.pending_response(response, turn, pending)
                break
        shown = {k: v for k, v in headers.items() if k.startswith(("x-agenthub-", "x-ratelimit"))}
        return Outcome(dialect.finish(response, state), headers=shown)

    async def stream(
        self, dialect: Dialect, loop: Call, request: JSON, mcp_names: set[str], options: AgentOptions
    ) -> AsyncGenerator[JSON, None]:
        """Run the loop streaming: each turn's items as the dialect's reader lets them through, an item per tool
        run, one when the loop stops for approval, and the dialect's last items."""
        principal = _principal(loop)
        state = LoopState(loop.call_id, dict.fromkeys(dialect.usage_fields, 0))
        messages = list(request["messages"])
        deadline = Deadline(options.deadline_s)
        cut: str | None = None
        while True:
            reader = dialect.reader(state, state.turns == 0)
            turn_call = dialect.turn_call(loop, {**request, "messages": messages}, True)
            opened = await deadline.within(self.tools.run(), turn_call)
            if opened is EXPIRED:
                state.stopped, cut = "deadline", "model"
                break
            chunks: OutcomeStream = opened.value
            source = aiter(chunks)
            try:
                while True:
                    item = await deadline.within(_next, source)
                    if item is None or item is EXPIRED:
                        break
                    for out in reader.add(item):
                        yield out
            finally:
                await chunks.aclose()
            if item is EXPIRED:  # the turn was cut: the model's answer is incomplete
                state.stopped, cut = "deadline", "model"
                break
            state.turns += 1
            turn = reader.turn()
            state.add_usage(turn.usage)
            approved = self.tools.to_run(principal, options, mcp_names, turn.calls, state)
            if not approved:
                for out in reader.pending(turn.calls):
                    yield out
                break
            before = len(state.steps)
            results = await deadline.within(self.tools.run_all, principal, options, approved, state)
            if results is EXPIRED:  # the turn's tool calls, as streamed, are pending
                state.stopped, cut = "deadline", "tools"
                break
            for step in state.steps[before:]:
                yield dialect.tool_event(state, step)
            executed = dialect.step(turn, results)
            state.executed.extend(executed)
            messages.extend(executed)
            pending = [c for c in turn.calls if c not in approved]
            if pending:
                state.stopped = "approval_required"
                for out in reader.pending(pending):
                    yield out
                yield dialect.approval_event(state, pending)
                break
        for out in dialect.end(state, request, cut):
            yield out


def turn_call(
    loop: Call, door: Door, operation: Operation, request: dict[str, Any], stream: bool, counted: Any
) -> Call:
    """One model turn of `loop` as a call of its own (same principal, the loop as parent): `request` sent with
    `stream`, its token estimates from the size of `counted` (the part of the request that is prompt)."""
    estimate = len(orjson.dumps(counted)) // 4
    context = {k: v for k, v in loop.context.items() if k != "raw"}
    context.update(stream=stream, prompt_estimate=estimate, token_estimate=estimate + output_estimate(request))
    return Call(
        door=door,
        operation=operation,
        target=loop.target,
        payload={**request, "stream": stream},
        principal=loop.principal,
        parent_id=loop.call_id,
        context=context,
    )


def _principal(loop: Call) -> Principal:
    principal = loop.principal
    assert principal is not None
    return principal


async def _next(source: AsyncIterator[JSON]) -> JSON | None:
    """The next item of `source`, or None at its end."""
    return await anext(source, None)

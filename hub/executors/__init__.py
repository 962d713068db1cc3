"""The terminal step of the pipeline: each operation's executor, and the dispatch between them.

`Executors` is what `compose` puts at the end of the stages: a call whose payload the door could not read
(`Malformed`) is refused here, after it was authenticated, counted and recorded like any other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from connectors.registry import RegistryView
from hub.call import Call, Malformed, Operation, Outcome, agent_loop
from hub.errors import BadRequest
from hub.executors.llm import unknown_model
from hub.pipeline import Handler

__all__ = ["AgentHandler", "Executors"]


class AgentHandler(Protocol):
    """The Agent Mode executor as the dispatch sees it: it runs Agent Mode requests, and rewrites a token count as
    the request it counts will be sent (`hub.executors.agent.AgentMode`)."""

    async def __call__(self, call: Call) -> Outcome: ...

    def count_request(self, call: Call) -> Call: ...


class Executors:
    """Routes each call to its operation's executor."""

    def __init__(
        self,
        table: dict[Operation, Handler],
        *,
        agent: AgentHandler,
        llm: Handler | None,
    ) -> None:
        """`table` maps MCP and Code Mode operations to their executors; `llm` serves `llm.*` (None: no providers
        are configured, so every model is unknown and the model list is empty); `agent` runs Agent Mode loops and adds
        the MCP tools a key offers in chat to the requests `llm.count_tokens` counts."""
        self._table = table
        self._agent = agent
        self._llm = llm

    async def __call__(self, call: Call) -> Outcome:
        if isinstance(call.payload, Malformed):
            raise call.payload.error
        operation = call.operation
        if operation.startswith("llm."):
            if agent_loop(call):
                return await self._agent(call)
            if operation == "llm.count_tokens":
                call = self._agent.count_request(call)
            if self._llm is None:
                if operation == "llm.models" and not call.target:
                    return Outcome({"object": "list", "data": []})
                raise unknown_model(call.target)
            return await self._llm(call)
        handler = self._table.get(operation)
        if handler is None:
            raise BadRequest(f"operation {operation} is not served here")
        return await handler(call)


def with_view(run: Callable[[Call, RegistryView], Awaitable[Outcome]], view: Callable[[], RegistryView]) -> Handler:
    """An executor from a method that also takes the registry view current when the call runs."""

    async def execute(call: Call) -> Outcome:
        return await run(call, view())

    return execute

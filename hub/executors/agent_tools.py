"""The MCP side of Agent Mode, the same for every wire format: which tools a key's model is offered, which of the
model's tool calls the hub may run now, and running them through the pipeline.

A wire format (`hub.executors.agent_runner.Dialect`) reads the model's tool calls into `ToolRequest`s and writes the
`ToolResult`s back in its own shape; everything here sees only those, so the approval rule and the way a tool
runs (an `mcp.tool` or Code Mode call through the pipeline, door `agent`, the loop's id as parent) cannot drift
between the doors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from connectors.registry import RegistryView
from hub.call import Call, Operation, Principal
from hub.errors import BadRequest, HubError, Internal
from hub.executors.agent_options import AgentOptions
from hub.executors.code import EXECUTE, CodeMode
from hub.executors.mcp import tool_message_content
from hub.pipeline import Handler

__all__ = ["AgentTools", "LoopState", "OfferedTool", "ToolRequest", "ToolResult"]


@dataclass(frozen=True, slots=True)
class OfferedTool:
    """An MCP tool (or Code Mode meta-tool) offered to the model, before a wire format shapes it."""

    name: str
    description: str | None
    schema: dict[str, Any]


@dataclass(frozen=True, slots=True, eq=False)
class ToolRequest:
    """One tool call the model made: its id and name, its arguments (None with `error` when they could not be
    read) and the wire's own form of it (`raw`, returned as it is when the call is left to the client).

    Compared by identity: two calls with the same arguments in one turn are still two calls."""

    id: str
    name: str
    raw: Mapping[str, Any]
    arguments: dict[str, Any] | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What running a `ToolRequest` gave: the text the model reads, and whether the tool failed."""

    id: str
    content: str
    is_error: bool


@dataclass
class LoopState:
    """One loop's running record: steps run, messages added to the conversation, usage summed over turns."""

    loop_id: str
    usage: dict[str, int]
    steps: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    executed: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    turns: int = 0
    stopped: str | None = None

    def add_usage(self, usage: Any) -> None:
        """Add a turn's usage (its integer members the loop sums; others are ignored)."""
        if isinstance(usage, Mapping):
            for name in self.usage:
                value = usage.get(name)
                if isinstance(value, int):
                    self.usage[name] += value

    def summary(self) -> dict[str, Any]:
        """The `agenthub` member of a loop's answer."""
        return {
            "loop_id": self.loop_id,
            "turns": self.turns,
            "steps": self.steps,
            "executed_messages": self.executed,
            "stopped": self.stopped,
        }


class AgentTools:
    """Offers a key's MCP tools and runs the approved ones through the pipeline."""

    def __init__(
        self, pipeline: Callable[[], Handler | None], view: Callable[[], RegistryView], codemode: CodeMode
    ) -> None:
        self._pipeline = pipeline
        self._view = view
        self._codemode = codemode

    def run(self) -> Handler:
        """The running hub's pipeline.

        Raises:
            Internal: the hub has stopped.
        """
        pipeline = self._pipeline()
        if pipeline is None:
            raise Internal("the hub is not running")
        return pipeline

    def offered(self, principal: Principal, options: AgentOptions) -> list[OfferedTool]:
        """The MCP tools offered to the model for this key, sorted by name (Code Mode's meta-tools first, in place of
        the tools Code Mode hides)."""
        view = self._view()
        tools: list[OfferedTool] = []
        hidden = False
        for name in sorted(view.tools):
            entry = view.tools[name]
            if not principal.grant.allows(entry) or not options.offers(name):
                continue
            if self._codemode.hides(principal.key, entry):
                hidden = True
                continue
            definition = entry.definition.model_dump(by_alias=True, mode="json", exclude_none=True)
            tools.append(_offered(name, definition.get("description"), definition.get("inputSchema")))
        if hidden:
            meta = self._codemode.meta_tools(principal, view)
            tools = [_offered(str(t["name"]), t.get("description"), t.get("inputSchema")) for t in meta] + tools
        return tools

    def approved(self, principal: Principal, options: AgentOptions, mcp_names: set[str], call: ToolRequest) -> bool:
        """Whether the hub may run `call` without asking: an MCP tool it offered, approved by `auto_execute` (a Code
        Mode program: approved itself, or every tool it can call is)."""
        name = call.name
        if name not in mcp_names:
            return False
        if name == EXECUTE:
            code = (call.arguments or {}).get("code")
            return (
                options.approves(EXECUTE)
                or isinstance(code, str)
                and self._codemode.auto_approved(principal, self._view(), code, options.approves)
            )
        return options.approves(name)

    def to_run(
        self,
        principal: Principal,
        options: AgentOptions,
        mcp_names: set[str],
        calls: Sequence[ToolRequest],
        state: LoopState,
    ) -> list[ToolRequest]:
        """The tool calls of a turn the loop runs now; none when the loop stops (with why, in `state.stopped`)."""
        if not calls:
            return []
        approved = [c for c in calls if self.approved(principal, options, mcp_names, c)]
        if not approved or state.turns >= options.max_depth:
            state.stopped = "max_depth" if approved else "approval_required"
            return []
        return approved

    async def run_all(
        self, principal: Principal, options: AgentOptions, calls: Sequence[ToolRequest], state: LoopState
    ) -> list[ToolResult]:
        """Run `calls` in parallel; the results in the calls' order."""
        results: list[ToolResult | None] = [None] * len(calls)

        async def one(i: int, call: ToolRequest) -> None:
            results[i] = await self._run_one(principal, options, call, state)

        async with anyio.create_task_group() as tg:
            for i, call in enumerate(calls):
                tg.start_soon(one, i, call)
        return [r for r in results if r is not None]

    async def _run_one(
        self, principal: Principal, options: AgentOptions, call: ToolRequest, state: LoopState
    ) -> ToolResult:
        """Execute one approved tool call; failures become the result the model reads.

        A program approved because every tool it names is approved runs with the principal narrowed to the
        approved tools: whatever the program does at run time, its tool calls are authorised one by one."""
        name = call.name
        started = time.perf_counter()
        error = False
        try:
            if call.arguments is None:
                raise BadRequest(call.error or "tool arguments must be a JSON object")
            operation: Operation = "mcp.tool"
            runner = principal
            if self._codemode.handles(principal, self._view(), name):
                operation = "code.run" if name == EXECUTE else "code.read"
                if name == EXECUTE and not options.approves(EXECUTE):
                    runner = options.confine(principal)
            outcome = await self.run()(
                Call(
                    door="agent",
                    operation=operation,
                    target=name,
                    payload=call.arguments,
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
                "tool_call_id": call.id,
                "name": name,
                "is_error": error,
                "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            }
        )
        return ToolResult(call.id, content, error)


def _offered(name: str, description: Any, schema: Any) -> OfferedTool:
    parameters: dict[str, Any] = schema if isinstance(schema, dict) and schema else {"type": "object", "properties": {}}
    return OfferedTool(name, str(description) if description else None, parameters)

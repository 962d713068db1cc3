"""Agent Mode: MCP tools offered to the model, and the model <-> tool loop run in the hub for approved tools, on
both LLM doors (Chat Completions and Anthropic Messages).

Tool injection: a key's `chat_tools` globs (narrowed, never widened, by the request's `agenthub.chat_tools`)
choose which MCP tools the model is offered, in the request's own tool format, next to the client's own tools (on
a name collision the client's tool wins and the MCP tool is left out). Code Mode tools are offered as the four
meta-tools instead.

Explicit execution (the default): the model's tool calls come back unchanged; the client runs them (`POST
/v1/mcp/tool/execute`, or `/mcp`) and calls the model again.

Agent Mode (a key's `auto_execute` globs, narrowed by the request): while the model asks only for approved
tools, the hub runs them (in parallel), appends the results and calls the model again, up to `max_agent_depth`
turns and an overall deadline (`hub.executors.agent_runner`). When the model asks for anything else, the hub stops
and returns the pending calls; the messages it already added to the conversation come back in
`agenthub.executed_messages`, with one entry per executed tool in `agenthub.steps`. Every model turn is a call of
the request's own operation (`llm.chat` or `llm.messages`) and every tool run an `mcp.tool` (or Code Mode) call
through the pipeline (limits, guardrails, request log), all linked by the loop's id as parent. How each wire
format reads and writes the loop: `hub.executors.agent_chat`, `hub.executors.agent_messages`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from connectors.registry import RegistryView
from hub.call import Call, Outcome, Principal
from hub.errors import BadRequest
from hub.executors.agent_chat import ChatDialect, chat_tool, chat_tool_name
from hub.executors.agent_messages import MessagesDialect, messages_tool, messages_tool_name
from hub.executors.agent_options import AgentOptions, agent_options
from hub.executors.agent_runner import ToolLoop
from hub.executors.agent_tools import AgentTools, OfferedTool
from hub.executors.code import CodeMode
from hub.executors.stream import AgentStream
from hub.pipeline import Handler

__all__ = ["AgentMode", "AgentOptions", "MessagesAgentStream", "agent_options"]

JSON = dict[str, Any]


class MessagesAgentStream(AgentStream):
    """A streamed Agent Mode loop on the Messages door: its items are Anthropic events with their bytes."""

    messages = True


class AgentMode:
    """The executor of Agent Mode requests (`hub.call.agent_loop`): tool injection and the loop.

    The request itself is not metered or scanned: every model turn and every tool run is a call through the
    pipeline, with the request's call id as parent.
    """

    def __init__(
        self, pipeline: Callable[[], Handler | None], view: Callable[[], RegistryView], codemode: CodeMode
    ) -> None:
        self._tools = AgentTools(pipeline, view, codemode)
        self._loop = ToolLoop(self._tools)

    async def __call__(self, call: Call) -> Outcome:
        principal = call.principal
        assert principal is not None
        body: JSON = call.payload
        options = agent_options(principal, body.get("agenthub"))
        stream = bool(call.context.get("stream"))
        if call.operation == "llm.messages":
            request, mcp_names = self.inject(body, principal, options, messages_tool, messages_tool_name)
            dialect: ChatDialect | MessagesDialect = MessagesDialect(options, mcp_names)
        else:
            request, mcp_names = self.inject(body, principal, options, chat_tool, chat_tool_name)
            dialect = ChatDialect()
        if not options.active:  # tools offered, the client runs them (one turn)
            return await self._tools.run()(dialect.turn_call(call, request, stream))
        if stream:
            loop = self._loop.stream(dialect, call, request, mcp_names, options)
            return Outcome(MessagesAgentStream(loop) if isinstance(dialect, MessagesDialect) else AgentStream(loop))
        return await self._loop.complete(dialect, call, request, mcp_names, options)

    def count_request(self, call: Call) -> Call:
        """An `llm.count_tokens` call as the request it counts will be sent: with the MCP tools the key offers in
        chat merged in, and the request's `agenthub` options taken out, exactly as `llm.messages` does (so a client
        that checks whether its context is nearly full counts the tools the model will see). Any other call, or a
        key that offers no tools in chat, is returned as it is."""
        principal = call.principal
        body = call.payload
        if principal is None or call.operation != "llm.count_tokens" or not isinstance(body, dict):
            return call
        if not principal.key.chat_tools and "agenthub" not in body:
            return call
        options = agent_options(principal, body.get("agenthub"))
        request, _ = self.inject(body, principal, options, messages_tool, messages_tool_name)
        return replace(call, payload=request)

    def inject(
        self,
        body: JSON,
        principal: Principal,
        options: AgentOptions,
        shape: Callable[[OfferedTool], JSON],
        name_of: Callable[[Any], str | None],
    ) -> tuple[JSON, set[str]]:
        """The request body with the MCP tools merged in (`shape` writes one in the request's format; the client's
        tools, named by `name_of`, win name collisions), and the names of the MCP tools that were added."""
        own = body.get("tools") or []
        if not isinstance(own, list):
            raise BadRequest("'tools' must be an array")
        taken = {name_of(t) for t in own}
        added = [t for t in self._tools.offered(principal, options) if t.name not in taken]
        out = {k: v for k, v in body.items() if k != "agenthub"}
        if added:
            out["tools"] = [*own, *(shape(t) for t in added)]
        return out, {t.name for t in added}

"""The terminal step of the pipeline: run an authorised `Call` against the back ends.

Upstream failures become `HubError`s here, so every door reports them the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types

from connectors.errors import UnknownTarget, UpstreamError, UpstreamProtocolError, UpstreamTimeout
from connectors.registry import Entry, Registry
from connectors.upstream import Upstream
from hub.call import Call, Outcome
from hub.errors import BadRequest, HubError, NotFound, UpstreamFailed, UpstreamTimedOut

UpstreamFor = Callable[[Call, str], Awaitable[Upstream]]
"""Picks the upstream session for a call: the shared one, or the caller's own for per-client servers."""


class McpExecutor:
    """Runs `mcp.*` calls on the registry's upstreams."""

    def __init__(self, registry: Registry, upstream_for: UpstreamFor | None = None) -> None:
        self._registry = registry
        self._upstream_for = upstream_for or self._shared

    async def _shared(self, call: Call, server: str) -> Upstream:
        upstream = self._registry.upstreams.get(server)
        if upstream is None:
            raise UpstreamFailed(f"server '{server}' is not configured")
        return upstream

    async def __call__(self, call: Call) -> Outcome:
        try:
            if call.operation == "mcp.tool":
                return await self._tool(call)
            if call.operation == "mcp.prompt":
                entry = self._lookup(self._registry.view.prompts.get(call.target), "prompt", call.target)
                upstream = await self._upstream_for(call, entry.server)
                return Outcome(await upstream.get_prompt(entry.original, call.payload))
            if call.operation == "mcp.resource":
                entry = self._lookup(self._registry.view.resolve_resource(call.target), "resource", call.target)
                upstream = await self._upstream_for(call, entry.server)
                uri = entry.original if entry.original == call.target or "{" not in entry.original else call.target
                result = await upstream.read_resource(uri)
                return Outcome(_rename_contents(result, uri, call.target))
        except UpstreamError as exc:
            raise to_hub_error(exc) from None
        raise BadRequest(f"operation {call.operation} is not served here")

    async def _tool(self, call: Call) -> Outcome:
        entry = self._lookup(self._registry.view.tools.get(call.target), "tool", call.target)
        upstream = await self._upstream_for(call, entry.server)
        arguments: dict[str, Any] | None = call.payload
        result = await upstream.call_tool_raw(entry.original, arguments, progress=call.context.get("progress"))
        return Outcome(result, tool_error=bool(result.get("isError")))

    @staticmethod
    def _lookup(entry: Entry | None, kind: str, name: str) -> Entry:
        if entry is None:
            raise NotFound(f"unknown {kind}: {name}")
        return entry


def to_hub_error(exc: UpstreamError) -> HubError:
    """The hub's view of an upstream failure (never with the upstream's internals beyond its own message)."""
    if isinstance(exc, UnknownTarget):
        return NotFound(exc.message)
    if isinstance(exc, UpstreamTimeout):
        return UpstreamTimedOut(exc.message)
    if isinstance(exc, UpstreamProtocolError):
        return UpstreamFailed(f"upstream '{exc.server}' rejected the request: {exc.message}", jsonrpc_code=exc.code)
    return UpstreamFailed(exc.message)


def _rename_contents(result: types.ReadResourceResult, original: str, exposed: str) -> types.ReadResourceResult:
    if original == exposed:
        return result
    contents = [c.model_copy(update={"uri": exposed}) if str(c.uri) == original else c for c in result.contents]
    return result.model_copy(update={"contents": contents})

"""The terminal step for `mcp.*` calls: run an authorised `Call` on the registry's upstreams.

Results go back as plain JSON (the wire form), never as SDK model objects, so every later stage (output
guardrails above all) reads them. Upstream failures become `HubError`s here, so every door reports them the
same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

import mcp_types as types
import orjson

from connectors.errors import UnknownTarget, UpstreamError, UpstreamProtocolError, UpstreamTimeout
from connectors.registry import Entry, Registry, upstream_uri
from connectors.upstream import Upstream
from hub.call import Call, Outcome
from hub.errors import BadRequest, HubError, NotFound, UpstreamFailed, UpstreamTimedOut, unknown

UpstreamFor = Callable[[Call, str], Awaitable[Upstream]]
"""Picks the upstream session for a call: the shared one, or the caller's own for per-client servers."""
Subscriber = Callable[[str, str], Awaitable[None]]
"""What a door does to (un)subscribe a client to a resource: `(server, upstream URI)`; given in the call's context
(`subscribe`), since the door keeps which of its clients are subscribed."""


def wire(model: Any) -> Any:
    """An SDK result as the JSON the wire carries (a dict passes through)."""
    if isinstance(model, dict):
        return model
    dump: Callable[..., Any] = model.model_dump
    return dump(by_alias=True, mode="json", exclude_none=True)


class McpExecutor:
    """Runs `mcp.tool`, `mcp.prompt`, `mcp.resource`, `mcp.complete` and `mcp.subscribe` calls on the upstreams."""

    def __init__(self, registry: Registry, upstream_for: UpstreamFor | None = None) -> None:
        self._registry = registry
        self._upstream_for = upstream_for or self._shared

    async def _shared(self, call: Call, server: str) -> Upstream:
        return self.shared(server)

    def shared(self, server: str) -> Upstream:
        """The shared session of a configured server.

        Raises:
            UpstreamFailed: no such server (any more).
        """
        upstream = self._registry.upstreams.get(server)
        if upstream is None:
            raise UpstreamFailed(f"server '{server}' is not configured")
        return upstream

    async def __call__(self, call: Call) -> Outcome:
        operation = call.operation
        view = self._registry.view
        try:
            if operation == "mcp.tool":
                entry = view.tools.get(call.target)
                if entry is None:
                    raise unknown("tool", call.target)
                return await self._tool(call, entry)
            if operation == "mcp.prompt":
                entry = _found(view.prompts.get(call.target), "prompt", call.target)
                upstream = await self._upstream_for(call, entry.server)
                arguments: dict[str, str] | None = call.payload
                started = perf_counter()
                prompt = await upstream.get_prompt(entry.original, arguments)
                return Outcome(wire(prompt), upstream_ms=(perf_counter() - started) * 1000)
            if operation == "mcp.resource":
                entry = _found(view.resolve_resource(call.target, call.scope), "resource", call.target)
                return await self._read(call, entry)
            if operation == "mcp.complete":
                payload: dict[str, Any] = call.payload
                ref = payload.get("ref") or {}
                entry = _found(view.reference(ref.get("type"), call.target, call.scope), "reference", call.target)
                return await self._complete(call, entry)
            if operation == "mcp.subscribe":
                entry = _found(view.resolve_resource(call.target, call.scope), "resource", call.target)
                subscribe: Subscriber = call.context["subscribe"]
                await subscribe(entry.server, upstream_uri(entry, call.target, call.scope))
                return Outcome({})
        except UpstreamError as exc:
            raise to_hub_error(exc) from None
        raise BadRequest(f"operation {operation} is not served here")

    async def _tool(self, call: Call, entry: Entry) -> Outcome:
        upstream = await self._upstream_for(call, entry.server)
        arguments: dict[str, Any] | None = call.payload
        started = perf_counter()
        result = await upstream.call_tool_raw(entry.original, arguments, progress=call.context.get("progress"))
        upstream_ms = (perf_counter() - started) * 1000
        return Outcome(result, tool_error=bool(result.get("isError")), upstream_ms=upstream_ms)

    async def _read(self, call: Call, entry: Entry) -> Outcome:
        upstream = await self._upstream_for(call, entry.server)
        uri = upstream_uri(entry, call.target, call.scope)
        started = perf_counter()
        read = await upstream.read_resource(uri)
        upstream_ms = (perf_counter() - started) * 1000
        result: dict[str, Any] = wire(read)
        if uri != call.target:  # the client knows the resource by its exposed URI
            contents = result.get("contents") or []
            result["contents"] = [{**c, "uri": call.target} if c.get("uri") == uri else c for c in contents]
        return Outcome(result, upstream_ms=upstream_ms)

    async def _complete(self, call: Call, entry: Entry) -> Outcome:
        upstream = await self._upstream_for(call, entry.server)
        ref: types.PromptReference | types.ResourceTemplateReference
        if isinstance(entry.definition, types.Prompt):
            ref = types.PromptReference(type="ref/prompt", name=entry.original)
        else:
            ref = types.ResourceTemplateReference(type="ref/resource", uri=entry.original)
        argument = call.payload.get("argument") or {}
        wanted = {"name": str(argument.get("name", "")), "value": str(argument.get("value", ""))}
        started = perf_counter()
        completion = await upstream.complete(ref, wanted)
        return Outcome(wire(completion), upstream_ms=(perf_counter() - started) * 1000)


def tool_message_content(result: dict[str, Any]) -> str:
    """The text a model should read for a tool result (its wire dict): its text blocks, or else its structured
    content as JSON, or else its content blocks as JSON."""
    content: list[Any] = result.get("content") or []
    texts = [str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"]
    if texts:
        return "\n".join(texts)
    if result.get("structuredContent") is not None:
        return orjson.dumps(result["structuredContent"]).decode()
    return orjson.dumps(content).decode()


def _found(entry: Entry | None, kind: str, name: str) -> Entry:
    if entry is None:
        raise unknown(kind, name)
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

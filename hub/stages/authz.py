"""authz: may this principal touch this target? Deny by default; a denied MCP target is reported exactly like
an unknown one, so a key cannot probe for names it may not use."""

from __future__ import annotations

from collections.abc import Callable

from connectors.registry import RegistryView, policy_name
from hub.call import Call, Outcome
from hub.errors import Internal, NotFound
from hub.pipeline import Handler

_KINDS = {"mcp.tool": "tool", "mcp.prompt": "prompt", "mcp.resource": "resource"}


class AuthzStage:
    def __init__(self, view: Callable[[], RegistryView]) -> None:
        self._view = view

    async def __call__(self, call: Call, call_next: Handler) -> Outcome:
        if call.principal is None:
            raise Internal("authz reached without a principal")
        kind = _KINDS.get(call.operation)
        if kind is not None:
            view = self._view()
            if kind == "tool":
                entry = view.tools.get(call.target)
            elif kind == "prompt":
                entry = view.prompts.get(call.target)
            else:
                entry = view.resolve_resource(call.target)
            if entry is None or not call.principal.key.allows_tool(policy_name(entry)):
                raise NotFound(f"unknown {kind}: {call.target}")
        return await call_next(call)

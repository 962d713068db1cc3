"""authz: may this principal touch this target? Deny by default; a denied target is reported exactly like an
unknown one (`hub.errors.unknown`), so a key cannot probe for names it may not use.

Every check of a key's reach happens here, through its `Grant`: tools, prompts, resources, completion references
and subscriptions (confined to the server of a single-server endpoint, `Call.scope`), that endpoint itself, Code
Mode's meta-tools, and models; and, through the record of stored Responses API responses, that a response a call
reads, cancels, deletes or continues (`previous_response_id`) is the key's own. Listings need no check: they are
filtered to the grant where they are built. A request the door could not read (`Malformed`) has nothing to
authorize; the executor refuses it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any

from connectors.registry import Entry, RegistryView
from hub.call import Call, Malformed, Outcome, Principal
from hub.errors import Internal, NotFound, unknown
from hub.governance.grants import Grant
from hub.pipeline import Handler

CodeModeFor = Callable[[Principal, RegistryView, str | None], bool]
"""Whether a principal has Code Mode tools on an endpoint (`scope`: a single server, or None)."""
ResponseOwner = Callable[[str], Awaitable[str | None]]
"""The id of the key that created a stored Responses API response (None: the hub stores no such response)."""


def reference_kind(payload: Any) -> object:
    """The `ref.type` of a completion request's payload."""
    ref = payload.get("ref") if isinstance(payload, dict) else None
    return ref.get("type") if isinstance(ref, dict) else None


class AuthzStage:
    def __init__(
        self,
        view: Callable[[], RegistryView],
        servers: Callable[[], Collection[str]],
        code_mode: CodeModeFor,
        response_owner: ResponseOwner | None = None,
    ) -> None:
        self._view = view
        self._servers = servers
        self._code_mode = code_mode
        self._owner = response_owner
        self._reach: dict[tuple[Grant, str, int], bool] = {}

    async def __call__(self, call: Call, call_next: Handler) -> Outcome:
        principal = call.principal
        if principal is None:
            raise Internal("authz reached without a principal")
        if call.operation == "mcp.tool" and call.scope is None:  # the hot path: a tool of the aggregated endpoint
            entry = self._view().tools.get(call.target)
            if (entry is None or not principal.grant.allows(entry)) and not isinstance(call.payload, Malformed):
                raise unknown("tool", call.target)
        elif call.operation == "llm.chat" and not isinstance(call.payload, Malformed):  # the other hot path
            if not principal.grant.models.matches(call.target):
                raise unknown("model", call.target)
            if call.context.get("api") == "responses":
                previous = call.payload.get("previous_response_id")
                if previous is not None:
                    await self._own(principal, previous)
        elif call.operation.startswith("llm.response.") and not isinstance(call.payload, Malformed):
            await self._own(principal, call.target)
        elif not isinstance(call.payload, Malformed):
            self._check(call, principal)
        return await call_next(call)

    async def _own(self, principal: Principal, response_id: object) -> None:
        """A stored response is its creator's alone: any other key's (or an unknown) id is an unknown response."""
        name = response_id if isinstance(response_id, str) else str(response_id)
        if self._owner is None or not isinstance(response_id, str) or await self._owner(name) != principal.key.id:
            raise unknown("response", name)

    def _check(self, call: Call, principal: Principal) -> None:
        operation, target, scope = call.operation, call.target, call.scope
        grant = principal.grant
        if operation.startswith("llm."):
            if (operation != "llm.models" or target) and not grant.allows_model(target):
                raise unknown("model", target)
            return
        view = self._view()
        if scope is not None and not self._reaches(view, principal, scope):
            raise NotFound(f"no MCP server named '{scope[:64]}'")
        if operation == "mcp.tool":
            self._entry(principal, view.tools.get(target), scope, "tool", target)
        elif operation == "mcp.prompt":
            self._entry(principal, view.prompts.get(target), scope, "prompt", target)
        elif operation in ("mcp.resource", "mcp.subscribe"):
            self._entry(principal, view.resolve_resource(target, scope), scope, "resource", target)
        elif operation == "mcp.complete":
            entry = view.reference(reference_kind(call.payload), target, scope)
            self._entry(principal, entry, scope, "completion reference", target)
        elif operation in ("code.read", "code.run") and not self._code_mode(principal, view, scope):
            raise unknown("tool", target)

    def _reaches(self, view: RegistryView, principal: Principal, server: str) -> bool:
        """Whether the single-server endpoint of `server` exists for this principal: the server is configured and
        the key may use something on it (or, while its catalog is still empty, everything on it)."""
        if server not in self._servers():
            return False
        grant = principal.grant
        key = (grant, server, view.version)
        found = self._reach.get(key)
        if found is None:
            if len(self._reach) > 4096:
                self._reach.clear()
            found = self._reach[key] = grant.reaches(view, server) or grant.allows_name(f"{server}__*")
        return found

    @staticmethod
    def _entry(principal: Principal, entry: Entry | None, scope: str | None, kind: str, target: str) -> None:
        if entry is None or not principal.grant.allows(entry, scope):
            raise unknown(kind, target)

"""The MCP front door: an `mcp` SDK low-level server whose handlers turn requests into pipeline `Call`s.

One `McpDoor` serves the aggregated endpoint (`/mcp`, names `server__tool`); `McpDoor(scope=server)` serves one
upstream alone under its original names (`/mcp/{server}`). Lists are filtered by the caller's key and cached,
already serialised, per (key, registry version); calls go through the pipeline, so a name the key may not use
fails exactly like an unknown one.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import mcp_types as types
from mcp.server import Server
from mcp.server.caching import CacheHint
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from connectors.registry import Entry, RegistryView, policy_name
from hub.call import Call, Principal
from hub.doors.mcp_watches import ResourceSubscriber, ResourceWatches, WatchKey
from hub.errors import HubError, NotFound
from hub.executors.code import CodeMode
from hub.executors.sessions import LOG_LEVEL_KEY
from hub.pipeline import Handler

PRINCIPAL_SCOPE_KEY = "agenthub.principal"
"""Where the HTTP auth wrapper leaves the caller's `Principal` in the ASGI scope."""
LIST_TTL_MS = 0
"""Lists may change at any time (upstreams connect, keys change): clients should not serve them from cache."""

ListCache = dict[tuple[str, str, int, tuple[str, ...], bool], dict[str, Any]]


def wants_progress(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether the caller asked for progress notifications on this request."""
    meta: Any = ctx.meta or {}
    return meta.get("progress_token") is not None or meta.get("progressToken") is not None


def without_upstream_identity(result: Any) -> Any:
    """Drop the upstream's `serverInfo` stamp from a result's `_meta`: the client talks to the hub, and on
    2026-07-28 the SDK stamps the hub's own identity only where none is present."""
    if isinstance(result, dict):
        meta: Any = result.get("_meta")
        if not isinstance(meta, dict) or types.SERVER_INFO_META_KEY not in meta:
            return result
        rest = {k: v for k, v in meta.items() if k != types.SERVER_INFO_META_KEY}
        trimmed = {k: v for k, v in result.items() if k != "_meta"}
        return {**trimmed, "_meta": rest} if rest else trimmed
    meta = getattr(result, "meta", None)
    if isinstance(meta, dict) and types.SERVER_INFO_META_KEY in meta:
        rest = {k: v for k, v in meta.items() if k != types.SERVER_INFO_META_KEY}
        return result.model_copy(update={"meta": rest or None})
    return result


class McpDoor:
    """Builds the SDK `Server` for one endpoint and keeps its per-key list caches."""

    def __init__(
        self,
        pipeline: Handler,
        view: Callable[[], RegistryView],
        *,
        scope: str | None = None,
        default_principal: Callable[[], Principal | None] | None = None,
        codemode: CodeMode | None = None,
        version: str = "0.1.0",
    ) -> None:
        self._pipeline = pipeline
        self._view = view
        self.scope = scope
        self._default_principal = default_principal
        self.codemode = codemode
        self._cache: ListCache = {}
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._scope_names: tuple[int, dict[str, str], dict[str, str]] = (-1, {}, {})
        self._watches: ResourceWatches | None = None
        self.server: Server[Any] = Server(
            f"agenthub/{scope}" if scope else "agenthub",
            version=version,
            instructions=None,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_prompts=self._list_prompts,
            on_get_prompt=self._get_prompt,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_templates,
            on_read_resource=self._read_resource,
            on_subscribe_resource=self._subscribe,
            on_unsubscribe_resource=self._unsubscribe,
            on_completion=self._complete,
            cache_hints={
                method: CacheHint(ttl_ms=LIST_TTL_MS, scope="private")
                for method in ("tools/list", "prompts/list", "resources/list", "resources/templates/list")
            },
        )
        self.server.middleware = [self._track_connection]
        # Registered directly: the constructor argument warns that logging is deprecated from 2026-07-28, but
        # handshake-era clients still set their level this way.
        self.server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, self._set_logging_level)

    async def _track_connection(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Remember every client connection (from its first message on) to tell it when the lists change."""
        self._connections.add(ctx.session._connection)
        return await call_next(ctx)

    def initialization_options(self) -> InitializationOptions:
        return self.server.create_initialization_options(
            NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)
        )

    # -- identity ---------------------------------------------------------------------------------------------

    def _principal(self, ctx: ServerRequestContext[Any, Any]) -> Principal:
        request = ctx.request
        principal: Principal | None = None
        if request is not None:
            principal = getattr(request, "scope", {}).get(PRINCIPAL_SCOPE_KEY)
        if principal is None and self._default_principal is not None:
            principal = self._default_principal()
        if principal is None:
            raise MCPError(code=-32001, message="a valid virtual key is required")
        return principal

    # -- lists ----------------------------------------------------------------------------------------------------

    def _visible(self, entries: dict[str, Entry], principal: Principal) -> list[Entry]:
        key = principal.key
        items = [e for e in entries.values() if key.allows_tool(policy_name(e))]
        if self.scope is not None:
            items = [e for e in items if e.server == self.scope]
        return items

    def _shown(self, entry: Entry) -> Any:
        """The definition as this endpoint shows it (original names on a single-server endpoint)."""
        d = entry.definition
        if self.scope is None:
            return d
        if isinstance(d, types.Tool | types.Prompt):
            return d.model_copy(update={"name": entry.original})
        if isinstance(d, types.Resource):
            return d.model_copy(update={"uri": entry.original})
        return d

    def _cached(
        self,
        ctx: ServerRequestContext[Any, Any] | None,
        kind: str,
        principal: Principal,
        build: Callable[[RegistryView], dict[str, Any]],
    ) -> dict[str, Any]:
        """A list result for this key from the per-(key, registry version) cache; a shallow copy to hand out."""
        view = self._view()
        cache_key = (kind, principal.key.id, view.version, principal.key.tools, principal.key.code_mode)
        hit = self._cache.get(cache_key)
        if hit is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            hit = build(view)
            self._cache[cache_key] = hit
        result = dict(hit)
        if ctx is not None and ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            result["resultType"] = "complete"
        return result

    def list_tools_for(self, principal: Principal) -> dict[str, Any]:
        """The `tools/list` result for a key (handshake era): its tools, with Code Mode tools behind the meta-tools."""

        def build(view: RegistryView) -> dict[str, Any]:
            visible = self._visible(view.tools, principal)
            codemode = self.codemode
            if codemode is None:
                return {"tools": self._dump(visible)}
            plain = [e for e in visible if not codemode.hides(principal.key, e)]
            return {"tools": codemode.meta_tools(principal.key, view, self.scope) + self._dump(plain)}

        return self._cached(None, "tools", principal, build)

    @staticmethod
    def _check_cursor(params: types.PaginatedRequestParams | None) -> None:
        if params is not None and params.cursor:
            raise MCPError(code=types.INVALID_PARAMS, message="invalid cursor")

    def _dump(self, entries: list[Entry]) -> list[dict[str, Any]]:
        return [
            self._shown(e).model_dump(by_alias=True, mode="json", exclude_none=True)
            for e in sorted(entries, key=lambda e: e.exposed)
        ]

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> Any:
        principal = self._principal(ctx)
        self._check_cursor(params)
        result = self.list_tools_for(principal)
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            result["resultType"] = "complete"
        return result

    async def _list_prompts(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> Any:
        principal = self._principal(ctx)
        self._check_cursor(params)
        return self._cached(
            ctx, "prompts", principal, lambda v: {"prompts": self._dump(self._visible(v.prompts, principal))}
        )

    async def _list_resources(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> Any:
        principal = self._principal(ctx)
        self._check_cursor(params)
        return self._cached(
            ctx, "resources", principal, lambda v: {"resources": self._dump(self._visible(v.resources, principal))}
        )

    async def _list_templates(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> Any:
        principal = self._principal(ctx)
        self._check_cursor(params)

        def build(view: RegistryView) -> dict[str, Any]:
            entries = {e.exposed: e for _, e in view.templates}
            return {"resourceTemplates": self._dump(self._visible(entries, principal))}

        return self._cached(ctx, "templates", principal, build)

    # -- calls ----------------------------------------------------------------------------------------------------

    def _exposed(self, kind: str, name: str) -> str:
        """Map a name as the client sees it to the registry's exposed name."""
        if self.scope is None:
            return name
        view = self._view()
        if self._scope_names[0] != view.version:
            tools = {e.original: e.exposed for e in view.tools.values() if e.server == self.scope}
            prompts = {e.original: e.exposed for e in view.prompts.values() if e.server == self.scope}
            self._scope_names = (view.version, tools, prompts)
        names = self._scope_names[1] if kind == "tool" else self._scope_names[2]
        # An unknown name maps to something no entry is called: it fails in the pipeline like any unknown name.
        return names.get(name, f"{self.scope}/{name}")

    def exposed_tool(self, name: str) -> str:
        """The registry name of a tool as this endpoint's clients call it."""
        return self._exposed("tool", name)

    @property
    def pipeline(self) -> Handler:
        return self._pipeline

    def view(self) -> RegistryView:
        return self._view()

    @staticmethod
    def client_message(exc: HubError, target: str, shown: str) -> str:
        """An error message naming the target as the client called it."""
        if isinstance(exc, NotFound) and shown != target:
            return exc.message.replace(target, shown)
        return exc.message

    async def _run(self, call: Call, shown: str) -> Any:
        """Run a call; errors name the target as the client called it."""
        try:
            outcome = await self._pipeline(call)
        except HubError as exc:
            raise MCPError(
                code=exc.jsonrpc_code, message=self.client_message(exc, call.target, shown), data=exc.data
            ) from None
        return without_upstream_identity(outcome.value)

    async def call_tool_value(
        self, principal: Principal, name: str, arguments: dict[str, Any], context: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One `tools/call` as the client made it: a Code Mode meta-tool, or a governed `mcp.tool` call.

        Raises:
            HubError: the call was refused or failed; the message names the tool as the client called it.
        """
        view = self._view()
        codemode = self.codemode
        if codemode is not None and codemode.handles(principal.key, view, name, self.scope):
            result: dict[str, Any] = await codemode.call(principal, view, name, arguments, self.scope)
            return result
        call = Call(
            door="mcp",
            operation="mcp.tool",
            target=self._exposed("tool", name),
            payload=arguments,
            principal=principal,
            context=context or {},
        )
        try:
            outcome = await self._pipeline(call)
        except HubError as exc:
            exc.message = self.client_message(exc, call.target, name)
            raise
        return without_upstream_identity(outcome.value)

    async def _call_tool(self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> Any:
        principal = self._principal(ctx)
        context: dict[str, Any] = {"downstream": ctx.session}
        if wants_progress(ctx):
            session = ctx.session

            async def progress(value: float, total: float | None, message: str | None) -> None:
                await session.report_progress(value, total, message)

            context["progress"] = progress
        try:
            result = await self.call_tool_value(principal, params.name, params.arguments or {}, context)
        except HubError as exc:
            raise MCPError(code=exc.jsonrpc_code, message=exc.message, data=exc.data) from None
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS and "resultType" not in result:
            # Upstream results arrive as handshake-era wire dicts; a 2026-07-28 result must say it is complete.
            result = {**result, "resultType": "complete"}
        return result

    async def _get_prompt(self, ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams) -> Any:
        principal = self._principal(ctx)
        call = Call(
            door="mcp",
            operation="mcp.prompt",
            target=self._exposed("prompt", params.name),
            payload=params.arguments,
            principal=principal,
            context={"downstream": ctx.session},
        )
        return await self._run(call, params.name)

    def _resource_uri(self, uri: str) -> str:
        """Map a resource URI as the client sees it to the registry's exposed URI."""
        if self.scope is not None:
            entry = self._view().resources.get(uri)
            if entry is None or entry.server != self.scope:
                for e in self._view().resources.values():
                    if e.server == self.scope and e.original == uri:
                        return e.exposed
        return uri

    async def _read_resource(self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams) -> Any:
        principal = self._principal(ctx)
        uri = self._resource_uri(str(params.uri))
        call = Call(
            door="mcp",
            operation="mcp.resource",
            target=uri,
            principal=principal,
            context={"downstream": ctx.session},
        )
        result: types.ReadResourceResult = await self._run(call, str(params.uri))
        if self.scope is not None and uri != str(params.uri):
            contents = [c.model_copy(update={"uri": params.uri}) for c in result.contents]
            result = result.model_copy(update={"contents": contents})
        return result

    async def _complete(self, ctx: ServerRequestContext[Any, Any], params: types.CompleteRequestParams) -> Any:
        principal = self._principal(ctx)
        ref = params.ref
        view = self._view()
        entry: Entry | None
        if isinstance(ref, types.PromptReference):
            entry = view.prompts.get(self._exposed("prompt", ref.name))
            upstream_ref: Any = ref.model_copy(update={"name": entry.original}) if entry else None
        else:
            entry = next((e for _, e in view.templates if e.original == ref.uri), None)
            upstream_ref = ref
        if entry is None or not principal.key.allows_tool(policy_name(entry)):
            return types.CompleteResult(completion=types.Completion(values=[]))
        completer = self._completer
        if completer is None:
            return types.CompleteResult(completion=types.Completion(values=[]))
        argument = {"name": params.argument.name, "value": params.argument.value}
        return await completer(entry.server, upstream_ref, argument)

    async def _set_logging_level(
        self, ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        """Handshake-era `logging/setLevel`: the lowest level of upstream log messages this client gets (log
        messages are passed on from `per_client` upstream sessions, see `hub.executors.sessions`)."""
        self._principal(ctx)
        ctx.session._connection.state[LOG_LEVEL_KEY] = params.level
        return types.EmptyResult()

    _completer: Callable[[str, Any, dict[str, str]], Any] | None = None

    def set_completer(self, completer: Callable[[str, Any, dict[str, str]], Any]) -> None:
        """Where completion requests go (completions are not governed calls: they run no tool)."""
        self._completer = completer

    # -- resource subscriptions (handshake era) -------------------------------------------------------------------

    def set_subscriber(self, subscribe: ResourceSubscriber, unsubscribe: ResourceSubscriber) -> None:
        """Where `resources/subscribe` and `resources/unsubscribe` go: the door holds one upstream subscription
        per `(server, upstream URI)` while at least one of its clients is subscribed (see `ResourceWatches`)."""
        self._watches = ResourceWatches(subscribe, unsubscribe)

    def _watch_key(self, principal: Principal, shown: str) -> WatchKey:
        """`(server, upstream URI)` of a resource the key may read; anything else fails like `resources/read` of
        an unknown resource."""
        uri = self._resource_uri(shown)
        entry = self._view().resolve_resource(uri)
        if (
            entry is None
            or (self.scope is not None and entry.server != self.scope)
            or not principal.key.allows_tool(policy_name(entry))
        ):
            exc = NotFound(f"unknown resource: {shown}")
            raise MCPError(code=exc.jsonrpc_code, message=exc.message, data=exc.data)
        upstream_uri = entry.original if entry.original == uri or "{" not in entry.original else uri
        return entry.server, upstream_uri

    def _watches_or_fail(self) -> ResourceWatches:
        if self._watches is None:
            raise MCPError(code=types.METHOD_NOT_FOUND, message="resource subscriptions are not served here")
        return self._watches

    async def _subscribe(self, ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams) -> Any:
        principal = self._principal(ctx)
        watches = self._watches_or_fail()
        shown = str(params.uri)
        try:
            await watches.add(self._watch_key(principal, shown), shown, ctx.session._connection)
        except HubError as exc:
            raise MCPError(code=exc.jsonrpc_code, message=exc.message, data=exc.data) from None
        return types.EmptyResult()

    async def _unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams) -> Any:
        principal = self._principal(ctx)
        watches = self._watches_or_fail()
        await watches.remove(self._watch_key(principal, str(params.uri)), ctx.session._connection)
        return types.EmptyResult()

    @property
    def watched(self) -> dict[WatchKey, int]:
        """`(server, upstream URI)` -> how many of this door's clients are subscribed."""
        return self._watches.counts() if self._watches is not None else {}

    async def resource_updated(self, server: str, uri: str) -> None:
        """An upstream reported `notifications/resources/updated`: tell this door's subscribed clients."""
        if self._watches is not None:
            await self._watches.updated(server, uri)

    # -- notifications --------------------------------------------------------------------------------------------

    async def registry_changed(self, view: RegistryView) -> None:
        """Drop list caches and tell connected clients that the lists changed."""
        self._cache.clear()
        for connection in list(self._connections):
            for method in (
                "notifications/tools/list_changed",
                "notifications/prompts/list_changed",
                "notifications/resources/list_changed",
            ):
                try:
                    await connection.outbound.notify(method, None)
                except Exception:  # noqa: S112 - a gone client must not stop the others' notifications
                    continue

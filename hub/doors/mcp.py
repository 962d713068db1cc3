"""The MCP front door: an `mcp` SDK low-level server whose handlers turn requests into pipeline `Call`s.

One `McpDoor` serves the aggregated endpoint (`/mcp`, names `server__tool`); `McpDoor(scope=server)` serves one
upstream alone under its original names (`/mcp/{server}`), and every call made there is confined to that server.
The door only translates: each request becomes one call (`hub.doors.mcp_methods` says which operation), the
pipeline authenticates, authorises, limits, scans, runs and records it, and the result or the refusal goes back.
Requests the SDK answers itself (`initialize`, `ping`, `server/discover`, `subscriptions/listen`) are governed the
same way, as `mcp.session` calls, by the door's SDK middleware.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from mcp.server import Server
from mcp.server.caching import CacheableMethod, CacheHint
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from connectors.registry import RegistryView
from hub.call import Call, Operation, Principal
from hub.doors.mcp_lists import SESSION_STATE_KEY as LIST_SESSION_KEY, ListChanges, ListenHandler, ListingServer, Source
from hub.doors.mcp_methods import CODE_READERS, CODE_RUNNER
from hub.doors.mcp_watches import ResourceSubscriber, ResourceWatches
from hub.errors import HubError, NotFound
from hub.executors import tool_search
from hub.executors.code import CodeMode
from hub.executors.sessions import LOG_LEVEL_KEY
from hub.mcp_sdk import connection_of
from hub.pipeline import Handler

META_NAMES = CODE_READERS | {CODE_RUNNER}
"""The hub's own Code Mode tools."""
PRINCIPAL_SCOPE_KEY = "agenthub.principal"
"""Where the HTTP transport leaves the caller's `Principal` in the ASGI scope."""
SESSION_GOVERNED_KEY = "agenthub.session_governed"
"""Set in the ASGI scope when the transport already ran this request's `mcp.session` call (an HTTP `initialize`,
admitted under the key's session cap), so the SDK middleware does not run a second one."""
LIST_TTL_MS = 0
"""Lists may change at any time (upstreams connect, keys change): clients should not serve them from cache."""
SDK_METHODS = frozenset({"initialize", "ping", "server/discover", "subscriptions/listen"})
"""Requests the SDK answers itself; the middleware governs them as `mcp.session` calls."""
LIST_METHODS: dict[str, CacheableMethod] = {
    "tools": "tools/list",
    "prompts": "prompts/list",
    "resources": "resources/list",
    "templates": "resources/templates/list",
}


Listing = Callable[[str, Principal, str | None], dict[str, Any]]
"""`(kind, principal, scope) -> list result`: what a principal sees of the catalog."""


def _looked_up(ctx: ServerRequestContext[Any, Any], method: str) -> bool:
    """Whether a request is the SDK's own look-up made while it serves another request of the client (the HTTP
    request's `Mcp-Method` names that other request)."""
    request = ctx.request
    headers = getattr(request, "headers", None)
    named = headers.get("mcp-method") if headers is not None else None
    return named is not None and named != method


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
    return result


def _tools(page: dict[str, Any]) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = page.get("tools") or []
    return tools


class McpDoor:
    """Builds the SDK `Server` for one endpoint and turns its requests into calls."""

    def __init__(
        self,
        pipeline: Handler,
        view: Callable[[], RegistryView],
        *,
        scope: str | None = None,
        codemode: CodeMode | None = None,
        credential: Callable[[], str | None] | None = None,
        listing: Listing | None = None,
        lists: ListChanges | None = None,
        version: str = "0.1.0",
    ) -> None:
        """`credential` gives the key of callers that come without an HTTP request (the embedded stdio door);
        `listing` is what the caller sees of the catalog, for the SDK's own look-ups (see `_list`) and to tell
        which clients' lists changed (`lists`, shared by the hub's doors: see `hub.doors.mcp_lists`)."""
        self._pipeline = pipeline
        self._listing = listing
        self._view = view
        self.scope = scope
        self.codemode = codemode
        self._credential = credential
        self._lists = lists if lists is not None else ListChanges()
        self._scope_names: tuple[int, dict[str, str], dict[str, str]] = (-1, {}, {})
        self._watches: ResourceWatches | None = None
        self._searches = tool_search.ToolSearch()
        self.server: Server[Any] = ListingServer(
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
            on_subscriptions_listen=ListenHandler(self._lists, self, self._identity),
            cache_hints={method: CacheHint(ttl_ms=LIST_TTL_MS, scope="private") for method in LIST_METHODS.values()},
        )
        self.server.middleware = [self._govern]
        # Registered directly: the constructor argument warns that logging is deprecated from 2026-07-28, but
        # handshake-era clients still set their level this way.
        self.server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, self._set_logging_level)

    def initialization_options(self) -> InitializationOptions:
        return self.server.create_initialization_options(
            NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)
        )

    @property
    def pipeline(self) -> Handler:
        return self._pipeline

    def view(self) -> RegistryView:
        return self._view()

    # -- calls --------------------------------------------------------------------------------------------------

    def _identity(self, ctx: ServerRequestContext[Any, Any]) -> tuple[Principal | None, str | None]:
        """The caller: the principal the HTTP transport verified, or the embedded door's credential."""
        request = ctx.request
        if request is not None:
            principal: Principal | None = getattr(request, "scope", {}).get(PRINCIPAL_SCOPE_KEY)
            if principal is not None:
                return principal, None
        return None, self._credential() if self._credential is not None else None

    def _call(
        self,
        ctx: ServerRequestContext[Any, Any],
        operation: Operation,
        target: str,
        payload: Any = None,
        context: dict[str, Any] | None = None,
    ) -> Call:
        principal, credential = self._identity(ctx)
        return Call(
            door="mcp",
            operation=operation,
            target=target,
            payload=payload,
            principal=principal,
            credential=credential,
            context=context or {},
            scope=self.scope,
        )

    async def _run(self, call: Call, shown: str) -> Any:
        """Run a call; a refusal becomes the JSON-RPC error, naming the target as the client called it."""
        try:
            outcome = await self._pipeline(call)
        except HubError as exc:
            raise MCPError(
                code=exc.jsonrpc_code, message=self.client_message(exc, call.target, shown), data=exc.data
            ) from None
        return without_upstream_identity(outcome.value)

    @staticmethod
    def client_message(exc: HubError, target: str, shown: str) -> str:
        """An error message naming the target as the client called it."""
        if isinstance(exc, NotFound) and shown != target:
            return exc.message.replace(target, shown)
        return exc.message

    async def _govern(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """SDK middleware: remember every handshake-era client connection (to tell it when its lists change), and
        run the requests the SDK answers itself as `mcp.session` calls."""
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            connection = connection_of(ctx.session)
            if LIST_SESSION_KEY not in connection.state:  # joined on `initialize`: one look-up per request after
                principal, credential = self._identity(ctx)
                self._lists.join_connection(connection, self, principal, credential)
        method = ctx.method
        if method not in SDK_METHODS:
            return await call_next(ctx)
        request = ctx.request
        if request is not None and getattr(request, "scope", {}).get(SESSION_GOVERNED_KEY):
            return await call_next(ctx)

        async def run() -> HandlerResult:
            return await call_next(ctx)

        outcome = await self._run(self._call(ctx, "mcp.session", method, context={"run": run}), method)
        result: HandlerResult = outcome
        return result

    # -- lists --------------------------------------------------------------------------------------------------

    async def _list(
        self, ctx: ServerRequestContext[Any, Any], kind: str, params: types.PaginatedRequestParams | None
    ) -> dict[str, Any]:
        method = LIST_METHODS[kind]
        principal = self._identity(ctx)[0]
        if self._listing is not None and principal is not None and _looked_up(ctx, method):
            # The SDK reads the caller's own tool list to validate a 2026-07-28 `tools/call`'s `Mcp-Param`
            # headers: not a request of the client (that call is governed), so not a call of its own.
            result: dict[str, Any] = self._listing(kind, principal, self.scope)
            return {**self.searched(kind, principal, result), "resultType": "complete"}
        payload = {"cursor": params.cursor} if params is not None and params.cursor else None
        result = self.searched(kind, principal, await self._run(self._call(ctx, "mcp.list", kind, payload), method))
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return {**result, "resultType": "complete"}
        return result

    async def list_tools(self, principal: Principal) -> dict[str, Any]:
        """`tools/list` (handshake era) for a verified principal, as a result dict (the MCP fast path).

        Raises:
            HubError: the call was refused.
        """
        call = Call(door="mcp", operation="mcp.list", target="tools", principal=principal, scope=self.scope)
        result: dict[str, Any] = (await self._pipeline(call)).value
        return self.searched("tools", principal, result)

    @staticmethod
    def searched(kind: str, principal: Principal | None, result: dict[str, Any]) -> dict[str, Any]:
        """A list result as the caller is shown it: a key with `tool_search` sees `search_tools` and `call_tool`
        instead of its tools (`hub.executors.tool_search`)."""
        if kind != "tools" or principal is None or not principal.key.tool_search:
            return result
        return {"tools": [dict(d) for d in tool_search.DEFINITIONS]}

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> Any:
        return await self._list(ctx, "tools", params)

    async def _list_prompts(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> Any:
        return await self._list(ctx, "prompts", params)

    async def _list_resources(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> Any:
        return await self._list(ctx, "resources", params)

    async def _list_templates(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> Any:
        return await self._list(ctx, "templates", params)

    # -- names --------------------------------------------------------------------------------------------------

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

    def _resource_uri(self, uri: str) -> str:
        """Map a resource URI as the client sees it to the registry's exposed URI."""
        if self.scope is not None:
            entry = self._view().resources.get(uri)
            if entry is None or entry.server != self.scope:
                for e in self._view().resources.values():
                    if e.server == self.scope and e.original == uri:
                        return e.exposed
        return uri

    def _tool_operation(self, principal: Principal | None, name: str) -> Operation:
        """`code.read` / `code.run` for a Code Mode meta-tool name, otherwise `mcp.tool`. The authz stage refuses
        the meta-tools to a key that has none; on a single-server endpoint a tool of the server by that name is the
        server's own, unless the caller has Code Mode tools there."""
        if not (name == CODE_RUNNER or name in CODE_READERS):
            return "mcp.tool"
        if self.scope is not None and self._exposed("tool", name) in self._view().tools:
            codemode = self.codemode
            if principal is None or codemode is None or not codemode.handles(principal, self._view(), name, self.scope):
                return "mcp.tool"
        return "code.run" if name == CODE_RUNNER else "code.read"

    # -- tools, prompts, resources, completion ------------------------------------------------------------------

    async def call_tool_value(
        self,
        principal: Principal | None,
        name: str,
        arguments: dict[str, Any],
        context: dict[str, Any] | None = None,
        *,
        credential: str | None = None,
    ) -> dict[str, Any]:
        """One `tools/call` as the client made it: a Code Mode meta-tool, or an `mcp.tool` call.

        Raises:
            HubError: the call was refused or failed; the message names the tool as the client called it.
        """
        if name in tool_search.NAMES and principal is not None and principal.key.tool_search:
            if name == tool_search.SEARCH:
                version = (self.scope, self._view().version)
                return await self._searches.search(
                    self._pipeline, principal, credential, arguments, scope=self.scope, show=_tools, version=version
                )
            wanted = tool_search.call_arguments(arguments)
            if isinstance(wanted, dict):
                return wanted
            name, arguments = wanted
        if name in META_NAMES:
            operation = self._tool_operation(principal, name)
            target = self._exposed("tool", name) if operation == "mcp.tool" else name
        else:
            operation, target = "mcp.tool", self._exposed("tool", name) if self.scope is not None else name
        call = Call(
            door="mcp",
            operation=operation,
            target=target,
            payload=arguments,
            principal=principal,
            credential=credential,
            context=context or {},
            scope=self.scope,
        )
        try:
            outcome = await self._pipeline(call)
        except HubError as exc:
            exc.message = self.client_message(exc, call.target, name)
            raise
        return without_upstream_identity(outcome.value)

    async def _call_tool(self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> Any:
        principal, credential = self._identity(ctx)
        context: dict[str, Any] = {"downstream": ctx.session}
        if wants_progress(ctx):
            session = ctx.session

            async def progress(value: float, total: float | None, message: str | None) -> None:
                await session.report_progress(value, total, message)

            context["progress"] = progress
        try:
            result = await self.call_tool_value(
                principal, params.name, params.arguments or {}, context, credential=credential
            )
        except HubError as exc:
            raise MCPError(code=exc.jsonrpc_code, message=exc.message, data=exc.data) from None
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS and "resultType" not in result:
            # Upstream results arrive as handshake-era wire dicts; a 2026-07-28 result must say it is complete.
            result = {**result, "resultType": "complete"}
        return result

    async def _get_prompt(self, ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams) -> Any:
        target = self._exposed("prompt", params.name)
        call = self._call(ctx, "mcp.prompt", target, params.arguments, {"downstream": ctx.session})
        return await self._run(call, params.name)

    async def _read_resource(self, ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams) -> Any:
        shown = str(params.uri)
        uri = self._resource_uri(shown)
        call = self._call(ctx, "mcp.resource", uri, {"uri": uri}, {"downstream": ctx.session})
        result: dict[str, Any] = await self._run(call, shown)
        if uri != shown:  # a single-server endpoint shows the URI as the upstream names it
            contents = result.get("contents") or []
            result = {**result, "contents": [{**c, "uri": shown} if c.get("uri") == uri else c for c in contents]}
        return result

    async def _complete(self, ctx: ServerRequestContext[Any, Any], params: types.CompleteRequestParams) -> Any:
        ref = params.ref
        if isinstance(ref, types.PromptReference):
            shown, target = ref.name, self._exposed("prompt", ref.name)
            reference: dict[str, Any] = {"type": "ref/prompt", "name": target}
        else:
            shown = target = ref.uri
            reference = {"type": "ref/resource", "uri": target}
        payload: dict[str, Any] = {
            "ref": reference,
            "argument": {"name": params.argument.name, "value": params.argument.value},
        }
        if params.context is not None and params.context.arguments:
            payload["context"] = {"arguments": dict(params.context.arguments)}
        return await self._run(self._call(ctx, "mcp.complete", target, payload), shown)

    async def _set_logging_level(
        self, ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        """Handshake-era `logging/setLevel`: the lowest level of upstream log messages this client gets (log
        messages are passed on from `per_client` upstream sessions, see `hub.executors.sessions`)."""
        connection = connection_of(ctx.session)

        async def run() -> None:
            connection.state[LOG_LEVEL_KEY] = params.level

        await self._run(self._call(ctx, "mcp.session", "logging/setLevel", context={"run": run}), "logging/setLevel")
        return types.EmptyResult()

    # -- resource subscriptions (handshake era) -------------------------------------------------------------------

    def set_subscriber(self, subscribe: ResourceSubscriber, unsubscribe: ResourceSubscriber) -> None:
        """Where `resources/subscribe` and `resources/unsubscribe` go: the door holds one upstream subscription
        per `(server, upstream URI)` while at least one of its clients is subscribed (see `ResourceWatches`)."""
        self._watches = ResourceWatches(subscribe, unsubscribe)

    def _watches_or_fail(self) -> ResourceWatches:
        if self._watches is None:
            raise MCPError(code=types.METHOD_NOT_FOUND, message="resource subscriptions are not served here")
        return self._watches

    async def _watch(
        self,
        ctx: ServerRequestContext[Any, Any],
        shown: str,
        change: Callable[[ResourceWatches, str, str, Any], Awaitable[None]],
    ) -> types.EmptyResult:
        watches = self._watches_or_fail()
        connection = connection_of(ctx.session)
        uri = self._resource_uri(shown)

        async def subscribe(server: str, upstream_uri: str) -> None:
            await change(watches, server, upstream_uri, connection)

        await self._run(self._call(ctx, "mcp.subscribe", uri, {"uri": uri}, {"subscribe": subscribe}), shown)
        return types.EmptyResult()

    async def _subscribe(self, ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams) -> Any:
        shown = str(params.uri)

        async def add(watches: ResourceWatches, server: str, upstream_uri: str, connection: Any) -> None:
            await watches.add((server, upstream_uri), shown, connection)

        return await self._watch(ctx, shown, add)

    async def _unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: types.UnsubscribeRequestParams) -> Any:
        async def remove(watches: ResourceWatches, server: str, upstream_uri: str, connection: Any) -> None:
            await watches.remove((server, upstream_uri), connection)

        return await self._watch(ctx, str(params.uri), remove)

    @property
    def watched(self) -> dict[tuple[str, str], int]:
        """`(server, upstream URI)` -> how many of this door's clients are subscribed."""
        return self._watches.counts() if self._watches is not None else {}

    async def resource_updated(self, server: str, uri: str) -> None:
        """An upstream reported `notifications/resources/updated`: tell this door's subscribed clients."""
        if self._watches is not None:
            await self._watches.updated(server, uri)

    # -- notifications --------------------------------------------------------------------------------------------

    def visible(self, kind: Source, principal: Principal) -> Any:
        """What `principal` is shown of a list on this endpoint (every page), to tell whether it changed: with
        `tool_search`, the two meta-tools, which a change of the tools behind them leaves as they are."""
        seen = self.listed(kind, principal)
        return self.searched(kind, principal, seen) if isinstance(seen, dict) else seen

    def listed(self, kind: Source, principal: Principal) -> Any:
        """The list `principal` may see on this endpoint (every page), before it is shaped for showing."""
        return self._listing(kind, principal, self.scope) if self._listing is not None else None

    async def registry_changed(self, view: RegistryView) -> None:
        """Tell this endpoint's clients whose visible lists changed (see `hub.doors.mcp_lists`)."""
        await self._lists.recheck(self)

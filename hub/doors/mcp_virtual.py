"""Virtual servers: curated bundles of the catalog, each served as an MCP endpoint of its own at `/mcp/v/NAME`.

A virtual server (`[virtual_servers.NAME]`, or the admin API's `/api/v1/virtual-servers`) selects tools, prompts
and resources by globs over the same policy names a key's grant uses, and may show some tools under another name
or description. Its door is the aggregated endpoint's door with three differences:

- the caller's principal is narrowed to the bundle (`Principal.narrowed`): the pipeline's grant check, the
  listings and Code Mode's catalog see only what both the key and the bundle allow, so a key never reaches
  through a virtual server what it may not reach directly;
- lists are cut to each kind's globs and renamed per `tools_override`; a name the bundle does not show maps to a
  name no entry has, so the pipeline refuses it like any unknown name (and records it);
- with `tool_search = true`, the tool list is `search_tools` and `call_tool` (`hub.executors.tool_search`).

Every call runs through the pipeline under the tool's real exposed name (`server__tool`): limits, guardrails,
audit and the request log see the real tool.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mcp.server.context import ServerRequestContext

from connectors.registry import Entry, RegistryView, policy_name
from hub.call import Call, Operation, Principal
from hub.doors.mcp import META_NAMES, McpDoor, without_upstream_identity
from hub.errors import HubError, NotFound
from hub.executors import tool_search
from hub.governance.filters import GlobSet
from hub.pipeline import Handler
from hub.settings import VirtualServerConfig

PREFIX = "v/"
"""`/mcp/v/NAME`: the path segment (and the stdio bridge's `--server v/NAME`) that names a virtual server."""


class VirtualServer:
    """One virtual server's definition, compiled: globs per kind and the tool names both ways."""

    def __init__(self, name: str, config: VirtualServerConfig) -> None:
        self.name = name
        self.config = config
        self.tools = GlobSet(config.tools)
        self.prompts = GlobSet(config.prompts)
        self.resources = GlobSet(config.resources)
        self.reach = (*config.tools, *config.prompts, *config.resources)
        """What a caller is narrowed to: every kind's globs (each kind is then cut to its own here)."""
        self.shown = {real: o.name for real, o in config.tools_override.items() if o.name and o.name != real}
        """Real exposed name -> the name clients see."""
        self.real = {shown: real for real, shown in self.shown.items()}
        self.descriptions = {real: o.description for real, o in config.tools_override.items() if o.description}

    def nowhere(self, name: str) -> str:
        """A name no registry entry has: what an unknown name of this endpoint maps to, so the pipeline refuses it."""
        return f"{PREFIX}{self.name}/{name}"

    def tool_target(self, view: RegistryView, name: str) -> str:
        """The real exposed name of a tool as this endpoint's clients call it."""
        real = self.real.get(name)
        if real is not None:
            return real
        if name in self.shown:  # a renamed tool is called by its new name only
            return self.nowhere(name)
        entry = view.tools.get(name)
        return name if entry is not None and self.tools.matches(entry.exposed) else self.nowhere(name)

    def prompt_target(self, view: RegistryView, name: str) -> str:
        entry = view.prompts.get(name)
        return name if entry is not None and self.prompts.matches(entry.exposed) else self.nowhere(name)

    def resource_target(self, view: RegistryView, uri: str) -> str:
        entry = view.resolve_resource(uri)
        return uri if entry is not None and self.resources.matches(policy_name(entry)) else self.nowhere(uri)

    def show(self, kind: str, result: Mapping[str, Any], view: RegistryView) -> dict[str, Any]:
        """A list result of the aggregated endpoint (already filtered by the caller's narrowed grant), cut to this
        server's globs for `kind` and with tools renamed."""
        shown = dict(result)
        if kind == "tools":
            tools: list[dict[str, Any]] = []
            for tool in result.get("tools") or ():
                name = tool.get("name")
                if name in META_NAMES and name not in view.tools:
                    tools.append(tool)  # Code Mode's meta-tools (the catalog behind them is already narrowed)
                elif isinstance(name, str) and self.tools.matches(name):
                    tools.append(self._renamed(tool, name))
            shown["tools"] = tools
        elif kind == "prompts":
            shown["prompts"] = [p for p in result.get("prompts") or () if self.prompts.matches(str(p.get("name")))]
        elif kind == "resources":
            items = result.get("resources") or ()
            shown["resources"] = [r for r in items if self._resource_shown(view.resources.get(str(r.get("uri"))))]
        else:
            exposed = {e.exposed: e for _, e in view.templates}
            items = result.get("resourceTemplates") or ()
            shown["resourceTemplates"] = [
                t for t in items if self._resource_shown(exposed.get(str(t.get("uriTemplate"))))
            ]
        return shown

    def _renamed(self, tool: dict[str, Any], name: str) -> dict[str, Any]:
        new_name = self.shown.get(name)
        description = self.descriptions.get(name)
        if new_name is None and description is None:
            return tool
        changed = {**tool}
        if new_name is not None:
            changed["name"] = new_name
        if description is not None:
            changed["description"] = description
        return changed

    def _resource_shown(self, entry: Entry | None) -> bool:
        return entry is not None and self.resources.matches(policy_name(entry))


class VirtualServers:
    """The virtual servers of this hub (from the config file, changed at run time through the admin API) and the
    doors serving them."""

    def __init__(self, configs: Mapping[str, VirtualServerConfig]) -> None:
        self._servers = {name: VirtualServer(name, config) for name, config in configs.items()}
        self.doors: dict[str, McpVirtualDoor] = {}

    def get(self, name: str) -> VirtualServer | None:
        return self._servers.get(name)

    def names(self) -> list[str]:
        return sorted(self._servers)

    def configs(self) -> dict[str, VirtualServerConfig]:
        return {name: server.config for name, server in sorted(self._servers.items())}

    def put(self, name: str, config: VirtualServerConfig) -> None:
        """Add or replace a virtual server (its open sessions see the new definition from their next request)."""
        self._servers[name] = VirtualServer(name, config)

    def remove(self, name: str) -> bool:
        """Remove a virtual server; its endpoint answers 404 from now on (its open sessions get a not-found error).
        Its door stays: the HTTP endpoint built on it serves the server again if one of that name is added."""
        return self._servers.pop(name, None) is not None

    def door(self, name: str, make: Callable[[str], McpVirtualDoor]) -> McpVirtualDoor | None:
        """The door of `/mcp/v/NAME`, created on first use; None for an unknown virtual server."""
        if name not in self._servers:
            return None
        door = self.doors.get(name)
        if door is None:
            door = self.doors[name] = make(name)
        return door


Authenticate = Callable[[str | None], Principal | None]


class McpVirtualDoor(McpDoor):
    """The MCP door of one virtual server (see the module docstring)."""

    def __init__(
        self,
        name: str,
        servers: VirtualServers,
        pipeline: Handler,
        view: Callable[[], RegistryView],
        *,
        authenticate: Authenticate,
        **door: Any,
    ) -> None:
        """`door`: the keyword arguments of `McpDoor` (its `scope` stays None: a bundle's names are the aggregate's)."""
        super().__init__(pipeline, view, **door)
        self.name = name
        self._servers = servers
        self._authenticate = authenticate
        self._narrowed: dict[str, tuple[Any, Any, VirtualServer, Principal]] = {}
        self.server.name = f"agenthub/{PREFIX}{name}"
        current = servers.get(name)
        self.server.instructions = current.config.description if current is not None else None

    def current(self) -> VirtualServer:
        """This endpoint's definition now.

        Raises:
            NotFound: the virtual server was removed.
        """
        found = self._servers.get(self.name)
        if found is None:
            raise NotFound(f"no virtual server named '{self.name[:64]}'")
        return found

    # -- who ------------------------------------------------------------------------------------------------------

    def narrow(self, principal: Principal) -> Principal:
        """The caller as this endpoint serves it: its grant narrowed to the bundle (cached, so the listings' and
        catalogs' caches, keyed by the narrowing, keep working)."""
        server = self.current()
        hit = self._narrowed.get(principal.key.id)
        if hit is not None:
            key, narrowing, bundle, narrowed = hit
            if narrowed is principal:
                return principal
            if key is principal.key and narrowing is principal.narrowing and bundle is server:
                return narrowed
        narrowed = principal.narrowed(server.reach)
        if len(self._narrowed) > 4096:
            self._narrowed.clear()
        self._narrowed[principal.key.id] = (principal.key, principal.narrowing, server, narrowed)
        return narrowed

    def _identity(self, ctx: ServerRequestContext[Any, Any]) -> tuple[Principal | None, str | None]:
        principal, credential = super()._identity(ctx)
        return self._who(principal, credential)

    def _who(self, principal: Principal | None, credential: str | None) -> tuple[Principal | None, str | None]:
        """The narrowed principal; a caller known only by its credential (the embedded stdio door) is looked up
        first, and one whose credential is not a key stays unauthenticated, for the pipeline to refuse."""
        if principal is None and credential is not None:
            principal = self._authenticate(credential)
        if principal is None:
            return None, credential
        try:
            return self.narrow(principal), None
        except NotFound:
            return principal.narrowed(()), None  # removed meanwhile: the caller reaches nothing here

    # -- names ----------------------------------------------------------------------------------------------------

    def _exposed(self, kind: str, name: str) -> str:
        server = self.current()
        view = self.view()
        return server.tool_target(view, name) if kind == "tool" else server.prompt_target(view, name)

    def _resource_uri(self, uri: str) -> str:
        return self.current().resource_target(self.view(), uri)

    # -- lists ----------------------------------------------------------------------------------------------------

    async def _list(self, ctx: ServerRequestContext[Any, Any], kind: str, params: Any) -> dict[str, Any]:
        result = await super()._list(ctx, kind, params)
        return self._shown(kind, result, self._identity(ctx)[0])

    async def list_tools(self, principal: Principal) -> dict[str, Any]:
        narrowed = self._who(principal, None)[0] or principal
        return self._shown("tools", await super().list_tools(narrowed), narrowed)

    def _shown(self, kind: str, result: dict[str, Any], principal: Principal | None = None) -> dict[str, Any]:
        try:
            server = self.current()
        except NotFound:
            return {tool_search_field(kind): []}
        shown = server.show(kind, result, self.view())
        if kind == "tools" and self._searches_tools(server, principal):
            shown = {"tools": [dict(d) for d in tool_search.DEFINITIONS]}
            if "resultType" in result:
                shown["resultType"] = result["resultType"]
        return shown

    # -- tools ----------------------------------------------------------------------------------------------------

    async def call_tool_value(
        self,
        principal: Principal | None,
        name: str,
        arguments: dict[str, Any],
        context: dict[str, Any] | None = None,
        *,
        credential: str | None = None,
    ) -> dict[str, Any]:
        principal, credential = self._who(principal, credential)
        server = self.current()
        if name in tool_search.NAMES and self._searches_tools(server, principal):
            if name == tool_search.SEARCH:
                view = self.view()

                def show(page: dict[str, Any]) -> list[dict[str, Any]]:
                    return server.show("tools", page, view)["tools"]

                return await self._searches.search(
                    self.pipeline,
                    principal,
                    credential,
                    arguments,
                    scope=None,
                    show=show,
                    version=(server, view.version),
                )
            wanted = tool_search.call_arguments(arguments)
            if isinstance(wanted, dict):
                return wanted
            name, arguments = wanted
        elif name in META_NAMES and name not in self.view().tools:
            return await super().call_tool_value(principal, name, arguments, context, credential=credential)
        return await self._call_real(principal, credential, name, arguments, context)

    @staticmethod
    def _searches_tools(server: VirtualServer, principal: Principal | None) -> bool:
        """Whether this caller gets tool search here: the virtual server's option, or its key's."""
        return server.config.tool_search or (principal is not None and principal.key.tool_search)

    async def _call_real(
        self,
        principal: Principal | None,
        credential: str | None,
        name: str,
        arguments: dict[str, Any],
        context: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """A tool call under the tool's real exposed name, through the pipeline."""
        call = Call(
            door="mcp",
            operation="mcp.tool",
            target=self.current().tool_target(self.view(), name),
            payload=arguments,
            principal=principal,
            credential=credential,
            context=context or {},
        )
        try:
            outcome = await self.pipeline(call)
        except HubError as exc:
            exc.message = self.client_message(exc, call.target, name)
            raise
        return without_upstream_identity(outcome.value)

    def visible(self, kind: Any, principal: Principal) -> Any:
        """What `principal` sees of a list on this endpoint, as its clients are shown it."""
        seen: Any = self.listed(kind, principal)
        return self._shown(kind, seen, principal) if isinstance(seen, dict) else seen


def virtual_operation(operation: Operation, target: str, params: Any) -> tuple[Operation, str]:
    """The operation and target of a request to a virtual server, for a refusal the transport answers itself: the
    tool-search meta-tools are a listing (`search_tools`) and the call of the tool they name (`call_tool`)."""
    if operation != "mcp.tool":
        return operation, target
    if target == tool_search.SEARCH:
        return "mcp.list", "tools"
    if target == tool_search.CALL:
        arguments = params.get("arguments") if isinstance(params, dict) else None
        name = arguments.get("name") if isinstance(arguments, dict) else None
        return operation, name if isinstance(name, str) else target
    return operation, target


def tool_search_field(kind: str) -> str:
    """The result field of a list kind."""
    return {"tools": "tools", "prompts": "prompts", "resources": "resources"}.get(kind, "resourceTemplates")

"""The aggregated registry: every upstream's tools, prompts, resources and templates under exposed names.

Tools and prompts are exposed as `server__name` (see `naming`); resources and resource templates keep their URIs
(a URI or template seen on two servers is exposed as `server+uri` for the later one, and so are the concrete URIs
of such a template). Lookups go through maps built once per change, never by splitting strings. The whole view is
rebuilt copy-on-write when an upstream connects or reports a list change, and `version` moves so that caches
built on a view know they are stale.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import mcp_types as types

from connectors.config import HttpConfig, SseConfig, StdioConfig
from connectors.naming import SEPARATOR, exposed_name
from connectors.upstream import Upstream

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """One exposed item: which server owns it and its name (or URI) there."""

    server: str
    original: str
    exposed: str
    definition: types.Tool | types.Prompt | types.Resource | types.ResourceTemplate


@dataclass(frozen=True)
class RegistryView:
    """An immutable snapshot of everything the upstreams offer."""

    version: int = 0
    tools: dict[str, Entry] = field(default_factory=dict[str, Entry])
    prompts: dict[str, Entry] = field(default_factory=dict[str, Entry])
    resources: dict[str, Entry] = field(default_factory=dict[str, Entry])
    templates: tuple[tuple[re.Pattern[str], Entry], ...] = ()

    def resolve_resource(self, uri: str, server: str | None = None) -> Entry | None:
        """The resource entry for an exposed URI, concrete first, then the first matching template; with `server`,
        only that server's, for a URI as the server itself spells it (its own endpoint shows its own spelling)."""
        entry = self.resources.get(uri)
        if entry is not None:
            return entry if server is None or entry.server == server else None
        for pattern, tmpl in self.templates:
            if server is None:
                if pattern.fullmatch(uri):
                    return tmpl
            elif tmpl.server == server and pattern.fullmatch(_prefix(tmpl) + uri):
                return tmpl
        return None

    def reference(self, kind: object, name: str, server: str | None = None) -> Entry | None:
        """What a completion request refers to: a prompt by exposed name (`kind` `ref/prompt`), else a resource
        template by its exposed URI template (with `server`: that server's, as the server spells it)."""
        if kind == "ref/prompt":
            entry = self.prompts.get(name)
            return entry if entry is not None and (server is None or entry.server == server) else None
        for _, entry in self.templates:
            found = entry.exposed == name if server is None else (entry.server == server and entry.original == name)
            if found:
                return entry
        return None

    def server_tools(self, server: str) -> list[Entry]:
        return [e for e in self.tools.values() if e.server == server]


Listener = Callable[[RegistryView], Awaitable[None]]
ResourceListener = Callable[[str, str], Awaitable[None]]
"""Told `(server, uri)` for each resource update a shared upstream reports (the URI as the upstream names it)."""
ToolFilter = Callable[[str, tuple[types.Tool, ...]], list[types.Tool]]
"""Chooses which of a server's tools (as the upstream defines them) are exposed; the rest are absent from the view,
so every lookup treats them as unknown (the hub holds back changed definitions this way)."""
AuthFor = Callable[[StdioConfig | SseConfig | HttpConfig], httpx2.Auth | None]
"""The HTTP auth plug-in for an upstream's shared session (may raise to refuse the configuration)."""


class Registry:
    """Owns the upstreams and the current `RegistryView`."""

    def __init__(self, *, auth_for: AuthFor | None = None) -> None:
        """`auth_for` gives each added upstream's shared session its credentials (set it before `run`)."""
        self.auth_for = auth_for
        self.upstreams: dict[str, Upstream] = {}
        self.tool_filter: ToolFilter | None = None
        """Consulted at every rebuild (set it before `run`; call `refresh` when its decisions change)."""
        self.view = RegistryView()
        self._listeners: list[Listener] = []
        self._resource_listeners: list[ResourceListener] = []
        self._tg: anyio.abc.TaskGroup | None = None
        self._version = 0

    def add_listener(self, listener: Listener) -> None:
        """Be told of every new view (after connects, reconnects, list changes, adds and removals)."""
        self._listeners.append(listener)

    def add_resource_listener(self, listener: ResourceListener) -> None:
        """Be told of every `notifications/resources/updated` from a shared upstream (see
        `Upstream.subscribe_resource`)."""
        self._resource_listeners.append(listener)

    async def run(
        self,
        configs: Iterable[StdioConfig | SseConfig | HttpConfig],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start every enabled upstream concurrently and supervise them until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for cfg in configs:
                self.add(cfg)
            task_status.started()
            await anyio.sleep_forever()

    def add(self, config: StdioConfig | SseConfig | HttpConfig) -> Upstream:
        """Add (or replace) an upstream at run time and start connecting it in the background.

        Raises:
            Exception: whatever `auth_for` raises for a configuration it refuses (nothing is replaced then).
        """
        if self._tg is None:
            raise RuntimeError("the registry is not running")
        http_auth = self.auth_for(config) if self.auth_for is not None else None
        old = self.upstreams.pop(config.name, None)
        if old is not None:
            old.stop()
        upstream = Upstream(
            config, on_change=self._changed, http_auth=http_auth, on_resource_updated=self._resource_updated
        )
        self.upstreams[config.name] = upstream
        if config.enabled:
            self._tg.start_soon(upstream.run, name=f"upstream:{config.name}")
        return upstream

    async def remove(self, name: str) -> bool:
        """Stop and forget one upstream; its tools leave the view at once."""
        upstream = self.upstreams.pop(name, None)
        if upstream is None:
            return False
        upstream.stop()
        await self._rebuild()
        return True

    async def wait_ready(self, timeout: float) -> None:
        """Wait (bounded) until every enabled upstream has connected once, or the time is up."""
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as tg:
                for upstream in self.upstreams.values():
                    if upstream.config.enabled:
                        tg.start_soon(upstream.wait_ready, timeout)

    def status(self) -> list[dict[str, Any]]:
        """Health and counts per upstream (by name), as `agenthub servers` and `GET /api/v1/servers` show them."""
        out: list[dict[str, Any]] = []
        for name in sorted(self.upstreams):
            up = self.upstreams[name]
            h = up.health
            out.append(
                {
                    "name": name,
                    "transport": up.config.transport,
                    "state": h.state.value,
                    "error": h.error,
                    "tools": len(up.catalog.tools),
                    "prompts": len(up.catalog.prompts),
                    "resources": len(up.catalog.resources),
                    "resource_templates": len(up.catalog.templates),
                    "protocol_version": up.catalog.protocol_version or None,
                    "connected_at": h.connected_at,
                    "reconnects": h.reconnects,
                    "calls": h.calls,
                    "failures": h.failures,
                }
            )
        return out

    async def refresh(self) -> None:
        """Rebuild the view from the current catalogs (after the tool filter's decisions changed)."""
        await self._rebuild()

    async def _changed(self, upstream: Upstream) -> None:
        if self.upstreams.get(upstream.name) is upstream:
            await self._rebuild()

    async def _resource_updated(self, upstream: Upstream, uri: str) -> None:
        if self.upstreams.get(upstream.name) is not upstream:
            return
        for listener in self._resource_listeners:
            try:
                await listener(upstream.name, uri)
            except Exception:
                logger.exception("resource listener failed")

    async def _rebuild(self) -> None:
        self._version += 1
        self.view = build_view(self.upstreams.values(), self._version, self.tool_filter)
        for listener in self._listeners:
            try:
                await listener(self.view)
            except Exception:
                logger.exception("registry listener failed")


def build_view(upstreams: Iterable[Upstream], version: int, tool_filter: ToolFilter | None = None) -> RegistryView:
    """Build the exposed maps from each upstream's catalog, in server-name order (deterministic); only the tools
    `tool_filter` keeps are exposed."""
    tools: dict[str, Entry] = {}
    prompts: dict[str, Entry] = {}
    resources: dict[str, Entry] = {}
    templates: list[tuple[re.Pattern[str], Entry]] = []
    exposed_templates: set[str] = set()
    for up in sorted(upstreams, key=lambda u: u.name):
        cat = up.catalog
        for tool in cat.tools if tool_filter is None else tool_filter(up.name, cat.tools):
            name = exposed_name(up.name, tool.name)
            tools[name] = Entry(up.name, tool.name, name, tool.model_copy(update={"name": name}))
        for prompt in cat.prompts:
            name = exposed_name(up.name, prompt.name)
            prompts[name] = Entry(up.name, prompt.name, name, prompt.model_copy(update={"name": name}))
        for res in cat.resources:
            uri = str(res.uri)
            shown = uri if uri not in resources else f"{up.name}+{uri}"
            if shown in resources:  # a URI that another server's exposed URI spells out: never replace that one
                logger.warning("resource %r of server %r is left out: its exposed URI is taken", uri, up.name)
                continue
            resources[shown] = Entry(up.name, uri, shown, res.model_copy(update={"uri": shown}))
        for tmpl in cat.templates:
            uri = tmpl.uri_template
            shown = uri if uri not in exposed_templates else f"{up.name}+{uri}"
            if shown in exposed_templates:  # as for resources: never take another server's exposed spelling
                logger.warning("resource template %r of server %r is left out: its exposed URI is taken", uri, up.name)
                continue
            exposed_templates.add(shown)
            definition = tmpl if shown == uri else tmpl.model_copy(update={"uri_template": shown})
            entry = Entry(up.name, uri, shown, definition)
            templates.append((template_pattern(shown), entry))
    return RegistryView(version, tools, prompts, resources, tuple(templates))


def upstream_uri(entry: Entry, uri: str, server: str | None = None) -> str:
    """The URI the upstream knows a resource by, for `uri` that `resolve_resource(uri, server)` found as `entry`: a
    resource's own URI, or the URI asked of a template, without the `server+` its exposed spelling adds on the
    aggregated endpoint (`server` None)."""
    if entry.original == uri or "{" not in entry.original:
        return entry.original
    return uri if server is not None else uri[len(_prefix(entry)) :]


def _prefix(entry: Entry) -> str:
    """What an exposed URI (template) adds in front of the upstream's: `server+` or nothing."""
    return entry.exposed[: len(entry.exposed) - len(entry.original)]


def template_pattern(template: str) -> re.Pattern[str]:
    """A regex matching URIs of an RFC 6570 template (simple `{var}` and `{+var}` expressions)."""
    out: list[str] = []
    pos = 0
    for m in re.finditer(r"\{([+#./;?&]?)([^}]*)\}", template):
        out.append(re.escape(template[pos : m.start()]))
        out.append(".*" if m.group(1) in ("+", "#") else "[^/]*")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out))


def policy_name(entry: Entry) -> str:
    """The name a key's globs are matched against: the exposed name for tools and prompts, `server__uri`
    for resources and templates (so `server__*` grants everything a server offers)."""
    if isinstance(entry.definition, types.Tool | types.Prompt):
        return entry.exposed
    return f"{entry.server}{SEPARATOR}{entry.original}"

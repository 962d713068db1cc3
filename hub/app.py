"""The composition root: `Hub` owns every resource for the process lifetime; `build_app` serves it over HTTP.

Start-up: open the store, sync config keys, compose the pipeline once, start the upstreams concurrently
(bounded wait, one broken upstream never blocks the others), then serve. Everything that runs in the
background (upstream supervisors, request-log flusher, the watcher of admin changes other processes make, MCP
session managers) lives in one task group owned by `Hub.running()`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from connectors.errors import UpstreamError
from connectors.registry import Entry, Registry, RegistryView
from hub.audit.bodies import BodyRecorder, guardrail_redactors
from hub.audit.requestlog import RequestLog
from hub.audit.spend import window_spend
from hub.call import Call, Principal
from hub.control import ControlPlane
from hub.doors.mcp import McpDoor
from hub.doors.mcp_lists import ListChanges
from hub.doors.mcp_virtual import PREFIX as VIRTUAL_PREFIX, McpVirtualDoor, VirtualServers
from hub.doors.mcp_virtual_store import VirtualCatalog
from hub.executors import Executors, with_view
from hub.executors.agent import AgentMode
from hub.executors.code import CodeMode
from hub.executors.listings import McpListings
from hub.executors.llm import LlmExecutor
from hub.executors.mcp import McpExecutor, to_hub_error
from hub.executors.responses import StoredResponses
from hub.executors.session import SessionCap, SessionExecutor
from hub.executors.sessions import PerClientUpstreams
from hub.governance import Counters, Limiter, ToolPricing
from hub.governance.keys import KeyRing, new_secret
from hub.governance.periods import parse_retention
from hub.governance.seed import BudgetSeeder
from hub.guardrails.pinning import ToolPins
from hub.guardrails.rules import GuardrailRules
from hub.pipeline import Handler, Stage, compose
from hub.runtime.changes import ChangeWatcher
from hub.runtime.memory import release_free_memory
from hub.settings import ConfigError, Settings
from hub.stages.audit import AuditStage
from hub.stages.authn import AuthnStage
from hub.stages.authz import AuthzStage
from hub.stages.guardrails import GuardrailsStage
from hub.stages.limits import LimitsStage
from hub.store.counters import InMemoryCounters
from hub.store.responses import ResponseStore
from hub.store.sql import SqlStore
from hub.store.virtual_tables import VirtualServerStore
from hub.telemetry.traceconfig import log_config, trace_config
from hub.upstream_auth.manager import HubAuth, open_token_store
from hub.upstream_auth.store import TOKENS_CHANGED
from llm.config import LLMConfig

if TYPE_CHECKING:
    from hub.governance.keys import VirtualKey
    from hub.signin.service import SignIn
    from hub.telemetry.logexport import LogExport
    from hub.telemetry.metrics import HubMetrics
    from hub.telemetry.traces import Tracing
    from llm.router import Router

logger = logging.getLogger(__name__)

VERSION = "0.1.0"


@dataclass
class GeneratedKey:
    """A config key whose secret was generated at this start (shown once)."""

    name: str
    secret: str


@dataclass
class Hub:
    """Everything one hub process owns."""

    settings: Settings
    store: SqlStore
    registry: Registry = field(default_factory=Registry)
    keyring: KeyRing = field(default_factory=KeyRing)
    generated_keys: list[GeneratedKey] = field(default_factory=list[GeneratedKey])
    pipeline: Handler | None = None
    request_log: RequestLog | None = None
    mcp: McpDoor | None = None
    server_doors: dict[str, McpDoor] = field(default_factory=dict[str, McpDoor])
    limiter: Limiter | None = None
    control: ControlPlane | None = None
    """Admin tables, audit log and run-time servers (set while running)."""
    auth: HubAuth | None = None
    """Upstream credentials, per-user OAuth sessions and authorizations (set while running)."""
    llm_router: Router | None = None
    responses: ResponseStore | None = None
    """Where stored Responses API responses live and whose they are (set while running)."""
    guardrails: GuardrailRules | None = None
    """The guardrails in force: the config file's and the admin API's (set while running)."""
    pins: ToolPins | None = None
    """Approved tool definitions; changed ones are held back (set while running)."""
    metrics: HubMetrics | None = None
    """The Prometheus metrics, unless `[metrics] enabled = false` (set while running)."""
    codemode: CodeMode = field(init=False)
    agent: AgentMode = field(init=False)
    listings: McpListings = field(init=False)
    lists: ListChanges = field(init=False)
    """The MCP sessions of every door, told when what their key sees of a list changes."""
    virtual: VirtualServers = field(init=False)
    """The virtual servers (`/mcp/v/NAME`) and their doors."""
    virtual_catalog: VirtualCatalog | None = None
    """The config file's virtual servers and the admin API's stored ones (set while running)."""
    sessions: SessionCap = field(init=False)
    """Open MCP sessions per key, and the cap on them."""
    tracing: Tracing | None = None
    """OpenTelemetry traces, when `[telemetry]` or the `OTEL_*` variables turn them on (set while running)."""
    log_export: LogExport | None = None
    """Request-log rows as OTLP log records, when telemetry is on (set while running)."""
    signin: SignIn | None = None
    """People signing in to `/mcp` through the identity provider, with `[sign_in]` (set while running)."""
    changes: ChangeWatcher | None = None
    """Follows admin changes made by other processes (set while running)."""
    _shared: McpExecutor = field(init=False)
    _tg: anyio.abc.TaskGroup | None = None
    _loop_thread: int = 0
    """The thread of the event loop the hub runs in (set with `_tg`)."""
    _keys_version: str = ""
    _key_installs: int = 0
    """How many key rings were installed so far (a follower's read that an install overtook is dropped)."""

    # -- keys -------------------------------------------------------------------------------------------------

    def __post_init__(self) -> None:
        self.codemode = CodeMode(self._code_mode_servers, pool_size=self.settings.hub.code_mode_pool)
        self.agent = AgentMode(lambda: self.pipeline, self.view, self.codemode)
        self.listings = McpListings(self.view, self.codemode, self.settings.hub.list_page_size)
        self.lists = ListChanges(lambda key_id: self.keyring.get(key_id) or self._person(key_id), self.authenticate)
        self.virtual = VirtualServers(self.settings.virtual_servers)
        self.sessions = SessionCap(self.settings.hub.max_sessions_per_key)
        self._shared = McpExecutor(self.registry)

    def _code_mode_servers(self) -> frozenset[str]:
        return frozenset(name for name, up in self.registry.upstreams.items() if up.config.code_mode)

    def sync_config_keys(self) -> None:
        """Make the database match the `[[keys]]` of the config file; generate missing secrets once."""
        for key in self.settings.keys:
            policy = key.model_dump(mode="json", exclude={"name", "secret", "expires_at"}, exclude_none=True)
            _row, created = self.store.upsert_config_key(key.name, key.secret, policy, key.expires_at)
            if created and key.secret is None:
                secret = new_secret()
                self.store.create_key(key.name, secret, policy, source="config", expires_at=key.expires_at)
                self.generated_keys.append(GeneratedKey(key.name, secret))

    def reload_keys(self) -> None:
        version = self.store.keys_version()  # read first: a change after it moves the version, and is followed
        self.install_keys(KeyRing(self.store.active_keys()), version)

    def install_keys(self, ring: KeyRing, version: str | None = None) -> None:
        """Make a new key ring current (read at `version` of the store's keys), and tell the limits engine about
        every key's levels and limits."""
        if version is not None:
            self._keys_version = version
        self._key_installs += 1
        limiter = self.limiter
        if limiter is not None:
            for key in ring.keys():
                limiter.set_key(
                    key.id, team=key.team, customer=key.customer, budget=key.budget, rate_limit=key.rate_limit
                )
            for gone in {k.id for k in self.keyring.keys()} - {k.id for k in ring.keys()}:
                limiter.remove_key(gone)
        self.keyring = ring
        tg = self._tg
        if tg is not None:  # grants may have changed what sessions see
            if threading.get_ident() == self._loop_thread:
                tg.start_soon(self.lists.recheck)
            else:  # `reload_keys` runs in a worker thread of the loop
                anyio.from_thread.run_sync(tg.start_soon, self.lists.recheck)

    async def _follow_keys(self, versions: Mapping[str, str]) -> None:
        """Pick up key changes made by other processes (the CLI, other replicas) without a restart."""
        try:
            version = versions.get("keys_version", "0")
            if version != self._keys_version:
                if self.control is not None:  # teams and customers first: new keys may name new ones
                    await self.control.apply_governance()
                installs = self._key_installs
                ring = await anyio.to_thread.run_sync(self.store.active_keys)
                if self._key_installs == installs:  # else a ring read later (this process's own change) is current
                    self.install_keys(KeyRing(ring), version)
        except Exception:
            logger.exception("reloading keys failed")

    # -- lifetime ---------------------------------------------------------------------------------------------

    def view(self) -> RegistryView:
        return self.registry.view

    @asynccontextmanager
    async def running(self) -> AsyncGenerator[Hub, None]:
        """Start every background part; stop them all on exit.

        Raises:
            ConfigError: a server's auth configuration cannot work, or the master key its tokens need is wrong.
        """
        store = await anyio.to_thread.run_sync(open_token_store, self.settings, self.store.engine)
        self.auth = auth = HubAuth(self.settings, store, self.registry)
        auth.check(self.settings.servers)
        counters = await self._open_counters()
        self.limiter = Limiter(counters, self.settings.governance())
        self.control = ControlPlane(self)
        await anyio.to_thread.run_sync(self.sync_config_keys)
        await anyio.to_thread.run_sync(self.reload_keys)
        self.request_log = RequestLog(self.store, bodies=self._body_recorder())
        self.guardrails = guardrails = GuardrailRules(self.settings.guardrails, self.store.engine)
        await guardrails.apply()
        self.pins = pins = ToolPins(self.registry, self.store.engine, self.control.audit.append)
        await anyio.to_thread.run_sync(pins.load)
        self.responses = await anyio.to_thread.run_sync(self._open_responses)
        if self.settings.sign_in is not None:  # its modules load only then
            from hub.signin.service import SignIn

            self.signin = await SignIn.open(
                self.settings.sign_in,
                self.store.engine,
                self._person_limits,
                insecure_loopback=self.settings.hub.insecure_loopback,
                reach=self._reach,
                audit=self.control.audit,
            )
        self.tracing = self._open_tracing()
        self.log_export = self._open_log_export()
        if self.log_export is not None:
            self.request_log.exports = self.log_export.record
        self.metrics = self._open_metrics()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self._loop_thread = threading.get_ident()
            await tg.start(auth.run)
            per_client = PerClientUpstreams(self.registry, tg, auth.http_auth_for)
            self.llm_router = await self._open_llm_router()
            stages: list[Stage] = [
                AuditStage(
                    self.request_log,
                    lambda: self.keyring,
                    locate=self._locate,
                    bodies=self.settings.hub.log_bodies,
                    metrics=self.metrics,
                ),
                AuthnStage(lambda: self.keyring, self._person if self.signin is not None else None),
                AuthzStage(self.view, lambda: self.registry.upstreams, self.codemode.offers, self._response_owner),
                LimitsStage(self.limiter, ToolPricing(self.settings.pricing.tools)),
                GuardrailsStage(
                    guardrails.current,
                    self._server_of,
                    findings=self.metrics.observe_findings if self.metrics is not None else None,
                ),
            ]
            executor: Handler = self._executors(auth.upstream_for(per_client.upstream_for))
            if self.tracing is not None:  # the spans are composed in only when tracing: no per-call cost otherwise
                stages, executor = self.tracing.wrap(stages, executor)
            self.pipeline = compose(stages, executor)
            self.codemode.pipeline = self.pipeline
            self.codemode.task_group = tg
            self.mcp = self.new_door()
            self.registry.add_listener(self._registry_changed)
            self.registry.add_resource_listener(self._resource_updated)
            tg.start_soon(self.request_log.run)
            hub = self.settings.hub
            keep = parse_retention(hub.request_log_retention)
            keep_rollup = parse_retention(hub.request_log_rollup_retention)
            tg.start_soon(
                partial(self.request_log.run_retention, keep_rollup=keep_rollup), keep, hub.request_log_purge_interval_s
            )
            keep_responses = parse_retention(hub.responses_retention)
            tg.start_soon(self.responses.run_retention, keep_responses, hub.request_log_purge_interval_s)
            await tg.start(self.registry.run, list(self.settings.servers.values()))
            await self.control.start(tg)
            virtual_store = await anyio.to_thread.run_sync(VirtualServerStore, self.store.engine)
            self.virtual_catalog = VirtualCatalog(self.virtual, self.settings.virtual_servers, virtual_store)
            await self.virtual_catalog.apply()
            # Budgets' spend comes back from the request log once per counter store (refused until it is in).
            await tg.start(BudgetSeeder(self.limiter, partial(window_spend, self.store.engine, keep=keep)).run)
            if self._code_mode_servers() or any(key.code_mode for key in self.keyring.keys()):
                self.codemode.prepare()  # the sandbox guest builds or loads in the background; the doors serve
            watcher = ChangeWatcher(self.store.engine, interval=hub.change_poll_s, redis_url=self.settings.redis_url())
            watcher.follow({"keys"}, self._follow_keys)
            watcher.follow({"governance", "servers"}, self.control.follow)
            watcher.follow({"guardrails"}, guardrails.follow)
            watcher.follow({"pins"}, pins.follow)
            watcher.follow({"virtual_servers"}, self._follow_virtual)
            watcher.follow({TOKENS_CHANGED}, auth.follow)
            if self.signin is not None:
                watcher.follow({"signin"}, self.signin.follow)
            self.changes = watcher
            await tg.start(watcher.run)
            await self.registry.wait_ready(self.settings.hub.upstream_start_timeout_s)
            try:
                yield self
            finally:
                for upstream in self.registry.upstreams.values():
                    upstream.stop()
                self.codemode.stop()
                tg.cancel_scope.cancel()
        self._tg = None
        with anyio.CancelScope(shield=True):
            await auth.aclose()
            if self.signin is not None:
                await self.signin.aclose()
                self.signin = None
            await guardrails.aclose()
            if self.llm_router is not None:
                await self.llm_router.aclose()
                self.llm_router = None
            closer = getattr(counters, "aclose", None)
            if closer is not None:
                await closer()
            if self.tracing is not None:
                await anyio.to_thread.run_sync(self.tracing.shutdown)  # exports the spans still batched
                self.tracing = None
            if self.log_export is not None:
                await anyio.to_thread.run_sync(self.log_export.shutdown)
                self.log_export = None

    def _open_metrics(self) -> HubMetrics | None:
        """The Prometheus metrics, reading the registry, the MCP sessions and the sandbox pool at each scrape; None
        with `[metrics] enabled = false` (`prometheus_client` is then never imported)."""
        if not self.settings.metrics.enabled:
            return None
        from hub.telemetry.metrics import HubMetrics, MetricSources, configured_deployments

        def sessions() -> dict[str, int]:
            people = self.signin.index.people() if self.signin is not None else []  # a person counts as a key
            return {key.name: n for key in (*self.keyring.keys(), *people) if (n := self.sessions.count(key.id))}

        def pool() -> tuple[int, int, int] | None:
            running = self.codemode.running_pool
            return None if running is None else (len(running.worker_pids), running.busy, running.waiting)

        s = self.settings
        sources = MetricSources(
            tools=lambda: self.registry.view.tools,
            upstreams=lambda: self.registry.upstreams,
            sessions=sessions,
            pool=pool,
            deployments=configured_deployments(s.providers, s.models, s.prices),
            providers=frozenset(s.providers),
        )
        return HubMetrics(sources)

    async def _open_llm_router(self) -> Router | None:
        """The LLM router for `[providers]`, `[models]`, `[prices]` and `[routing]`, opened; None without providers."""
        s = self.settings
        if not s.providers:
            return None
        from llm.router import Router  # with the first provider: the providers and their HTTP client

        router = Router(LLMConfig(providers=s.providers, models=s.models, prices=s.prices, routing=s.routing))
        if self.tracing is not None:
            router.observe = self.tracing.attempt
        await router.open()
        return router

    def _open_log_export(self) -> LogExport | None:
        """The request log's OTLP log export when it is on (its modules load only then); with tracing on, each
        record carries the ids of its call's root span.

        Raises:
            ConfigError: an `OTEL_*` variable has a value the exporter cannot follow (named in the message).
        """
        try:
            config = log_config(self.settings.telemetry)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if config is None:
            return None
        from hub.telemetry.logexport import LogExport

        return LogExport(config, self.tracing and self.tracing.span_ids)

    def _open_tracing(self) -> Tracing | None:
        """The tracer provider when tracing is on (its modules load only then).

        Raises:
            ConfigError: an `OTEL_*` variable has a value the hub cannot follow.
        """
        try:
            config = trace_config(self.settings.telemetry)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if config is None:
            return None
        from hub.telemetry.traces import Tracing

        providers = self.settings.providers

        def provider_kind(name: str) -> str | None:
            provider = providers.get(name)
            return provider.kind if provider is not None else None

        return Tracing(config, provider_kind=provider_kind, server_of=self._server_of)

    def _open_responses(self) -> ResponseStore:
        return ResponseStore(self.store.engine, max_state_bytes=self.settings.hub.responses_max_state_bytes)

    async def _response_owner(self, response_id: str) -> str | None:
        """The key that created a stored response (for the authz stage)."""
        record = await self.responses.find(response_id) if self.responses is not None else None
        return record.key_id if record is not None else None

    async def _open_counters(self) -> Counters:
        """Redis when a URL is set (replicas); else the supervisor's counter server when this process is one of the
        workers of `agenthub serve --workers N`; else this process's memory."""
        url = self.settings.redis_url()
        if url is not None:
            from hub.store.redis_counters import RedisCounters

            return RedisCounters.from_url(url)
        from hub.store.socket_counters import SocketCounters, counters_socket

        path = counters_socket()
        return SocketCounters(path) if path is not None else InMemoryCounters()

    def _executors(self, upstream_for: Any) -> Executors:
        mcp = McpExecutor(self.registry, upstream_for)
        view = self.view
        budgeted = self.limiter.budgeted if self.limiter is not None else None
        llm = None
        if self.llm_router is not None:
            stored = StoredResponses(self.responses, self.llm_router) if self.responses is not None else None
            llm = LlmExecutor(self.llm_router, budgeted, stored)
        return Executors(
            {
                "mcp.tool": mcp,
                "mcp.prompt": mcp,
                "mcp.resource": mcp,
                "mcp.complete": mcp,
                "mcp.subscribe": mcp,
                "mcp.list": self.listings,
                "mcp.session": SessionExecutor(self.sessions),
                "code.read": with_view(self.codemode.read, view),
                "code.run": with_view(self.codemode.execute, view),
            },
            agent=self.agent,
            llm=llm,
        )

    def _body_recorder(self) -> BodyRecorder | None:
        """What stores the bodies of `[hub] log_bodies`, redacted by the guardrails in force; None when off."""
        hub = self.settings.hub
        if hub.log_bodies == "none":
            return None
        current = lambda: self.guardrails.current() if self.guardrails is not None else None  # noqa: E731
        return BodyRecorder(hub.log_body_max_bytes, guardrail_redactors(current))

    def _locate(self, call: Call) -> tuple[str, str] | None:
        """The upstream an MCP call goes to and the item's name there (for the request log)."""
        if call.scope is not None:
            return call.scope, call.target
        entry = self._entry_of(call)
        return (entry.server, entry.original) if entry is not None else None

    def _server_of(self, call: Call) -> str | None:
        """The upstream a call goes to, for guardrail rules scoped to servers."""
        if call.scope is not None:
            return call.scope
        entry = self._entry_of(call)
        return entry.server if entry else None

    def _entry_of(self, call: Call) -> Entry | None:
        """The registry's entry for the tool, prompt, resource or reference an MCP call names."""
        view = self.registry.view
        operation = call.operation
        if operation == "mcp.tool":
            entry = view.tools.get(call.target)
        elif operation == "mcp.prompt":
            entry = view.prompts.get(call.target)
        elif operation in ("mcp.resource", "mcp.subscribe"):
            entry = view.resolve_resource(call.target)
        elif operation == "mcp.complete":
            ref = call.payload.get("ref") if isinstance(call.payload, dict) else None
            entry = view.reference(ref.get("type") if isinstance(ref, dict) else None, call.target)
        else:
            return None
        return entry

    def new_door(self, scope: str | None = None, credential: Callable[[], str | None] | None = None) -> McpDoor:
        """An MCP door on this hub's pipeline: the aggregated endpoint, or one server's (`scope`); `credential`
        gives the caller's key when it does not come with an HTTP request (the embedded stdio door)."""
        assert self.pipeline is not None
        door = McpDoor(
            self.pipeline,
            self.view,
            scope=scope,
            codemode=self.codemode,
            credential=credential,
            listing=self.listings.listing,
            lists=self.lists,
        )
        door.set_subscriber(self._subscribe_resource, self._unsubscribe_resource)
        if self.tracing is not None:
            door.server.middleware.insert(0, self.tracing.mcp_middleware)
        return door

    def new_virtual_door(self, name: str, credential: Callable[[], str | None] | None = None) -> McpVirtualDoor:
        """The door of the virtual server `name` on this hub's pipeline (`credential`: as for `new_door`)."""
        assert self.pipeline is not None
        door = McpVirtualDoor(
            name,
            self.virtual,
            self.pipeline,
            self.view,
            authenticate=self.authenticate,
            codemode=self.codemode,
            credential=credential,
            listing=self.listings.listing,
            lists=self.lists,
        )
        door.set_subscriber(self._subscribe_resource, self._unsubscribe_resource)
        if self.tracing is not None:
            door.server.middleware.insert(0, self.tracing.mcp_middleware)
        return door

    async def _follow_virtual(self, _versions: Mapping[str, str]) -> None:
        """Another process changed the stored virtual servers."""
        if self.virtual_catalog is not None:
            await self.virtual_catalog.apply(self.virtual_changed)

    async def virtual_changed(self, names: list[str]) -> None:
        """Virtual servers changed: their sessions re-read what they see there."""
        view = self.registry.view
        for name in names:
            door = self.virtual.doors.get(name)
            server = self.virtual.get(name)
            if door is not None:
                door.server.instructions = server.config.description if server is not None else None
                await door.registry_changed(view)

    async def _subscribe_resource(self, server: str, uri: str) -> None:
        """Hold a subscription to a resource's updates on the server's shared session.

        Raises:
            HubError: the server is gone, unreachable, or refused the subscription.
        """
        try:
            await self._shared.shared(server).subscribe_resource(uri)
        except UpstreamError as exc:
            raise to_hub_error(exc) from None

    async def _unsubscribe_resource(self, server: str, uri: str) -> None:
        upstream = self.registry.upstreams.get(server)
        if upstream is not None:
            await upstream.unsubscribe_resource(uri)

    async def _resource_updated(self, server: str, uri: str) -> None:
        for door in [self.mcp, *self.server_doors.values(), *self.virtual.doors.values()]:
            if door is not None:
                await door.resource_updated(server, uri)

    async def _registry_changed(self, view: RegistryView) -> None:
        self.listings.clear()
        doors = [self.mcp, *self.server_doors.values(), *self.virtual.doors.values()]
        for door in doors:
            if door is not None:
                await door.registry_changed(view)
        await anyio.to_thread.run_sync(release_free_memory)  # what reading the new catalog left behind

    def door_for(self, server: str) -> McpDoor | None:
        """The single-server door for `/mcp/{server}`, or a virtual server's for `/mcp/v/NAME`, created on first use."""
        if server.startswith(VIRTUAL_PREFIX):
            return self.virtual.door(server[len(VIRTUAL_PREFIX) :], self.new_virtual_door)
        if server not in self.registry.upstreams:
            return None
        door = self.server_doors.get(server)
        if door is None:
            door = self.new_door(server)
            self.server_doors[server] = door
        return door

    def server_status(self) -> list[dict[str, Any]]:
        """Health and counts per upstream, for `agenthub servers` and `GET /api/v1/servers`."""
        return self.registry.status()

    def authenticate(self, credential: str | None, server: str | None = None) -> Principal | None:
        """The principal of a presented key, as the authn stage decides it (for the MCP transport, which binds a
        session to its key before the SDK opens it); with `[sign_in]`, else the person behind an access token
        issued for this MCP endpoint (`server`: the `/mcp/{server}` one)."""
        key = self.keyring.verify(credential) if credential else None  # as the authn stage decides
        if key is None and credential and self.signin is not None:
            key = self.signin.check(credential, server)
        return Principal(key) if key is not None else None

    def challenge(self, server: str | None = None) -> str | None:
        """`WWW-Authenticate` for a refused MCP request with `[sign_in]` (where to find the authorization server),
        or None for the plain one."""
        return self.signin.challenge(server) if self.signin is not None else None

    def _person(self, person_id: str) -> VirtualKey | None:
        return self.signin.index.person(person_id) if self.signin is not None else None

    def _reach(self, key: VirtualKey, server: str | None) -> list[str]:
        """The tools `key` reaches now, on the aggregated endpoint or one server's (the consent page lists them)."""
        return [name for name, entry in self.registry.view.tools.items() if key.grant.allows(entry, server)]

    def _person_limits(self, key: VirtualKey) -> None:
        """A person's limits, registered as a key's (their own budget and rate limit, under their team)."""
        if self.limiter is not None:
            self.limiter.set_key(key.id, team=key.team, budget=key.budget, rate_limit=key.rate_limit)

    def forget_server(self, name: str) -> None:
        """A run-time server was removed: its single-server endpoint goes with it."""
        door = self.server_doors.pop(name, None)
        if door is not None:
            self.lists.forget(door)

    def needs_client_session(self, server: str) -> bool:
        """Whether calls to `server` must run on the caller's own MCP session (per-client upstreams)."""
        upstream = self.registry.upstreams.get(server)
        return upstream is not None and upstream.config.session == "per_client"

    @property
    def task_group(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            raise RuntimeError("the hub is not running")
        return self._tg


def open_hub(settings: Settings) -> Hub:
    """Create a hub (not yet running) for these settings."""
    return Hub(settings=settings, store=SqlStore(settings.database_url()))

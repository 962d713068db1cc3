"""One upstream MCP server: a long-lived session, its catalog, reconnects with backoff, per-call timeouts.

`Upstream.run()` is a supervisor loop meant to run in the owner's task group for the whole process lifetime:
connect, fetch the catalog (tools, prompts, resources, resource templates), serve calls until the session
breaks (a stdio child exits, an HTTP upstream stops answering), then reconnect with exponential backoff and
jitter. A broken or slow upstream only ever affects its own calls.
"""

from __future__ import annotations

import enum
import logging
import os
import random
import shutil
import sys
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.session import ElicitationFnT, IncomingMessage, ListRootsFnT, LoggingFnT, SamplingFnT
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from connectors.config import HttpConfig, SseConfig, StdioConfig
from connectors.errors import UpstreamError, UpstreamProtocolError, UpstreamTimeout, UpstreamUnavailable
from connectors.rawhttp import LeanSessions, RawHttpSession
from connectors.streams import WatchedTransport
from http1 import ssl_context_for
from http1.propagation import trace_context

logger = logging.getLogger(__name__)

CLIENT_INFO = types.Implementation(name="agenthub", version="0.1.0")
MAX_BACKOFF_S = 30.0
LEAN_SESSIONS = 4
"""Lean sessions per Streamable HTTP upstream at most (see `connectors.rawhttp.LeanSessions`)."""
LEAN_CONNECTIONS = 100
"""Pooled HTTP connections per upstream, shared out among its lean sessions."""
_LIST_PAGES = 100


class UpstreamState(enum.Enum):
    """Where an upstream's supervisor is."""

    CONNECTING = "connecting"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Catalog:
    """What an upstream offers, as it last reported it."""

    tools: tuple[types.Tool, ...] = ()
    prompts: tuple[types.Prompt, ...] = ()
    resources: tuple[types.Resource, ...] = ()
    templates: tuple[types.ResourceTemplate, ...] = ()
    protocol_version: str = ""


@dataclass(frozen=True)
class ClientCallbacks:
    """Server-to-client request handlers to declare to the upstream (per-client sessions only)."""

    sampling: SamplingFnT | None = None
    elicitation: ElicitationFnT | None = None
    roots: ListRootsFnT | None = None
    logging: LoggingFnT | None = None
    """Where the upstream's `notifications/message` go (handshake-era log messages)."""


@dataclass
class Health:
    """A snapshot for `agenthub servers` and the admin API."""

    state: UpstreamState = UpstreamState.CONNECTING
    error: str | None = None
    connected_at: float | None = None
    reconnects: int = 0
    calls: int = 0
    failures: int = 0
    extra: dict[str, Any] = field(default_factory=dict[str, Any])
    unauthorized: bool = False
    """The last connection attempt got HTTP 401 or 403: a credential problem, not an outage."""


ChangeHook = Callable[["Upstream"], Awaitable[None]]
ResourceUpdatedHook = Callable[["Upstream", str], Awaitable[None]]
"""Told of each `notifications/resources/updated` the upstream sends (with the URI as the upstream names it)."""


class Upstream:
    """A supervised connection to one upstream MCP server."""

    def __init__(
        self,
        config: StdioConfig | SseConfig | HttpConfig,
        *,
        on_change: ChangeHook | None = None,
        callbacks: ClientCallbacks | None = None,
        mode: str = "auto",
        http_auth: httpx2.Auth | None = None,
        on_resource_updated: ResourceUpdatedHook | None = None,
    ) -> None:
        """`mode` is the `mcp.Client` connect mode: `auto` (newest era the upstream speaks) or `legacy`
        (the initialize handshake, where the upstream may send requests and log messages back). `http_auth`
        authenticates every HTTP request to an SSE or Streamable HTTP upstream (headers or OAuth tokens, see
        `connectors.auth`); it replaces any `Authorization` header the request carried. `on_resource_updated`
        hears the upstream's `notifications/resources/updated` for resources subscribed with
        `subscribe_resource`."""
        self.config = config
        self.mode = mode
        self.http_auth = http_auth
        self.name = config.name
        self.catalog = Catalog()
        self.health = Health()
        self._on_change = on_change
        self._on_resource_updated = on_resource_updated
        self._subscriptions: dict[str, int] = {}
        self._listens: dict[str, anyio.CancelScope] = {}
        self._session_tg: anyio.abc.TaskGroup | None = None
        self._callbacks = callbacks or ClientCallbacks()
        self._client: Client | None = None
        self._broken = anyio.Event()
        self._ready = anyio.Event()
        self._attempted = anyio.Event()
        self._stopped = False
        self._cancel: anyio.CancelScope | None = None
        self._fast: LeanSessions | None = None

    # -- lifetime ------------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect and stay connected until `stop()`; never raises for upstream failures."""
        backoff = 0.5
        with anyio.CancelScope() as scope:
            self._cancel = scope
            while not self._stopped:
                self.health.state = UpstreamState.CONNECTING
                started = time.monotonic()
                try:
                    await self._serve_one_session()
                except Exception as exc:
                    self._mark_failed(exc)
                    self._attempted.set()
                if self._stopped:
                    break
                if time.monotonic() - started > 60:
                    backoff = 0.5
                delay = backoff * (0.5 + random.random())
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                self.health.reconnects += 1
                logger.info("upstream %s: reconnecting in %.1fs", self.name, delay)
                await anyio.sleep(delay)
        self.health.state = UpstreamState.STOPPED

    def stop(self) -> None:
        """Stop the supervisor loop and close the session."""
        self._stopped = True
        if self._cancel is not None:
            self._cancel.cancel()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until the first session is up; False on timeout (the upstream keeps trying in the background)."""
        with anyio.move_on_after(timeout):
            await self._ready.wait()
            return True
        return False

    async def wait_attempt(self, timeout: float) -> bool:
        """Wait until the first connection attempt has succeeded or failed (bounded); True when ready."""
        with anyio.move_on_after(timeout):
            await self._attempted.wait()
        return self.ready

    @property
    def ready(self) -> bool:
        return self.health.state is UpstreamState.READY and self._client is not None

    async def _serve_one_session(self) -> None:
        self._broken = anyio.Event()
        connected = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._connect_watchdog, connected, tg.cancel_scope)
            async with self._make_client() as client:
                lean = await self._open_lean_session()
                try:
                    catalog = await self._fetch_catalog(client, lean)
                except BaseException:
                    if lean is not None:
                        with anyio.CancelScope(shield=True):
                            await lean.aclose()
                    raise
                connected.set()
                self._client = client
                self._fast = lean
                self.catalog = catalog
                self.health.state = UpstreamState.READY
                self.health.error = None
                self.health.connected_at = time.time()
                self.health.unauthorized = False
                self._ready.set()
                self._attempted.set()
                logger.info("upstream %s: ready (%d tools)", self.name, len(catalog.tools))
                if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                    tg.start_soon(self._listen_for_changes, client)
                self._session_tg = tg
                tg.start_soon(self._resubscribe, client)
                try:
                    if self._on_change is not None:
                        await self._on_change(self)
                    await self._broken.wait()
                finally:
                    self._client = None
                    self._session_tg = None
                    self._listens.clear()
                    fast, self._fast = self._fast, None
                    if fast is not None:
                        with anyio.CancelScope(shield=True):
                            await fast.aclose()
            tg.cancel_scope.cancel()
        raise UpstreamUnavailable(self.name, self.health.error or "session closed")

    async def _resubscribe(self, client: Client) -> None:
        """Renew the resource subscriptions a new session does not have (after a reconnect)."""
        for uri in list(self._subscriptions):
            try:
                with anyio.fail_after(self.config.timeout_s):
                    await self._send_subscribe(client, uri)
            except Exception as exc:
                logger.info("upstream %s: renewing the subscription to %s failed: %s", self.name, uri, _describe(exc))

    async def _send_subscribe(self, client: Client, uri: str) -> None:
        """Subscribe on this session: `resources/subscribe` (handshake era) or a `subscriptions/listen` stream
        for the URI (2026-07-28), open once its acknowledgement arrived."""
        if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            request = types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri))
            await client.session.send_request(request, types.EmptyResult)
            return
        tg = self._session_tg
        if tg is None:
            raise UpstreamUnavailable(self.name, f"upstream '{self.name}' is not connected")
        if uri not in self._listens:
            await tg.start(self._listen_resource, client, uri)

    async def _send_unsubscribe(self, client: Client, uri: str) -> None:
        if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            request = types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=uri))
            await client.session.send_request(request, types.EmptyResult)
            return
        scope = self._listens.pop(uri, None)
        if scope is not None:
            scope.cancel()

    async def _listen_resource(
        self, client: Client, uri: str, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """One 2026-07-28 `subscriptions/listen` stream for one resource, until unsubscribed or the session ends."""
        started = False
        with anyio.CancelScope() as scope:
            try:
                async with client.listen(resource_subscriptions=[uri]) as subscription:
                    self._listens[uri] = scope
                    started = True
                    task_status.started()
                    async for event in subscription:
                        if isinstance(event, ResourceUpdated):
                            await self._resource_updated(event.uri)
            except Exception as exc:
                if not started:
                    raise
                logger.info("upstream %s: the subscription to %s ended: %s", self.name, uri, _describe(exc))
        if self._listens.get(uri) is scope:
            del self._listens[uri]

    async def _resource_updated(self, uri: str) -> None:
        if self._on_resource_updated is not None and uri in self._subscriptions:
            await self._on_resource_updated(self, uri)

    async def _open_lean_session(self) -> LeanSessions | None:
        """The lean sessions for plain tool calls and tool listings of a Streamable HTTP upstream that needs no
        per-client callbacks; None when there are none (everything then takes the SDK path)."""
        cfg = self.config
        if not isinstance(cfg, HttpConfig) or self._callbacks != ClientCallbacks():
            return None

        def new_session(size: int) -> RawHttpSession:
            budget = max(1, LEAN_CONNECTIONS // size)
            return RawHttpSession(self.name, cfg.url, dict(cfg.headers), auth=self.http_auth, max_connections=budget)

        lean = LeanSessions(self.name, new_session, size=LEAN_SESSIONS)
        try:
            await lean.open()
        except Exception as exc:
            logger.info("upstream %s: no fast path (%s)", self.name, _describe(exc))
            await lean.aclose()
            return None
        return lean

    async def _listen_for_changes(self, client: Client) -> None:
        """On 2026-07-28 sessions list changes arrive only on a `subscriptions/listen` stream."""
        caps = client.server_capabilities
        wanted = {
            "tools_list_changed": bool(caps.tools and caps.tools.list_changed),
            "prompts_list_changed": bool(caps.prompts and caps.prompts.list_changed),
            "resources_list_changed": bool(caps.resources and caps.resources.list_changed),
        }
        if not any(wanted.values()):
            return
        try:
            async with client.listen(
                tools_list_changed=wanted["tools_list_changed"],
                prompts_list_changed=wanted["prompts_list_changed"],
                resources_list_changed=wanted["resources_list_changed"],
            ) as subscription:
                async for _event in subscription:
                    await self.refresh()
        except Exception as exc:
            logger.info("upstream %s: change subscription ended: %s", self.name, _describe(exc))

    async def _connect_watchdog(self, connected: anyio.Event, scope: anyio.CancelScope) -> None:
        with anyio.move_on_after(self.config.connect_timeout_s):
            await connected.wait()
            return
        self.health.error = f"no answer within {self.config.connect_timeout_s:g}s while connecting"
        scope.cancel()

    def _make_client(self) -> Client:
        cfg = self.config
        transport: AbstractAsyncContextManager[Any]
        if isinstance(cfg, StdioConfig):
            params = StdioServerParameters(
                command=resolve_command(cfg.command), args=list(cfg.args), env=dict(cfg.env), cwd=cfg.cwd
            )
            transport = stdio_client(params)
        elif isinstance(cfg, SseConfig):
            transport = sse_client(
                cfg.url, headers=dict(cfg.headers), timeout=cfg.connect_timeout_s, auth=self.http_auth
            )
        else:
            transport = _http_transport(cfg, self._saw_status, self.http_auth)
        cb = self._callbacks
        return Client(
            WatchedTransport(transport, on_close=self._on_transport_closed),
            mode=self.mode,
            cache=None,
            client_info=CLIENT_INFO,
            message_handler=self._on_message,
            sampling_callback=cb.sampling,
            elicitation_callback=cb.elicitation,
            list_roots_callback=cb.roots,
            logging_callback=cb.logging,
        )

    def _saw_status(self, status: int) -> None:
        if status in (401, 403):
            self.health.unauthorized = True

    def _on_transport_closed(self) -> None:
        self._mark_broken("the connection closed")

    def _mark_broken(self, reason: str) -> None:
        if not self._broken.is_set():
            self.health.error = reason
            logger.warning("upstream %s: %s", self.name, reason)
            self._broken.set()

    def _mark_failed(self, exc: BaseException) -> None:
        self.health.state = UpstreamState.FAILED
        message = _describe(exc)
        self.health.error = message
        logger.warning("upstream %s: %s", self.name, message)

    # -- catalog ---------------------------------------------------------------------------------------------------

    async def _fetch_catalog(self, client: Client, lean: LeanSessions | None) -> Catalog:
        caps = client.server_capabilities
        tools: list[types.Tool] = []
        prompts: list[types.Prompt] = []
        resources: list[types.Resource] = []
        templates: list[types.ResourceTemplate] = []
        if caps.tools is not None:
            tools = await self._list_tools(client, lean)
        if caps.prompts is not None:
            prompts = await _all_pages(lambda c: client.list_prompts(cursor=c), "prompts")
        if caps.resources is not None:
            resources = await _all_pages(lambda c: client.list_resources(cursor=c), "resources")
            templates = await _all_pages(lambda c: client.list_resource_templates(cursor=c), "resource_templates")
        return Catalog(tuple(tools), tuple(prompts), tuple(resources), tuple(templates), client.protocol_version)

    async def _list_tools(self, client: Client, lean: LeanSessions | None) -> list[types.Tool]:
        """All the upstream's tools, read through the lean session when there is one.

        The SDK client parses a listing into several model trees at once (the JSON-RPC message, a check against the
        negotiated revision, the result), and for hundreds of tools that leaves megabytes of fragmented heap behind
        in a process that lives for months. The lean session reads it with one `orjson` parse into one model tree,
        sent as the SDK session would send it (its own stamp for 2026-07-28, the lean handshake-era session before
        that), and the SDK session then absorbs it as it absorbs a listing from its own response cache: the
        2026-07-28 `x-mcp-header` checks drop invalid tools and the per-tool state (output schemas, header maps)
        is rebuilt. Anything unexpected falls back to the SDK client's own listing.
        """
        session = client.session
        stamp = getattr(session, "_stamp", None)
        absorb = getattr(session, "_absorb_tool_listing", None)
        if lean is not None and stamp is not None and absorb is not None:
            modern = client.protocol_version in MODERN_PROTOCOL_VERSIONS
            timeout = self.config.timeout_s

            async def page(cursor: str | None) -> types.ListToolsResult:
                params: dict[str, Any] = {} if cursor is None else {"cursor": cursor}
                if modern:
                    request: dict[str, Any] = {"method": "tools/list", "params": params}
                    options: dict[str, Any] = {}
                    stamp(request, options)
                    headers: dict[str, str] = options.get("headers", {})
                    raw = await lean.request_stateless("tools/list", request["params"], headers, timeout=timeout)
                else:
                    raw = await lean.request("tools/list", params, timeout=timeout)
                result = types.ListToolsResult.model_validate(raw, by_name=False)
                del raw
                complete = cursor is None and result.next_cursor is None
                absorbed: types.ListToolsResult = absorb(result, complete=complete)
                return absorbed

            try:
                return await _all_pages(page, "tools")
            except (UpstreamError, ValidationError) as exc:
                logger.info("upstream %s: listing tools on the SDK session (%s)", self.name, _describe(exc))
        return await _all_pages(lambda c: client.list_tools(cursor=c), "tools")

    async def refresh(self) -> None:
        """Re-read the catalog (after a list_changed notification) and tell the owner."""
        client = self._client
        if client is None:
            return
        try:
            with anyio.fail_after(self.config.timeout_s):
                self.catalog = await self._fetch_catalog(client, self._fast)
        except Exception as exc:
            logger.warning("upstream %s: refresh failed: %s", self.name, _describe(exc))
            return
        if self._on_change is not None:
            await self._on_change(self)

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, Exception):
            logger.warning("upstream %s: bad message: %s", self.name, message)
            return
        if isinstance(
            message,
            types.ToolListChangedNotification
            | types.PromptListChangedNotification
            | types.ResourceListChangedNotification,
        ):
            await self.refresh()
        elif isinstance(message, types.ResourceUpdatedNotification) and not self._modern():
            # On 2026-07-28 sessions the same notification is also a `subscriptions/listen` event, handled there.
            await self._resource_updated(str(message.params.uri))

    def _modern(self) -> bool:
        client = self._client
        return client is not None and client.protocol_version in MODERN_PROTOCOL_VERSIONS

    # -- subscriptions ---------------------------------------------------------------------------------------------

    async def subscribe_resource(self, uri: str) -> None:
        """Hold one subscription to a resource's updates (handshake era): the first holder sends
        `resources/subscribe`, later holders only count. Every `subscribe_resource` that returns needs one
        `unsubscribe_resource`; a subscription survives reconnects.

        Raises:
            UpstreamError: the upstream refused the subscription or could not be reached (nothing is held then).
        """
        held = self._subscriptions.get(uri, 0)
        if held == 0:
            await self._request(lambda c: self._send_subscribe(c, uri), None)
        self._subscriptions[uri] = self._subscriptions.get(uri, 0) + 1

    async def unsubscribe_resource(self, uri: str) -> None:
        """Release one subscription; the last holder sends `resources/unsubscribe` (failures are only logged:
        the hub stops passing the updates on either way)."""
        held = self._subscriptions.get(uri, 0)
        if held > 1:
            self._subscriptions[uri] = held - 1
            return
        self._subscriptions.pop(uri, None)
        if held == 0 or not self.ready:
            return
        try:
            await self._request(lambda c: self._send_unsubscribe(c, uri), None)
        except UpstreamError as exc:
            logger.info("upstream %s: unsubscribing from %s failed: %s", self.name, uri, exc.message)

    @property
    def subscriptions(self) -> dict[str, int]:
        """Subscribed upstream URIs and how many holders each has (a copy)."""
        return dict(self._subscriptions)

    # -- calls -----------------------------------------------------------------------------------------------------

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None,
        *,
        progress: ProgressFnT | None = None,
        timeout: float | None = None,
    ) -> types.CallToolResult:
        """Call one tool by its upstream name."""
        meta = _trace_meta()
        return await self._request(
            lambda c: c.call_tool(name, arguments, progress_callback=progress, meta=meta), timeout
        )

    async def call_tool_raw(
        self,
        name: str,
        arguments: dict[str, Any] | None,
        *,
        progress: ProgressFnT | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Call one tool and return the result as its wire dict (the lean session when it can carry the call)."""
        fast = self._fast
        if fast is None or progress is not None or not self.ready:
            result = await self.call_tool(name, arguments, progress=progress, timeout=timeout)
            return result.model_dump(by_alias=True, mode="json", exclude_none=True)
        self.health.calls += 1
        params: dict[str, Any] = {"name": name, "arguments": arguments or {}}
        meta = _trace_meta()
        if meta is not None:  # the caller's trace context, in `_meta` as the SDK session sends it
            params["_meta"] = meta
        try:
            return await fast.request(
                "tools/call", params, timeout=timeout if timeout is not None else self.config.timeout_s
            )
        except (UpstreamUnavailable, UpstreamTimeout):
            self.health.failures += 1
            raise

    async def get_prompt(self, name: str, arguments: dict[str, str] | None) -> types.GetPromptResult:
        """Get one prompt by its upstream name."""
        meta = _trace_meta()
        return await self._request(lambda c: c.get_prompt(name, arguments, meta=meta), None)

    async def read_resource(self, uri: str) -> types.ReadResourceResult:
        """Read one resource by its upstream URI."""
        meta = _trace_meta()
        return await self._request(lambda c: c.read_resource(uri, meta=meta), None)

    async def complete(
        self, ref: types.PromptReference | types.ResourceTemplateReference, argument: dict[str, str]
    ) -> types.CompleteResult:
        """Ask the upstream for argument completions."""
        return await self._request(lambda c: c.complete(ref, argument), None)

    async def _request(self, send: Callable[[Client], Awaitable[Any]], timeout: float | None) -> Any:
        client = self._client
        if client is None or not self.ready:
            raise UpstreamUnavailable(self.name, f"upstream '{self.name}' is not connected")
        self.health.calls += 1
        limit = timeout if timeout is not None else self.config.timeout_s
        try:
            with anyio.fail_after(limit):
                return await send(client)
        except TimeoutError:
            self.health.failures += 1
            raise UpstreamTimeout(self.name, f"upstream '{self.name}' did not answer within {limit:g}s") from None
        except MCPError as exc:
            if exc.error.code == types.CONNECTION_CLOSED:
                self.health.failures += 1
                self._mark_broken(exc.error.message)
                raise UpstreamUnavailable(self.name, f"upstream '{self.name}' closed the connection") from None
            raise UpstreamProtocolError(self.name, exc.error.code, exc.error.message, exc.error.data) from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, httpx2.TransportError):
            self.health.failures += 1
            self._mark_broken("the connection broke during a call")
            raise UpstreamUnavailable(self.name, f"upstream '{self.name}' connection broke") from None
        except UpstreamError:
            raise
        except Exception as exc:
            self.health.failures += 1
            raise UpstreamUnavailable(self.name, f"upstream '{self.name}' failed: {_describe(exc)}") from None


def _trace_meta() -> types.RequestParamsMeta | None:
    """The caller's W3C trace context (`traceparent`, `tracestate`) for a request's `_meta`, as the hub sets it
    while it traces; None otherwise."""
    carried = trace_context.get()
    if not carried:
        return None
    meta: types.RequestParamsMeta = {}
    for name, value in carried:
        meta[name] = value
    return meta


def resolve_command(command: str) -> str:
    """A command on PATH, or else installed beside this Python (a virtualenv's console scripts)."""
    if os.sep in command or shutil.which(command):
        return command
    beside = Path(sys.executable).parent / command
    return str(beside) if beside.exists() else command


def _http_transport(
    cfg: HttpConfig, on_status: Callable[[int], None], auth: httpx2.Auth | None
) -> AbstractAsyncContextManager[Any]:
    async def record(response: httpx2.Response) -> None:
        on_status(response.status_code)

    @asynccontextmanager
    async def transport() -> AsyncGenerator[Any, None]:
        timeout = httpx2.Timeout(cfg.connect_timeout_s, read=cfg.timeout_s + 5)
        hooks = {"response": [record]}
        async with (
            httpx2.AsyncClient(
                headers=dict(cfg.headers),
                auth=auth,
                timeout=timeout,
                follow_redirects=False,
                event_hooks=hooks,
                verify=ssl_context_for(cfg.url),  # the client only talks to cfg.url (no redirects)
            ) as http,
            streamable_http_client(cfg.url, http_client=http) as streams,
        ):
            yield streams

    return transport()


async def _all_pages(fetch: Callable[[str | None], Awaitable[Any]], attr: str) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(_LIST_PAGES):
        page = await fetch(cursor)
        items.extend(getattr(page, attr))
        cursor = page.next_cursor
        if not cursor:
            break
    return items


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UpstreamError):
        return exc.message
    if isinstance(exc, TimeoutError):
        return "connection attempt timed out"
    if isinstance(exc, BaseExceptionGroup):
        inner: list[BaseException] = list(exc.exceptions)
        return "; ".join(_describe(e) for e in inner[:3])
    if isinstance(exc, MCPError):
        return f"protocol error {exc.error.code}: {exc.error.message}"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]

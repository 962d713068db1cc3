"""The HTTP surface: `build_app(settings)` returns the ASGI app with one lifespan that runs the `Hub`.

`/mcp` and `/mcp/{server}`, and `POST` to the OpenAI and Anthropic doors' paths, are routed by a plain ASGI layer in
front of Starlette (no per-request middleware stack on the hot path); the REST and admin routes are ordinary Starlette
routes. Any other request under `/v1` (an unknown path, or a method a path does not serve) is refused in the
OpenAI error envelope through the pipeline (`hub.doors.unrouted`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.app import Hub, open_hub
from hub.console.mount import ConsoleSurface
from hub.doors.mcp_http import McpTransport
from hub.doors.metrics import METRICS_PATH, metrics_endpoint
from hub.doors.probes import READYZ_PATH, Readiness, readiness_endpoint
from hub.doors.rest import execute_tool_route
from hub.doors.unrouted import unrouted_route
from hub.doors.web import json_response
from hub.governance.keys import bearer_token, constant_time_equal
from hub.paths import (
    ADMIN_PREFIX,
    LLM_POST_PATHS,
    OAUTH_CALLBACK_PATH,
    OAUTH_START_PATH,
    OPENAI_GET_PATHS,
    OPENAI_STORED_RESPONSE_PATHS,
)
from hub.settings import Settings
from hub.telemetry.traceconfig import tracing_on

if TYPE_CHECKING:
    from hub.signin.service import SignIn

_READ_HEADERS = frozenset(
    {b"authorization", b"x-api-key", b"api-key", b"accept", b"content-type", b"host", b"origin"}
    | {b"mcp-session-id", b"mcp-protocol-version"}
)
"""The request headers the router and the MCP fast path read (ASGI servers give names in lower case)."""


class McpRouter:
    """The app the server runs: `/mcp` and `/mcp/{server}` to the MCP transport, and `POST` to the OpenAI door's
    paths straight to its handlers; everything else (the lifespan, REST, admin) goes to the Starlette app behind
    it. The hot paths skip Starlette's middleware and routing."""

    def __init__(self, app: ASGIApp, hub_ref: HubRef, llm: _LlmDoor) -> None:
        self.app = app
        self._llm = llm
        self.mcp = McpTransport(hub_ref)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and scope["method"] == "POST" and path in LLM_POST_PATHS:
            await self._llm.endpoints()[path](scope, receive, send)
            return
        if scope["type"] != "http" or not (path == "/mcp" or path.startswith("/mcp/")):
            await self.app(scope, receive, send)
            return
        await self.mcp(scope, receive, send)

    def reset(self) -> None:
        self.mcp.reset()


class HubRef:
    """The running hub, set by the lifespan (routes are built before it exists)."""

    _hub: Hub | None = None

    @property
    def hub(self) -> Hub:
        if self._hub is None:
            raise RuntimeError("the hub is not running")
        return self._hub


def admin_authorized(request: Request) -> bool:
    token = os.environ.get("AGENTHUB_ADMIN_TOKEN")
    presented = bearer_token(request.headers.get("authorization"))
    return bool(token and presented and constant_time_equal(token, presented))


def build_app(settings: Settings, hub: Hub | None = None, *, on_ready: Callable[[Hub], None] | None = None) -> ASGIApp:
    """The ASGI app for these settings; its lifespan opens and runs the hub (or runs the one given), then calls
    `on_ready`."""
    ref = HubRef()

    async def health(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def execute(request: Request) -> Response:
        return await execute_tool_route(ref.hub, request)

    admin = _AdminSurface(ref)
    llm = _LlmDoor(ref)
    scrape = metrics_endpoint(settings.metrics.token, lambda: ref.hub.metrics)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncGenerator[None, None]:
        running_hub = hub or open_hub(settings)
        async with running_hub.running():
            ref._hub = running_hub
            if on_ready is not None:
                on_ready(running_hub)
            try:
                yield
            finally:
                ref._hub = None
                router.reset()
        if hub is None:
            running_hub.store.close()

    app = Starlette(
        routes=[
            *_signin_routes(settings, ref),
            *(Route(path, llm, methods=["POST"]) for path in sorted(LLM_POST_PATHS)),
            *(Route(path, llm, methods=["GET"]) for path in OPENAI_GET_PATHS),
            *(Route(path, llm, methods=list(methods)) for path, methods in OPENAI_STORED_RESPONSE_PATHS.items()),
            Route("/healthz", health, methods=["GET"]),
            Route(READYZ_PATH, readiness_endpoint(Readiness(lambda: ref._hub)), methods=["GET"]),
            *([Route(METRICS_PATH, scrape, methods=["GET"])] if settings.metrics.enabled else []),
            Route("/v1/mcp/tool/execute", execute, methods=["POST"]),
            Route(OAUTH_CALLBACK_PATH, admin, methods=["GET"]),
            Route(OAUTH_START_PATH, admin, methods=["GET", "POST"]),
            Route(ADMIN_PREFIX + "/{path:path}", admin),
            Route("/ui/{path:path}", ConsoleSurface(ref, settings)),  # the admin console, loaded on first use
            Route("/v1/{path:path}", _Unrouted(ref, lambda: app.routes)),  # last: what those above do not serve
        ],
        lifespan=lifespan,
    )
    router = McpRouter(app, ref, llm)  # the lifespan above runs once this exists
    if tracing_on(settings.telemetry):  # a client's trace context is read only when tracing
        from hub.telemetry.traces import client_context

        return client_context(router)
    return router


def _signin_routes(settings: Settings, ref: HubRef) -> list[BaseRoute]:
    """The authorization server's routes with `[sign_in]` (its modules load only then)."""
    section = settings.sign_in
    if section is None:
        return []
    from hub.signin.routes import signin_routes

    def signin() -> SignIn:
        running = ref.hub.signin
        if running is None:
            raise RuntimeError("sign-in is not running")
        return running

    return list(signin_routes(section, signin))


class _Unrouted:
    """Any request under `/v1` the other routes do not serve, whatever its method (an ASGI app, so that Starlette
    routes every method to it): refused in the OpenAI error envelope, with the methods `routes` serve on its path
    (a 405) or none (a 404)."""

    def __init__(self, ref: HubRef, routes: Callable[[], list[BaseRoute]]) -> None:
        self._ref = ref
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        allowed: set[str] = set()
        for route in self._routes():
            if isinstance(route, Route) and route.methods and route.matches(scope)[0] is Match.PARTIAL:
                allowed |= route.methods
        response = await unrouted_route(self._ref.hub, Request(scope, receive), allowed)
        await response(scope, receive, send)


class _AdminSurface:
    """The admin API and the upstream OAuth callback, loaded with the first request to either.

    Both are rarely used next to the MCP and LLM doors, and their modules (operations, schemas, the OpenAPI
    document) are a noticeable part of an idle hub's memory.
    """

    def __init__(self, ref: HubRef) -> None:
        self._ref = ref
        self._router: Router | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._router is None:
            from hub.doors.admin.ops import admin_routes
            from hub.doors.oauth import callback_endpoint, start_endpoint

            ref = self._ref
            callback = Route(OAUTH_CALLBACK_PATH, callback_endpoint(lambda: ref.hub), methods=["GET"])
            start = Route(OAUTH_START_PATH, start_endpoint(lambda: ref.hub), methods=["GET", "POST"])
            self._router = Router(routes=[callback, start, *admin_routes(ref)])
        # The inner routes bind their own path parameters; drop the catch-all's.
        await self._router({**scope, "path_params": {}}, receive, send)


class _LlmDoor:
    """The OpenAI-compatible door, loaded with its first request: a hub that serves only MCP never needs its
    modules. `POST`s to its paths reach `endpoints()` straight from `McpRouter` (the LLM hot path skips route
    matching); the model list comes through its Starlette routes (other methods on its paths are `_Unrouted`'s)."""

    def __init__(self, ref: HubRef) -> None:
        self._ref = ref
        self._endpoints: dict[str, ASGIApp] | None = None
        self._router: Router | None = None

    def endpoints(self) -> dict[str, ASGIApp]:
        """The plain ASGI apps for the `POST` paths, keyed by path."""
        if self._endpoints is None:
            from hub.doors.anthropic import anthropic_endpoints
            from hub.doors.openai import openai_endpoints

            ref = self._ref
            self._endpoints = {**openai_endpoints(lambda: ref.hub), **anthropic_endpoints(lambda: ref.hub)}
        return self._endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._router is None:
            from hub.doors.anthropic import anthropic_routes
            from hub.doors.openai import openai_routes

            ref = self._ref
            self._router = Router(routes=[*openai_routes(lambda: ref.hub), *anthropic_routes(lambda: ref.hub)])
        await self._router({**scope, "path_params": {}}, receive, send)

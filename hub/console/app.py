"""The console's routes, assembled: sign-in, every page, the static files, behind the security headers."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.console import (
    pages_guardrails,
    pages_keys,
    pages_logs,
    pages_models,
    pages_overview,
    pages_servers,
    pages_teams,
)
from hub.console.common import UI_PREFIX, HubSource
from hub.console.web import Console, Page, SecurityHeaders, signin_routes, static_file
from hub.settings import Settings


async def home(console: Console, page: Page) -> Response:
    return RedirectResponse(f"{UI_PREFIX}/overview", status_code=303)


def console_app(ref: HubSource, settings: Settings) -> ASGIApp:
    """The console for a hub: every `/ui` route, behind the security headers (a 404 for each when disabled)."""
    if not settings.console.enabled:

        async def disabled(scope: Scope, receive: Receive, send: Send) -> None:
            await Response("the console is disabled ([console] enabled = false)", 404)(scope, receive, send)

        return disabled
    console = Console(ref, settings)
    routes: list[Route] = [
        Route(f"{UI_PREFIX}/", console.page(home), methods=["GET"]),
        Route(f"{UI_PREFIX}/static/{{name}}", static_file, methods=["GET"]),
        *signin_routes(console),
        *pages_overview.routes(console),
        *pages_keys.routes(console),
        *pages_logs.routes(console),
        *pages_servers.routes(console),
        *pages_teams.routes(console),
        *pages_guardrails.routes(console),
        *pages_models.routes(console),
    ]
    return SecurityHeaders(Router(routes=routes))

"""`/ui`: the console's entry in the hub's routes, loading the console with its first request.

Jinja2, the templates and the page modules are a noticeable share of an idle hub's memory and most hubs never
serve a page, so `hub.console.app` is imported here only when a browser first asks for `/ui`.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from hub.console.common import HubSource
from hub.settings import Settings


class ConsoleSurface:
    """The ASGI app behind `/ui/{path}`; a 404 for every path when `[console] enabled = false`."""

    def __init__(self, ref: HubSource, settings: Settings) -> None:
        self._ref = ref
        self._settings = settings
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            from hub.console.app import console_app

            self._app = console_app(self._ref, self._settings)
        await self._app({**scope, "path_params": {}}, receive, send)

"""Upstream OAuth on the HTTP surface: the redirect endpoint (`GET /oauth/callback`) and the admin operations that
start an authorization (`POST /api/v1/servers/{name}/auth/login`) or sign out (`.../auth/logout`)."""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from hub.doors import OAUTH_CALLBACK_PATH
from hub.doors.admin.api import Ctx, json_response, off_loop, record
from hub.doors.admin.schema import AuthLoginIn
from hub.errors import HubError, NotFound, UpstreamFailed
from hub.governance.rbac import AdminPrincipal

if TYPE_CHECKING:
    from hub.app import Hub
    from hub.upstream_auth.manager import HubAuth

logger = logging.getLogger(__name__)

CALLBACK_PATH = OAUTH_CALLBACK_PATH
_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>AgentHub</title></head>"
    "<body style='font-family:sans-serif;margin:3em'><h1>{title}</h1><p>{text}</p></body></html>"
)
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _page(title: str, text: str, status: int) -> Response:
    body = _PAGE.format(title=html.escape(title), text=html.escape(text))
    return HTMLResponse(body, status_code=status, headers=_NO_STORE)


def callback_endpoint(hub: Callable[[], Hub]) -> Callable[[Request], Awaitable[Response]]:
    """The handler of `GET /oauth/callback`: finishes the authorization the `state` names."""

    async def callback(request: Request) -> Response:
        auth = hub().auth
        if auth is None:
            return _page("Not ready", "The hub is starting; try again in a moment.", 503)
        try:
            server, _subject = await auth.complete(dict(request.query_params))
        except HubError as exc:
            logger.info("upstream authorization callback refused: %s", exc.message)
            return _page("Authorization failed", exc.message, exc.wire.status)
        return _page("Authorized", f"AgentHub may now use '{server}' for you. You can close this tab.", 200)

    return callback


def _hub_auth(ctx: Ctx) -> HubAuth:
    auth = ctx.hub.auth
    if auth is None:
        raise UpstreamFailed("upstream authentication is not running")
    if ctx.params["name"] not in ctx.hub.registry.upstreams:
        raise NotFound(f"no server named '{ctx.params['name']}'")
    return auth


async def _subject(ctx: Ctx, subject: str | None) -> str | None:
    """A key's id from its name or id (per-user subjects are key ids)."""
    if subject is None:
        return None
    row = await off_loop(ctx.hub.store.get_key, subject)
    if row is None or row.revoked_at is not None:
        raise NotFound(f"no active key named '{subject}'")
    return row.id


async def login(ctx: Ctx, who: AdminPrincipal, body: AuthLoginIn) -> Response:
    """Start an authorization and return the URL to open (for a key, or the hub's own identity)."""
    auth = _hub_auth(ctx)
    name = ctx.params["name"]
    subject = await _subject(ctx, body.subject)
    url = await auth.login_url(name, subject)
    await record(ctx, who, "server.auth_login", "server", name, None, {"subject": subject})
    return json_response({"server": name, "subject": subject, "url": url, "redirect_uri": auth.redirect_uri})


async def logout(ctx: Ctx, who: AdminPrincipal, body: AuthLoginIn) -> Response:
    """Delete the stored tokens of a key (or of the hub's own identity) for the server."""
    auth = _hub_auth(ctx)
    name = ctx.params["name"]
    subject = await _subject(ctx, body.subject)
    await auth.logout(name, subject)
    await record(ctx, who, "server.auth_logout", "server", name, None, {"subject": subject})
    return json_response({"server": name, "subject": subject, "signed_out": True})

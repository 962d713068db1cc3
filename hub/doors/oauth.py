"""Upstream OAuth on the HTTP surface: per-user authorization links (`GET /oauth/start` shows what is being
authorized, its `POST` continues to the upstream), the redirect endpoint (`GET /oauth/callback`), and the admin
operations that start an authorization (`POST /api/v1/servers/{name}/auth/login`) or sign out (`.../auth/logout`).

The browser that opens a link first keeps a random value in a cookie (HttpOnly, `SameSite=Lax`; `Secure` with the
`__Host-` prefix when the hub is served over https); the link, the confirmation form's token and the callback are
checked against it (`hub.upstream_auth.flows`). Pages are minimal server-rendered HTML: every value escaped, no
script, not cached, not framed, sent without a referrer.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from hub.doors.admin.api import Ctx, json_response, off_loop, record
from hub.doors.admin.schema import AuthLoginIn
from hub.doors.host import AdminHost
from hub.errors import BadRequest, Forbidden, HubError, NotFound, PayloadTooLarge, UpstreamFailed
from hub.governance.keys import VirtualKey
from hub.governance.rbac import AdminPrincipal
from hub.paths import OAUTH_CALLBACK_PATH
from hub.signin.people import signed_in_as
from hub.store.sql import to_virtual_key
from hub.upstream_auth.flows import FLOW_TTL_S, AuthFlow

if TYPE_CHECKING:
    from hub.upstream_auth.manager import HubAuth

logger = logging.getLogger(__name__)

CALLBACK_PATH = OAUTH_CALLBACK_PATH
COOKIE = "agenthub-oauth"
"""The link cookie's name (with the `__Host-` prefix on https)."""
_BROWSER_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")
_FORM_LIMIT = 4096
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:38em;margin:3em auto;padding:0 1em;line-height:1.5}"
    "dt{font-weight:600}dd{margin:0 0 .7em}button{font-size:1em;padding:.5em 1.2em}"
    ".warn{border-left:4px solid #b50;padding-left:.8em}small{color:#555}"
)


def security_headers(form_action: str = "'none'") -> dict[str, str]:
    """The headers every page and redirect of the OAuth endpoints carries."""
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'unsafe-inline'; form-action {form_action}; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
    }


def _document(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)} - AgentHub</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def _page(title: str, text: str, status: int) -> Response:
    body = f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
    return HTMLResponse(_document(title, body), status_code=status, headers=security_headers())


def _refused(exc: HubError) -> Response:
    logger.info("upstream authorization refused: %s", exc.message)
    return _page("Authorization refused", exc.message, exc.wire.status)


# -- the browser's link cookie ---------------------------------------------------------------------------------


def _cookie_name(auth: HubAuth) -> str:
    return f"__Host-{COOKIE}" if auth.public_url.startswith("https://") else COOKIE


def _browser(request: Request, auth: HubAuth) -> str | None:
    """The browser's link value, if it sent a well-formed one."""
    value = request.cookies.get(_cookie_name(auth))
    return value if value is not None and _BROWSER_VALUE.fullmatch(value) else None


def _keep_browser(response: Response, auth: HubAuth, browser: str) -> None:
    response.set_cookie(
        _cookie_name(auth),
        browser,
        max_age=int(FLOW_TTL_S),
        path="/",
        secure=auth.public_url.startswith("https://"),
        httponly=True,
        samesite="lax",
    )


def form_token(browser: str, flow_id: str) -> str:
    """The confirmation form's anti-forgery token: only a page served to this browser for this link has it."""
    return hmac.new(browser.encode("ascii"), f"continue|{flow_id}".encode(), hashlib.sha256).hexdigest()


# -- GET and POST /oauth/start ---------------------------------------------------------------------------------


async def _active_key(hub: AdminHost, key_id: str) -> VirtualKey:
    """The virtual key, or the signed-in person (while they hold a live token), the link was made for."""
    person = hub.signin.index.person(key_id) if hub.signin is not None else None
    if person is not None:
        return person
    row = await off_loop(hub.store.get_key, key_id)
    if row is None or row.id != key_id or row.revoked_at is not None or to_virtual_key(row).expired():
        raise Forbidden("the AgentHub key this link was made for is no longer active")
    return to_virtual_key(row)


def _confirmation(auth: HubAuth, flow: AuthFlow, flow_id: str, key: VirtualKey, browser: str) -> str:
    e = html.escape
    server = flow.server
    oauth = auth.auths.get(server)
    upstream = f"{server} ({oauth.server_url})" if oauth is not None else server
    person = signed_in_as(key)
    who = ("Signed in as", person) if person is not None else ("AgentHub key", key.name)
    rows = [who, *([("Team", key.team)] if key.team else [])]
    rows += [("Upstream server", upstream), ("Requesting hub", auth.public_url)]
    facts = "".join(f"<dt>{e(label)}</dt><dd>{e(value)}</dd>" for label, value in rows)
    calls = (
        f"you make signed in as <b>{e(person)}</b>"
        if person is not None
        else f"made with the AgentHub key <b>{e(key.name)}</b>"
    )
    yours = "you" if person is not None else "your key"
    return _document(
        f"Authorize {server}",
        f"<h1>Authorize AgentHub to act as you at {e(server)}</h1>"
        f"<p>Continuing lets every call {calls} use your account at <b>{e(server)}</b>.</p><dl>{facts}</dl>"
        f"<p class='warn'>Continue only if this is {yours}. If someone sent you this link, close this page: "
        "continuing would give them your access.</p>"
        "<form method='post'>"
        f"<input type='hidden' name='flow' value='{e(flow_id)}'>"
        f"<input type='hidden' name='csrf' value='{e(form_token(browser, flow_id))}'>"
        f"<button type='submit'>Continue to {e(server)}</button></form>"
        "<p><small>This link works only in this browser and expires 10 minutes after it was made.</small></p>",
    )


def _form_action(auth: HubAuth) -> str:
    # Chrome and Safari apply `form-action` to every redirect that follows the POST: to the authorization server,
    # and from there to any login page of its own, on origins the hub cannot know in advance.
    return "'self' https: http:" if auth.settings.hub.insecure_loopback else "'self' https:"


async def _read_form(request: Request) -> dict[str, str]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadRequest("expected the confirmation form")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _FORM_LIMIT:
            raise PayloadTooLarge("the form is too large")
    try:
        return dict(parse_qsl(body.decode("ascii"), keep_blank_values=True, max_num_fields=8))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("malformed form") from None


def start_endpoint(hub: Callable[[], AdminHost]) -> Callable[[Request], Awaitable[Response]]:
    """The handler of `/oauth/start`: `GET ?flow=ID` claims the link for this browser and shows what it
    authorizes; `POST` (the confirmation form) uses it up and redirects to the upstream's authorization server."""

    async def show(request: Request, running: AdminHost, auth: HubAuth) -> Response:
        flow_id = request.query_params.get("flow", "")
        if not flow_id:
            raise BadRequest("the link lacks its flow")
        browser = _browser(request, auth) or secrets.token_urlsafe(32)
        flow = await auth.links.claim(flow_id, browser)
        key = await _active_key(running, flow.subject)
        page = _confirmation(auth, flow, flow_id, key, browser)
        response = HTMLResponse(page, headers=security_headers(_form_action(auth)))
        _keep_browser(response, auth, browser)
        return response

    async def proceed(request: Request, running: AdminHost, auth: HubAuth) -> Response:
        form = await _read_form(request)
        flow_id, token = form.get("flow", ""), form.get("csrf", "")
        if not flow_id:
            raise BadRequest("the form lacks its flow")
        browser = _browser(request, auth)
        if browser is None:
            raise Forbidden("this browser did not open the authorization link: open the link itself first")
        if not hmac.compare_digest(token.encode(), form_token(browser, flow_id).encode()):
            raise Forbidden("the form did not come from this authorization page: open the link again")
        flow = await auth.links.take(flow_id, browser)
        await _active_key(running, flow.subject)
        url = await auth.follow_link(flow, browser)
        response = RedirectResponse(url, status_code=303, headers=security_headers())
        _keep_browser(response, auth, browser)
        return response

    async def start(request: Request) -> Response:
        running = hub()
        auth = running.auth
        if auth is None:
            return _page("Not ready", "The hub is starting; try again in a moment.", 503)
        if request.method == "HEAD":  # link previews and prefetchers: never claim a link
            return _page("AgentHub authorization link", "Open this link in a browser.", 200)
        try:
            if request.method == "POST":
                return await proceed(request, running, auth)
            return await show(request, running, auth)
        except HubError as exc:
            return _refused(exc)

    return start


# -- GET /oauth/callback ---------------------------------------------------------------------------------------


def callback_endpoint(hub: Callable[[], AdminHost]) -> Callable[[Request], Awaitable[Response]]:
    """The handler of `GET /oauth/callback`: finishes the authorization the `state` names, in the browser it is
    bound to."""

    async def callback(request: Request) -> Response:
        auth = hub().auth
        if auth is None:
            return _page("Not ready", "The hub is starting; try again in a moment.", 503)
        try:
            server, _subject = await auth.complete(dict(request.query_params), _browser(request, auth))
        except HubError as exc:
            return _refused(exc)
        return _page("Authorized", f"AgentHub may now use '{server}' for you. You can close this tab.", 200)

    return callback


# -- admin operations ------------------------------------------------------------------------------------------


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
    """Start an authorization and return the URL to open: for a key, a link to the hub's confirmation page (for
    the key's user); for the hub's own identity, the upstream's authorization URL."""
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

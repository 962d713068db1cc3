"""The console's web layer: routing, sign-in and sessions, CSRF, security headers and rendering.

Every page is rendered on the server (Jinja2, autoescaping on for every template) and reads without JavaScript;
the vendored htmx and one small script only add conveniences (infinite scroll, a copy button). Pages send a
strict Content-Security-Policy: scripts and styles come only from `/ui/static`, no inline script runs, and no
other site may frame the console. Every form carries the session's CSRF token, checked on every POST before
anything else runs. What a page shows or changes it asks of the admin API (`bridge`), with the session's
credential: the console holds no permission the signed-in person does not hold there.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import anyio
from jinja2 import Environment, FileSystemLoader
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.console.bridge import AdminBridge, ApiAnswer
from hub.console.common import UI_PREFIX, HubSource
from hub.console.sessions import COOKIE, PRE_COOKIE, Session, Sessions
from hub.errors import Unauthenticated
from hub.governance.rbac import AdminPrincipal
from hub.paths import ADMIN_PREFIX
from hub.settings import Settings

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC = HERE / "static"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
MAX_FORM_BYTES = 64 * 1024
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
FLASH_COOKIE = "agenthub_console_flash"
"""What the page a change redirects to says about it (not secret: names and outcomes)."""
OIDC_STATE = "agenthub_console_oidc"
"""The OIDC login's signed state, while the browser is away at the provider (path `/ui/signin`)."""


@dataclass
class Page:
    """One signed-in request: the session, who it is (as the admin API decides), and the submitted form."""

    request: Request
    session: Session
    principal: AdminPrincipal
    form: dict[str, str] = field(default_factory=dict[str, str])
    flash: list[str] = field(default_factory=list[str])
    """Messages for the page a change redirects to (carried by a short-lived cookie)."""

    def can(self, resource: str, action: str) -> bool:
        """Whether the page shows controls for this (the API decides anyway)."""
        return self.principal.may_any(resource, action)


PageHandler = Callable[["Console", Page], Awaitable[Response]]


class Console:
    """The state of the console in this process: sessions, templates, the bridge to the admin API."""

    def __init__(self, ref: HubSource, settings: Settings, clock: Callable[[], float] | None = None) -> None:
        from hub.doors.admin.ops import admin_routes

        self.ref = ref
        self.settings = settings
        self._clock = clock
        self._sessions: Sessions | None = None
        self.bridge = AdminBridge(Router(routes=admin_routes(ref)))
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, auto_reload=False)
        self.env.globals["static"] = static_url  # pyright: ignore[reportArgumentType]
        self.env.globals["oidc"] = settings.admin.oidc is not None  # pyright: ignore[reportArgumentType]

    # -- sessions ----------------------------------------------------------------------------------------------

    def _store(self) -> Sessions:
        """The session table, opened with the first use (blocking: creates the table if missing)."""
        if self._sessions is None:
            hub = self.ref.hub
            if hub.control is None:
                raise RuntimeError("the hub is not running")
            keyring = hub.control.audit.keyring
            secret = keyring.secret(keyring.active)
            if not secret:
                raise RuntimeError("the audit key is missing: console sessions are sealed with a key derived from it")
            idle = self.settings.console.idle_timeout_minutes * 60
            engine = hub.store.engine
            self._sessions = (
                Sessions(engine, secret, idle) if self._clock is None else Sessions(engine, secret, idle, self._clock)
            )
        return self._sessions

    async def session(self, request: Request) -> Session | None:
        """The live session of the request's cookie, or None."""
        found = request.cookies.get(COOKIE)
        if not found:
            return None
        return await anyio.to_thread.run_sync(lambda: self._store().get(found))

    async def open_session(self, credential: str, subject: str) -> Session:
        return await anyio.to_thread.run_sync(lambda: self._store().open(credential, subject))

    async def close_session(self, session_id: str | None) -> None:
        await anyio.to_thread.run_sync(lambda: self._store().close(session_id))

    # -- rendering ---------------------------------------------------------------------------------------------

    def render(self, name: str, page: Page | None, status: int = 200, **values: Any) -> HTMLResponse:
        context: dict[str, Any] = {"page": page, "ui": UI_PREFIX, **values}
        shown = None
        if page is not None:
            context["csrf"] = page.session.csrf
            context["who"] = page.principal
            shown = page.request.cookies.get(FLASH_COOKIE)
            context["flash"] = unquote(shown).split("\n") if shown else []
        response = HTMLResponse(self.env.get_template(name).render(context), status_code=status)
        if shown:
            response.delete_cookie(FLASH_COOKIE, path=UI_PREFIX)
        return response

    def refused(self, page: Page | None, answer: ApiAnswer) -> HTMLResponse:
        """The page for an admin API refusal (its status and message)."""
        titles = {401: "Sign-in needed", 403: "Not allowed", 404: "Not found", 409: "Conflict"}
        title = titles.get(answer.status, "Could not do that" if answer.status < 500 else "Something failed")
        return self.render("error.html", page, answer.status, title=title, message=answer.error)

    async def api(
        self,
        page: Page,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> ApiAnswer:
        return await self.bridge.call(page.request, page.session.credential, method, path, query=query, body=body)

    # -- the guard around every signed-in page -----------------------------------------------------------------

    def page(self, handler: PageHandler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler: a live session or a redirect to sign in; on POST a valid CSRF token first."""

        async def endpoint(request: Request) -> Response:
            session = await self.session(request)
            if session is None:
                return RedirectResponse(f"{UI_PREFIX}/signin", status_code=303)
            form: dict[str, str] = {}
            if request.method == "POST":
                parsed = await read_form(request)
                if parsed is None:
                    return self.render("error.html", None, 400, title="Bad form", message="the form could not be read")
                form = {k: v[-1] for k, v in parsed.items()}
                if not same(form.get("csrf", ""), session.csrf):
                    message = "the form did not carry this session's CSRF token; reload the page and try again"
                    return self.render("error.html", None, 403, title="Form refused", message=message)
            principal = await self.principal(session)
            if principal is None:
                await self.close_session(session.id)
                return RedirectResponse(f"{UI_PREFIX}/signin", status_code=303)
            page = Page(request, session, principal, form)
            response = await handler(self, page)
            if page.flash:
                response.set_cookie(
                    FLASH_COOKIE, quote("\n".join(page.flash)), max_age=60, httponly=True,
                    secure=request.url.scheme == "https", samesite="lax", path=UI_PREFIX,
                )  # fmt: skip
            return response

        return endpoint

    async def principal(self, session: Session) -> AdminPrincipal | None:
        """Who the session's credential is now, by the admin API's own check (None: revoked or expired)."""
        from hub.doors.admin.api import authenticate_sync

        control = self.ref.hub.control
        if control is None:
            return None
        try:
            return await anyio.to_thread.run_sync(authenticate_sync, control, session.credential)
        except Unauthenticated:
            return None


def same(given: str, expected: str) -> bool:
    """Constant-time comparison of a submitted token (any text, as bytes: `compare_digest` refuses non-ASCII
    strings)."""
    return hmac.compare_digest(given.encode(), expected.encode())


def static_url(name: str) -> str:
    """The URL of a static file, versioned by its content (served with a year-long cache)."""
    return f"{UI_PREFIX}/static/{name}?v={_digests().get(name, '0')}"


_DIGESTS: dict[str, str] = {}


def _digests() -> dict[str, str]:
    if not _DIGESTS:
        for path in STATIC.iterdir():
            _DIGESTS[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return _DIGESTS


async def read_form(request: Request) -> dict[str, list[str]] | None:
    """The url-encoded form of a POST (None: another content type, or larger than `MAX_FORM_BYTES`)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM_BYTES:
            return None
    try:
        return parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=500)
    except (UnicodeDecodeError, ValueError):
        return None


def set_session_cookie(response: Response, request: Request, session: Session) -> None:
    response.set_cookie(
        COOKIE, session.id, httponly=True, secure=request.url.scheme == "https", samesite="lax", path=UI_PREFIX
    )


# -- sign-in and sign-out --------------------------------------------------------------------------------------


async def signin_form(console: Console, request: Request, message: str | None = None, status: int = 200) -> Response:
    """The sign-in page; its form's CSRF value is also set as a cookie (double submit, before any session)."""
    token = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(32)
    response = console.render("signin.html", None, status, pre_csrf=token, message=message)
    response.set_cookie(
        PRE_COOKIE, token, httponly=True, secure=request.url.scheme == "https", samesite="strict",
        path=f"{UI_PREFIX}/signin",
    )  # fmt: skip
    return response


def signin_routes(console: Console) -> list[Route]:
    async def show(request: Request) -> Response:
        if await console.session(request) is not None:
            return RedirectResponse(f"{UI_PREFIX}/", status_code=303)
        return await signin_form(console, request)

    async def submit(request: Request) -> Response:
        parsed = await read_form(request)
        form = {k: v[-1] for k, v in (parsed or {}).items()}
        expected = request.cookies.get(PRE_COOKIE, "")
        if not expected or not same(form.get("csrf", ""), expected):
            return await signin_form(console, request, "The form expired; please sign in again.", 403)
        token = form.get("token", "").strip()
        answer = await console.bridge.call(request, token or None, "GET", f"{ADMIN_PREFIX}/me")
        if not answer.ok:
            return await signin_form(console, request, "That admin token is not valid.", 401)
        return await _signed_in(console, request, token, str(answer.json().get("subject", "")))

    async def oidc_start(request: Request) -> Response:
        answer = await console.bridge.call(request, None, "GET", f"{ADMIN_PREFIX}/auth/login")
        location = answer.headers.get("location")
        state = _cookie_value(answer.set_cookies, "agenthub_oidc")
        if answer.status != 302 or location is None or state is None:
            return await signin_form(console, request, f"OIDC sign-in is unavailable: {answer.error}", answer.status)
        response = RedirectResponse(location, status_code=303)
        response.set_cookie(
            OIDC_STATE, state, max_age=600, httponly=True, secure=request.url.scheme == "https", samesite="lax",
            path=f"{UI_PREFIX}/signin",
        )  # fmt: skip
        return response

    async def oidc_callback(request: Request) -> Response:
        state = request.cookies.get(OIDC_STATE)
        answer = await console.bridge.call(
            request, None, "GET", f"{ADMIN_PREFIX}/auth/callback", query=dict(request.query_params),
            cookies={"agenthub_oidc": state} if state else None,
        )  # fmt: skip
        if not answer.ok:
            response = await signin_form(console, request, f"OIDC sign-in failed: {answer.error}", answer.status)
        else:
            body = answer.json()
            response = await _signed_in(console, request, str(body["token"]), str(body.get("subject", "")))
        response.delete_cookie(OIDC_STATE, path=f"{UI_PREFIX}/signin")
        return response

    async def signout(request: Request) -> Response:
        session = await console.session(request)
        parsed = await read_form(request)
        form = {k: v[-1] for k, v in (parsed or {}).items()}
        if session is not None and not same(form.get("csrf", ""), session.csrf):
            return console.render("error.html", None, 403, title="Form refused", message="missing CSRF token")
        await console.close_session(session.id if session else None)
        response = RedirectResponse(f"{UI_PREFIX}/signin", status_code=303)
        response.delete_cookie(COOKIE, path=UI_PREFIX)
        return response

    return [
        Route(f"{UI_PREFIX}/signin", show, methods=["GET"]),
        Route(f"{UI_PREFIX}/signin", submit, methods=["POST"]),
        Route(f"{UI_PREFIX}/signin/oidc", oidc_start, methods=["GET"]),
        Route(f"{UI_PREFIX}/signin/callback", oidc_callback, methods=["GET"]),
        Route(f"{UI_PREFIX}/signout", signout, methods=["POST"]),
    ]


async def _signed_in(console: Console, request: Request, credential: str, subject: str) -> Response:
    session = await console.open_session(credential, subject)
    response = RedirectResponse(f"{UI_PREFIX}/", status_code=303)
    set_session_cookie(response, request, session)
    response.delete_cookie(PRE_COOKIE, path=f"{UI_PREFIX}/signin")
    return response


def _cookie_value(headers: list[str], name: str) -> str | None:
    for header in headers:
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if name in jar:
            return jar[name].value
    return None


# -- static files and headers ----------------------------------------------------------------------------------


async def static_file(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _digests():
        return Response("not found", status_code=404, media_type="text/plain")
    body = (STATIC / name).read_bytes()
    kind = STATIC_TYPES.get(Path(name).suffix, "application/octet-stream")
    return Response(body, media_type=kind, headers={"cache-control": "public, max-age=31536000, immutable"})


class SecurityHeaders:
    """Adds the console's headers to every response: the CSP, no framing, no sniffing, and no caching of pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        static = str(scope.get("path", "")).startswith(f"{UI_PREFIX}/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"content-security-policy", CSP.encode()))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"x-frame-options", b"DENY"))
                headers.append((b"referrer-policy", b"same-origin"))
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

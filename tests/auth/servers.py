"""A real OAuth authorization server and a protected MCP upstream, both served by uvicorn on 127.0.0.1.

The authorization server is the `mcp` SDK's (`create_auth_routes` over an in-memory provider) plus a
`client_credentials` grant, which the SDK's token handler lacks. It auto-approves every authorization request
as the user named in the `X-Test-User` header, so a test can drive the browser leg by following redirects. It
counts token requests per grant, rotates refresh tokens, and can revoke tokens.

The upstream is an SDK `MCPServer` whose bearer tokens are checked against that server's tokens, with the
audience bound to the upstream's URL (RFC 8707). Its `whoami` tool returns the token's subject.
"""

from __future__ import annotations

import contextlib
import contextvars
import secrets
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn
from mcp.server.auth.handlers.token import TokenHandler
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.client_auth import AuthenticationError, ClientAuthenticator
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    RefreshToken,
    construct_redirect_uri,
)
from mcp.server.auth.routes import create_auth_routes
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyHttpUrl, AnyUrl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.tools.patience import PATIENCE

_user: contextvars.ContextVar[str] = contextvars.ContextVar("test_user", default="nobody")

HUB_CLIENT_ID = "hub"
HUB_CLIENT_SECRET = "hub-secret-0123456789"
REDIRECT = "http://127.0.0.1:9/oauth/callback"
"""The hub's callback URL as registered for the pre-registered client (tests read the redirect, never follow it)."""


@dataclass
class Provider:
    """An in-memory `OAuthAuthorizationServerProvider` with counters and switches for tests."""

    issuer: str
    lifetime_s: int = 3600
    rotate: bool = True
    clients: dict[str, OAuthClientInformationFull] = field(default_factory=dict[str, OAuthClientInformationFull])
    codes: dict[str, AuthorizationCode] = field(default_factory=dict[str, AuthorizationCode])
    access: dict[str, AccessToken] = field(default_factory=dict[str, AccessToken])
    refresh: dict[str, RefreshToken] = field(default_factory=dict[str, RefreshToken])
    grants: Counter[str] = field(default_factory=Counter[str])
    """Tokens issued, per grant."""
    requests: Counter[str] = field(default_factory=Counter[str])
    """Token endpoint requests, per grant (refused ones included)."""
    on_token: list[Callable[[str], None]] = field(default_factory=list[Callable[[str], None]])
    iss_override: str | None = None
    registrations: int = 0

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        return self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        self.registrations += 1
        self.clients[client_info.client_id] = client_info

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        code = secrets.token_urlsafe(24)
        self.codes[code] = AuthorizationCode(
            code=code,
            scopes=params.scopes or [],
            expires_at=time.time() + 300,
            client_id=client.client_id,
            code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource,
            subject=_user.get(),
        )
        iss = self.iss_override if self.iss_override is not None else str(AnyHttpUrl(self.issuer))
        return construct_redirect_uri(str(params.redirect_uri), code=code, state=params.state, iss=iss)

    async def load_authorization_code(self, client: OAuthClientInformationFull, code: str) -> AuthorizationCode | None:
        return self.codes.get(code)

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        self.codes.pop(authorization_code.code, None)
        self._count("authorization_code")
        return self.issue(
            client.client_id, authorization_code.scopes, authorization_code.resource, authorization_code.subject, True
        )

    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> RefreshToken | None:
        return self.refresh.get(refresh_token)

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        self._count("refresh_token")
        if self.rotate:
            self.refresh.pop(refresh_token.token, None)
        tokens = self.issue(client.client_id, scopes, refresh_token.resource, refresh_token.subject, self.rotate)
        return tokens if self.rotate else tokens.model_copy(update={"refresh_token": None})

    async def load_access_token(self, token: str) -> AccessToken | None:
        found = self.access.get(token)
        if found is None or (found.expires_at is not None and found.expires_at < time.time()):
            return None
        return found

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        self.access.pop(token.token, None)
        self.refresh.pop(token.token, None)

    def issue(
        self, client_id: str, scopes: list[str], resource: str | None, subject: str | None, with_refresh: bool
    ) -> OAuthToken:
        access = secrets.token_urlsafe(24)
        self.access[access] = AccessToken(
            token=access,
            client_id=client_id,
            scopes=scopes,
            expires_at=int(time.time()) + self.lifetime_s + 1,
            resource=resource,
            subject=subject,
        )
        refresh = None
        if with_refresh:
            refresh = secrets.token_urlsafe(24)
            self.refresh[refresh] = RefreshToken(
                token=refresh, client_id=client_id, scopes=scopes, resource=resource, subject=subject
            )
        return OAuthToken(
            access_token=access, expires_in=self.lifetime_s, scope=" ".join(scopes) or None, refresh_token=refresh
        )

    def revoke_access_tokens(self) -> None:
        """Make every access token issued so far invalid at the upstream (as if the server revoked them)."""
        self.access.clear()

    def revoke_refresh_tokens(self) -> None:
        self.refresh.clear()

    def _count(self, grant: str) -> None:
        self.grants[grant] += 1
        for callback in self.on_token:
            callback(grant)


def auth_server_app(provider: Provider) -> Any:
    """The SDK's authorization server routes, with `client_credentials` added to the token endpoint."""
    routes = create_auth_routes(
        provider,
        AnyHttpUrl(provider.issuer),
        client_registration_options=ClientRegistrationOptions(enabled=True, valid_scopes=["tickets.read"]),
        revocation_options=RevocationOptions(enabled=True),
    )
    sdk_token = TokenHandler(provider, ClientAuthenticator(provider))
    authenticator = ClientAuthenticator(provider)

    async def token(request: Request) -> Response:
        form = await request.form()
        provider.requests[str(form.get("grant_type"))] += 1
        if form.get("grant_type") != "client_credentials":
            return await sdk_token.handle(request)
        try:
            client = await authenticator.authenticate_request(request)
        except AuthenticationError as exc:
            return JSONResponse({"error": "invalid_client", "error_description": exc.message}, status_code=401)
        if "client_credentials" not in client.grant_types:
            return JSONResponse({"error": "unauthorized_client"}, status_code=400)
        provider._count("client_credentials")  # pyright: ignore[reportPrivateUsage]
        scopes = str(form.get("scope") or "").split()
        resource = form.get("resource")
        issued = provider.issue(client.client_id, scopes, str(resource) if resource else None, client.client_id, False)
        return JSONResponse(issued.model_dump(exclude_none=True), headers={"Cache-Control": "no-store"})

    kept = [r for r in routes if r.path != "/token"] + [Route("/token", token, methods=["POST"])]
    return _UserHeader(Starlette(routes=kept))


class _UserHeader:
    """Run each request as the user its `X-Test-User` header names (the auto-approving login)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = dict(scope.get("headers", []))
        reset = _user.set(headers.get(b"x-test-user", b"nobody").decode())
        try:
            await self.app(scope, receive, send)
        finally:
            _user.reset(reset)


class ProviderVerifier:
    """The upstream's `TokenVerifier`: tokens issued by the test authorization server."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    async def verify_token(self, token: str) -> AccessToken | None:
        return await self.provider.load_access_token(token)


def upstream_app(provider: Provider, resource_url: str) -> Starlette:
    """A protected MCP server: tokens from `provider`, audience `resource_url`."""
    server = MCPServer(
        "tickets",
        token_verifier=ProviderVerifier(provider),
        auth=AuthSettings(
            issuer_url=AnyHttpUrl(provider.issuer),
            resource_server_url=AnyHttpUrl(resource_url),
            validate_token_resource=True,
        ),
    )

    @server.tool()
    def whoami() -> str:
        """The subject of the caller's access token."""
        token = get_access_token()
        return token.subject or "" if token else ""

    return server.streamable_http_app(stateless_http=True, json_response=True)


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@contextlib.asynccontextmanager
async def serve(apps: list[tuple[Any, socket.socket]]) -> AsyncIterator[None]:
    """Serve ASGI apps on pre-bound sockets for the duration of the block, then stop them and close the sockets
    (also when the block fails: a listening socket left to the garbage collector fails a later test)."""
    servers = [(uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on")), sock) for app, sock in apps]
    try:
        async with anyio.create_task_group() as tg:
            for server, sock in servers:
                tg.start_soon(server.serve, [sock])
            with anyio.fail_after(PATIENCE):
                while not all(s.started for s, _ in servers):  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
                    await anyio.sleep(0.01)
            try:
                yield
            finally:
                for server, _ in servers:
                    server.should_exit = True
    finally:
        for _, sock in apps:
            sock.close()


@dataclass
class Stack:
    """A running authorization server and upstream."""

    provider: Provider
    issuer: str
    upstream_url: str


@contextlib.asynccontextmanager
async def oauth_stack(*, lifetime_s: int = 3600, rotate: bool = True) -> AsyncIterator[Stack]:
    """Start the authorization server and the upstream on free ports; the hub's client is pre-registered."""
    as_sock, rs_sock = bound_socket(), bound_socket()
    issuer = f"http://127.0.0.1:{as_sock.getsockname()[1]}"
    upstream_url = f"http://127.0.0.1:{rs_sock.getsockname()[1]}/mcp"
    provider = Provider(issuer=issuer, lifetime_s=lifetime_s, rotate=rotate)
    provider.clients[HUB_CLIENT_ID] = OAuthClientInformationFull(
        client_id=HUB_CLIENT_ID,
        client_secret=HUB_CLIENT_SECRET,
        token_endpoint_auth_method="client_secret_basic",
        grant_types=["client_credentials", "authorization_code", "refresh_token"],
        redirect_uris=[AnyUrl(REDIRECT)],
        scope="tickets.read",
    )
    async with serve([(auth_server_app(provider), as_sock), (upstream_app(provider, upstream_url), rs_sock)]):
        yield Stack(provider, issuer, upstream_url)

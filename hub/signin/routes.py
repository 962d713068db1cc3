"""The sign-in routes: discovery documents (RFC 9728 protected resource metadata, RFC 8414 authorization server
metadata and its OIDC discovery twin), the SDK's OAuth handlers on the hub's paths, and the two browser steps.

Built with the app, before the hub runs: each route finds the running hub's `SignIn` through `signin()`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.auth.handlers.authorize import AuthorizationHandler
from mcp.server.auth.handlers.register import RegistrationHandler
from mcp.server.auth.handlers.token import TokenHandler
from mcp.server.auth.middleware.client_auth import AuthenticationError
from mcp.server.auth.routes import cors_middleware
from mcp.server.auth.settings import ClientRegistrationOptions
from mcp.server.transport_security import RequestBodyLimitMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, request_response
from starlette.types import ASGIApp

from hub.doors.web import json_response
from hub.signin.client_auth import HashedSecretAuthenticator
from hub.signin.config import SignInSection
from hub.signin.provider import LOGIN_PATH, registration_source
from hub.signin.service import CALLBACK_PATH, CONSENT_PATH, SignIn

AUTHORIZE_PATH = "/signin/authorize"
TOKEN_PATH = "/signin/token"  # noqa: S105 - a path
REGISTER_PATH = "/signin/register"
REVOKE_PATH = "/signin/revoke"
RESOURCE_METADATA = "/.well-known/oauth-protected-resource"
SERVER_METADATA = "/.well-known/oauth-authorization-server"
OIDC_METADATA = "/.well-known/openid-configuration"
SIGNIN_PATHS = (
    RESOURCE_METADATA,
    RESOURCE_METADATA + "/mcp",
    RESOURCE_METADATA + "/mcp/{server}",
    SERVER_METADATA,
    OIDC_METADATA,
    AUTHORIZE_PATH,
    TOKEN_PATH,
    REGISTER_PATH,
    REVOKE_PATH,
    LOGIN_PATH,
    CALLBACK_PATH,
    CONSENT_PATH,
)
"""Every path sign-in serves (only with `[sign_in]`)."""

_AUTH_METHODS = ["none", "client_secret_post", "client_secret_basic"]
MAX_BODY_BYTES = 64 * 1024
"""Largest body the token, registration and revocation endpoints read."""


def _posted(endpoint: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
    """A POST endpoint browsers' clients may call (CORS), whose body is bounded."""
    limited = RequestBodyLimitMiddleware(request_response(endpoint), MAX_BODY_BYTES)
    return CORSMiddleware(limited, allow_origins="*", allow_methods=["POST", "OPTIONS"], allow_headers=["*"])


def server_metadata(section: SignInSection) -> dict[str, Any]:
    """The authorization server's metadata (RFC 8414)."""
    base = section.issuer
    return {
        "issuer": base,
        "authorization_endpoint": base + AUTHORIZE_PATH,
        "token_endpoint": base + TOKEN_PATH,
        "registration_endpoint": base + REGISTER_PATH,
        "revocation_endpoint": base + REVOKE_PATH,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": _AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": _AUTH_METHODS,
        "client_id_metadata_document_supported": True,
        "authorization_response_iss_parameter_supported": True,
    }


def resource_metadata(section: SignInSection, server: str | None) -> dict[str, Any]:
    """The protected resource metadata of `/mcp` or `/mcp/{server}` (RFC 9728)."""
    resource = section.issuer + ("/mcp" if server is None else f"/mcp/{server}")
    return {
        "resource": resource,
        "authorization_servers": [section.issuer],
        "bearer_methods_supported": ["header"],
        "resource_name": "AgentHub",
    }


class _Handlers:
    """The SDK's handlers around the running hub's provider, made with the first request after each start."""

    def __init__(self, signin: SignIn) -> None:
        provider: Any = signin.server
        authenticator = HashedSecretAuthenticator(provider)
        self.signin = signin
        self.authorize = AuthorizationHandler(provider)
        self.token = TokenHandler(provider, authenticator)
        self.register = RegistrationHandler(provider, ClientRegistrationOptions(enabled=True))
        self.authenticator = authenticator

    async def revoke(self, request: Request) -> Response:
        """RFC 7009: the client authenticates as at the token endpoint (a public client by its `client_id` alone);
        a token unknown, or another client's, is answered 200 as well (nothing to tell a guesser)."""
        try:
            client = await self.authenticator.authenticate_request(request)
        except AuthenticationError as exc:
            return json_response({"error": "invalid_client", "error_description": exc.message}, 401)
        form = await request.form()
        token = form.get("token")
        if not isinstance(token, str) or not token:
            return json_response({"error": "invalid_request", "error_description": "the token is missing"}, 400)
        server = self.signin.server
        found = await server.load_access_token(token) or await server.load_refresh_token(client, token)
        if found is not None and found.client_id == client.client_id:
            await server.revoke_token(found)
        return Response(status_code=200, headers={"Cache-Control": "no-store"})


def signin_routes(section: SignInSection, signin: Callable[[], SignIn]) -> list[Route]:
    """The routes of `SIGNIN_PATHS`."""
    cache: dict[int, _Handlers] = {}

    def handlers() -> _Handlers:
        current = signin()
        found = cache.get(id(current))
        if found is None or found.signin is not current:
            cache.clear()
            found = cache[id(current)] = _Handlers(current)
        return found

    def document(build: Callable[[Request], dict[str, Any]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return json_response(build(request), headers={"Cache-Control": "max-age=300"})

        return endpoint

    async def authorize(request: Request) -> Response:
        return await handlers().authorize.handle(request)

    async def token(request: Request) -> Response:
        return await handlers().token.handle(request)

    async def revoke(request: Request) -> Response:
        return await handlers().revoke(request)

    async def register(request: Request) -> Response:
        source = request.client.host if request.client is not None else "unknown"
        if not await handlers().signin.clients.admit_registration(source):
            body = {"error": "invalid_client_metadata", "error_description": "too many registrations; try later"}
            return json_response(body, 429, {"Retry-After": "3600"})
        reset = registration_source.set(source)
        try:
            return await handlers().register.handle(request)
        finally:
            registration_source.reset(reset)

    async def login(request: Request) -> Response:
        return await signin().start(request)

    async def callback(request: Request) -> Response:
        return await signin().finish(request)

    async def consent(request: Request) -> Response:
        return await signin().decide(request)

    get = ["GET", "OPTIONS"]
    post = ["POST", "OPTIONS"]
    meta = document(lambda r: server_metadata(section))
    return [
        Route(
            RESOURCE_METADATA, cors_middleware(document(lambda r: resource_metadata(section, None)), get), methods=get
        ),
        Route(
            RESOURCE_METADATA + "/mcp",
            cors_middleware(document(lambda r: resource_metadata(section, None)), get),
            methods=get,
        ),
        Route(
            RESOURCE_METADATA + "/mcp/{server}",
            cors_middleware(document(lambda r: resource_metadata(section, r.path_params["server"])), get),
            methods=get,
        ),
        Route(SERVER_METADATA, cors_middleware(meta, get), methods=get),
        Route(OIDC_METADATA, cors_middleware(meta, get), methods=get),
        Route(AUTHORIZE_PATH, authorize, methods=["GET", "POST"]),
        Route(TOKEN_PATH, _posted(token), methods=post),
        Route(REGISTER_PATH, _posted(register), methods=post),
        Route(REVOKE_PATH, _posted(revoke), methods=post),
        Route(LOGIN_PATH, login, methods=["GET"]),
        Route(CALLBACK_PATH, callback, methods=["GET"]),
        Route(CONSENT_PATH, RequestBodyLimitMiddleware(request_response(consent), MAX_BODY_BYTES), methods=["POST"]),
    ]

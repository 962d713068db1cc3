"""Auth configuration (the tagged union, secret references) and the headers plug-in; no client token leaks."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest
from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.auth import (
    AuthConfig,
    AuthConfigError,
    HeadersAuth,
    MemoryTokenStore,
    NoAuth,
    OAuth2Auth,
    UpstreamAuths,
    resolve_auth_secrets,
)
from tests.auth.servers import HUB_CLIENT_ID, HUB_CLIENT_SECRET, bound_socket, oauth_stack, serve
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio
ADAPTER: TypeAdapter[NoAuth | HeadersAuth | OAuth2Auth] = TypeAdapter(AuthConfig)


def test_the_union_is_tagged_on_type() -> None:
    assert isinstance(ADAPTER.validate_python({"type": "none"}), NoAuth)
    headers = ADAPTER.validate_python({"type": "headers", "headers": {"X-Api-Key": "env:K"}})
    assert isinstance(headers, HeadersAuth)
    oauth = ADAPTER.validate_python({"type": "oauth2", "grant": "authorization_code", "per_user": True})
    assert isinstance(oauth, OAuth2Auth) and oauth.per_user


@pytest.mark.parametrize(
    "table",
    [
        {"type": "oauth2", "grant": "client_credentials"},
        {"type": "oauth2", "grant": "client_credentials", "client_id": "x", "per_user": True},
        {"type": "oauth2", "grant": "authorization_code", "client_secret": "s"},
        {"type": "oauth2", "grant": "password"},
        {"type": "oauth2", "grant": "authorization_code", "client_metadata_url": "http://hub.example/client.json"},
        {"type": "headers", "headers": {}},
        {"type": "basic"},
    ],
)
def test_configurations_that_cannot_work_are_refused(table: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ADAPTER.validate_python(table)


def test_secret_references_resolve_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETS_KEY", "key-from-env")
    (tmp_path / "secret.txt").write_text("secret-from-file\n")
    headers = resolve_auth_secrets(HeadersAuth(type="headers", headers={"X-Api-Key": "env:TICKETS_KEY"}), tmp_path, "s")
    assert isinstance(headers, HeadersAuth) and headers.headers == {"X-Api-Key": "key-from-env"}
    oauth = OAuth2Auth(type="oauth2", grant="client_credentials", client_id="hub", client_secret="file:secret.txt")
    resolved = resolve_auth_secrets(oauth, tmp_path, "s")
    assert isinstance(resolved, OAuth2Auth) and resolved.client_secret == "secret-from-file"
    with pytest.raises(AuthConfigError, match="MISSING_VAR"):
        resolve_auth_secrets(HeadersAuth(type="headers", headers={"A": "env:MISSING_VAR"}), tmp_path, "s")


def test_tokens_are_never_sent_over_plain_http_off_loopback() -> None:
    auths = UpstreamAuths(MemoryTokenStore())
    config = OAuth2Auth(type="oauth2", grant="client_credentials", client_id="hub", client_secret="s")
    with pytest.raises(AuthConfigError):
        auths.add("t", "http://tickets.example.com/mcp", config, insecure_loopback=True)
    with pytest.raises(AuthConfigError):
        auths.add("t", "http://127.0.0.1:9/mcp", config)


async def echo_headers(request: Request) -> JSONResponse:
    return JSONResponse(
        {"authorization": request.headers.get("authorization"), "key": request.headers.get("x-api-key")}
    )


async def test_headers_auth_sets_its_headers_and_drops_a_callers_authorization() -> None:
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/echo"
    auths = UpstreamAuths(MemoryTokenStore())
    auths.add("t", url, HeadersAuth(type="headers", headers={"X-Api-Key": "k-123"}))
    auths.add("plain", url, NoAuth())
    assert auths.http_auth("plain") is None
    async with (
        serve([(Starlette(routes=[Route("/echo", echo_headers)]), sock)]),
        httpx2.AsyncClient(auth=auths.http_auth("t")) as http,
    ):
        with anyio.fail_after(PATIENCE):
            seen = (await http.get(url, headers={"Authorization": "Bearer ahk-client-virtual-key"})).json()
    assert seen == {"authorization": None, "key": "k-123"}


async def test_oauth_replaces_a_callers_authorization_with_the_upstream_token() -> None:
    async with oauth_stack() as stack:
        auths = UpstreamAuths(MemoryTokenStore())
        config = OAuth2Auth(
            type="oauth2", grant="client_credentials", client_id=HUB_CLIENT_ID, client_secret=HUB_CLIENT_SECRET
        )
        auths.add("t", stack.upstream_url, config, insecure_loopback=True)
        sent: list[str] = []

        async def capture(request: httpx2.Request) -> None:
            sent.append(request.headers.get("authorization", ""))

        async with httpx2.AsyncClient(auth=auths.http_auth("t"), event_hooks={"request": [capture]}) as http:
            with anyio.fail_after(PATIENCE):
                await http.post(
                    stack.upstream_url,
                    json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                    headers={"Authorization": "Bearer ahk-client-virtual-key", "Accept": "application/json"},
                )
        assert sent and all("ahk-client-virtual-key" not in value for value in sent)
        assert sent[-1].removeprefix("Bearer ") in stack.provider.access
        await auths.aclose()

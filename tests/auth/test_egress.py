"""The SSRF guard: URL forms, address ranges (real resolution), redirects, sizes, and discovery documents that
point somewhere they must not."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from connectors.auth import (
    AuthError,
    DiscoveryError,
    EgressClient,
    EgressPolicy,
    IssuerMismatch,
    MemoryTokenStore,
    OAuth2Auth,
    UnsafeURL,
    UpstreamAuths,
)
from connectors.auth.egress import address_problem, check_url, checked_address
from tests.auth.servers import bound_socket, serve

pytestmark = pytest.mark.anyio

LOOPBACK = EgressPolicy(insecure_loopback=True)
STRICT = EgressPolicy()


@pytest.mark.parametrize(
    "url",
    [
        "http://tickets.example.com/mcp",
        "ftp://tickets.example.com/",
        "https://user:pw@tickets.example.com/",
        "https:///x",
    ],
)
def test_url_forms_other_than_https_with_a_host_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL):
        check_url(url, LOOPBACK)


def test_plain_http_is_allowed_only_to_loopback_and_only_when_enabled() -> None:
    check_url("http://127.0.0.1:8080/x", LOOPBACK)
    check_url("http://localhost:8080/x", LOOPBACK)
    with pytest.raises(UnsafeURL):
        check_url("http://127.0.0.1:8080/x", STRICT)
    with pytest.raises(UnsafeURL):
        check_url("http://10.0.0.1/x", LOOPBACK)


@pytest.mark.parametrize(
    "host",
    [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.251",
        "240.0.0.1",
        "[::ffff:10.0.0.1]",
        "[::ffff:169.254.169.254]",
        "[64:ff9b::a9fe:a9fe]",
        "[2002:a00:1::]",
        "[fe80::1]",
        "[fc00::1]",
        "[ff02::1]",
        "[::]",
    ],
)
async def test_private_link_local_multicast_and_reserved_addresses_are_refused(host: str) -> None:
    with pytest.raises(UnsafeURL):
        await checked_address(check_url(f"https://{host}/.well-known/x", LOOPBACK), LOOPBACK)


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "localhost", "2130706433", "0x7f.1"])
async def test_loopback_in_any_spelling_is_refused_without_insecure_loopback(host: str) -> None:
    with pytest.raises(UnsafeURL):
        await checked_address(check_url(f"https://{host}/x", STRICT), STRICT)


def test_public_addresses_pass_the_range_check() -> None:
    for text in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"):
        assert address_problem(ipaddress.ip_address(text), allow_loopback=False, allow_private=False) is None


async def test_every_resolved_address_is_checked_not_just_the_first() -> None:
    async def two_answers(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.1.2.3"]

    policy = EgressPolicy(resolver=two_answers)
    with pytest.raises(UnsafeURL, match="10.1.2.3"):
        await checked_address(check_url("https://as.example.com/", policy), policy)


async def test_configured_origins_may_be_private_but_nothing_else_may() -> None:
    async def internal(host: str, port: int) -> list[str]:
        return ["10.1.2.3"]

    policy = EgressPolicy(resolver=internal, trusted_origins=frozenset({"https://id.corp.example:443"}))
    assert await checked_address(check_url("https://id.corp.example/token", policy), policy) == "10.1.2.3"
    with pytest.raises(UnsafeURL):
        await checked_address(check_url("https://other.corp.example/token", policy), policy)


# -- against a live fake server ---------------------------------------------------------------------------------


def fake_upstream(routes: dict[str, Callable[[Request, str], Response]]) -> tuple[Starlette, Any]:
    sock = bound_socket()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"

    def bind(handler: Callable[[Request, str], Response]) -> Any:
        async def endpoint(request: Request) -> Response:
            return handler(request, base)

        return endpoint

    app = Starlette(routes=[Route(path, bind(h), methods=["GET", "POST"]) for path, h in routes.items()])
    return app, sock


def challenge(metadata_url: str) -> Callable[[Request, str], Response]:
    def handler(request: Request, base: str) -> Response:
        url = metadata_url.replace("{base}", base)
        header = f'Bearer error="invalid_token", resource_metadata="{url}"'
        return JSONResponse({"error": "invalid_token"}, status_code=401, headers={"WWW-Authenticate": header})

    return handler


def document(doc: dict[str, Any]) -> Callable[[Request, str], Response]:
    def handler(request: Request, base: str) -> Response:
        text = {k: (v.replace("{base}", base) if isinstance(v, str) else v) for k, v in doc.items()}
        if isinstance(doc.get("authorization_servers"), list):
            text["authorization_servers"] = [s.replace("{base}", base) for s in doc["authorization_servers"]]
        return JSONResponse(text)

    return handler


async def discover_against(routes: dict[str, Callable[[Request, str], Response]], **config: Any) -> AuthError:
    """Run client-credentials discovery against a fake upstream; return the error it ends with."""
    app, sock = fake_upstream(routes)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with serve([(app, sock)]):
        auths = UpstreamAuths(MemoryTokenStore())
        settings = {"type": "oauth2", "grant": "client_credentials", "client_id": "hub", "client_secret": "s"}
        auths.add("t", f"{base}/mcp", OAuth2Auth.model_validate({**settings, **config}), insecure_loopback=True)
        auth = auths.get("t")
        assert auth is not None
        try:
            with anyio.fail_after(15):
                await auth.access_token(None)
        except AuthError as exc:
            return exc
        finally:
            await auths.aclose()
    raise AssertionError("discovery succeeded")


PRM = "/.well-known/oauth-protected-resource/mcp"


@pytest.mark.parametrize(
    "authorization_server",
    ["https://169.254.169.254/", "https://10.0.0.7/", "http://as.example.com/", "https://[::ffff:192.168.0.1]/"],
)
async def test_metadata_naming_a_private_or_plain_http_authorization_server_is_refused(
    authorization_server: str,
) -> None:
    routes = {
        "/mcp": challenge("{base}" + PRM),
        PRM: document({"resource": "{base}/mcp", "authorization_servers": [authorization_server]}),
    }
    error = await discover_against(routes)
    assert isinstance(error, UnsafeURL), error


async def test_a_challenge_pointing_metadata_at_a_private_address_is_refused() -> None:
    error = await discover_against({"/mcp": challenge("https://169.254.169.254/latest/meta-data")})
    assert isinstance(error, UnsafeURL), error
    assert "169.254.169.254" in error.message


async def test_a_token_endpoint_on_a_private_address_is_refused() -> None:
    routes = {
        "/mcp": challenge("{base}" + PRM),
        PRM: document({"resource": "{base}/mcp", "authorization_servers": ["{base}"]}),
        "/.well-known/oauth-authorization-server": document(
            {"issuer": "{base}", "token_endpoint": "https://192.168.10.10/token"}
        ),
    }
    error = await discover_against(routes)
    assert isinstance(error, UnsafeURL), error
    assert "192.168.10.10" in error.message


async def test_an_issuer_that_differs_from_the_one_looked_up_is_refused() -> None:
    routes = {
        "/mcp": challenge("{base}" + PRM),
        PRM: document({"resource": "{base}/mcp", "authorization_servers": ["{base}"]}),
        "/.well-known/oauth-authorization-server": document(
            {"issuer": "https://evil.example", "token_endpoint": "{base}/token"}
        ),
    }
    error = await discover_against(routes)
    assert isinstance(error, IssuerMismatch), error


async def test_a_configured_issuer_the_resource_does_not_list_is_refused() -> None:
    routes = {
        "/mcp": challenge("{base}" + PRM),
        PRM: document({"resource": "{base}/mcp", "authorization_servers": ["{base}"]}),
    }
    error = await discover_against(routes, issuer="https://id.example.com")
    assert isinstance(error, IssuerMismatch), error


async def test_resource_metadata_for_another_resource_is_refused() -> None:
    routes = {
        "/mcp": challenge("{base}" + PRM),
        PRM: document({"resource": "https://elsewhere.example/mcp", "authorization_servers": ["{base}"]}),
    }
    error = await discover_against(routes)
    assert isinstance(error, DiscoveryError), error


async def test_path_inserted_then_root_well_known_urls_are_tried_when_the_challenge_has_none() -> None:
    seen: list[str] = []

    def record(doc: dict[str, Any]) -> Callable[[Request, str], Response]:
        inner = document(doc)

        def handler(request: Request, base: str) -> Response:
            seen.append(request.url.path)
            return inner(request, base)

        return handler

    def bare_401(request: Request, base: str) -> Response:
        return JSONResponse({}, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    def missing(request: Request, base: str) -> Response:
        seen.append(request.url.path)
        return JSONResponse({}, status_code=404)

    routes = {
        "/mcp": bare_401,
        PRM: missing,
        "/.well-known/oauth-protected-resource": record(
            {"resource": "{base}/mcp", "authorization_servers": ["{base}"]}
        ),
        "/.well-known/oauth-authorization-server": record({"issuer": "https://evil.example", "token_endpoint": "x"}),
    }
    error = await discover_against(routes)
    assert isinstance(error, IssuerMismatch), error
    assert seen == [PRM, "/.well-known/oauth-protected-resource", "/.well-known/oauth-authorization-server"]


async def test_redirects_to_another_host_are_refused_and_bodies_are_bounded() -> None:
    def elsewhere(request: Request, base: str) -> Response:
        return RedirectResponse(base.replace("127.0.0.1", "localhost") + "/doc", status_code=302)

    def same(request: Request, base: str) -> Response:
        return RedirectResponse(base + "/doc", status_code=302)

    def doc(request: Request, base: str) -> Response:
        return JSONResponse({"ok": True})

    def huge(request: Request, base: str) -> Response:
        return Response(b"x" * 300_000, media_type="application/json")

    app, sock = fake_upstream({"/elsewhere": elsewhere, "/same": same, "/doc": doc, "/huge": huge})
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with serve([(app, sock)]), EgressClient(LOOPBACK) as http:
        with anyio.fail_after(15):
            assert (await http.get(base + "/same")).json_object() == {"ok": True}
            with pytest.raises(UnsafeURL, match="redirect"):
                await http.get(base + "/elsewhere")
            with pytest.raises(UnsafeURL, match="bytes"):
                await http.get(base + "/huge")

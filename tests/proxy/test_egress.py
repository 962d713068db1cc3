"""The SSRF-guarded client of upstream OAuth (discovery, registration, tokens) through an egress proxy.

The guard still checks every address the hub resolves for a host before anything is sent; the proxy is then
asked for the host by name (it resolves it, and its own allow-lists see the name). An origin the administrator
configured is not range-checked anyway, so it goes to the proxy without a local lookup: an identity provider
stays reachable where only the proxy can resolve external names.
"""

from __future__ import annotations

import base64

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.auth import EgressClient, EgressPolicy, MemoryTokenStore, OAuth2Auth, UnsafeURL, UpstreamAuths
from llm.testing import serve
from tests.auth.conftest import whoami
from tests.auth.servers import HUB_CLIENT_ID, HUB_CLIENT_SECRET, oauth_stack
from tests.proxy.forward_proxy import forward_proxy

pytestmark = pytest.mark.anyio


class Resolver:
    """A resolver that answers from a table and counts lookups (a name it lacks does not resolve)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"{host} does not resolve")
        return self.table[host]


def metadata_app() -> Starlette:
    async def document(request: Request) -> JSONResponse:
        return JSONResponse({"issuer": str(request.base_url).rstrip("/")})

    return Starlette(routes=[Route("/.well-known/oauth-authorization-server", document)])


async def test_the_egress_client_fetches_through_the_proxy_with_its_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with forward_proxy(credentials=("hub", "pw")) as proxy, serve(metadata_app()) as base:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "")
        url = f"{base}/.well-known/oauth-authorization-server"
        async with EgressClient(EgressPolicy(insecure_loopback=True)) as http:
            with anyio.fail_after(10):
                response = await http.get(url)
    assert response.json_object() == {"issuer": base}
    assert proxy.forwarded() == [f"GET {url}"]
    assert proxy.asked[0].authorization == "Basic " + base64.b64encode(b"hub:pw").decode()


async def test_no_proxy_keeps_the_egress_client_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    async with forward_proxy() as proxy, serve(metadata_app()) as base:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.0/8")
        async with EgressClient(EgressPolicy(insecure_loopback=True)) as http:
            with anyio.fail_after(10):
                response = await http.get(f"{base}/.well-known/oauth-authorization-server")
    assert response.status == 200
    assert proxy.asked == []


@pytest.mark.parametrize(
    ("address", "problem"),
    [("10.0.0.7", "a private address"), ("169.254.169.254", "a link-local address"), ("127.0.0.1", "a loopback")],
)
async def test_the_guard_refuses_a_name_that_resolves_to_a_refused_address_before_the_proxy_hears_of_it(
    monkeypatch: pytest.MonkeyPatch, address: str, problem: str
) -> None:
    resolver = Resolver({"idp.example.com": ["93.184.216.34", address]})
    async with forward_proxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        async with EgressClient(EgressPolicy(resolver=resolver)) as http:
            with pytest.raises(UnsafeURL, match=problem):
                await http.get("https://idp.example.com/.well-known/openid-configuration")
            with pytest.raises(UnsafeURL, match="a private address"):
                await http.get("https://10.1.2.3/token")
    assert resolver.asked == ["idp.example.com"]
    assert proxy.asked == []


async def test_a_discovered_name_the_hub_cannot_resolve_is_refused_and_never_sent_to_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolver = Resolver({})
    async with forward_proxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        async with EgressClient(EgressPolicy(resolver=resolver)) as http:
            with pytest.raises(UnsafeURL, match="does not resolve"):
                await http.get("https://idp.example.com/.well-known/openid-configuration")
    assert proxy.asked == []


@pytest.mark.parametrize(
    ("trusted", "resolved"),
    [
        pytest.param(frozenset[str](), ["idp.example.com"], id="checked-then-sent-by-name"),
        pytest.param(frozenset({"https://idp.example.com:443"}), [], id="configured-origin-not-resolved"),
    ],
)
async def test_a_host_that_passes_the_guard_is_sent_to_the_proxy_by_name(
    monkeypatch: pytest.MonkeyPatch, trusted: frozenset[str], resolved: list[str]
) -> None:
    resolver = Resolver({"idp.example.com": ["93.184.216.34"]} if not trusted else {})
    async with forward_proxy() as proxy:  # it only reaches loopback: a remote name gets 502
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        async with EgressClient(EgressPolicy(resolver=resolver, trusted_origins=trusted)) as http:
            with pytest.raises(httpx2.ProxyError):
                await http.get("https://idp.example.com/.well-known/openid-configuration")
    assert proxy.tunnels() == ["idp.example.com:443"]
    assert resolver.asked == resolved


async def test_client_credentials_are_discovered_and_fetched_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with forward_proxy() as proxy, oauth_stack() as stack:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "")
        config = OAuth2Auth.model_validate(
            {
                "type": "oauth2",
                "grant": "client_credentials",
                "client_id": HUB_CLIENT_ID,
                "client_secret": HUB_CLIENT_SECRET,
                "scopes": ["tickets.read"],
            }
        )
        auths = UpstreamAuths(MemoryTokenStore())
        auths.add("tickets", stack.upstream_url, config, insecure_loopback=True)
        with anyio.fail_after(20):
            async with (
                httpx2.AsyncClient(auth=auths.http_auth("tickets"), timeout=20, trust_env=False) as direct,
                Client(streamable_http_client(stack.upstream_url, http_client=direct), mode="legacy") as client,
            ):
                assert await whoami(client) == HUB_CLIENT_ID
        await auths.aclose()
    asked = proxy.forwarded()
    assert f"GET {stack.issuer}/.well-known/oauth-authorization-server" in asked
    assert f"POST {stack.issuer}/token" in asked
    assert stack.provider.grants["client_credentials"] == 1

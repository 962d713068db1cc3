"""A hub whose environment names an egress proxy sends its outbound traffic through it: chat requests to an LLM
provider, and both sessions of a remote MCP upstream (the lean sessions on the HTTP/1.1 client, tunnelled with
CONNECT, and the SDK session on httpx2, which forwards plain http in absolute form).

127.0.0.1 is normally listed in NO_PROXY; these tests set NO_PROXY empty so the local fakes are reached through
the proxy. The test's own clients talk to the hub directly (`trust_env=False`).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import openai
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from llm.testing import FakeScript, Reply, openai_app, serve
from tests.hub.harness import ALICE, running_hub
from tests.proxy.forward_proxy import ForwardProxy, forward_proxy
from tests.tools import ServedProcess, served, server_argv

pytestmark = pytest.mark.anyio

PROVIDER_SECRET = "sk-proxy-test-0001"


@asynccontextmanager
async def proxied_environment(
    monkeypatch: pytest.MonkeyPatch, *, credentials: tuple[str, str] | None = None
) -> AsyncGenerator[ForwardProxy]:
    """A forward proxy named in HTTPS_PROXY and HTTP_PROXY, with nothing exempt (NO_PROXY empty)."""
    async with forward_proxy(credentials=credentials) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "")
        yield proxy


async def test_a_chat_request_through_the_openai_door_reaches_the_provider_through_the_proxy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("T_PROXY_OPENAI", PROVIDER_SECRET)
    script = FakeScript(default=Reply("answered through the proxy"))
    async with (
        proxied_environment(monkeypatch, credentials=("hub", "egress-pw")) as proxy,
        serve(openai_app(script, keys=[PROVIDER_SECRET])) as provider,
    ):
        config = {
            "servers": {},
            "keys": [{"name": "alice", "secret": ALICE, "models": ["*"]}],
            "providers": {
                "openai": {
                    "kind": "openai",
                    "base_url": f"{provider}/v1",
                    "keys": [{"name": "main", "secret": "env:T_PROXY_OPENAI"}],
                    "models": ["gpt-4o-mini"],
                }
            },
            "models": {"fast": {"deployments": [{"provider": "openai", "model": "gpt-4o-mini"}]}},
        }
        async with running_hub(config, tmp_path) as hub, httpx2.AsyncClient(trust_env=False, timeout=20) as http:
            client = openai.AsyncOpenAI(base_url=hub.url("/v1"), api_key=ALICE, max_retries=0, http_client=http)
            with anyio.fail_after(20):
                for _ in range(2):
                    completion = await client.chat.completions.create(
                        model="fast", messages=[{"role": "user", "content": "hello"}]
                    )
                    assert completion.choices[0].message.content == "answered through the proxy"
    provider_address = provider.removeprefix("http://")
    assert set(proxy.tunnels()) == {provider_address}
    assert {a.authorization for a in proxy.asked} == {"Basic " + base64.b64encode(b"hub:egress-pw").decode()}
    assert len(script.requests) == 2


@asynccontextmanager
async def fixture_upstream(transport: str) -> AsyncGenerator[ServedProcess]:
    argv = server_argv("fixture_server", "--transport", transport, "--port", "{port}")
    async with served(argv) as process:
        yield process


@pytest.mark.slow
async def test_a_streamable_http_upstream_is_reached_through_the_proxy_by_its_lean_and_sdk_sessions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async with fixture_upstream("streamable-http") as upstream, proxied_environment(monkeypatch) as proxy:
        url = upstream.url("/mcp")
        config = {
            "hub": {"upstream_start_timeout_s": 30},
            "servers": {"fixture": {"transport": "http", "url": url}},
            "keys": [{"name": "alice", "secret": ALICE, "tools": ["*"]}],
        }
        async with running_hub(config, tmp_path) as hub, hub_client(hub.url("/mcp")) as client:
            with anyio.fail_after(20):
                result = await client.call_tool("fixture__echo", {"message": "via the proxy"})
                assert result.content[0].model_dump()["text"] == "via the proxy"
    address = f"127.0.0.1:{upstream.port}"
    assert set(proxy.tunnels()) == {address}, "the lean sessions connected through the proxy"
    forwarded = proxy.forwarded()
    assert f"POST {url}" in forwarded, "the SDK session's requests went through the proxy"
    assert all(line.split(" ", 1)[1].startswith(f"http://{address}/") for line in forwarded)


@pytest.mark.slow
async def test_an_sse_upstream_is_reached_through_the_proxy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    async with fixture_upstream("sse") as upstream, proxied_environment(monkeypatch) as proxy:
        config = {
            "hub": {"upstream_start_timeout_s": 30},
            "servers": {"fixture": {"transport": "sse", "url": upstream.url("/sse")}},
            "keys": [{"name": "alice", "secret": ALICE, "tools": ["*"]}],
        }
        async with running_hub(config, tmp_path) as hub, hub_client(hub.url("/mcp")) as client:
            with anyio.fail_after(20):
                result = await client.call_tool("fixture__echo", {"message": "via the proxy"})
                assert result.content[0].model_dump()["text"] == "via the proxy"
    forwarded = proxy.forwarded()
    assert f"GET {upstream.url('/sse')}" in forwarded
    assert any(line.startswith(f"POST {upstream.base_url}/") for line in forwarded)


@asynccontextmanager
async def hub_client(url: str) -> AsyncGenerator[Client]:
    """An MCP client that reaches the hub directly, whatever the environment says."""
    headers = {"Authorization": f"Bearer {ALICE}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30, trust_env=False) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
    ):
        yield client

"""Through the hub: a lean call's upstream failure reaches the MCP client as the upstream failure it is.

The hub's MCP door answers plain tool calls on its fast path, and the executor maps each `UpstreamError` to the
hub's error table; a malformed answer from an upstream must arrive as `-32603` naming the upstream (502 on the
REST door), not as the "internal error" of a crash, and count against the upstream's health.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from tests.connectors.scripted import Request, hang_up, rpc_error, serve_upstream
from tests.hub.harness import ALICE, base_config, mcp_client, running_hub

pytestmark = pytest.mark.anyio


async def test_a_malformed_error_from_the_upstream_reaches_the_client_as_an_upstream_failure(tmp_path: Path) -> None:
    async def answer(request: Request) -> bytes:
        return rpc_error(request, "boom")

    async with serve_upstream() as server:
        server.on["tools/call"] = answer
        config = base_config({"scripted": {"transport": "http", "url": server.url}})
        async with running_hub(config, tmp_path) as hub:
            upstream = hub.hub.registry.upstreams["scripted"]
            assert upstream._fast is not None, "the hub calls this upstream on its lean sessions"
            with anyio.fail_after(30):
                async with mcp_client(hub.url("/mcp"), ALICE) as client:
                    with pytest.raises(MCPError) as caught:
                        await client.call_tool("scripted__echo", {})
    assert caught.value.error.code == -32603
    assert caught.value.error.message == "upstream 'scripted' sent a malformed error (a string, not an object)"
    assert server.seen["tools/call"] == 1
    assert upstream.health.failures == 1


async def test_a_tool_call_the_upstream_may_have_run_is_reported_once_and_not_sent_again(tmp_path: Path) -> None:
    async def hang_up_on_pooled_connections(request: Request) -> bytes | None:
        return await hang_up(request) if request.served_before else server.default(request)

    async with serve_upstream() as server:
        server.on["tools/call"] = hang_up_on_pooled_connections
        config = base_config({"scripted": {"transport": "http", "url": server.url}})
        async with running_hub(config, tmp_path) as hub:
            upstream = hub.hub.registry.upstreams["scripted"]
            assert upstream._fast is not None, "the hub calls this upstream on its lean sessions"
            with anyio.fail_after(30):
                async with mcp_client(hub.url("/mcp"), ALICE) as client:
                    with pytest.raises(MCPError) as caught:
                        await client.call_tool("scripted__echo", {})
    assert caught.value.error.code == -32603
    assert "it may have run, so it was not sent again" in caught.value.error.message
    assert server.seen["tools/call"] == 1
    assert upstream.health.failures == 1

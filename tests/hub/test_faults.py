"""Bad input and broken upstreams: each gets a clear error, and the hub keeps serving every other call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from tests.hub.harness import ALICE, base_config, faulty_stdio, fixture_stdio, mcp_client, running_hub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

STREAM_HEADERS = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {ALICE}"}
INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}


async def _session(http: httpx2.AsyncClient, url: str) -> dict[str, str]:
    response = await http.post(url, json=INIT, headers=STREAM_HEADERS)
    assert response.status_code == 200
    headers = {
        **STREAM_HEADERS,
        "mcp-session-id": response.headers["mcp-session-id"],
        "mcp-protocol-version": "2025-11-25",
    }
    await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    return headers


def _error(response: httpx2.Response) -> dict[str, Any]:
    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:") and line[5:].strip())
    error: dict[str, Any] = json.loads(text)["error"]
    return error


async def test_malformed_unknown_and_wrong_jsonrpc_get_the_right_codes(tmp_path: Path) -> None:
    config = base_config({"fixture": fixture_stdio()})
    async with running_hub(config, tmp_path) as hub, httpx2.AsyncClient(timeout=10) as http:
        headers = await _session(http, hub.url())
        malformed = await http.post(
            hub.url(), content=b"{not json", headers={**headers, "Content-Type": "application/json"}
        )
        unknown = await http.post(hub.url(), json={"jsonrpc": "2.0", "id": 1, "method": "no/such"}, headers=headers)
        wrong = await http.post(
            hub.url(),
            json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"arguments": {}}},
            headers=headers,
        )
        still = await http.post(
            hub.url(),
            json={"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "fixture__echo"}},
            headers=headers,
        )
    assert malformed.status_code == 400 and _error(malformed)["code"] == types.PARSE_ERROR
    assert _error(unknown)["code"] == types.METHOD_NOT_FOUND
    assert _error(wrong)["code"] == types.INVALID_PARAMS
    assert still.status_code == 200


async def test_an_oversized_body_is_refused_with_413(tmp_path: Path) -> None:
    config = base_config({"fixture": fixture_stdio()}, max_body_bytes=4096)
    big = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x", "arguments": {"p": "a" * 8000}}}
    async with running_hub(config, tmp_path) as hub, httpx2.AsyncClient(timeout=10) as http:
        headers = await _session(http, hub.url())
        mcp_response = await http.post(hub.url(), json=big, headers=headers)
        rest_response = await http.post(
            hub.url("/v1/mcp/tool/execute"),
            json={"id": "c", "type": "function", "function": {"name": "fixture__echo", "arguments": "a" * 8000}},
            headers={"Authorization": f"Bearer {ALICE}"},
        )
    assert mcp_response.status_code == 413
    assert rest_response.status_code == 413
    assert rest_response.json()["error"]["type"] == "invalid_request_error"


async def test_a_foreign_origin_or_host_is_refused(tmp_path: Path) -> None:
    config = base_config({"fixture": fixture_stdio()})
    async with running_hub(config, tmp_path) as hub, httpx2.AsyncClient(timeout=10) as http:
        evil_origin = await http.post(hub.url(), json=INIT, headers={**STREAM_HEADERS, "Origin": "http://evil.test"})
        evil_host = await http.post(hub.url(), json=INIT, headers={**STREAM_HEADERS, "Host": "evil.test"})
        good_origin = await http.post(
            hub.url(), json=INIT, headers={**STREAM_HEADERS, "Origin": f"http://127.0.0.1:{hub.port}"}
        )
    assert evil_origin.status_code == 403
    assert evil_host.status_code in (400, 403, 421)
    assert good_origin.status_code == 200


async def test_an_upstream_that_crashes_mid_call_fails_that_call_and_comes_back(tmp_path: Path) -> None:
    config = base_config({"fixture": fixture_stdio(), "crashy": faulty_stdio("crash")})
    config["keys"][0]["tools"] = ["*"]
    async with running_hub(config, tmp_path) as hub, mcp_client(hub.url(), ALICE) as client:
        with pytest.raises(MCPError) as crashed:
            await client.call_tool("crashy__boom", {})
        other = await client.call_tool("fixture__echo", {"message": "still here"})
        with anyio.fail_after(PATIENCE):
            while True:
                try:
                    back = await client.call_tool("crashy__echo", {"message": "back"})
                    break
                except MCPError:
                    await anyio.sleep(0.2)
        restarts = hub.hub.registry.upstreams["crashy"].health.reconnects
    assert "crashy" in crashed.value.error.message
    assert not other.is_error
    assert not back.is_error
    assert restarts >= 1


async def test_an_upstream_that_never_answers_times_out_without_blocking_others(tmp_path: Path) -> None:
    config = base_config({"fixture": fixture_stdio(), "stuck": {**faulty_stdio("hang"), "timeout_s": 1}})
    async with running_hub(config, tmp_path) as hub, mcp_client(hub.url(), ALICE) as client:
        async with anyio.create_task_group() as tg:
            errors: list[MCPError] = []

            async def stuck_call() -> None:
                try:
                    await client.call_tool("stuck__boom", {})
                except MCPError as exc:
                    errors.append(exc)

            tg.start_soon(stuck_call)
            fast = await client.call_tool("fixture__echo", {"message": "meanwhile"})
        after = await client.call_tool("stuck__echo", {"message": "alive"})
    assert not fast.is_error
    assert len(errors) == 1 and "did not answer within 1s" in errors[0].error.message
    assert not after.is_error


async def test_an_upstream_writing_garbage_to_stdout_still_serves_calls(tmp_path: Path) -> None:
    config = base_config({"noisy": faulty_stdio("garbage")})
    async with running_hub(config, tmp_path) as hub, mcp_client(hub.url(), ALICE) as client:
        result = await client.call_tool("noisy__echo", {"message": "through the noise"})
    assert isinstance(result.content[0], types.TextContent) and result.content[0].text == "through the noise"


async def test_an_upstream_that_exits_at_start_never_blocks_the_others(tmp_path: Path) -> None:
    config = base_config({"fixture": fixture_stdio(), "dead": faulty_stdio("exit")})
    config["hub"]["upstream_start_timeout_s"] = 5  # the hub waits that long for `dead`, then serves without it
    async with running_hub(config, tmp_path) as hub:
        # On a busy machine `fixture` itself may need longer than that to start: it is served once it is up.
        assert await hub.hub.registry.upstreams["fixture"].wait_ready(PATIENCE)
        async with mcp_client(hub.url(), ALICE) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool("fixture__echo", {"message": "fine"})
        dead = hub.hub.registry.upstreams["dead"].health
    assert "fixture__echo" in names and not any(n.startswith("dead__") for n in names)
    assert not result.is_error
    assert dead.state.value in ("failed", "connecting") and dead.error

"""Freshness hints on list results: in 2026-07-28 every list result carries `ttlMs` and `cacheScope: "private"`
(the lists are per key, and change at any time: the hub tells listening clients when); the handshake-era revision
does not define them, and its results (the fast path's `tools/list` included) carry neither."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from hub.doors.mcp import LIST_TTL_MS
from tests.hub.harness import ALICE, base_config, fixture_stdio, running_hub
from tests.mcp_lists.harness import MODERN_META, rpc_result, until_view
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

LISTS = ["tools/list", "prompts/list", "resources/list", "resources/templates/list"]


async def test_2026_list_results_are_private_with_a_ttl(tmp_path: Path) -> None:
    headers = {
        "Authorization": f"Bearer {ALICE}",
        "Accept": "application/json, text/event-stream",
        "Mcp-Protocol-Version": "2026-07-28",
    }
    async with running_hub(base_config({"fixture": fixture_stdio()}), tmp_path) as hub:
        await until_view(hub, lambda v: "fixture__echo" in v.tools)
        async with httpx2.AsyncClient(timeout=PATIENCE) as http:
            results = []
            for n, method in enumerate(LISTS):
                body = {"jsonrpc": "2.0", "id": n, "method": method, "params": {"_meta": MODERN_META}}
                response = await http.post(hub.url(), json=body, headers={**headers, "Mcp-Method": method})
                results.append(rpc_result(response))
    for result in results:
        assert result["ttlMs"] == LIST_TTL_MS
        assert result["cacheScope"] == "private"
        assert result["resultType"] == "complete"


async def test_handshake_era_list_results_carry_no_hints(tmp_path: Path) -> None:
    headers = {"Authorization": f"Bearer {ALICE}", "Accept": "application/json, text/event-stream"}
    initialize = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    async with running_hub(base_config({"fixture": fixture_stdio()}), tmp_path) as hub:
        await until_view(hub, lambda v: "fixture__echo" in v.tools)
        async with httpx2.AsyncClient(timeout=PATIENCE) as http:
            opened = await http.post(hub.url(), json=initialize, headers=headers)
            session_id = opened.headers["mcp-session-id"]
            session = {**headers, "Mcp-Session-Id": session_id, "Mcp-Protocol-Version": "2025-11-25"}
            note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            assert (await http.post(hub.url(), json=note, headers=session)).status_code == 202
            results = []
            for n, method in enumerate(LISTS, start=1):
                body = {"jsonrpc": "2.0", "id": n, "method": method}
                results.append(rpc_result(await http.post(hub.url(), json=body, headers=session)))
    assert results[0]["tools"]  # the fast path's answer
    for result in results:
        assert "ttlMs" not in result and "cacheScope" not in result

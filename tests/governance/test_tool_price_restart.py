"""A priced tool call is spending like a priced model call: its price is the request-log row's cost, so a hub that
restarts (a fresh counter store, seeded from the request log) still counts it against the budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from tests.hub.harness import ALICE, base_config, fixture_stdio, mcp_client, running_hub

pytestmark = pytest.mark.anyio

PRICE = 0.01


def _config() -> dict[str, Any]:
    config = base_config(
        {"fixture": fixture_stdio()},
        keys=[{"name": "alice", "secret": ALICE, "tools": ["*"], "budget": {"max_usd": 0.035, "reset": "1Y"}}],
    )
    config["pricing"] = {"tools": {"fixture__echo": PRICE}}
    return config


async def _echo(url: str) -> MCPError | None:
    """One call of the priced tool; its refusal, if refused."""
    async with mcp_client(url, ALICE) as client:
        try:
            await client.call_tool("fixture__echo", {"text": "hi"})
        except MCPError as refused:
            return refused
    return None


async def test_a_priced_tool_calls_price_is_logged_and_still_spent_after_a_restart(tmp_path: Path) -> None:
    async with running_hub(_config(), tmp_path) as hub:
        assert await _echo(hub.url("/mcp")) is None
        assert await _echo(hub.url("/mcp")) is None
        assert hub.hub.request_log is not None
        await hub.hub.request_log.flush()
        rows = [r for r in hub.hub.store.recent_log(100) if r.operation == "mcp.tool"]
        assert [r.cost_usd for r in rows] == [pytest.approx(PRICE)] * 2
    async with running_hub(_config(), tmp_path) as hub:  # same database, fresh counters
        assert await _echo(hub.url("/mcp")) is None  # 0.02 spent before it: 0.03 of 0.035 after it
        refused = await _echo(hub.url("/mcp"))
    assert refused is not None and "budget exhausted" in refused.error.message

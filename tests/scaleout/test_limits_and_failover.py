"""Limits hold across replicas behind the load balancer, and a replica killed in the middle of a stream costs the
client nothing but that stream: its next request succeeds on another replica, only completed calls are charged,
and the audit chain that every replica appends to stays intact."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import httpx2
import orjson
import pytest
from mcp.shared.exceptions import MCPError

from tests.admin.helpers import admin_client
from tests.scaleout.cluster import REPLICA_HEADER, Cluster, Served, Services, cluster, mcp_session
from tests.tools import PATIENCE, SERVERS_DIR

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

RATE_LIMITED = -32005
PRICE = 0.25
"""What one `fixture__echo` call costs (a binary fraction: sums are exact)."""


def config(key: str, secret: str, limits: str) -> str:
    return f"""
[servers.fixture]
transport = "stdio"
command = "{sys.executable}"
args = ["{SERVERS_DIR / "fixture_server.py"}"]

[pricing.tools]
"fixture__echo" = {PRICE}
"fixture__slow" = 1.0

[[keys]]
name = "{key}"
secret = "{secret}"
tools = ["*"]
{limits}
"""


@pytest.mark.parametrize("replicas", [2, 3])
async def test_a_rate_limit_is_exact_across_replicas_behind_the_balancer(
    services: Services, tmp_path: Path, replicas: int
) -> None:
    secret = f"ahk-scaleout-limited-{replicas}-00000000000000000000000"
    allowed = 5
    limits = f'rate_limit = {{ requests = {allowed}, period = "1h" }}'
    seen = Served()
    body = config(f"limited{replicas}", secret, limits)
    async with (
        cluster(services, tmp_path, replicas=replicas, config=body) as hubs,
        mcp_session(hubs.url(), secret, seen=seen) as client,
    ):
        outcomes: list[str] = []

        async def call(n: int) -> None:
            try:
                result = await client.call_tool("fixture__echo", {"message": f"m{n}"})
            except MCPError as exc:
                outcomes.append(f"refused {exc.code}")
            else:
                outcomes.append("error" if result.is_error else "ok")

        with anyio.fail_after(PATIENCE):
            # The client validates results against the listed tool schemas: list first, since a listing is
            # refused once the key is over its limit.
            await client.list_tools()
            async with anyio.create_task_group() as tg:
                for n in range(3 * allowed):
                    tg.start_soon(call, n)
        assert sorted(outcomes) == ["ok"] * allowed + [f"refused {RATE_LIMITED}"] * (2 * allowed), outcomes
    served_by = {replica for method, replica in seen.requests if method == "POST"}
    assert served_by == set(hubs.names)


async def test_a_replica_killed_mid_stream_costs_only_that_stream(services: Services, tmp_path: Path) -> None:
    secret = "ahk-scaleout-failover-000000000000000000000000"
    limits = 'budget = { max_usd = 100.0, reset = "1d" }'
    seen = Served()
    body = config("failover", secret, limits)
    async with (
        cluster(services, tmp_path, replicas=3, config=body) as hubs,
        admin_client(hubs.url("")) as admin,
        mcp_session(hubs.url(), secret, seen=seen) as client,
    ):
        with anyio.fail_after(PATIENCE):
            for n in range(4):
                assert not (await client.call_tool("fixture__echo", {"message": f"before {n}"})).is_error
                assert (await admin.post("/api/v1/customers", json={"name": f"before-{n}"})).status_code == 201

            # A call whose response streams (progress), on the client's session, killed with its replica.
            victim = await _stream_then_kill(hubs, secret, seen.session_id)

            for n in range(4):
                assert not (await client.call_tool("fixture__echo", {"message": f"after {n}"})).is_error
                assert (await admin.post("/api/v1/customers", json={"name": f"after-{n}"})).status_code == 201
            survivors = {replica for method, replica in seen.requests[-4:] if method == "POST"}
            assert hubs.names[victim] not in survivors

            # the killed call (priced too) never completed: only the eight that did are charged, each once
            usage = (await admin.get("/api/v1/usage/key/failover")).json()
            [budget] = [limit for limit in usage["limits"] if limit["metric"] == "usd"]
            assert budget["used"] == 8 * PRICE, usage
            verdict = (await admin.get("/api/v1/audit/verify")).json()
            assert verdict["ok"] is True, verdict
            assert verdict["checked"] >= 8


async def _stream_then_kill(hubs: Cluster, secret: str, session_id: str | None) -> int:
    """POST a slow tool call on the session, read its first progress event, SIGKILL the replica streaming it and
    see the stream cut; returns that replica's index."""
    assert session_id is not None
    headers = {
        "Authorization": f"Bearer {secret}",
        "mcp-session-id": session_id,
        "mcp-protocol-version": "2025-11-25",
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
    }
    request = {
        "jsonrpc": "2.0",
        "id": "slow-1",
        "method": "tools/call",
        "params": {
            "name": "fixture__slow",
            "arguments": {"seconds": 3600, "steps": 3600},
            "_meta": {"progressToken": 1},
        },
    }
    async with httpx2.AsyncClient(timeout=PATIENCE) as http:
        async with http.stream("POST", hubs.url(), content=orjson.dumps(request), headers=headers) as response:
            assert response.status_code == 200
            victim = hubs.names.index(response.headers[REPLICA_HEADER])
            lines = response.aiter_lines()
            async for line in lines:
                if line.startswith("data:") and "notifications/progress" in line:
                    break
            hubs.kill(victim)
            with pytest.raises(httpx2.HTTPError):
                async for line in lines:
                    assert "slow-1" not in line or '"result"' not in line
    return victim

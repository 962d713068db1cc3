"""The relay between replicas, with each request sent to a chosen replica (no load balancer, so nothing is left
to chance): a resource update made on one replica reaches the client's GET stream held by another, and a client's
answer to an elicitation, sent to another replica than the one waiting for it, completes the call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import orjson
import pytest

from tests.scaleout.cluster import Services, cluster
from tests.scaleout.test_sessions import README, UPSTREAM_README, config
from tests.tools import PATIENCE

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

SECRET = "ahk-scaleout-relay-00000000000000000000000000"
VERSION = "2025-11-25"


async def messages(lines: AsyncIterator[str]) -> AsyncIterator[dict[str, Any]]:
    """The JSON-RPC messages of an SSE response."""
    async for line in lines:
        if line.startswith("data:") and line[5:].strip():
            yield orjson.loads(line[5:])


def request(request_id: int | str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


async def test_messages_cross_replicas_to_the_one_that_holds_the_stream_or_waits_for_the_answer(
    services: Services, tmp_path: Path
) -> None:
    headers = {
        "Authorization": f"Bearer {SECRET}",
        "mcp-protocol-version": VERSION,
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
    }
    async with (
        cluster(services, tmp_path, replicas=2, config=config("relay", SECRET)) as hubs,
        httpx2.AsyncClient(timeout=PATIENCE) as http,
    ):
        r0, r1 = (hub.url("/mcp") for hub in hubs.hubs)
        capabilities = {"elicitation": {}}
        opening = request(1, "initialize", {"protocolVersion": VERSION, "capabilities": capabilities,
                                            "clientInfo": {"name": "relay-test", "version": "1"}})  # fmt: skip
        opened = await http.post(r0, json=opening, headers=headers)
        assert opened.status_code == 200, opened.text
        session = {**headers, "mcp-session-id": opened.headers["mcp-session-id"]}
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(r1, json=initialized, headers=session)).status_code == 202

        with anyio.fail_after(PATIENCE):
            # the GET stream on r1; the subscription and the update on r0
            async with http.stream("GET", r1, headers=session) as stream:
                assert stream.status_code == 200
                assert stream.headers["x-agenthub-replica"] == "r1"
                subscribed = await http.post(
                    r0, json=request(2, "resources/subscribe", {"uri": README}), headers=session
                )
                assert subscribed.status_code == 200 and '"result"' in subscribed.text
                touch = request(
                    3, "tools/call", {"name": "fixture__touch_resource", "arguments": {"uri": UPSTREAM_README}}
                )
                touched = await http.post(r0, json=touch, headers=session)
                assert touched.headers["x-agenthub-replica"] == "r0" and '"result"' in touched.text
                async for message in messages(stream.aiter_lines()):
                    if message.get("method") == "notifications/resources/updated":
                        assert message["params"]["uri"] == README
                        break

            # an elicitation asked on r0's stream, answered through r1
            ask = request(4, "tools/call", {"name": "asker__ask_user", "arguments": {"question": "Who are you?"}})
            async with http.stream("POST", r0, content=orjson.dumps(ask), headers=session) as call:
                assert call.headers["x-agenthub-replica"] == "r0"
                answers = messages(call.aiter_lines())
                async for message in answers:
                    if message.get("method") == "elicitation/create":
                        answer = {"jsonrpc": "2.0", "id": message["id"],
                                  "result": {"action": "accept", "content": {"name": "Grace"}}}  # fmt: skip
                        relayed = await http.post(r1, json=answer, headers=session)
                        assert relayed.status_code == 202
                        assert relayed.headers["x-agenthub-replica"] == "r1"
                        break
                async for message in answers:
                    if message.get("id") == 4:
                        assert message["result"]["content"] == [{"type": "text", "text": "Hello, Grace!"}]
                        break
                else:
                    pytest.fail("the call ended without its result")

"""A full MCP session through a round-robin load balancer without stickiness, on two and three replicas: every
request of the session lands on another replica than the one before, and all of it works (handshake, listing,
calls, progress, an elicitation round trip, a resource subscription update, deleting the session)."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp.client.context import ClientRequestContext
from mcp.client.session import IncomingMessage

from tests.scaleout.cluster import Served, Services, cluster, mcp_session
from tests.tools import PATIENCE, SERVERS_DIR

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

README = "fixture+fixture://readme"
"""The fixture's readme as the hub shows it (the asker has a resource by the same URI)."""
UPSTREAM_README = "fixture://readme"


def config(key: str, secret: str) -> str:
    """Two servers: `fixture` (one upstream session per replica) and `asker` (one per client session, so that its
    elicitation reaches the client that called)."""
    return f"""
[servers.fixture]
transport = "stdio"
command = "{sys.executable}"
args = ["{SERVERS_DIR / "fixture_server.py"}"]

[servers.asker]
transport = "stdio"
command = "{sys.executable}"
args = ["{SERVERS_DIR / "fixture_server.py"}", "--name", "asker"]
session = "per_client"

[[keys]]
name = "{key}"
secret = "{secret}"
tools = ["*"]
"""


class Inbox:
    """What the server sent the client outside responses: resource updates (with an event to wait on)."""

    def __init__(self) -> None:
        self.updated: list[str] = []
        self.arrived = anyio.Event()

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.updated.append(str(message.params.uri))
            self.arrived.set()


async def _elicit(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"name": "Grace"})


def _text(result: types.CallToolResult) -> str:
    [content] = result.content
    assert isinstance(content, types.TextContent)
    return content.text


def assert_spread(seen: Served, names: list[str]) -> None:
    """Every replica served some of the session's requests, and no two consecutive POSTs went to one replica."""
    posts = [replica for method, replica in seen.requests if method == "POST"]
    assert set(posts) == set(names), seen.requests
    repeats = [n for n in range(1, len(posts)) if posts[n] == posts[n - 1]]
    # haproxy alternates per request; the client's GET stream takes one turn, so it may put two POSTs in a row once
    assert len(repeats) <= 1, seen.requests


@pytest.mark.parametrize("replicas", [2, 3])
async def test_a_handshake_session_is_served_by_every_replica_in_turn(
    services: Services, tmp_path: Path, replicas: int
) -> None:
    secret = f"ahk-scaleout-session-{replicas}-000000000000000000000000"
    seen, inbox = Served(), Inbox()
    body = config(f"session{replicas}", secret)
    async with (
        cluster(services, tmp_path, replicas=replicas, config=body) as hubs,
        mcp_session(hubs.url(), secret, seen=seen, elicitation_callback=_elicit, message_handler=inbox) as client,
    ):
        with anyio.fail_after(PATIENCE):
            listed = await client.list_tools()
            names = {tool.name for tool in listed.tools}
            assert {"fixture__echo", "fixture__slow", "asker__ask_user", "fixture__touch_resource"} <= names
            for n in range(4):
                assert _text(await client.call_tool("fixture__echo", {"message": f"m{n}"})) == f"m{n}"

            seen_progress: list[tuple[float, float | None]] = []

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                seen_progress.append((progress, total))

            slept = await client.call_tool("fixture__slow", {"seconds": 0.1, "steps": 3}, progress_callback=on_progress)
            assert _text(slept) == "slept 0.1s"
            assert seen_progress == [(1, 3), (2, 3), (3, 3)]

            asked = await client.call_tool("asker__ask_user", {"question": "Who are you?"})
            assert _text(asked) == "Hello, Grace!"

            subscribe = types.SubscribeRequest(params=types.SubscribeRequestParams(uri=README))
            await client.session.send_request(subscribe, types.EmptyResult)
            # Each replica has its own fixture process, and only the replica that took the subscription holds it
            # upstream: touching the resource through another notifies nobody. One round of the replicas (plus
            # one, for the turn the client's GET stream takes) reaches it.
            for _ in range(replicas + 1):
                touched = await client.call_tool("fixture__touch_resource", {"uri": UPSTREAM_README})
                assert not touched.is_error
            await inbox.arrived.wait()
            assert set(inbox.updated) == {README}
    assert_spread(seen, hubs.names)


async def test_a_session_is_refused_to_another_key_and_once_deleted_to_everyone_on_every_replica(
    services: Services, tmp_path: Path
) -> None:
    secret, other = "ahk-scaleout-deleted-0000000000000000000000000", "ahk-scaleout-other-00000000000000000000000000"
    seen = Served()
    body = (
        config("deleted", secret)
        + f"""
[[keys]]
name = "other"
secret = "{other}"
tools = ["*"]
"""
    )
    request = {"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {}}

    async def refusals(http: httpx2.AsyncClient, key: str, session_id: str) -> list[tuple[int, str]]:
        headers = {
            "Authorization": f"Bearer {key}",
            "mcp-session-id": session_id,
            "mcp-protocol-version": "2025-11-25",
            "accept": "application/json, text/event-stream",
        }
        answers = [await http.post(hub.url("/mcp"), json=request, headers=headers) for hub in hubs.hubs]
        return [(answer.status_code, answer.json()["error"]["message"]) for answer in answers]

    not_found = [(404, "Session not found")] * 2
    async with (
        cluster(services, tmp_path, replicas=2, config=body) as hubs,
        httpx2.AsyncClient(timeout=PATIENCE) as http,
    ):
        async with mcp_session(hubs.url(), secret, seen=seen) as client:
            await client.list_tools()
            session_id = seen.session_id
            assert session_id is not None and session_id.startswith("s1.")
            # the session is bound to its key on every replica, and a forged id opens nothing
            assert await refusals(http, other, session_id) == not_found
            assert await refusals(http, secret, session_id[:-4] + "AAAA") == not_found
            await client.list_tools()
        # the client deleted its session on the way out; every replica now refuses the id
        assert ("DELETE", "r0") in seen.requests or ("DELETE", "r1") in seen.requests
        assert await refusals(http, secret, session_id) == not_found


async def test_the_stateless_revision_is_served_by_every_replica_in_turn(services: Services, tmp_path: Path) -> None:
    """2026-07-28 needs no session: every request carries what the server needs, so any replica serves it. (That
    revision has no back-channel for server-to-client requests, so there is no elicitation to route.)"""
    secret = "ahk-scaleout-modern-00000000000000000000000000"
    seen = Served()
    async with (
        cluster(services, tmp_path, replicas=2, config=config("modern", secret)) as hubs,
        mcp_session(hubs.url(), secret, seen=seen, mode="auto") as client,
    ):
        with anyio.fail_after(PATIENCE):
            assert client.protocol_version == "2026-07-28"
            listed = await client.list_tools()
            assert "fixture__echo" in {tool.name for tool in listed.tools}
            for n in range(4):
                assert _text(await client.call_tool("fixture__echo", {"message": f"m{n}"})) == f"m{n}"
            seen_progress: list[tuple[float, float | None]] = []

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                seen_progress.append((progress, total))

            slept = await client.call_tool("fixture__slow", {"seconds": 0.1, "steps": 2}, progress_callback=on_progress)
            assert _text(slept) == "slept 0.1s"
            assert seen_progress == [(1, 2), (2, 2)]
    assert seen.session_id is None
    assert_spread(seen, hubs.names)


async def test_without_a_master_key_a_replica_names_the_missing_setting_for_a_session_it_does_not_hold(
    services: Services, tmp_path: Path
) -> None:
    """Replicas that share Redis but no master key cannot trust each other's session ids: the one that opened a
    session serves it, the others say why they cannot."""
    secret = "ahk-scaleout-nokey-000000000000000000000000000"
    env = {"AGENTHUB_MASTER_KEY": ""}
    async with (
        cluster(services, tmp_path, replicas=2, config=config("nokey", secret), env=env) as hubs,
        httpx2.AsyncClient(timeout=PATIENCE) as http,
    ):
        headers = {
            "Authorization": f"Bearer {secret}",
            "mcp-protocol-version": "2025-11-25",
            "accept": "application/json, text/event-stream",
        }
        initialize = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        opened = await http.post(hubs.hubs[0].url("/mcp"), json=initialize, headers=headers)
        assert opened.status_code == 200, opened.text
        session = {**headers, "mcp-session-id": opened.headers["mcp-session-id"]}
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        assert (await http.post(hubs.hubs[0].url("/mcp"), json=ping, headers=session)).status_code == 200
        refused = await http.post(hubs.hubs[1].url("/mcp"), json=ping, headers=session)
        assert refused.status_code == 404
        assert "AGENTHUB_MASTER_KEY" in refused.json()["error"]["message"]
        assert "AGENTHUB_MASTER_KEY is not" in hubs.hubs[1].output()

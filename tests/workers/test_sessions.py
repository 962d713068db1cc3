"""Handshake-era MCP sessions on `agenthub serve --workers 2` with neither Redis nor `AGENTHUB_MASTER_KEY`: the
client opens a new connection for every request, so the kernel hands each one to either worker, and every request
of the session succeeds (listing, calls, progress, an elicitation round trip on the GET stream, a resource
subscription update), also after a worker is killed mid-session and started again, and after a `SIGHUP` reload.

Each worker names itself in `x-agenthub-replica` (`w/0`, `w/1`); `paused` (SIGSTOP) leaves one worker to accept,
so a test proves that each worker served the session, whatever the kernel's choice for the other requests."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.context import ClientRequestContext
from mcp.client.session import IncomingMessage
from mcp.client.streamable_http import streamable_http_client

from tests.tools import PATIENCE, SERVERS_DIR, ServedProcess
from tests.workers.harness import hub_process, paused, wait_output, wait_workers

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SECRET = "ahk-workers-sessions-00000000000000000000000000"
README = "fixture+fixture://readme"
UPSTREAM_README = "fixture://readme"
ENV = {"AGENTHUB_REPLICA_NAME": "w", "AGENTHUB_MASTER_KEY": "", "AGENTHUB_REDIS_URL": ""}
"""No master key and no Redis: the supervisor provides what they would."""


def write_config(directory: Path) -> Path:
    """`fixture` (one upstream session per worker) and `asker` (one per client session, so that its elicitation
    reaches the client that called), one key."""
    config = directory / "agenthub.toml"
    config.write_text(
        f"""
[hub]
listen = "127.0.0.1:1"
database = "sqlite:///{directory / "hub.db"}"
upstream_start_timeout_s = {PATIENCE}

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
name = "sessions"
secret = "{SECRET}"
tools = ["*"]
"""
    )
    return config


class Seen:
    """Per response the client saw: its method, status and the worker that answered; and what arrived outside
    responses (resource updates)."""

    def __init__(self) -> None:
        self.responses: list[tuple[str, int, str]] = []
        self.updated: list[str] = []
        self.arrived = anyio.Event()

    async def hook(self, response: httpx2.Response) -> None:
        worker = response.headers.get("x-agenthub-replica", "?")
        self.responses.append((response.request.method, response.status_code, worker))

    async def inbox(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.updated.append(str(message.params.uri))
            self.arrived.set()

    def failures(self) -> list[tuple[str, int, str]]:
        return [seen for seen in self.responses if seen[1] >= 400]

    def workers(self) -> set[str]:
        return {worker for method, _, worker in self.responses if method == "POST"}


async def _elicit(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"name": "Grace"})


def _text(result: types.CallToolResult) -> str:
    assert not result.is_error, result
    [content] = result.content
    assert isinstance(content, types.TextContent)
    return content.text


@asynccontextmanager
async def session(hub: ServedProcess, seen: Seen) -> AsyncGenerator[Client]:
    """An `mcp` SDK client (handshake era) that opens a new connection for every request."""
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {SECRET}"},
        timeout=PATIENCE,
        limits=httpx2.Limits(max_keepalive_connections=0),
        event_hooks={"response": [seen.hook]},
    )
    async with (
        http,
        Client(
            streamable_http_client(hub.url("/mcp"), http_client=http),
            mode="legacy",
            elicitation_callback=_elicit,
            message_handler=seen.inbox,
        ) as client,
    ):
        yield client


async def exercise(client: Client, seen: Seen, workers: list[int]) -> None:
    """List, call, progress, elicitation round trips and a subscription update, each on new connections, on the
    running `workers`."""
    listed = await client.list_tools()
    assert {"fixture__echo", "fixture__slow", "asker__ask_user"} <= {tool.name for tool in listed.tools}
    for n in range(6):
        assert _text(await client.call_tool("fixture__echo", {"message": f"m{n}"})) == f"m{n}"
    seen_progress: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen_progress.append((progress, total))

    slept = await client.call_tool("fixture__slow", {"seconds": 0.01, "steps": 3}, progress_callback=on_progress)
    assert _text(slept) == "slept 0.01s"
    assert seen_progress == [(1, 3), (2, 3), (3, 3)]
    for _ in range(4):  # the call and the client's answer land on either worker, the GET stream is on one
        assert _text(await client.call_tool("asker__ask_user", {"question": "Who are you?"})) == "Hello, Grace!"
    subscribe = types.SubscribeRequest(params=types.SubscribeRequestParams(uri=README))
    await client.session.send_request(subscribe, types.EmptyResult)
    for worker in workers:  # only the worker whose upstream holds the subscription notifies: touch on each
        with paused(worker):
            assert _text(await client.call_tool("fixture__touch_resource", {"uri": UPSTREAM_README}))
    await seen.arrived.wait()
    assert set(seen.updated) == {README}
    unsubscribe = types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=README))
    await client.session.send_request(unsubscribe, types.EmptyResult)
    seen.updated.clear()
    seen.arrived = anyio.Event()


async def test_a_handshake_session_is_served_by_both_workers_without_redis(tmp_path: Path) -> None:
    seen = Seen()
    async with hub_process(write_config(tmp_path), 2, env=ENV) as hub, session(hub, seen) as client:
        first, second = await wait_workers(hub.pid, 2)
        with anyio.fail_after(PATIENCE):
            await exercise(client, seen, [first, second])
            with paused(first):  # the second worker serves the session
                assert len((await client.list_tools()).tools) > 0
            with paused(second):  # and the first
                assert len((await client.list_tools()).tools) > 0
            await exercise(client, seen, [first, second])
        assert_key_kept_private(hub.pid, first)
    assert seen.failures() == []
    assert seen.workers() == {"w/0", "w/1"}, seen.responses


def assert_key_kept_private(supervisor: int, worker: int) -> None:
    """The supervisor's key is in a file only its user reads, in a directory only its user enters, and in no
    process's environment (which tools such as `ps e` print)."""
    environ = dict(
        entry.split("=", 1) for entry in Path(f"/proc/{worker}/environ").read_text().split("\0") if "=" in entry
    )
    key_file = Path(environ["AGENTHUB_SESSION_KEY_FILE"])
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.parent.stat().st_mode & 0o777 == 0o700
    key = key_file.read_text()
    assert len(key) == 64
    for pid in (supervisor, worker):
        assert key not in Path(f"/proc/{pid}/environ").read_text()


async def test_a_session_outlives_a_killed_worker_and_a_reload(tmp_path: Path) -> None:
    seen = Seen()
    async with hub_process(write_config(tmp_path), 2, env=ENV) as hub, session(hub, seen) as client:
        first, second = await wait_workers(hub.pid, 2)
        with anyio.fail_after(PATIENCE):
            await exercise(client, seen, [first, second])
            with paused(first):  # the session is live in the second worker: kill it there, mid-session
                assert len((await client.list_tools()).tools) > 0
            os.kill(second, signal.SIGKILL)
            for n in range(3):  # the first worker takes every connection meanwhile
                assert _text(await client.call_tool("fixture__echo", {"message": f"k{n}"})) == f"k{n}"
            survivors = await wait_workers(hub.pid, 2, without=frozenset({second}))
            (restarted,) = set(survivors) - {first}
            await wait_output(hub, f"(pid {restarted}) serves")
            with paused(first):  # the restarted worker serves the session it never saw
                assert _text(await client.call_tool("fixture__echo", {"message": "back"})) == "back"
            await exercise(client, seen, [first, restarted])

            os.kill(hub.pid, signal.SIGHUP)
            await wait_output(hub, "configuration reloaded")
            renewed = await wait_workers(hub.pid, 2, without=frozenset({first, restarted}))
            with paused(renewed[0]):
                assert len((await client.list_tools()).tools) > 0
            with paused(renewed[1]):
                assert len((await client.list_tools()).tools) > 0
            await exercise(client, seen, renewed)
    assert [failure for failure in seen.failures() if failure[0] != "GET"] == []

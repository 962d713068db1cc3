"""A hub that says when a handshake-era client's notification stream is open, and clients that record the
list-changed notifications they hear, in order.

A handshake-era client hears notifications on its `GET` stream, which the SDK client opens on its own after the
handshake; a notification sent before that stream is open is lost (the transport keeps no history). The hub here
is served through an ASGI wrapper that counts `GET /mcp...` responses that started with 200, so a test waits for
its clients' streams (an event, no sleep) before it changes anything. A 2026-07-28 client listens through
`subscriptions/listen`, whose acknowledgement arrives once the stream is registered.

Assertions that a client heard nothing rely on order: every notification of one client travels on one stream,
so a test makes a change the client must hear after the one it must not, and checks that the client heard
exactly the second.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import orjson
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ToolsListChanged
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.app import Hub, open_hub
from hub.http import build_app
from hub.settings import settings_from_dict
from tests.hub.harness import RunningHub
from tests.mcp_lists.conftest import ADMIN
from tests.tools import free_port
from tests.tools.patience import PATIENCE

MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "mcp-lists-tests", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
"""The `_meta` every raw 2026-07-28 request carries."""

KIND_OF: dict[type, str] = {
    types.ToolListChangedNotification: "tools",
    types.PromptListChangedNotification: "prompts",
    types.ResourceListChangedNotification: "resources",
    ToolsListChanged: "tools",
    PromptsListChanged: "prompts",
    ResourcesListChanged: "resources",
}


class Heard:
    """The list-changed notifications one client heard, in order (`"tools"`, `"prompts"`, `"resources"`)."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self._more = anyio.Event()

    def add(self, message: Any) -> None:
        kind = KIND_OF.get(type(message))
        if kind is not None:
            self.kinds.append(kind)
            self._more.set()
            self._more = anyio.Event()

    async def __call__(self, message: Any) -> None:
        """The client's `message_handler`."""
        self.add(message)

    async def until(self, count: int) -> list[str]:
        """Wait (bounded) until `count` notifications were heard; returns them all."""
        with anyio.fail_after(PATIENCE):
            while len(self.kinds) < count:
                await self._more.wait()
        return list(self.kinds)


@dataclass
class StreamCount:
    """Counts `GET` notification streams the hub opened (200 responses)."""

    opened: int = 0
    _more: anyio.Event = field(default_factory=anyio.Event)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def watched(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["method"] != "GET" or not scope["path"].startswith("/mcp"):
                await app(scope, receive, send)
                return

            async def sending(message: Message) -> None:
                await send(message)
                if message["type"] == "http.response.start" and message["status"] == 200:
                    self.opened += 1
                    self._more.set()
                    self._more = anyio.Event()

            await app(scope, receive, sending)

        return watched

    async def until(self, count: int) -> None:
        with anyio.fail_after(PATIENCE):
            while self.opened < count:
                await self._more.wait()


@dataclass
class ListsHub(RunningHub):
    streams: StreamCount


@contextlib.asynccontextmanager
async def lists_hub(config: dict[str, Any], tmp_path: Path, database: str | None = None) -> AsyncGenerator[ListsHub]:
    """A hub for `config` served over real HTTP on 127.0.0.1 (database in `tmp_path` unless `database`)."""
    port = free_port()
    config = {**config, "hub": {**config.get("hub", {}), "listen": f"127.0.0.1:{port}"}}
    config["hub"].setdefault("database", database or f"sqlite:///{tmp_path / 'hub.db'}")
    settings = settings_from_dict(config, tmp_path / "agenthub.toml")
    hub: Hub = open_hub(settings)
    streams = StreamCount()
    app = streams.wrap(build_app(settings, hub))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(PATIENCE):
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
                await anyio.sleep(0.02)
        try:
            yield ListsHub(hub, port, streams)
        finally:
            server.should_exit = True
    hub.store.close()


@contextlib.asynccontextmanager
async def hearing_client(url: str, key: str, heard: Heard, *, mode: str = "legacy") -> AsyncGenerator[Client]:
    """A real `mcp` SDK client that records what it hears: on its notification stream (handshake era), or on a
    `subscriptions/listen` stream of all three lists (2026-07-28, open once this returns)."""
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=PATIENCE) as http,
        Client(
            streamable_http_client(url, http_client=http),
            mode=mode,
            # 2026-07-28: the listen stream's events only (the client also hands them to a message handler)
            message_handler=heard if mode == "legacy" else None,
        ) as client,
    ):
        if mode == "legacy":
            yield client
            return
        async with (
            client.listen(tools_list_changed=True, prompts_list_changed=True, resources_list_changed=True) as sub,
            anyio.create_task_group() as tg,
        ):

            async def record() -> None:
                async for event in sub:
                    heard.add(event)

            tg.start_soon(record)
            yield client
            tg.cancel_scope.cancel()


def rpc_result(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC result of a raw request, from a JSON or an event-stream body."""
    assert response.status_code == 200, response.text
    message: dict[str, Any] = {}
    if response.headers["content-type"].startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and "id" in (candidate := orjson.loads(line[5:])):
                message = candidate
    else:
        message = response.json()
    assert "result" in message, response.text
    result: dict[str, Any] = message["result"]
    return result


@contextlib.asynccontextmanager
async def admin_api(hub: RunningHub) -> AsyncGenerator[httpx2.AsyncClient]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx2.AsyncClient(base_url=hub.base, headers=headers, timeout=PATIENCE) as http:
        yield http


async def new_key(api: httpx2.AsyncClient, name: str, tools: list[str]) -> tuple[str, str]:
    """A key made through the admin API: `(id, secret)`."""
    created = await api.post("/api/v1/keys", json={"name": name, "tools": tools})
    assert created.status_code == 201, created.text
    body = created.json()
    return body["id"], body["secret"]


async def until_view(hub: RunningHub, predicate: Callable[[Any], bool]) -> None:
    """Wait (bounded) for a registry view that satisfies `predicate`."""
    ready = anyio.Event()

    async def listener(view: Any) -> None:
        if predicate(view):
            ready.set()

    hub.hub.registry.add_listener(listener)
    await listener(hub.hub.registry.view)
    with anyio.fail_after(PATIENCE):
        await ready.wait()

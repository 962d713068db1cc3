"""Run a real hub on a free 127.0.0.1 port inside the test's event loop, and connect real MCP clients to it."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from hub.app import Hub, open_hub
from hub.http import build_app
from hub.settings import settings_from_dict
from tests.tools import SERVERS_DIR, free_port
from tests.tools.patience import PATIENCE

ALICE = "ahk-alice-test-secret-0000000000000000000000"
BOB = "ahk-bob-test-secret-00000000000000000000000000"


def fixture_stdio(name: str = "fixture", *extra: str) -> dict[str, Any]:
    """A `[servers.X]` table for the fixture server over stdio."""
    return {
        "transport": "stdio",
        "command": sys.executable,
        "args": [str(SERVERS_DIR / "fixture_server.py"), "--name", name, *extra],
    }


def faulty_stdio(mode: str, tool: str = "boom") -> dict[str, Any]:
    return {
        "transport": "stdio",
        "command": sys.executable,
        "args": [str(SERVERS_DIR / "faulty_server.py"), "--mode", mode, "--tool", tool],
    }


@dataclass
class RunningHub:
    hub: Hub
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/mcp") -> str:
        return self.base + path


def base_config(servers: Mapping[str, Any], keys: list[dict[str, Any]] | None = None, **hub: Any) -> dict[str, Any]:
    return {
        "hub": {"upstream_start_timeout_s": PATIENCE, **hub},
        "servers": {name: dict(table) for name, table in servers.items()},
        "keys": keys
        if keys is not None
        else [
            {"name": "alice", "secret": ALICE, "tools": ["*"]},
            {
                "name": "bob",
                "secret": BOB,
                "tools": ["fixture__echo", "fixture__greeting", "fixture__fixture://readme"],
            },
        ],
    }


@contextlib.asynccontextmanager
async def running_hub(config: dict[str, Any], tmp_path: Path) -> AsyncIterator[RunningHub]:
    """Start a hub for `config` (database in `tmp_path`) and serve it over real HTTP until the block ends."""
    port = free_port()
    config = {**config, "hub": {**config.get("hub", {}), "listen": f"127.0.0.1:{port}"}}
    config["hub"].setdefault("database", f"sqlite:///{tmp_path / 'hub.db'}")
    settings = settings_from_dict(config, tmp_path / "agenthub.toml")
    hub = open_hub(settings)
    app = build_app(settings, hub)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(PATIENCE):
            while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
                await anyio.sleep(0.02)
        try:
            yield RunningHub(hub, port)
        finally:
            server.should_exit = True
    hub.store.close()


@contextlib.asynccontextmanager
async def mcp_client(url: str, key: str | None, *, mode: str = "legacy", **kwargs: Any) -> AsyncIterator[Client]:
    """A real `mcp` SDK client over Streamable HTTP with the key as bearer token."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=PATIENCE) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode, **kwargs) as client,
    ):
        yield client

"""Small helpers shared by the admin tests."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import uvicorn

from hub.app import open_hub
from hub.http import build_app
from hub.settings import settings_from_dict
from tests.admin.conftest import ADMIN
from tests.hub.harness import RunningHub
from tests.tools.patience import PATIENCE


@asynccontextmanager
async def admin_client(base: str, token: str = ADMIN) -> AsyncGenerator[httpx2.AsyncClient]:
    """An HTTP client for `base` that presents `token` as the admin bearer token."""
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "admin-tests/1.0"}
    async with httpx2.AsyncClient(base_url=base, headers=headers, timeout=20) as http:
        yield http


def tool_call(name: str, arguments: str = "{}") -> dict[str, Any]:
    """A `POST /v1/mcp/tool/execute` body."""
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}


@asynccontextmanager
async def hub_on_port(config: dict[str, Any], tmp_path: Path, port: int) -> AsyncGenerator[RunningHub]:
    """Like `tests.hub.harness.running_hub`, on a port chosen beforehand (for URLs that must be known early)."""
    config = {**config, "hub": {**config.get("hub", {}), "listen": f"127.0.0.1:{port}"}}
    config["hub"].setdefault("database", f"sqlite:///{tmp_path / 'hub.db'}")
    settings = settings_from_dict(config, tmp_path / "agenthub.toml")
    hub = open_hub(settings)
    server = uvicorn.Server(
        uvicorn.Config(build_app(settings, hub), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
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


async def token_with(api: httpx2.AsyncClient, name: str, permissions: list[str], teams: list[str] | None = None) -> str:
    """The secret of a new admin token holding one new custom role of `permissions` (made by `api`'s caller)."""
    role = await api.post("/api/v1/roles", json={"name": f"{name}-role", "permissions": permissions})
    assert role.status_code == 201, role.text
    body = {"name": name, "roles": [f"{name}-role"], "teams": teams or []}
    created = await api.post("/api/v1/tokens", json=body)
    assert created.status_code == 201, created.text
    secret: str = created.json()["secret"]
    return secret

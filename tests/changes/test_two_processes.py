"""Two `agenthub serve` processes on one database behave as one hub for admin changes: a change made through one is
in force on the other. On one SQLite file (the workers of one machine) the other process finds it through its poll
of the change log; on PostgreSQL with Redis the poll is set to an hour, so only Redis's notification can bring it."""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator, Generator
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
import pytest

from tests.admin.conftest import ADMIN, AUDIT_KEY
from tests.admin.helpers import admin_client, tool_call
from tests.admin.services import postgres_server, redis_server
from tests.hub.harness import mcp_client
from tests.tools import PATIENCE, SERVERS_DIR, ServedProcess, served

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

AGENTHUB = [sys.executable, "-c", "import sys; from hub.cli.main import main; sys.exit(main())"]


@dataclass
class Backing:
    """Where both processes keep their state, and how often they poll the change log."""

    env: dict[str, str]
    poll_s: float


@pytest.fixture(
    params=[
        pytest.param("sqlite"),
        pytest.param("postgres+redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
def backing(request: pytest.FixtureRequest, tmp_path: Path) -> Generator[Backing]:
    if request.param == "sqlite":
        yield Backing({"AGENTHUB_DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}"}, 0.5)
        return
    with ExitStack() as stack:
        database = stack.enter_context(postgres_server())
        redis = stack.enter_context(redis_server())
        yield Backing({"AGENTHUB_DATABASE_URL": database, "AGENTHUB_REDIS_URL": redis}, 3600.0)


@pytest.fixture
async def two_hubs(backing: Backing, tmp_path: Path) -> AsyncGenerator[list[ServedProcess]]:
    config = tmp_path / "agenthub.toml"
    config.write_text(
        f"""
[hub]
upstream_start_timeout_s = {PATIENCE}
change_poll_s = {backing.poll_s}

[servers.fixture]
transport = "stdio"
command = "{sys.executable}"
args = ["{SERVERS_DIR / "fixture_server.py"}"]
""",
        encoding="utf-8",
    )
    env = {**backing.env, "AGENTHUB_ADMIN_TOKEN": ADMIN, "AGENTHUB_AUDIT_KEY": AUDIT_KEY, "AGENTHUB_WORKERS": "1"}
    argv = [*AGENTHUB, "serve", "--config", str(config), "--listen", "127.0.0.1:{port}"]
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(served(argv, env=env)) for _ in range(2)]


async def _status(http: httpx2.AsyncClient, hub: ServedProcess, secret: str, tool: str) -> int:
    body = tool_call(tool, '{"message": "hi"}')
    headers = {"Authorization": f"Bearer {secret}"}
    response = await http.post(hub.url("/v1/mcp/tool/execute"), json=body, headers=headers)
    return response.status_code


async def _until(http: httpx2.AsyncClient, hub: ServedProcess, secret: str, tool: str, status: int) -> None:
    """Wait until `hub` answers a call of `tool` with `status` (bounded only against a hang)."""
    with anyio.fail_after(PATIENCE):
        while await _status(http, hub, secret, tool) != status:  # noqa: ASYNC110 - another process, over HTTP
            await anyio.sleep(0.05)


async def _listed(hub: ServedProcess, secret: str) -> set[str]:
    async with mcp_client(hub.url("/mcp"), secret) as client:
        return {tool.name for tool in (await client.list_tools()).tools}


async def test_a_key_created_changed_and_revoked_on_one_process_is_in_force_on_the_other(
    two_hubs: list[ServedProcess],
) -> None:
    a, b = two_hubs
    async with admin_client(a.base_url) as api_a, httpx2.AsyncClient(timeout=PATIENCE) as http:
        created = await api_a.post("/api/v1/keys", json={"name": "roamer", "tools": ["fixture__*"]})
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        await _until(http, b, secret, "fixture__echo", 200)  # created on A, used on B

        changed = await api_a.patch("/api/v1/keys/roamer", json={"tools": ["fixture__add"]})
        assert changed.status_code == 200, changed.text
        await _until(http, b, secret, "fixture__echo", 404)  # B applies the new tool filter
        assert await _status(http, b, secret, "fixture__add") != 404

        assert (await api_a.delete("/api/v1/keys/roamer")).status_code == 200
        await _until(http, b, secret, "fixture__add", 401)  # revoked on A, refused on B


async def test_a_server_added_at_run_time_on_one_process_is_listed_by_the_other(
    two_hubs: list[ServedProcess],
) -> None:
    a, b = two_hubs
    async with admin_client(a.base_url) as api_a, httpx2.AsyncClient(timeout=PATIENCE) as http:
        created = await api_a.post("/api/v1/keys", json={"name": "lister", "tools": ["*"]})
        secret = created.json()["secret"]
        await _until(http, b, secret, "fixture__echo", 200)
        assert not {t for t in await _listed(b, secret) if t.startswith("extra__")}
        extra = {"name": "extra", "transport": "stdio", "command": sys.executable,
                 "args": [str(SERVERS_DIR / "fixture_server.py"), "--name", "extra"]}  # fmt: skip
        assert (await api_a.post("/api/v1/servers", json=extra)).status_code == 201
        await _until(http, b, secret, "extra__echo", 200)
        assert "extra__echo" in await _listed(b, secret)

        assert (await api_a.delete("/api/v1/servers/extra")).status_code == 200
        await _until(http, b, secret, "extra__echo", 404)

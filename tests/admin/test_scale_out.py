"""Two `agenthub serve` processes sharing one PostgreSQL and one Redis behave as one hub."""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator, Generator
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import httpx2
import pytest

from tests.admin.conftest import ADMIN, AUDIT_KEY
from tests.admin.helpers import admin_client, tool_call
from tests.admin.services import postgres_server, redis_server
from tests.tools import PATIENCE, SERVERS_DIR, ServedProcess, served

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

AGENTHUB = [sys.executable, "-c", "import sys; from hub.cli.main import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def shared_state() -> Generator[tuple[str, str]]:
    with postgres_server() as database, redis_server() as redis:
        yield database, redis


@pytest.fixture
async def two_hubs(shared_state: tuple[str, str], tmp_path: Path) -> AsyncGenerator[list[ServedProcess]]:
    database, redis = shared_state
    config = tmp_path / "agenthub.toml"
    config.write_text(
        f"""
[hub]
upstream_start_timeout_s = {PATIENCE}

[servers.fixture]
transport = "stdio"
command = "{sys.executable}"
args = ["{SERVERS_DIR / "fixture_server.py"}"]
""",
        encoding="utf-8",
    )
    env = {
        "AGENTHUB_DATABASE_URL": database,
        "AGENTHUB_REDIS_URL": redis,
        "AGENTHUB_ADMIN_TOKEN": ADMIN,
        "AGENTHUB_AUDIT_KEY": AUDIT_KEY,
    }
    argv = [*AGENTHUB, "serve", "--config", str(config), "--listen", "127.0.0.1:{port}"]
    async with AsyncExitStack() as stack:
        hubs = [await stack.enter_async_context(served(argv, env=env)) for _ in range(2)]
        yield hubs


async def _status(http: httpx2.AsyncClient, hub: ServedProcess, secret: str, tool: str = "fixture__echo") -> int:
    body = tool_call(tool, '{"message": "hi"}')
    response = await http.post(
        hub.url("/v1/mcp/tool/execute"), json=body, headers={"Authorization": f"Bearer {secret}"}
    )
    return response.status_code


async def _until(http: httpx2.AsyncClient, hub: ServedProcess, secret: str, tool: str, status: int) -> None:
    with anyio.fail_after(PATIENCE):
        while await _status(http, hub, secret, tool) != status:  # noqa: ASYNC110 - another process, over HTTP
            await anyio.sleep(0.05)


async def test_a_rate_limit_holds_across_both_processes_and_a_revocation_reaches_the_other(
    two_hubs: list[ServedProcess],
) -> None:
    """The other process learns of the revocation from its poll of the shared database (every 0.5 s, see
    `Hub._follow_changes`): the test waits for that, bounded only against a hang."""
    a, b = two_hubs
    async with admin_client(a.base_url) as api_a, admin_client(b.base_url) as api_b, httpx2.AsyncClient() as http:
        created = await api_a.post(
            "/api/v1/keys",
            json={"name": "shared-bot", "tools": ["fixture__*"], "rate_limit": {"requests": 10, "period": "1h"}},
        )
        assert created.status_code == 201, created.text
        secret, key_id = created.json()["secret"], created.json()["id"]
        # both know the key (an unknown tool is refused before any limit is charged)
        for hub in (a, b):
            await _until(http, hub, secret, "fixture__nope", 404)

        statuses: list[int] = []

        async def call(hub: ServedProcess) -> None:
            statuses.append(await _status(http, hub, secret))

        async with anyio.create_task_group() as tg:
            for n in range(30):
                tg.start_soon(call, (a, b)[n % 2])
        assert sorted(statuses) == [200] * 10 + [429] * 20
        usage = (await api_b.get(f"/api/v1/usage/key/{key_id}")).json()["limits"]
        assert [(u["metric"], u["used"]) for u in usage] == [("requests", 10)]

        revoked = await api_a.delete(f"/api/v1/keys/{key_id}")
        assert revoked.status_code == 200
        await _until(http, b, secret, "fixture__echo", 401)


async def test_admin_changes_through_either_process_reach_the_other_and_keep_one_audit_chain(
    two_hubs: list[ServedProcess],
) -> None:
    a, b = two_hubs
    async with admin_client(a.base_url) as api_a, admin_client(b.base_url) as api_b, httpx2.AsyncClient() as http:
        created: list[int] = []

        async def create(api: httpx2.AsyncClient, name: str) -> None:
            created.append((await api.post("/api/v1/customers", json={"name": name})).status_code)

        async with anyio.create_task_group() as tg:
            for n in range(12):
                tg.start_soon(create, (api_a, api_b)[n % 2], f"c{n}")
        assert created == [201] * 12
        customers = (await api_b.get("/api/v1/customers")).json()["data"]
        assert sorted(c["name"] for c in customers) == sorted(f"c{n}" for n in range(12))

        team = {"name": "squad", "rate_limit": {"requests": 1, "period": "1h"}}
        assert (await api_a.post("/api/v1/teams", json=team)).status_code == 201
        key = (await api_b.post("/api/v1/keys", json={"name": "squad-bot", "team": "squad", "tools": ["*"]})).json()
        await _until(http, a, key["secret"], "fixture__nope", 404)
        assert await _status(http, a, key["secret"]) == 200
        assert await _status(http, b, key["secret"]) == 429  # the team's limit, set through A, holds on B

        extra = {"name": "extra", "transport": "stdio", "command": sys.executable,
                 "args": [str(SERVERS_DIR / "fixture_server.py")]}  # fmt: skip
        added = await api_a.post("/api/v1/servers", json=extra)
        assert added.status_code == 201
        await api_b.patch("/api/v1/teams/squad", json={"rate_limit": None})
        await _until(http, b, key["secret"], "extra__echo", 200)

        verdict = (await api_b.get("/api/v1/audit/verify")).json()
        entries = (await api_a.get("/api/v1/audit", params={"limit": 1000})).json()["data"]
    assert verdict["ok"] is True, verdict
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert len([e for e in entries if e["action"] == "customer.create"]) == 12

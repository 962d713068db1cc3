"""A change made through one hub process reaches the list-change listeners held by another process on the same
database: two `agenthub serve` processes, a key's grants changed through the first, 2026-07-28 clients listening on
the second, which tells exactly the sessions of that key. On one SQLite file (the workers of one machine) the second
process learns of the change from the change log's poll; on PostgreSQL with Redis the poll is set to an hour, so
only Redis's notification can bring it."""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator, Generator
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.admin.services import postgres_server, redis_server
from tests.hub.harness import ALICE, BOB
from tests.mcp_lists.conftest import ADMIN, AUDIT_KEY
from tests.mcp_lists.harness import Heard, hearing_client
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
        yield Backing({"AGENTHUB_DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}"}, 0.2)
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

[[keys]]
name = "alice"
secret = "{ALICE}"
tools = ["*"]

[[keys]]
name = "bob"
secret = "{BOB}"
tools = ["fixture__echo", "fixture__greeting"]
""",
        encoding="utf-8",
    )
    env = {
        **backing.env,
        "AGENTHUB_ADMIN_TOKEN": ADMIN,
        "AGENTHUB_AUDIT_KEY": AUDIT_KEY,
        "AGENTHUB_WORKERS": "1",
    }
    argv = [*AGENTHUB, "serve", "--config", str(config), "--listen", "127.0.0.1:{port}"]
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(served(argv, env=env)) for _ in range(2)]


async def _grant(api: httpx2.AsyncClient, name: str, tools: list[str]) -> None:
    changed = await api.patch(f"/api/v1/keys/{name}", json={"tools": tools})
    assert changed.status_code == 200, changed.text


async def test_a_grant_changed_on_one_process_notifies_the_sessions_of_another(
    two_hubs: list[ServedProcess],
) -> None:
    a, b = two_hubs
    alice_heard, bob_heard = Heard(), Heard()
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with (
        httpx2.AsyncClient(base_url=a.base_url, headers=headers, timeout=PATIENCE) as api_a,
        hearing_client(b.url("/mcp"), ALICE, alice_heard, mode="2026-07-28"),
        hearing_client(b.url("/mcp"), BOB, bob_heard, mode="2026-07-28"),
    ):
        await _grant(api_a, "bob", ["fixture__add", "fixture__greeting"])  # bob's tools only
        bob_first = await bob_heard.until(1)
        await _grant(api_a, "alice", ["fixture__[!g]*"])  # alice's prompts only (she loses `greeting`)
        alice_first = await alice_heard.until(1)
    assert bob_first == ["tools"]
    assert alice_first == ["prompts"]  # bob's change was not hers to hear

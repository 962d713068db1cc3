"""A hub started as one of the workers (`AGENTHUB_COUNTERS_SOCKET` set) counts through the counter server: a
worker that restarts keeps the key's usage, counted once, and the limit holds across the restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.governance import EntityKind, EntityRef
from hub.store.counters import InMemoryCounters
from hub.store.shared_counters import ENVIRONMENT, CounterServer
from hub.store.socket_counters import SocketCounters
from tests.doors.harness import ENV, llm_config, running_fakes
from tests.doors.test_governance_doors import OpenAIChatDoor
from tests.hub.harness import RunningHub, running_hub

pytestmark = pytest.mark.anyio
SECRET = "ahk-carol-workers-0000000000000000000000000"
KEY = {"name": "carol", "secret": SECRET, "models": ["*"], "rate_limit": {"requests": 3, "period": "1d"}}


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():  # the fake providers' secrets
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AGENTHUB_REDIS_URL", raising=False)
    monkeypatch.delenv(ENVIRONMENT, raising=False)


async def _requests_used(hub: RunningHub) -> float:
    (key,) = [k for k in hub.hub.keyring.keys() if k.name == "carol"]
    (snapshot,) = await hub.hub.limiter.usage(EntityRef(EntityKind.KEY, key.id))  # pyright: ignore[reportOptionalMemberAccess]
    return snapshot.used


async def test_a_restarted_worker_keeps_the_usage_counted_once_and_the_limit_holds(
    server: CounterServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENVIRONMENT, server.path)
    door = OpenAIChatDoor()
    async with running_fakes() as fakes:
        config = llm_config(fakes, [KEY])
        async with running_hub(config, tmp_path) as hub:
            assert isinstance(hub.hub.limiter.counters, SocketCounters)  # pyright: ignore[reportOptionalMemberAccess]
            assert [(await door.call(hub, SECRET)).label for _ in range(2)] == ["ok", "ok"]
            assert await _requests_used(hub) == 2
        async with running_hub(config, tmp_path) as hub:  # the same worker, started again
            assert await _requests_used(hub) == 2
            assert [(await door.call(hub, SECRET)).label for _ in range(2)] == ["ok", "rate_limited"]
            assert await _requests_used(hub) == 3


async def test_without_the_variable_a_hub_counts_in_its_own_memory(tmp_path: Path) -> None:
    async with running_fakes() as fakes, running_hub(llm_config(fakes, [KEY]), tmp_path) as hub:
        assert isinstance(hub.hub.limiter.counters, InMemoryCounters)  # pyright: ignore[reportOptionalMemberAccess]

"""`/readyz` on a real `agenthub serve`: ready once started, not ready while the store or the counters backend is
unreachable (the server stopped by PID under the running hub), ready again once it is back; `/healthz` answers
throughout (the process is alive). Neither probe needs a key, and neither says more than which part is not ready.

The ASGI-level test covers the window uvicorn never shows over a socket: the app before its lifespan ran. Two
in-process tests drive `Readiness` against a database host that accepts and never answers, and with every worker
thread taken: a probe without an answer by its deadline says "unreachable", and probes do not pile up behind one
that hangs.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx2
import pytest
from sqlalchemy import Engine, create_engine

from hub.doors.probes import Readiness
from hub.http import build_app
from hub.settings import settings_from_dict
from hub.store.counters import InMemoryCounters
from tests.admin.services import restartable_postgres, restartable_redis
from tests.tools import ServedProcess, served
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio]

AGENTHUB = str(Path(sys.executable).with_name("agenthub"))


@asynccontextmanager
async def hub_on(tmp_path: Path, database: str, redis: str | None = None) -> AsyncIterator[ServedProcess]:
    config = tmp_path / "agenthub.toml"
    redis_line = f'redis_url = "{redis}"\n' if redis else ""
    config.write_text(f'[hub]\nlisten = "127.0.0.1:1"\ndatabase = "{database}"\n{redis_line}', encoding="utf-8")
    env = {"AGENTHUB_DATABASE_URL": "", "AGENTHUB_REDIS_URL": ""}
    async with served([AGENTHUB, "serve", "--config", str(config), "--listen", "127.0.0.1:{port}"], env=env) as hub:
        yield hub


async def probe(hub: ServedProcess, path: str) -> tuple[int, Any]:
    with anyio.fail_after(PATIENCE):
        async with httpx2.AsyncClient(timeout=None) as client:
            response = await client.get(hub.url(path))
    assert response.headers["content-type"] == "application/json"
    return response.status_code, response.json()


READY = {"status": "ready", "checks": {"startup": "complete", "store": "ok", "counters": "ok"}}


@pytest.mark.slow
async def test_ready_until_the_database_goes_away_and_again_once_it_is_back(tmp_path: Path) -> None:
    with restartable_postgres() as postgres:
        async with hub_on(tmp_path, postgres.url) as hub:
            assert await probe(hub, "/readyz") == (200, READY)

            await anyio.to_thread.run_sync(postgres.stop)
            status, body = await probe(hub, "/readyz")
            assert (status, body) == (
                503,
                {"status": "not ready", "checks": {"startup": "complete", "store": "unreachable", "counters": "ok"}},
            )
            assert await probe(hub, "/healthz") == (200, {"status": "ok"})  # alive: a restart would not help

            await anyio.to_thread.run_sync(postgres.start)
            assert await probe(hub, "/readyz") == (200, READY)


@pytest.mark.slow
async def test_not_ready_while_redis_counters_are_unreachable(tmp_path: Path) -> None:
    with restartable_redis() as redis:
        async with hub_on(tmp_path, f"sqlite:///{tmp_path / 'hub.db'}", redis.url) as hub:
            assert await probe(hub, "/readyz") == (200, READY)

            await anyio.to_thread.run_sync(redis.stop)
            assert await probe(hub, "/readyz") == (
                503,
                {"status": "not ready", "checks": {"startup": "complete", "store": "ok", "counters": "unreachable"}},
            )

            await anyio.to_thread.run_sync(redis.start)
            assert await probe(hub, "/readyz") == (200, READY)


async def test_not_ready_before_start_up_completes(tmp_path: Path) -> None:
    app = build_app(settings_from_dict({}, tmp_path / "agenthub.toml"))
    transport = httpx2.ASGITransport(app=app)  # no lifespan: the hub has not started
    async with httpx2.AsyncClient(transport=transport, base_url="http://hub") as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "checks": {"startup": "pending"}}
    assert response.headers["cache-control"] == "no-store"


@dataclass
class _Store:
    engine: Engine


@dataclass
class _Limiter:
    counters: InMemoryCounters


@dataclass
class _ProbedHub:
    store: _Store
    limiter: _Limiter


async def test_a_hanging_database_is_unreachable_and_probes_do_not_pile_up_behind_it() -> None:
    """A database host that accepts connections and never answers: the first probe gives up at its deadline, the
    probes after it answer at once without opening another connection while the first query still hangs."""
    accepted: list[anyio.abc.SocketStream] = []
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    engine = create_engine(f"postgresql+psycopg://agenthub@127.0.0.1:{port}/postgres")
    hub = _ProbedHub(_Store(engine), _Limiter(InMemoryCounters()))
    readiness = Readiness(lambda: hub, timeout=0.2)

    async def hold(stream: anyio.abc.SocketStream) -> None:
        accepted.append(stream)  # never answered, closed when the test ends

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, hold)
            with anyio.fail_after(PATIENCE):
                assert await readiness.checks() == {"startup": "complete", "store": "unreachable", "counters": "ok"}
                assert await readiness.checks() == {"startup": "complete", "store": "unreachable", "counters": "ok"}
            assert len(accepted) == 1
            tg.cancel_scope.cancel()
        for stream in accepted:
            await stream.aclose()  # the hanging query fails now
        assert await anyio.to_thread.run_sync(readiness.store_idle.wait, PATIENCE)  # and the next probe may ask
    finally:
        await listener.aclose()
        engine.dispose()


async def test_a_probe_that_gets_no_worker_thread_in_time_does_not_block_the_next(tmp_path: Path) -> None:
    """Every worker thread busy (here: the only one held by the test) until the deadline: that probe answers
    "unreachable" and its query never runs; once a thread is free, the next probe queries and answers "ok"."""
    engine = create_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    hub = _ProbedHub(_Store(engine), _Limiter(InMemoryCounters()))
    readiness = Readiness(lambda: hub, timeout=0.2)
    limiter = anyio.to_thread.current_default_thread_limiter()
    tokens = limiter.total_tokens
    try:
        limiter.total_tokens = 1
        with anyio.fail_after(PATIENCE):
            holder = object()
            await limiter.acquire_on_behalf_of(holder)
            try:
                assert (await readiness.checks())["store"] == "unreachable"
            finally:
                limiter.release_on_behalf_of(holder)
            assert readiness.store_idle.is_set()
            assert (await readiness.checks())["store"] == "ok"
    finally:
        limiter.total_tokens = tokens
        engine.dispose()

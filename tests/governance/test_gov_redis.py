"""Redis counters across replicas: two independent clients, each with its own pool, share one set of limits."""

from __future__ import annotations

import socket

import anyio
import pytest

from hub.governance.clock import ManualClock
from hub.governance.config import BudgetConfig, RateLimitConfig
from hub.governance.counters import Slot
from hub.governance.errors import BudgetDenied, CountersUnavailable, RateLimitDenied
from hub.governance.limits import Limiter
from hub.governance.usage import EntityKind, EntityRef, Reservation, Usage
from hub.store.redis_counters import RedisCounters
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


def _replica(url: str, prefix: str, clock: ManualClock) -> Limiter:
    # A burst of 100 calls per replica queues for the pool's 32 connections: on a busy machine the wait can pass
    # the production default (2 s), so here only a hang may end it.
    limiter = Limiter(RedisCounters.from_url(url, prefix=prefix, timeout=PATIENCE), clock=clock)
    limiter.set_key("ci-bot", rate_limit=RateLimitConfig(requests=50, period="1m"))
    limiter.set_key("spender", budget=BudgetConfig(max_usd=1.0, reset="1d"))
    return limiter


async def test_two_replicas_admit_exactly_the_limit_between_them(redis_url: str, prefix: str, clock: ManualClock):
    replicas = [_replica(redis_url, prefix, clock), _replica(redis_url, prefix, clock)]
    admitted = [0, 0]
    denied = 0

    async def call(index: int) -> None:
        nonlocal denied
        try:
            await replicas[index].reserve("ci-bot")
            admitted[index] += 1
        except RateLimitDenied:
            denied += 1

    try:
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tg:
                for n in range(200):
                    tg.start_soon(call, n % 2)
        assert sum(admitted) == 50
        assert denied == 150
        assert min(admitted) > 0  # both replicas really took part
    finally:
        for replica in replicas:
            await replica.counters.aclose()


async def test_two_replicas_never_overspend_a_shared_budget(redis_url: str, prefix: str, clock: ManualClock):
    replicas = [_replica(redis_url, prefix, clock), _replica(redis_url, prefix, clock)]
    held: list[tuple[Limiter, Reservation]] = []

    async def call(index: int) -> None:
        try:
            held.append((replicas[index], await replicas[index].reserve("spender", Usage(usd=0.03))))
        except BudgetDenied:
            pass

    try:
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tg:
                for n in range(100):
                    tg.start_soon(call, n % 2)
            assert len(held) == 33  # 33 * 0.03 = 0.99 <= 1.0 < 34 * 0.03
            async with anyio.create_task_group() as tg:
                for limiter, reservation in held:
                    tg.start_soon(limiter.settle, reservation, Usage(usd=0.02))
        [usd] = await replicas[1].usage(EntityRef(EntityKind.KEY, "spender"))
        assert (usd.used, usd.in_flight) == (pytest.approx(0.66), 0)
    finally:
        for replica in replicas:
            await replica.counters.aclose()


async def test_an_unreachable_redis_is_reported_not_ignored():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    counters = RedisCounters.from_url(f"redis://127.0.0.1:{port}/0", timeout=1.0)
    try:
        with pytest.raises(CountersUnavailable):
            await counters.reserve([Slot("k", 1, 1, 60)], hold_id="h", now=0.0, lease=60)
        with pytest.raises(CountersUnavailable):
            await counters.settle([Slot("k", 1, 1, 60)], hold_id="h", now=0.0)
    finally:
        await counters.aclose()

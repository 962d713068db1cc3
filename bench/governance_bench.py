"""Micro-benchmark of one governance decision on the hot path.

A decision = key lookup in a dict + authz glob check (GlobSet) + limits reserve on in-memory counters over
three levels (key, team, customer: 7 counters). Also measured: settle, the pieces alone, and optionally the
same reserve + settle against Redis (`--redis-url redis://127.0.0.1:6379/0`).

Run: `.venv/bin/python bench/governance_bench.py [--n 50000] [--redis-url URL]`
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from hub.governance import GlobSet, GovernanceConfig, Limiter, Reservation, Usage
from hub.governance.config import BudgetConfig, RateLimitConfig
from hub.governance.counters import Counters
from hub.governance.pricing import ToolPricing
from hub.store.counters import InMemoryCounters

T = TypeVar("T")

CONFIG = GovernanceConfig.model_validate(
    {
        "customers": [{"name": "acme", "budget": {"max_usd": 1e9, "reset": "1M"}}],
        "teams": [
            {
                "name": "platform",
                "customer": "acme",
                "budget": {"max_usd": 1e9, "reset": "1w", "calendar_aligned": True},
                "rate_limit": {"requests": 10**12, "tokens": 10**15, "period": "1m"},
            }
        ],
    }
)


def _limiter(counters: Counters) -> Limiter:
    limiter = Limiter(counters, CONFIG)
    rate = RateLimitConfig(requests=10**12, tokens=10**15, period="1m")
    limiter.set_key("key-1", team="platform", rate_limit=rate, budget=BudgetConfig(max_usd=1e9, reset="1d"))
    return limiter


def _report(name: str, samples: list[int]) -> None:
    samples.sort()
    p50 = samples[len(samples) // 2] / 1000
    p99 = samples[int(len(samples) * 0.99)] / 1000
    mean = statistics.fmean(samples) / 1000
    print(f"{name:<48} p50 {p50:8.2f} µs   p99 {p99:8.2f} µs   mean {mean:8.2f} µs")


async def _measure(
    name: str, n: int, step: Callable[[], Awaitable[T]], after: Callable[[T], Awaitable[object]] | None = None
) -> None:
    """Time `step` n times; `after` (untimed) cleans up each result, e.g. settles a reservation."""
    for _ in range(min(n, 2000)):  # warm up
        result = await step()
        if after is not None:
            await after(result)
    samples: list[int] = []
    clock = time.perf_counter_ns
    for _ in range(n):
        start = clock()
        result = await step()
        samples.append(clock() - start)
        if after is not None:
            await after(result)
    _report(name, samples)


async def main(n: int, redis_url: str | None) -> None:
    keys = {hashlib.sha256(f"ahk-{i}".encode()).hexdigest(): f"key-{i}" for i in range(10_000)}
    presented = hashlib.sha256(b"ahk-1").hexdigest()
    tools = GlobSet(["tickets__*", "wiki__search", "github__get_*", "jira__[a-c]*"])
    pricing = ToolPricing({"tickets__*": 0.001, "*": 0.0001})
    limiter = _limiter(InMemoryCounters())
    usage = Usage(requests=1, tokens=0, usd=0.001)

    async def lookup() -> object:
        return keys[presented]

    async def glob() -> object:
        return tools.matches("tickets__create")

    async def reserve_only() -> Reservation:
        return await limiter.reserve("key-1", usage)

    async def settle(reservation: Reservation) -> None:
        await limiter.settle(reservation, usage)

    small = Limiter(InMemoryCounters())
    small.set_key("key-1", rate_limit=RateLimitConfig(requests=10**12, period="1m"))

    async def reserve_small() -> Reservation:
        return await small.reserve("key-1")

    async def settle_small(reservation: Reservation) -> None:
        await small.settle(reservation, usage)

    async def decision() -> Reservation:
        key = keys[presented]
        if not tools.matches("tickets__create"):
            raise RuntimeError("denied")
        return await limiter.reserve(key, Usage(requests=1, usd=pricing.cost("tickets__create")))

    async def decision_and_settle() -> object:
        reservation = await decision()
        await limiter.settle(reservation, usage)
        return reservation

    print(f"n = {n}")
    await _measure("key lookup (dict)", n, lookup)
    await _measure("authz glob check (GlobSet.matches)", n, glob)
    await _measure("limits reserve, 1 counter (memory)", n, reserve_small, settle_small)
    await _measure("limits reserve, 7 counters (memory)", n, reserve_only, settle)
    await _measure("decision: lookup + glob + price + reserve", n, decision, settle)
    await _measure("decision + settle (memory)", n, decision_and_settle)

    if redis_url:
        from hub.store.redis_counters import RedisCounters

        counters = RedisCounters.from_url(redis_url, prefix="bench")
        redis_limiter = _limiter(counters)

        async def redis_round() -> object:
            reservation = await redis_limiter.reserve("key-1", usage)
            await redis_limiter.settle(reservation, usage)
            return reservation

        await _measure("reserve + settle, 7 counters (Redis)", max(1, n // 10), redis_round)
        await counters.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.redis_url))

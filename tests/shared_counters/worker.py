"""A stand-in for one worker process of `agenthub serve --workers N`, run by the tests as a subprocess.

`python -m tests.shared_counters.worker hammer PATH KEY LIMIT TASKS`: reserve one unit on slot KEY from TASKS
concurrent tasks over one `SocketCounters`; print how many were granted.

`python -m tests.shared_counters.worker hold PATH KEY AMOUNT LEASE`: reserve AMOUNT on slot KEY at instant 0 for
LEASE seconds, print `held`, then wait on stdin, never settling (the test kills the process: a crashed worker).

`python -m tests.shared_counters.worker spend PATH CALLS`: a `Limiter` over `SocketCounters` with the key `k` on a
budget of 1 USD a day; make CALLS calls costing 0.25 USD each (reserve, then settle) and print how many were
admitted, then the key's spent and in-flight dollars as the shared counters hold them.
"""

from __future__ import annotations

import sys

import anyio
import anyio.to_thread

from hub.governance import BudgetDenied, EntityKind, EntityRef, Limiter, Usage
from hub.governance.config import BudgetConfig
from hub.governance.counters import Slot
from hub.store.socket_counters import SocketCounters

CLOCK = 1_800_000_000.0
"""The instant every spending worker lives at (the same budget window for all of them)."""


async def hammer(path: str, key: str, limit: int, tasks: int) -> None:
    counters = SocketCounters(path, timeout=120.0)
    granted: list[bool] = []

    async def one(n: int) -> None:
        result = await counters.reserve([Slot(key, limit, 1, 600.0)], hold_id=f"{key}:{n}", now=0.0, lease=600.0)
        granted.append(result.granted)

    try:
        async with anyio.create_task_group() as tg:
            for n in range(tasks):
                tg.start_soon(one, n)
    finally:
        await counters.aclose()
    sys.stdout.write(f"{sum(granted)}\n")


async def hold(path: str, key: str, amount: int, lease: float) -> None:
    counters = SocketCounters(path, timeout=120.0)
    result = await counters.reserve([Slot(key, amount, amount, 600.0)], hold_id="crashing", now=0.0, lease=lease)
    sys.stdout.write("held\n" if result.granted else "refused\n")
    sys.stdout.flush()
    await anyio.to_thread.run_sync(sys.stdin.read)  # until killed
    await counters.aclose()


async def spend(path: str, calls: int) -> None:
    counters = SocketCounters(path, timeout=120.0)
    limiter = Limiter(counters, clock=lambda: CLOCK)
    limiter.set_key("k", budget=BudgetConfig(max_usd=1.0, reset="1d"))
    admitted = 0
    try:
        for _ in range(calls):
            try:
                reservation = await limiter.reserve("k", Usage(requests=1, usd=0.25))
            except BudgetDenied:
                continue
            admitted += 1
            await limiter.settle(reservation, Usage(requests=1, usd=0.25))
        (snapshot,) = await limiter.usage(EntityRef(EntityKind.KEY, "k"))
    finally:
        await counters.aclose()
    sys.stdout.write(f"{admitted} {snapshot.used} {snapshot.in_flight}\n")


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["hammer", path, key, limit, tasks]:
            anyio.run(hammer, path, key, int(limit), int(tasks))
        case ["hold", path, key, amount, lease]:
            anyio.run(hold, path, key, int(amount), float(lease))
        case ["spend", path, calls]:
            anyio.run(spend, path, int(calls))
        case _:
            raise SystemExit(__doc__)

"""What loading budgets from the request log adds to a hub's start: N keys with a monthly budget, R log rows each.

    .venv/bin/python bench/seed_bench.py --keys 1000 --rows 100

Writes the rows with `RequestLog` into a fresh SQLite file (rows and daily rollup, as the hub does), then times
`BudgetSeeder.seed()` on fresh in-memory counters: one indexed sum per key over its window, one settle.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import anyio

from hub.audit.requestlog import LogEntry, RequestLog
from hub.audit.spend import window_spend
from hub.governance.config import BudgetConfig
from hub.governance.limits import Limiter
from hub.governance.seed import BudgetSeeder
from hub.store.counters import InMemoryCounters
from hub.store.sql import SqlStore


async def main(keys: int, rows: int, repeat: int) -> None:
    now = datetime(2026, 3, 21, 12, tzinfo=UTC)
    month = datetime(2026, 3, 1, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as directory:
        store = SqlStore(f"sqlite:///{Path(directory) / 'hub.db'}")
        log = RequestLog(store, batch=5000)
        names = [f"key-{i:05}" for i in range(keys)]
        step = (now - month) / max(rows, 1)
        for r in range(rows):
            for name in names:
                entry = LogEntry(
                    ts=month + step * r, call_id=f"{name}-{r}", parent_id=None, key_id=name, key_name=name,
                    door="openai", operation="llm.chat", target="fast", outcome="ok", status=200, latency_ms=1.0,
                    error=None, cost_usd=0.001,
                )  # fmt: skip
                log.record(entry)
            if len(names) * (r + 1) % 50_000 < len(names):
                await log.flush()
        await log.flush()
        budget = BudgetConfig(max_usd=1000, reset="1M", calendar_aligned=True)
        timings: list[float] = []
        for _ in range(repeat):
            limiter = Limiter(InMemoryCounters(), clock=now.timestamp)
            for name in names:
                limiter.set_key(name, budget=budget)
            seeder = BudgetSeeder(
                limiter, partial(window_spend, store.engine, keep=timedelta(days=30)), clock=now.timestamp
            )
            started = time.perf_counter()
            assert await seeder.seed()
            timings.append(time.perf_counter() - started)
        store.close()
    timings.sort()
    print(
        f"keys={keys} rows/key={rows} log rows={keys * rows}: seed median {timings[len(timings) // 2] * 1000:.1f} ms, "
        f"best {timings[0] * 1000:.1f} ms ({repeat} runs)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=100, help="request-log rows per key in the current month")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    anyio.run(main, args.keys, args.rows, args.repeat)

"""Budgets survive a restart: a fresh counter store is seeded from the request log, once per store.

Real parts throughout: a SQLite request log written by `RequestLog` itself (rows and daily rollup), the limiter on
in-memory counters, a real redis-server and a real `CounterServer` on a Unix socket; time is a `ManualClock`.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import AsyncGenerator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import anyio
import openai
import pytest

from hub.audit.requestlog import LogEntry, RequestLog
from hub.audit.spend import window_spend
from hub.governance.clock import ManualClock
from hub.governance.config import BudgetConfig, CustomerConfig, GovernanceConfig, RateLimitConfig, TeamConfig
from hub.governance.counters import Counters, Slot
from hub.governance.errors import BudgetDenied, CountersUnavailable
from hub.governance.limits import Limiter
from hub.governance.seed import CHUNK, MARKER, BudgetSeeder, SpendQuery
from hub.governance.usage import EntityKind, EntityRef, Usage
from hub.store.counters import InMemoryCounters
from hub.store.redis_counters import RedisCounters
from hub.store.shared_counters import CounterServer
from hub.store.socket_counters import SocketCounters
from hub.store.sql import SqlStore
from llm.testing import FakeScript, openai_app, serve
from tests.admin.services import postgres_server, redis_server
from tests.tools import served
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

DAY = 86400.0
START = datetime(2026, 1, 1, tzinfo=UTC)
"""The `ManualClock`'s default now: the start of a UTC day, a month and a year."""
NOON = START + timedelta(hours=12)
DAILY = BudgetConfig(max_usd=5, reset="1d", calendar_aligned=True)


@pytest.fixture
def store(tmp_path: Path) -> SqlStore:
    return SqlStore(f"sqlite:///{tmp_path / 'hub.db'}")


def entry(
    ts: datetime, usd: float, *, key: str = "k1", team: str | None = None, customer: str | None = None
) -> LogEntry:
    return LogEntry(
        ts=ts, call_id=f"c-{ts.timestamp()}-{key}-{usd}", parent_id=None, key_id=key, key_name=key, door="openai",
        operation="llm.chat", target="fast", outcome="ok", status=200, latency_ms=1.0, error=None, cost_usd=usd,
        team=team, customer=customer,
    )  # fmt: skip


async def write(store: SqlStore, *entries: LogEntry) -> None:
    log = RequestLog(store)
    for e in entries:
        log.record(e)
    await log.flush()


def reader(store: SqlStore, keep: timedelta | None = None) -> Callable[[Sequence[SpendQuery], float], list[float]]:
    return partial(window_spend, store.engine, keep=keep)


async def used_usd(limiter: Limiter, kind: EntityKind, name: str) -> float:
    (snapshot,) = [s for s in await limiter.usage(EntityRef(kind, name)) if s.metric == "usd"]
    return snapshot.used


def key_limiter(counters: Counters, clock: ManualClock, budget: BudgetConfig = DAILY) -> Limiter:
    limiter = Limiter(counters, clock=clock)
    limiter.set_key("k1", budget=budget)
    return limiter


async def test_the_current_window_is_seeded_and_a_call_just_before_its_start_is_not(store: SqlStore) -> None:
    clock = ManualClock(NOON.timestamp())
    await write(
        store,
        entry(START - timedelta(microseconds=1), 1.0),  # the previous window's last instant
        entry(START, 0.25),  # the window's first instant
        entry(START + timedelta(hours=11), 4.5),
        entry(START + timedelta(hours=11), 3.0, key="k2"),  # another key
    )
    limiter = key_limiter(InMemoryCounters(), clock)
    seeder = BudgetSeeder(limiter, reader(store), clock=clock)
    assert await seeder.seed()
    assert await used_usd(limiter, EntityKind.KEY, "k1") == pytest.approx(4.75)
    first = await limiter.reserve("k1", Usage(requests=1))  # 4.75 of 5 spent: one more call is admitted
    await limiter.settle(first, Usage(requests=1, usd=0.5))
    with pytest.raises(BudgetDenied):
        await limiter.reserve("k1", Usage(requests=1))


async def test_a_rolling_window_counts_from_its_anchor(store: SqlStore) -> None:
    anchor = START + timedelta(hours=6)  # rolling days from 06:00
    clock = ManualClock((anchor + timedelta(days=3, hours=1)).timestamp())
    budget = BudgetConfig(max_usd=5, reset="1d", starts_at=anchor)
    await write(
        store,
        entry(anchor + timedelta(days=3) - timedelta(seconds=1), 2.0),
        entry(anchor + timedelta(days=3), 1.5),
    )
    limiter = key_limiter(InMemoryCounters(), clock, budget)
    assert await BudgetSeeder(limiter, reader(store), clock=clock).seed()
    assert await used_usd(limiter, EntityKind.KEY, "k1") == pytest.approx(1.5)


async def test_a_window_of_several_days_adds_its_whole_days_to_its_partial_ends(store: SqlStore) -> None:
    anchor = datetime(2026, 1, 7, 6, tzinfo=UTC)  # weekly windows from Wednesdays 06:00
    clock = ManualClock(datetime(2026, 1, 12, 10, tzinfo=UTC).timestamp())  # the next Monday, 10:00
    budget = BudgetConfig(max_usd=100, reset="1w", starts_at=anchor)
    await write(
        store,
        entry(anchor - timedelta(hours=3), 50.0),  # the window's first day, before its start: not counted
        entry(anchor - timedelta(seconds=1), 25.0),
        entry(anchor, 1.0),  # the first day's part in the window
        entry(anchor + timedelta(hours=17, minutes=59), 2.0),
        entry(datetime(2026, 1, 8, 0, tzinfo=UTC), 4.0),  # whole days
        entry(datetime(2026, 1, 11, 23, 59, tzinfo=UTC), 8.0),
        entry(datetime(2026, 1, 12, 0, tzinfo=UTC), 16.0),  # today
        entry(datetime(2026, 1, 12, 9, 59, tzinfo=UTC), 32.0),
    )
    limiter = key_limiter(InMemoryCounters(), clock, budget)
    assert await BudgetSeeder(limiter, reader(store), clock=clock).seed()
    assert await used_usd(limiter, EntityKind.KEY, "k1") == pytest.approx(63.0)


async def test_postgresql_request_logs_are_read_alike() -> None:
    """The same sums on PostgreSQL, whose `ts` column and date comparisons differ from SQLite's."""
    with postgres_server() as url:
        store = SqlStore(url)
        try:
            await test_the_current_window_is_seeded_and_a_call_just_before_its_start_is_not(store)
            await test_a_window_of_several_days_adds_its_whole_days_to_its_partial_ends(store)
        finally:
            store.close()


async def test_team_and_customer_budgets_are_seeded_with_their_keys_spend(store: SqlStore) -> None:
    clock = ManualClock(NOON.timestamp())
    config = GovernanceConfig(
        customers=[CustomerConfig(name="acme", budget=DAILY)],
        teams=[TeamConfig(name="ml", customer="acme", budget=DAILY), TeamConfig(name="web", budget=DAILY)],
    )
    limiter = Limiter(InMemoryCounters(), config, clock=clock)
    limiter.set_key("k1", team="ml")  # acme through its team: its rows carry no customer
    limiter.set_key("k2", customer="acme")  # acme directly, no team
    limiter.set_key("k3", team="web")
    await write(
        store,
        entry(START + timedelta(hours=1), 1.0, key="k1", team="ml"),
        entry(START + timedelta(hours=2), 0.5, key="k2", customer="acme"),
        entry(START + timedelta(hours=3), 0.25, key="k3", team="web"),
        entry(START - timedelta(hours=1), 9.0, key="k1", team="ml"),  # yesterday
    )
    assert await BudgetSeeder(limiter, reader(store), clock=clock).seed()
    assert await used_usd(limiter, EntityKind.TEAM, "ml") == pytest.approx(1.0)
    assert await used_usd(limiter, EntityKind.TEAM, "web") == pytest.approx(0.25)
    assert await used_usd(limiter, EntityKind.CUSTOMER, "acme") == pytest.approx(1.5)


async def test_past_the_raw_retention_whole_days_come_from_the_rollup(store: SqlStore) -> None:
    month_start = datetime(2026, 3, 1, tzinfo=UTC)
    now = month_start + timedelta(days=20, hours=12)
    clock = ManualClock(now.timestamp())
    limiter = key_limiter(InMemoryCounters(), clock, BudgetConfig(max_usd=100, reset="1M", calendar_aligned=True))
    await write(
        store,
        entry(month_start - timedelta(hours=1), 50.0),  # February: not this window
        entry(month_start + timedelta(days=2), 1.0),
        entry(month_start + timedelta(days=15), 2.0),
        entry(month_start + timedelta(days=20), 4.0),
    )
    log = RequestLog(store, clock=lambda: now)
    keep = timedelta(days=10)
    await log.purge(keep)  # the raw rows of March 1-10 are gone, their rollup days stay
    seeder = BudgetSeeder(limiter, reader(store, keep), clock=clock)
    assert await seeder.seed()
    assert await used_usd(limiter, EntityKind.KEY, "k1") == pytest.approx(7.0)


async def test_a_store_that_holds_the_usage_is_not_seeded_again(store: SqlStore) -> None:
    clock = ManualClock(NOON.timestamp())
    await write(store, entry(START + timedelta(hours=1), 2.0))
    counters = InMemoryCounters()
    first = BudgetSeeder(key_limiter(counters, clock), reader(store), clock=clock)
    assert await first.seed() and first.seeded == 1
    again = key_limiter(counters, clock)  # a second hub on the same store, or this one restarted over it
    second = BudgetSeeder(again, reader(store), clock=clock)
    assert await second.seed() and second.seeded == 0
    assert await used_usd(again, EntityKind.KEY, "k1") == pytest.approx(2.0)


async def test_a_seeder_that_died_holding_the_marker_is_taken_over_after_its_lease(store: SqlStore) -> None:
    clock = ManualClock(NOON.timestamp())
    await write(store, entry(START + timedelta(hours=1), 2.0))
    counters = InMemoryCounters()
    dead = await counters.reserve([Slot(MARKER, 1, 1, 1e9)], hold_id="dead", now=clock(), lease=60.0)
    assert dead.granted
    limiter = key_limiter(counters, clock)
    seeder = BudgetSeeder(limiter, reader(store), clock=clock, lease=60.0)
    assert not await seeder.seed()  # someone is seeding: wait
    clock.advance(61)
    assert await seeder.seed() and seeder.seeded == 1
    assert await used_usd(limiter, EntityKind.KEY, "k1") == pytest.approx(2.0)


async def test_many_budgets_are_written_in_parts_and_a_takeover_skips_the_parts_written(store: SqlStore) -> None:
    clock = ManualClock(NOON.timestamp())
    keys = [f"k{i:05}" for i in range(CHUNK + 5)]
    await write(store, *[entry(START + timedelta(hours=1), 0.01, key=k) for k in keys])
    counters = InMemoryCounters()
    limiter = Limiter(counters, clock=clock)
    for k in keys:
        limiter.set_key(k, budget=DAILY)
    # A seeder that wrote the first part (with its part marker) and died: that part must not count twice.
    lines = sorted(limiter.budget_lines(clock()), key=lambda line: line.key)
    written = [Slot(line.key, line.limit, 10_000, DAY) for line in lines[:CHUNK]]
    await counters.settle([*written, Slot(f"{MARKER}/0", 1, 1, 1e9)], hold_id="dead", now=clock())
    seeder = BudgetSeeder(limiter, reader(store), clock=clock)
    assert await seeder.seed()
    spent = [await used_usd(limiter, EntityKind.KEY, k) for k in keys]
    assert spent == [pytest.approx(0.01)] * len(keys)


async def test_an_unreadable_log_refuses_budgeted_spending_and_is_retried(store: SqlStore) -> None:
    clock = ManualClock(NOON.timestamp())
    await write(store, entry(START + timedelta(hours=1), 4.0))
    limiter = key_limiter(InMemoryCounters(), clock)
    limiter.set_key("free", rate_limit=RateLimitConfig(requests=10, period="1m"))
    database_up = False
    attempts: list[bool] = []

    def read(queries: Sequence[SpendQuery], now: float) -> list[float]:
        attempts.append(database_up)
        if not database_up:
            raise OSError("database is down")
        return window_spend(store.engine, queries, now)

    seeder = BudgetSeeder(limiter, read, clock=clock, retry=0.01)
    async with anyio.create_task_group() as tg:
        await tg.start(seeder.run)  # reports started after the first failure: the hub serves meanwhile
        assert not limiter.budgets_loaded
        with pytest.raises(CountersUnavailable, match="budget usage is not loaded"):
            await limiter.reserve("k1", Usage(requests=1))
        free = await limiter.reserve("free", Usage(requests=1))  # no budget: served
        await limiter.settle(free, Usage(requests=1))
        listing = await limiter.reserve("k1", Usage(requests=1), spend=False)  # costs nothing: served
        await limiter.refund(listing)
        database_up = True
    assert attempts[0] is False and attempts[-1] is True
    assert limiter.budgets_loaded
    assert await used_usd(limiter, EntityKind.KEY, "k1") == pytest.approx(4.0)


@contextlib.asynccontextmanager
async def redis_pair() -> AsyncGenerator[tuple[Counters, Counters]]:
    with redis_server() as url:
        a, b = RedisCounters.from_url(url), RedisCounters.from_url(url)
        try:
            yield a, b
        finally:
            await a.aclose()
            await b.aclose()


@contextlib.asynccontextmanager
async def counter_server_pair() -> AsyncGenerator[tuple[Counters, Counters]]:
    with (
        tempfile.TemporaryDirectory(prefix="ahseed-", dir="/tmp") as directory,
        CounterServer(str(Path(directory) / "c.sock")) as server,
    ):
        a, b = SocketCounters(server.path), SocketCounters(server.path)
        try:
            yield a, b
        finally:
            await a.aclose()
            await b.aclose()


@pytest.mark.parametrize("pair", [redis_pair, counter_server_pair], ids=["redis", "counter-server"])
async def test_two_hubs_opening_one_shared_store_seed_it_once(
    store: SqlStore, pair: Callable[[], contextlib.AbstractAsyncContextManager[tuple[Counters, Counters]]]
) -> None:
    clock = ManualClock(NOON.timestamp())
    await write(store, entry(START + timedelta(hours=1), 2.0), entry(START + timedelta(hours=2), 1.0))
    async with pair() as (a, b):
        hubs = [key_limiter(a, clock), key_limiter(b, clock)]
        seeders = [BudgetSeeder(limiter, reader(store), clock=clock, poll=0.001) for limiter in hubs]
        async with anyio.create_task_group() as tg:  # at once: one seeds, the other waits for it
            for seeder in seeders:
                tg.start_soon(seeder.run)
        assert sorted(s.seeded for s in seeders) == [0, 1]
        assert all(limiter.budgets_loaded for limiter in hubs)
        restarted = key_limiter(b, clock)  # one of them restarts over the same store
        third = BudgetSeeder(restarted, reader(store), clock=clock)
        await third.run()
        assert third.seeded == 0
        assert await used_usd(restarted, EntityKind.KEY, "k1") == pytest.approx(3.0)


AGENTHUB = str(Path(sys.executable).with_name("agenthub"))
SECRET = "ahk-dave-restart-000000000000000000000000000"
UPSTREAM = "sk-openai-restart-0001"


def hub_config(tmp_path: Path, upstream: str) -> Path:
    """A hub on a SQLite file in `tmp_path` with one priced model (a default fake reply costs 0.014 USD) and a key
    whose 0.03 USD budget admits three such calls (the third is admitted with 0.028 spent, then spends past it)."""
    config = tmp_path / "agenthub.toml"
    config.write_text(
        f"""
[hub]
listen = "127.0.0.1:1"
database = "sqlite:///{tmp_path / "hub.db"}"
upstream_start_timeout_s = 5

[providers.openai]
kind = "openai"
base_url = "{upstream}/v1"
keys = [{{ name = "main", secret = "env:T_RESTART_OPENAI" }}]
models = ["gpt-4o-mini"]

[models.fast]
deployments = [{{ provider = "openai", model = "gpt-4o-mini" }}]

[prices."openai/gpt-4o-mini"]
input = 1000.0
output = 2000.0

[[keys]]
name = "dave"
secret = "{SECRET}"
models = ["*"]
budget = {{ max_usd = 0.03, reset = "1Y" }}
""",
        encoding="utf-8",
    )
    return config


async def chat(client: openai.AsyncOpenAI) -> str:
    """One priced call; the budget left before it, as the hub reports it."""
    raw = await client.chat.completions.with_raw_response.create(
        model="fast", messages=[{"role": "user", "content": "hello"}]
    )
    return raw.headers["x-budget-remaining-usd"]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
async def test_a_restarted_hub_keeps_the_budget_spent_before(tmp_path: Path, workers: int) -> None:
    script = FakeScript()
    argv = [AGENTHUB, "serve", "--listen", "127.0.0.1:{port}", "--workers", str(workers)]
    async with serve(openai_app(script, keys=[UPSTREAM])) as upstream:
        config = hub_config(tmp_path, upstream)
        argv += ["--config", str(config)]
        env = {"T_RESTART_OPENAI": UPSTREAM}
        async with served(argv, env=env) as hub:
            client = openai.AsyncOpenAI(base_url=hub.url("/v1"), api_key=SECRET, max_retries=0, timeout=PATIENCE)
            before = [await chat(client), await chat(client)]  # 0.028 of 0.03 spent
            await client.close()
        # leaving the block sent SIGTERM to the hub by PID and waited for it to exit
        async with served(argv, env=env) as hub:
            client = openai.AsyncOpenAI(base_url=hub.url("/v1"), api_key=SECRET, max_retries=0, timeout=PATIENCE)
            after = await chat(client)  # admitted: 0.028 < 0.03
            with pytest.raises(openai.APIStatusError) as refused:
                await chat(client)
            await client.close()
    assert before == ["0.030000", "0.016000"]
    assert after == "0.002000"  # the spend before the restart, as the request log recorded it
    assert refused.value.status_code == 402
    assert len(script.requests) == 3

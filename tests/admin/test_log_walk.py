"""The request log's bounded walks: one filter drives (an index range in time order), the others are tested on at
most `scan` rows of it, a page that found fewer matches than asked ends where the walk stopped and its cursor
resumes there, so following the cursors still lists every matching row once, in order; totals test no more rows
than a page walks. On SQLite and on PostgreSQL, with a walk of a few rows over the seeded log (the benchmark,
`bench/logs_bench.py`, measures the same at 10 million rows). Also the version 4 to 5 upgrade of the indexes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from hub.audit.logquery import LogFilter, count_query, decode_cursor, driver, page_query, plan, read_page, total_of
from hub.audit.requestlog import LogEntry
from hub.store.sql import SCHEMA_VERSION, SqlStore
from hub.store.tables import FAILED, REQUEST_LOG_INDEXES, RETIRED_INDEXES
from tests.admin.services import postgres_server
from tests.tools.logseed import NOW, ROOT, expected, seed, seeded

pytestmark = pytest.mark.anyio

COMBINATIONS: list[dict[str, str]] = [
    {"team": "payments"},
    {"status": "429"},
    {"min_latency_ms": "1500"},
    {"team": "payments", "model": "gpt-4o"},
    {"team": "platform", "model": "claude-sonnet-4-5", "min_cost_usd": "0.004"},
    {"key": "key_b", "tool": "echo"},
    {"door": "mcp", "status": "502"},
    {"customer": "acme", "outcome": "tool_error"},
    {"operation": "llm.chat", "status": "200", "min_latency_ms": "1000"},
    {"team": "payments", "door": "openai", "min_latency_ms": "500"},
    {"server": "github", "min_latency_ms": "1900"},
    {"loop": ROOT, "operation": "mcp.tool"},
    {"team": "nobody", "door": "mcp"},
]
"""Filters alone and together: pairs and triples, common and rare, one that never matches."""

SCAN, LIMIT = 6, 4


@contextlib.asynccontextmanager
async def seeded_store(kind: str, tmp_path: Path) -> AsyncGenerator[tuple[Engine, list[LogEntry]]]:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_server()) if kind == "postgresql" else f"sqlite:///{tmp_path / 'log.db'}"
        store = SqlStore(url)
        stack.callback(store.close)
        entries = seeded()
        await seed(store, entries)
        yield store.engine, entries


WINDOW = {"since": NOW.replace(day=5).isoformat(), "until": NOW.replace(day=7, hour=6).isoformat()}


def _filter(params: dict[str, str]) -> LogFilter:
    kinds: dict[str, Callable[[str], Any]] = {
        "status": int,
        "min_latency_ms": float,
        "min_cost_usd": float,
        "since": datetime.fromisoformat,
        "until": datetime.fromisoformat,
    }
    return LogFilter(**{name: kinds.get(name, str)(value) for name, value in params.items()})  # fmt: skip


def _walked(entries: list[LogEntry], params: dict[str, str]) -> list[str]:
    """The call ids the driving filter alone selects (with the time range), newest first: the rows a walk reads,
    in order."""
    chosen = driver(_filter(params))
    window = {k: v for k, v in params.items() if k in WINDOW}
    if chosen == "failed":
        return expected([e for e in entries if e.status != 200 or e.outcome != "ok"], window)
    return expected(entries, window if chosen is None else {**window, chosen: params[chosen]})


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_pages_walk_a_few_rows_each_yet_list_every_match_once_in_order(kind: str, tmp_path: Path) -> None:
    async with seeded_store(kind, tmp_path) as (engine, entries):
        short_pages = 0
        for params in COMBINATIONS + [{**p, **WINDOW} for p in COMBINATIONS]:
            f = _filter(params)
            want, walked = expected(entries, params), _walked(entries, params)
            times = {e.call_id: e.ts for e in entries}
            listed: list[str] = []
            cursor: str | None = None
            pages = 0
            while True:
                page = read_page(engine, f, LIMIT, cursor, scan=SCAN)
                pages += 1
                assert len(page.data) <= LIMIT, params
                if pages == 1 and plan(f).rest and len(page.data) < LIMIT and page.next_cursor is not None:
                    # the first page found too few matches: it ends on the time of the last row its walk read
                    assert decode_cursor(page.next_cursor) == (times[walked[SCAN - 1]], 0), params
                    short_pages += 1
                listed += [row["call_id"] for row in page.data]
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert listed == want, params
            if plan(f).rest:
                assert pages >= len(walked) // SCAN, ("each page walks at most SCAN rows", params)
        assert short_pages > 5, "rare combinations end their first page where the walk stopped"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_total_with_filters_left_to_test_counts_among_the_newest_rows_of_the_walk(
    kind: str, tmp_path: Path
) -> None:
    async with seeded_store(kind, tmp_path) as (engine, entries):
        for params in COMBINATIONS:
            f = _filter(params)
            walked = _walked(entries, params)
            with engine.connect() as conn:
                tested, matching = conn.execute(count_query(f, 1000, scan=SCAN)).one()
                whole = conn.execute(count_query(f, 1000, scan=10_000)).one()
            full = len(expected(entries, params))
            if not plan(f).rest:  # the walk is the answer: counted up to the cap
                assert (tested, matching) == (full, full), params
                continue
            if not walked:
                assert (tested, matching) == (0, 0), params
                continue
            times = {e.call_id: e.ts for e in entries}
            edge = times[walked[min(SCAN, len(walked)) - 1]]
            newest = {c for c in walked if times[c] >= edge}  # the newest SCAN, and any sharing the last one's time
            assert tested == len(newest) >= min(SCAN, len(walked)), params
            assert matching == sum(1 for c in expected(entries, params) if c in newest), params
            assert total_of(int(tested), int(matching), 1000, SCAN) == (int(matching), len(walked) < SCAN), params
            assert total_of(int(whole[0]), int(whole[1]), 1000) == (full, True), params


def test_the_filter_that_usually_selects_fewest_rows_drives_and_the_rest_are_tested() -> None:
    assert plan(LogFilter(team="t", model="m")).rest == {"team"}
    assert plan(LogFilter(loop="call_1", key="k", door="d")).rest == {"key", "door"}
    assert plan(LogFilter(status=502, door="mcp")).rest == {"status", "door"}, "failed calls drive, status tested"
    assert plan(LogFilter(outcome="upstream_error", operation="o")).rest == {"outcome", "operation"}
    assert plan(LogFilter(status=200, door="mcp")).rest == {"status"}, "status 200 is most rows: the door drives"
    assert plan(LogFilter(outcome="ok")).rest == {"outcome"}
    assert plan(LogFilter(min_latency_ms=5, min_cost_usd=1)).rest == {"min_latency_ms", "min_cost_usd"}
    assert plan(LogFilter(key="k")).rest == frozenset()
    failed = plan(LogFilter(status=429)).drive
    assert [str(term) for term in failed] == [f"({FAILED})"], "the partial index's predicate, word for word"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_version_4_database_trades_the_status_and_outcome_indexes_for_the_failed_calls_one(
    kind: str, tmp_path: Path
) -> None:
    async with seeded_store(kind, tmp_path) as (engine, entries):
        with engine.begin() as conn:  # the indexes as version 4 left them
            conn.execute(text("DROP INDEX ix_request_log_failed_ts"))
            conn.execute(text("CREATE INDEX ix_request_log_status_ts ON request_log (status, ts)"))
            conn.execute(text("CREATE INDEX ix_request_log_outcome_ts ON request_log (outcome, ts)"))
            conn.execute(text("UPDATE meta SET value = '4' WHERE key = 'schema_version'"))
        url = engine.url.render_as_string(hide_password=False)
        upgraded = SqlStore(url)
        try:
            indexes = {i["name"]: i for i in inspect(upgraded.engine).get_indexes("request_log")}
            with upgraded.engine.connect() as conn:
                version = conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar_one()
            page = read_page(upgraded.engine, LogFilter(status=502), 500)
        finally:
            upgraded.close()
        assert version == str(SCHEMA_VERSION) == "6"
        assert set(REQUEST_LOG_INDEXES) <= set(indexes) and not set(RETIRED_INDEXES) & set(indexes)
        assert [row["call_id"] for row in page.data] == expected(entries, {"status": "502"})


PAIRS = {
    "ix_request_log_model_ts": LogFilter(team="payments", model="gpt-4o"),
    "ix_request_log_key_id_ts": LogFilter(key="key_a", status=429, min_latency_ms=100),
    "ix_request_log_door_ts": LogFilter(door="mcp", min_latency_ms=1500),
    "ix_request_log_failed_ts": LogFilter(status=502, team="payments"),
}
"""Combinations, and the index that must drive each."""


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_combination_walks_its_driving_index_and_no_other(kind: str, tmp_path: Path) -> None:
    # Under an equality driver PostgreSQL sees the time bounds on (column, ts) and the order led by the column,
    # which only the driver's index serves: it cannot walk `ts` instead (the plan a test's few rows allow is the
    # one millions of rows would get; `bench/logs_bench.py` prints the plans at 10 million).
    async with seeded_store(kind, tmp_path) as (engine, _entries):
        since = NOW.replace(day=5)
        explain = "EXPLAIN" if kind == "postgresql" else "EXPLAIN QUERY PLAN"
        with engine.connect() as conn:
            if kind == "postgresql":
                conn.execute(text("SET enable_seqscan = off"))
            for index, f in PAIRS.items():
                for query in (page_query(replace(f, since=since), 50), count_query(replace(f, since=since))):
                    compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
                    found = "\n".join(str(r[-1]) for r in conn.execute(text(f"{explain} {compiled}")))
                    assert index in found and "ix_request_log_ts" not in found, (index, found)


async def test_a_later_page_carries_the_first_pages_total_and_counts_nothing_again(tmp_path: Path) -> None:
    """The total is the filter's, not the page's: counted once, with the first page, and carried in the cursor, so
    following the cursors costs one walk a page and every page reports the same total."""
    from sqlalchemy import event

    async with seeded_store("sqlite", tmp_path) as (engine, _entries):
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", seen)
        for params in COMBINATIONS:
            f = _filter(params)
            first = read_page(engine, f, LIMIT, scan=SCAN)
            cursor = first.next_cursor
            while cursor is not None:
                statements.clear()
                page = read_page(engine, f, LIMIT, cursor, scan=SCAN)
                assert (page.total, page.total_exact) == (first.total, first.total_exact), params
                assert not [s for s in statements if "count(" in s.lower()], (params, statements)
                cursor = page.next_cursor
        event.remove(engine, "before_cursor_execute", seen)

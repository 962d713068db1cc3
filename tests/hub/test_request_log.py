"""The request log: what `flush` stores is what was recorded, every text field within its bound, and rows past the
retention are deleted (on SQLite, and on PostgreSQL when its binaries are installed)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine, inspect

from hub.audit.requestlog import FIELDS, TEXT_LIMITS, LogEntry, RequestLog, purge_statement
from hub.governance.periods import parse_retention
from hub.settings import HubSection
from hub.store.sql import SqlStore
from tests.admin.services import postgres_server

pytestmark = pytest.mark.anyio


def _entry(call_id: str, **changes: object) -> LogEntry:
    entry = LogEntry(
        ts=datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC),
        call_id=call_id,
        parent_id=None,
        key_id="key_1",
        key_name="alice",
        door="openai",
        operation="llm.chat",
        target="openai/gpt-4o-mini",
        outcome="ok",
        status=200,
        latency_ms=1.234,
        error=None,
        deployment="openai/gpt-4o-mini",
        tokens=30,
        cost_usd=0.000123,
    )
    for name, value in changes.items():
        setattr(entry, name, value)
    return entry


async def test_flushed_rows_read_back_as_recorded_nulls_and_timestamps_included(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'hub.db'}")
    log = RequestLog(store)
    recorded = [
        _entry("call_a"),
        _entry(
            "call_b",
            parent_id="call_a",
            key_id=None,
            key_name=None,
            outcome="rate_limit_error",
            status=429,
            error="rate limit reached",
            deployment=None,
            tokens=None,
            cost_usd=None,
            ts=datetime(2026, 3, 4, tzinfo=UTC),
        ),  # fmt: skip
    ]
    for entry in recorded:
        log.record(entry)
    await log.flush()
    log.record(_entry("call_c", latency_ms=0.0))
    await log.flush()  # a second batch goes through the same compiled statement
    assert log.written == 3
    rows = {row.call_id: row for row in store.recent_log(10)}
    for entry in [*recorded, _entry("call_c", latency_ms=0.0)]:
        row = rows[entry.call_id]
        assert {name: getattr(row, name) for name in FIELDS} == {name: getattr(entry, name) for name in FIELDS}


async def test_the_driver_rows_match_what_the_orm_writes(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'hub.db'}")
    entry = _entry("call_orm")
    store.write_log([{name: getattr(entry, name) for name in FIELDS}])
    log = RequestLog(store)
    log.record(_entry("call_driver"))
    await log.flush()
    with store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT * FROM request_log ORDER BY id").fetchall()
    orm, driver = (tuple(row)[1:] for row in stored)  # without the autoincrement id
    assert orm[0] == driver[0]  # the timestamp, stored as the same text
    assert orm[2:] == driver[2:]


# -- bounded text fields ----------------------------------------------------------------------------------------

MEGABYTE = 1024 * 1024


async def test_a_megabyte_target_and_error_are_stored_bounded_with_a_cut_marker(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'hub.db'}")
    log = RequestLog(store)
    log.record(_entry("call_big", operation="mcp.tool", target="t" * MEGABYTE, error="e" * MEGABYTE))
    await log.flush()
    (row,) = store.recent_log(1)
    assert len(row.target) == TEXT_LIMITS["target"] and row.target == "t" * (TEXT_LIMITS["target"] - 1) + "…"
    assert row.error is not None
    assert len(row.error) == TEXT_LIMITS["error"] and row.error.endswith("e…")
    assert TEXT_LIMITS["target"] <= 1024 and TEXT_LIMITS["error"] <= 1024


async def test_every_text_field_is_bounded_and_short_values_are_kept_as_they_are(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'hub.db'}")
    log = RequestLog(store)
    huge = _entry("call_huge")
    for name in TEXT_LIMITS:
        setattr(huge, name, "x" * MEGABYTE)
    log.record(_entry("call_short"))
    log.record(huge)
    await log.flush()
    rows = {row.call_id: row for row in store.recent_log(10)}
    assert {name: getattr(rows["call_short"], name) for name in FIELDS} == {
        name: getattr(_entry("call_short"), name) for name in FIELDS
    }
    (cut,) = (row for call_id, row in rows.items() if call_id != "call_short")
    for name, limit in TEXT_LIMITS.items():
        value = getattr(cut, name)
        assert len(value) == limit and value.endswith("…"), name


async def test_twenty_megabyte_calls_add_little_to_the_database(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    store = SqlStore(f"sqlite:///{path}")
    log = RequestLog(store)
    await log.flush()
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    before = path.stat().st_size
    for n in range(20):
        log.record(_entry(f"call_{n}", target="u" * MEGABYTE, error="unknown tool " + "u" * MEGABYTE))
    await log.flush()
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    assert path.stat().st_size - before < 100 * 1024


# -- retention ----------------------------------------------------------------------------------------------------

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


class FakeClock:
    """The current time as a test sets it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.slow, pytest.mark.postgres])])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL: a SQLite file, or a database of its own on the module's PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    server: str = request.getfixturevalue("postgres")
    name = "log_" + uuid.uuid4().hex[:12]
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


async def _aged(log: RequestLog, ages: dict[str, timedelta]) -> None:
    for call_id, age in ages.items():
        log.record(_entry(call_id, ts=NOW - age))
    await log.flush()


async def test_retention_deletes_rows_older_than_it_and_keeps_newer_ones(database: str) -> None:
    store = SqlStore(database)
    log = RequestLog(store, clock=FakeClock(NOW), purge_batch=2)
    old = {f"old_{n}": timedelta(days=30, seconds=1 + n) for n in range(5)}
    new = {"new_edge": timedelta(days=29, hours=23), "new_hour": timedelta(hours=1), "new_now": timedelta(0)}
    await _aged(log, {**old, **new})
    assert await log.purge(timedelta(days=30)) == 5  # in three batches of at most two rows
    assert {row.call_id for row in store.recent_log(100)} == set(new)
    assert await log.purge(timedelta(days=30)) == 0
    store.close()


async def test_the_retention_job_purges_once_started_and_follows_the_clock(database: str) -> None:
    store = SqlStore(database)
    clock = FakeClock(NOW)
    log = RequestLog(store, clock=clock)
    await _aged(log, {"two_days": timedelta(days=2), "an_hour": timedelta(hours=1)})
    async with anyio.create_task_group() as tg:
        await tg.start(log.run_retention, parse_retention("1d"), 3600.0)  # returns once the first purge is done
        assert {row.call_id for row in store.recent_log(10)} == {"an_hour"}
        tg.cancel_scope.cancel()
    clock.now = NOW + timedelta(days=1)
    assert await log.purge(timedelta(days=1)) == 1
    assert store.recent_log(10) == []
    store.close()


@pytest.mark.parametrize("retention", ["0", ""])
async def test_a_retention_of_zero_or_nothing_keeps_every_row(retention: str, tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'hub.db'}")
    log = RequestLog(store, clock=FakeClock(NOW))
    await _aged(log, {"ancient": timedelta(days=3650)})
    async with anyio.create_task_group() as tg:
        await tg.start(log.run_retention, parse_retention(retention), 3600.0)
    assert [row.call_id for row in store.recent_log(10)] == ["ancient"]


def test_retention_durations_parse_and_nonsense_is_refused_in_the_config() -> None:
    assert parse_retention("30d") == timedelta(days=30)
    assert parse_retention("12h") == timedelta(hours=12)
    assert parse_retention("90m") == timedelta(minutes=90)
    assert parse_retention("0") is None
    assert parse_retention("") is None
    assert HubSection().request_log_retention == "30d"
    assert HubSection().request_log_purge_interval_s == 3600
    for bad in ("30 days", "-1d", "1y", "d"):
        with pytest.raises(ValidationError, match="request_log_retention"):
            HubSection(request_log_retention=bad)


def test_the_purge_finds_old_rows_through_the_timestamp_index(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'hub.db'}")
    assert "ix_request_log_ts" in {index["name"] for index in inspect(store.engine).get_indexes("request_log")}
    compiled = purge_statement(NOW, 1000).compile(store.engine)
    parameters = tuple(str(compiled.params[name]) for name in compiled.positiontup or ())
    with store.engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled.string, parameters).fetchall()
    details = " | ".join(str(row[-1]) for row in plan)
    assert "ix_request_log_ts" in details and "SCAN request_log" not in details, details


async def test_rows_with_different_empty_fields_interleaved_are_stored_as_recorded_in_order(database: str) -> None:
    """Each pattern of empty fields has its own statement (only the columns with a value): rows of several patterns
    mixed in one batch keep their values, their NULLs and their order."""
    store = SqlStore(database)
    log = RequestLog(store)
    tool = {"door": "mcp", "operation": "mcp.tool", "deployment": None, "tokens": None, "cost_usd": None,
            "server": "files", "tool": "read", "upstream_ms": 0.5}  # fmt: skip
    failed = {"outcome": "rate_limit_error", "status": 429, "error": "rate limit reached", "key_id": None}
    cached = {"cache_read_tokens": 7, "cache_write_5m_tokens": 3, "cache_write_1h_tokens": 2, "reasoning_tokens": 1,
              "team": "t", "customer": "c", "model": "gpt", "loop_id": "call_0", "parent_id": "call_0"}  # fmt: skip
    shapes = [tool, tool, {}, failed, tool, cached, cached, {}, failed, tool]
    recorded = [_entry(f"call_{n:02d}", **shape) for n, shape in enumerate(shapes)]
    for entry in recorded:
        log.record(entry)
    await log.flush()
    log.record(_entry("call_10", **tool))  # a later batch reuses the statements
    await log.flush()
    recorded.append(_entry("call_10", **tool))
    rows = list(reversed(store.recent_log(100)))
    assert [row.call_id for row in rows] == [entry.call_id for entry in recorded]
    for row, entry in zip(rows, recorded, strict=True):
        assert {name: getattr(row, name) for name in FIELDS} == {name: getattr(entry, name) for name in FIELDS}
    store.close()

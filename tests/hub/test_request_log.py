"""The request log's batched writer: what `flush` stores is exactly what was recorded."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.audit.requestlog import FIELDS, LogEntry, RequestLog
from hub.store.sql import SqlStore

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

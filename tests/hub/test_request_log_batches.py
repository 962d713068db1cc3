"""When the request log writes: at each interval, at once when a batch is full (never once per call), in writes of
at most a batch, and everything on the way out; a failed write keeps its rows for the next interval."""

from __future__ import annotations

import queue
import threading
from collections.abc import AsyncGenerator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from sqlalchemy import event

from hub.audit.requestlog import LogEntry, RequestLog
from hub.store.sql import SqlStore
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio


def _entry(n: int) -> LogEntry:
    return LogEntry(
        ts=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
        call_id=f"call_{n:04d}",
        parent_id=None,
        key_id="key_1",
        key_name="alice",
        door="mcp",
        operation="mcp.tool",
        target="fixture__echo",
        outcome="ok",
        status=200,
        latency_ms=1.0,
        error=None,
    )


class ManualSleep:
    """The log's pause between flushes: it reports each pause and ends it only when the test says so."""

    def __init__(self) -> None:
        self.calls: tuple[MemoryObjectSendStream[float], MemoryObjectReceiveStream[float]]
        self.calls = anyio.create_memory_object_stream[float](100)
        self.resumes = anyio.create_memory_object_stream[None]()

    async def __call__(self, delay: float) -> None:
        await self.calls[0].send(delay)
        await self.resumes[1].receive()

    async def next_pause(self) -> float:
        with anyio.fail_after(PATIENCE):
            return await self.calls[1].receive()

    async def end_pause(self) -> None:
        with anyio.fail_after(PATIENCE):
            await self.resumes[0].send(None)

    def close(self) -> None:
        for stream in (*self.calls, *self.resumes):
            stream.close()


@pytest.fixture
def sleep() -> Iterator[ManualSleep]:
    manual = ManualSleep()
    yield manual
    manual.close()


class Writes:
    """What the log's writes did, one item each as its connection went back to the pool: `commit` (the rows are
    in the database) or `error`. The test's own statements, made on the event loop's thread, are not counted."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self._seen: queue.Queue[str] = queue.Queue()
        self._failed = threading.local()
        event.listen(store.engine, "handle_error", self._error)
        event.listen(store.engine.pool, "checkin", self._checkin)

    def _error(self, context: Any) -> None:
        self._failed.value = True

    def _checkin(self, dbapi_connection: Any, record: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            self._seen.put("error" if getattr(self._failed, "value", False) else "commit")
            self._failed.value = False

    async def next(self) -> str:
        return await anyio.to_thread.run_sync(self._seen.get, True, PATIENCE)

    def stored(self) -> list[str]:
        with self._store.engine.connect() as conn:
            return [row[0] for row in conn.exec_driver_sql("SELECT call_id FROM request_log ORDER BY id")]

    def pending(self) -> int:
        return self._seen.qsize()


@asynccontextmanager
async def running(log: RequestLog) -> AsyncGenerator[None]:
    async with anyio.create_task_group() as tg:
        tg.start_soon(log.run)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


async def test_a_full_batch_is_written_at_once_without_waiting_for_the_interval(
    tmp_path: Path, sleep: ManualSleep
) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'hub.db'}")
    writes = Writes(store)
    log = RequestLog(store, batch=8, sleep=sleep)
    async with running(log):
        assert await sleep.next_pause() == 0.5  # the interval runs, and is never ended in this test
        for n in range(7):
            log.record(_entry(n))
        log.record(_entry(7))  # the eighth row fills the batch
        assert await writes.next() == "commit"
        assert writes.stored() == [f"call_{n:04d}" for n in range(8)]
        assert log.written == 8
    store.close()


async def test_rows_short_of_a_batch_wait_for_the_interval(tmp_path: Path, sleep: ManualSleep) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'hub.db'}")
    writes = Writes(store)
    log = RequestLog(store, batch=8, sleep=sleep)
    async with running(log):
        await sleep.next_pause()
        for n in range(3):
            log.record(_entry(n))
        await sleep.end_pause()
        assert await writes.next() == "commit"
        assert writes.stored() == ["call_0000", "call_0001", "call_0002"]
    store.close()


async def test_a_backlog_is_written_a_batch_at_a_time_in_order(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'hub.db'}")
    writes = Writes(store)
    log = RequestLog(store, batch=8)
    for n in range(20):
        log.record(_entry(n))
    await log.flush()
    assert [await writes.next() for _ in range(3)] == ["commit"] * 3 and writes.pending() == 0
    assert writes.stored() == [f"call_{n:04d}" for n in range(20)]
    assert log.written == 20
    store.close()


async def test_what_is_left_is_written_when_the_log_stops(tmp_path: Path, sleep: ManualSleep) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'hub.db'}")
    log = RequestLog(store, batch=8, sleep=sleep)
    async with running(log):
        await sleep.next_pause()
        for n in range(5):
            log.record(_entry(n))
    assert Writes(store).stored() == [f"call_{n:04d}" for n in range(5)]
    store.close()


async def test_a_failed_write_keeps_its_rows_and_is_tried_again_at_the_next_interval(
    tmp_path: Path, sleep: ManualSleep
) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'hub.db'}")
    writes = Writes(store)
    log = RequestLog(store, batch=4, sleep=sleep)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE request_log RENAME TO request_log_away")
    async with running(log):
        await sleep.next_pause()
        for n in range(4):
            log.record(_entry(n))
        assert await writes.next() == "error"  # the full batch was tried at once, and failed
        for n in range(4, 10):
            log.record(_entry(n))
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE request_log_away RENAME TO request_log")
        await sleep.end_pause()
        assert [await writes.next() for _ in range(3)] == ["commit"] * 3  # 4 + 4 + 2, in order
        assert writes.stored() == [f"call_{n:04d}" for n in range(10)]
        assert log.written == 10 and log.dropped == 0
    store.close()

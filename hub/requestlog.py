"""The request log: one row per governed call, written in batches off the hot path.

`record()` only appends to a buffer; `run()` (in the app's task group) flushes it every `interval` seconds in a
worker thread. On shutdown the remainder is flushed. A failed write keeps the rows and retries, so an
unavailable database delays entries but does not lose them (up to `max_buffer` rows, past which the oldest
are dropped and counted).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from datetime import datetime

import anyio

from hub.store.sql import SqlStore

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class LogEntry:
    """One request-log row as the hot path records it (a plain object: building ORM rows is left to the flush)."""

    ts: datetime
    call_id: str
    parent_id: str | None
    key_id: str | None
    key_name: str | None
    door: str
    operation: str
    target: str
    outcome: str
    status: int
    latency_ms: float
    error: str | None
    deployment: str | None = None
    """`provider/model` that served an LLM call."""
    tokens: int | None = None
    cost_usd: float | None = None


FIELDS = tuple(f.name for f in fields(LogEntry))


class RequestLog:
    def __init__(self, store: SqlStore, *, interval: float = 0.5, max_buffer: int = 100_000) -> None:
        self._store = store
        self._interval = interval
        self._max = max_buffer
        self._buffer: list[LogEntry] = []
        self.dropped = 0
        self._flushing = anyio.Lock()
        self.written = 0

    def record(self, row: LogEntry) -> None:
        self._buffer.append(row)
        if len(self._buffer) > self._max:
            excess = len(self._buffer) - self._max
            del self._buffer[:excess]
            self.dropped += excess

    async def run(self) -> None:
        """Flush periodically until cancelled; flush the rest on the way out."""
        try:
            while True:
                await anyio.sleep(self._interval)
                await self.flush()
        finally:
            with anyio.CancelScope(shield=True):
                await self.flush()

    def _write(self, batch: list[LogEntry]) -> None:
        """In a worker thread: turn entries into rows and insert them in one statement."""
        self._store.write_log([{name: getattr(entry, name) for name in FIELDS} for entry in batch])

    async def flush(self) -> None:
        """Write what is buffered; returns once every entry recorded before the call is in the database (a
        flush already under way is waited for, not overtaken)."""
        async with self._flushing:
            if not self._buffer:
                return
            batch, self._buffer = self._buffer, []
            try:
                await anyio.to_thread.run_sync(self._write, batch)
                self.written += len(batch)
            except Exception:
                logger.exception("request log write failed; keeping %d rows for the next flush", len(batch))
                self._buffer[:0] = batch

"""The request log: one row per governed call, written in batches off the hot path.

`record()` only appends to a buffer; `run()` (in the app's task group) flushes it every `interval` seconds in a
worker thread. On shutdown the remainder is flushed. A failed write keeps the rows and retries, so an
unavailable database delays entries but does not lose them (up to `max_buffer` rows, past which the oldest
are dropped and counted).

A flush is one `executemany` of plain tuples through the driver (`Connection.exec_driver_sql`) with an `INSERT`
compiled once for the database's dialect, the columns' own bind processors applied: the rows stored are the
ones the ORM would store, at a fraction of the work the flush thread does while it holds the GIL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from operator import attrgetter
from typing import Any

import anyio
from sqlalchemy import Table, insert
from sqlalchemy.engine import Engine

from hub.store.sql import SqlStore
from hub.store.tables import RequestLogRow

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
_values = attrgetter(*FIELDS)


class _Insert:
    """The request-log `INSERT` for one engine: driver SQL, parameter shape and bind processors, built once."""

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect
        table: Table = RequestLogRow.__table__  # pyright: ignore[reportAttributeAccessIssue]
        compiled = insert(table).compile(dialect=dialect, column_keys=list(FIELDS))
        self.sql = compiled.string
        order = compiled.positiontup if dialect.positional else None
        self.names: tuple[str, ...] = tuple(order) if order is not None else FIELDS
        index = {name: i for i, name in enumerate(FIELDS)}
        self.picks = tuple(index[name] for name in self.names)
        processors: list[tuple[int, Callable[[Any], Any]]] = []
        for i, name in enumerate(self.names):
            column_type: Any = table.c[name].type
            process = column_type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors.append((i, process))
        self.processors = tuple(processors)
        self.positional = dialect.positional

    def rows(self, batch: Sequence[LogEntry]) -> list[Any]:
        """Driver parameters for `batch`: tuples in statement order, or dicts for named parameter styles."""
        picks, processors = self.picks, self.processors
        out: list[Any] = []
        for entry in batch:
            values = _values(entry)
            row = [values[i] for i in picks]
            for i, process in processors:
                if row[i] is not None:
                    row[i] = process(row[i])
            out.append(tuple(row) if self.positional else dict(zip(self.names, row, strict=True)))
        return out


class RequestLog:
    def __init__(self, store: SqlStore, *, interval: float = 0.5, max_buffer: int = 100_000) -> None:
        self._store = store
        self._interval = interval
        self._max = max_buffer
        self._buffer: list[LogEntry] = []
        self.dropped = 0
        self._flushing = anyio.Lock()
        self._insert: _Insert | None = None
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
        """In a worker thread: turn entries into driver rows and insert them in one `executemany`."""
        engine = self._store.engine
        if self._insert is None:
            self._insert = _Insert(engine)
        statement = self._insert
        rows = statement.rows(batch)
        with engine.begin() as conn:
            conn.exec_driver_sql(statement.sql, rows)

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

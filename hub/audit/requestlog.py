"""The request log: one row per governed call, written in batches off the hot path.

`record()` only appends to a buffer, on the event loop: no lock, no timer, no thread is touched per call.
`run()` (in the app's task group) hands the buffer to a worker thread every `interval` seconds, and early when
it holds `batch` rows, in chunks of at most `batch` rows: one thread hand-off per batch, never per call, and a
bounded stretch of Python work in the writer thread (which competes with the event loop for the GIL). On
shutdown the remainder is flushed. A failed write keeps the rows and retries, so an unavailable database delays
entries but does not lose them (up to `max_buffer` rows, past which the oldest are dropped and counted).

The same transaction adds the batch to the daily rollup (`request_log_daily`: calls, errors, tokens and cost per
day and per key, team, customer, model and server; a handful of upserts per batch, summed in the flush thread),
so summaries never scan the raw log, and stores the bodies of the calls that carry some (`hub.audit.bodies`) in
`request_log_bodies`, redacted and capped there, so that `request_log` itself stays narrow.

A flush is an `executemany` of plain tuples through the driver (`Connection.exec_driver_sql`) per run of rows
with the same empty fields, with an `INSERT` compiled once for the database's dialect and that pattern (naming only
the columns that have a value, so no NULL is bound), the columns' own bind processors applied, and one of the
rollup's upsert, compiled once too: the rows stored are the ones the ORM would store, at a fraction of the work the
flush thread does while it holds the GIL.

The log cannot fill the disk: `record()` cuts every text field to its bound in `TEXT_LIMITS` (a cut value ends in
`…`), so a caller choosing a megabyte tool name stores a few hundred characters; `run_retention()` (in the app's
task group too) deletes rows older than `[hub] request_log_retention` every `request_log_purge_interval_s`, in
batches of `purge_batch` rows, each its own short transaction, found through the index on `ts`; bodies go with
their rows, and rollup days past `request_log_rollup_retention`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, NamedTuple

import anyio
import anyio.abc
from sqlalchemy import Delete, Table, delete, insert, select, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import col

from hub.audit.bodies import Bodies, BodyRecorder
from hub.store.sql import SqlStore
from hub.store.tables import RequestLogBodyRow, RequestLogDailyRow, RequestLogRow

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
"""The current time (timezone-aware); injected so that tests move it instead of waiting."""


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
    """Every token an LLM call processed (the parts below included)."""
    cost_usd: float | None = None
    """None for a call that costs nothing (not an LLM call) or whose model has no price."""
    cache_read_tokens: int | None = None
    """Of `tokens`: input read from a cache."""
    cache_write_5m_tokens: int | None = None
    """Of `tokens`: input written to the 5-minute cache."""
    cache_write_1h_tokens: int | None = None
    """Of `tokens`: input written to the 1-hour cache."""
    reasoning_tokens: int | None = None
    """Of `tokens`: output spent reasoning."""
    team: str | None = None
    """The key's team and customer."""
    customer: str | None = None
    model: str | None = None
    """The model an LLM call asked for."""
    server: str | None = None
    """The upstream server of an MCP call, and the tool (prompt, resource) as that server names it."""
    tool: str | None = None
    upstream_ms: float | None = None
    """Of `latency_ms`: the time spent waiting on the upstream (`Outcome.upstream_ms`)."""
    loop_id: str | None = None
    """The outermost call above a nested call (the parent of its parent...); None for a call a client made."""
    bodies: Bodies | None = None
    """The call's request and response, kept by reference when `[hub] log_bodies` asks (not a column)."""


FIELDS = tuple(f.name for f in fields(LogEntry) if f.name != "bodies")
_values = attrgetter(*FIELDS)

_ID, _NAME, _WORD, _TARGET, _ERROR = 64, 128, 64, 256, 512

TEXT_LIMITS: dict[str, int] = {
    "call_id": _ID,
    "parent_id": _ID,
    "key_id": _ID,
    "key_name": _NAME,
    "door": _WORD,
    "operation": _WORD,
    "target": _TARGET,
    "outcome": _WORD,
    "error": _ERROR,
    "deployment": _TARGET,
    "team": _NAME,
    "customer": _NAME,
    "model": _TARGET,
    "server": _NAME,
    "tool": _TARGET,
    "loop_id": _ID,
}
"""The most characters each text field of a row keeps; a longer value is cut to this length, its last character
replaced by `CUT`."""

CUT = "…"
"""Ends a value that was cut to its bound."""


def _cut(entry: LogEntry) -> None:
    """Cut every text field of `entry` that passes its bound, marking the cut."""
    for name, limit in TEXT_LIMITS.items():
        value: str | None = getattr(entry, name)
        if value is not None and len(value) > limit:
            setattr(entry, name, value[: limit - len(CUT)] + CUT)


def purge_statement(cutoff: datetime, batch: int) -> Delete:
    """Delete at most `batch` rows written before `cutoff`, oldest first (the subquery walks the `ts` index)."""
    ts, row_id = col(RequestLogRow.ts), col(RequestLogRow.id)
    oldest = select(row_id).where(ts < cutoff).order_by(ts).limit(batch)
    return delete(RequestLogRow).where(row_id.in_(oldest.scalar_subquery()))


def _utc_now() -> datetime:
    return datetime.now(UTC)


ROLLUP_DIMS = ("day", "key", "team", "customer", "model", "server")
"""What the daily rollup sums by (`GET /api/v1/logs/summary?by=`)."""

_ROLLUP_UPSERT = text(
    "INSERT INTO request_log_daily (day, dim, value, calls, errors, tokens, cost_usd)"
    " VALUES (:day, :dim, :value, :calls, :errors, :tokens, :cost_usd)"
    " ON CONFLICT (day, dim, value) DO UPDATE SET calls = request_log_daily.calls + excluded.calls,"
    " errors = request_log_daily.errors + excluded.errors, tokens = request_log_daily.tokens + excluded.tokens,"
    " cost_usd = request_log_daily.cost_usd + excluded.cost_usd"
)
"""Adds a batch's sums to the rollup; `ON CONFLICT` is atomic on SQLite and PostgreSQL, so replicas flushing at
once both count."""


def rollup(batch: Sequence[LogEntry]) -> list[dict[str, Any]]:
    """A batch's calls, errors (anything but `ok`), tokens and cost per (UTC day, dimension, value), in key order
    (replicas upserting the same rows take their locks in one order).

    Rows are first summed per combination of day, key, team, customer, model and server (one dictionary lookup
    per row: a batch holds few combinations), then each combination is spread over the dimensions."""
    combos: dict[tuple[Any, ...], list[Any]] = {}
    for e in batch:
        ts = e.ts
        combo = (ts.date() if ts.utcoffset() == _ZERO else ts.astimezone(UTC).date(), e.key_id, e.team, e.customer,
                 e.model, e.server)  # fmt: skip
        sums = combos.get(combo)
        if sums is None:
            sums = combos[combo] = [0, 0, 0, 0.0]
        sums[0] += 1
        if e.outcome != "ok":
            sums[1] += 1
        if e.tokens:
            sums[2] += e.tokens
        if e.cost_usd:
            sums[3] += e.cost_usd
    out: dict[tuple[str, str, str], list[Any]] = {}
    for (date, *values), (calls, errors, tokens, cost) in combos.items():
        day = date.isoformat()
        for dim, value in zip(ROLLUP_DIMS, ("", *values), strict=True):
            if value is None:
                continue
            row = out.get((day, dim, value))
            if row is None:
                out[(day, dim, value)] = [calls, errors, tokens, cost]
            else:
                row[0] += calls
                row[1] += errors
                row[2] += tokens
                row[3] += cost
    return [
        {"day": day, "dim": dim, "value": value, "calls": c, "errors": e, "tokens": t, "cost_usd": usd}
        for (day, dim, value), (c, e, t, usd) in sorted(out.items())
    ]


_ZERO = timedelta(0)


def purge_bodies_statement(cutoff: datetime, batch: int) -> Delete:
    """Delete at most `batch` stored bodies of calls made before `cutoff` (through the bodies' `ts` index)."""
    ts, call_id = col(RequestLogBodyRow.ts), col(RequestLogBodyRow.call_id)
    oldest = select(call_id).where(ts < cutoff).order_by(ts).limit(batch)
    return delete(RequestLogBodyRow).where(call_id.in_(oldest.scalar_subquery()))


class _Shape(NamedTuple):
    """The `INSERT` for rows whose empty (None) fields are the same: only the other columns are named, so the
    driver binds no NULLs (SQLite's driver adapts every None parameter through its slow path, and a call's row
    leaves about half its fields empty)."""

    sql: str
    picks: tuple[int, ...]
    """Indexes in `FIELDS` of the statement's parameters, in statement order."""
    names: tuple[str, ...]
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]
    """Bind processors by parameter position."""


class _Insert:
    """The flush's statements for one engine, compiled to the driver's SQL once each: the request-log `INSERT` for
    each pattern of empty fields the rows show (a handful: a tool call's row, a chat completion's, a failure's) and
    the rollup's upsert."""

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect
        self._dialect = dialect
        self._table: Table = RequestLogRow.__table__  # pyright: ignore[reportAttributeAccessIssue]
        self._shapes: dict[tuple[type, ...], _Shape] = {}
        upsert = _ROLLUP_UPSERT.compile(dialect=dialect)
        self.rollup_sql = upsert.string
        self.rollup_names: tuple[str, ...] | None = tuple(upsert.positiontup or ()) if dialect.positional else None
        """The upsert's parameters in statement order for a positional driver; None: it takes them by name."""
        self.positional = dialect.positional

    def _shape(self, types: tuple[type, ...]) -> _Shape:
        present = [name for name, kind in zip(FIELDS, types, strict=True) if kind is not _NONE]
        dialect, table = self._dialect, self._table
        compiled = insert(table).compile(dialect=dialect, column_keys=present)
        order = compiled.positiontup if dialect.positional else None
        names = tuple(order) if order is not None else tuple(present)
        processors: list[tuple[int, Callable[[Any], Any]]] = []
        for i, name in enumerate(names):
            column_type: Any = table.c[name].type
            process = column_type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors.append((i, process))
        shape = _Shape(compiled.string, tuple(_INDEX[name] for name in names), names, tuple(processors))
        self._shapes[types] = shape
        return shape

    def runs(self, batch: Sequence[LogEntry]) -> list[tuple[str, list[Any]]]:
        """Driver statements and parameters for `batch`, in order: one `INSERT` per run of consecutive rows with the
        same empty fields, each with tuples in statement order (or dicts for named parameter styles)."""
        shapes, positional = self._shapes, self.positional
        out: list[tuple[str, list[Any]]] = []
        current: _Shape | None = None
        rows: list[Any] = []
        for entry in batch:
            values = _values(entry)
            types = tuple(map(type, values))
            shape = shapes.get(types) or self._shape(types)
            if shape is not current:
                current, rows = shape, []
                out.append((shape.sql, rows))
            row = [values[i] for i in shape.picks]
            for i, process in shape.processors:
                row[i] = process(row[i])
            rows.append(tuple(row) if positional else dict(zip(shape.names, row, strict=True)))
        return out

    def sums(self, rows: list[dict[str, Any]]) -> list[Any]:
        """Driver parameters for the rollup's upsert of `rows` (from `rollup`)."""
        names = self.rollup_names
        if names is None:
            return rows
        return [tuple(row[name] for name in names) for row in rows]


_NONE = type(None)
_INDEX = {name: i for i, name in enumerate(FIELDS)}


class RequestLog:
    def __init__(
        self,
        store: SqlStore,
        *,
        interval: float = 0.5,
        batch: int = 512,
        max_buffer: int = 100_000,
        clock: Clock = _utc_now,
        purge_batch: int = 5000,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        bodies: BodyRecorder | None = None,
    ) -> None:
        """`interval`: seconds between flushes; `batch`: rows that make a flush start early, and the most one
        write carries; `sleep`: awaited between flushes (injected in tests); `bodies`: stores the bodies that
        entries carry (without it they are dropped)."""
        self._bodies = bodies
        self._store = store
        self._interval = interval
        self._batch = max(1, batch)
        self._max = max(max_buffer, self._batch)
        self._sleep = sleep
        self._due = anyio.Event()
        """Set when a flush is due: the interval passed, or a batch is full."""
        self._failing = False
        """The last write failed: the next is tried at the next interval, however full the buffer."""
        self._buffer: list[LogEntry] = []
        self.dropped = 0
        self._flushing = anyio.Lock()
        self._insert: _Insert | None = None
        self.written = 0
        self._clock = clock
        self._purge_batch = purge_batch
        self.purged = 0
        """Rows deleted by the retention so far."""
        self.exports: Callable[[LogEntry], None] | None = None
        """Also told of every row as it is recorded (OTLP log export, when telemetry is on)."""

    def record(self, row: LogEntry) -> None:
        """Buffer one row for the next flush; text fields past their bound in `TEXT_LIMITS` are cut in place."""
        # Two length checks on every call: the other fields are bounded where they are made (ids by the hub,
        # names by validation, the rest from fixed sets); when anything is cut, every field is.
        error = row.error
        if len(row.target) > _TARGET or (error is not None and len(error) > _ERROR):
            _cut(row)
        if self.exports is not None:
            self.exports(row)
        buffer = self._buffer
        buffer.append(row)
        if len(buffer) >= self._batch:  # a full batch: `run()` flushes now rather than at the next interval
            if not self._failing:
                self._due.set()
            if len(buffer) > self._max:
                excess = len(buffer) - self._max
                del buffer[:excess]
                self.dropped += excess

    async def run(self) -> None:
        """Flush every `interval` seconds, and whenever a batch is full, until cancelled; flush the rest on the way
        out."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._tick)
                while True:
                    await self._due.wait()
                    self._due = anyio.Event()
                    await self.flush()
        finally:
            with anyio.CancelScope(shield=True):
                await self.flush()

    async def _tick(self) -> None:
        while True:
            await self._sleep(self._interval)
            self._due.set()

    def _write(self, batch: list[LogEntry]) -> None:
        """In a worker thread: turn entries into driver rows and insert them in one `executemany`."""
        engine = self._store.engine
        if self._insert is None:
            self._insert = _Insert(engine)
        statement = self._insert
        runs = statement.runs(batch)
        sums = statement.sums(rollup(batch))
        carried = [(e.call_id, e.ts, e.bodies) for e in batch if e.bodies is not None]
        with engine.begin() as conn:
            # Both statements are the driver's SQL already (no statement compiled or parameters processed per
            # flush); they still go through the connection, for its error handling (a dropped database connection
            # is invalidated, not pooled).
            for sql, rows in runs:
                conn.exec_driver_sql(sql, rows)
            conn.exec_driver_sql(statement.rollup_sql, sums)
            if carried and self._bodies is not None:
                self._write_bodies(conn, carried)

    def _write_bodies(self, conn: Connection, carried: list[tuple[str, datetime, Bodies]]) -> None:
        assert self._bodies is not None
        stored = self._bodies.rows(carried)
        table: Table = RequestLogBodyRow.__table__  # pyright: ignore[reportAttributeAccessIssue]
        conn.execute(
            insert(table),
            [{"call_id": b.call_id, "ts": b.ts, "request": b.request, "response": b.response,
              "truncated": b.truncated} for b in stored],
        )  # fmt: skip

    async def flush(self) -> None:
        """Write what is buffered, at most `batch` rows per write; returns once every entry recorded before the
        call is in the database (a flush already under way is waited for, not overtaken), or a write failed (its
        rows are kept, in order, for the next flush)."""
        async with self._flushing:
            remaining = len(self._buffer)
            while remaining > 0 and self._buffer:
                buffer = self._buffer
                take = min(remaining, self._batch, len(buffer))  # rows dropped meanwhile are not waited for
                if take == len(buffer):
                    batch, self._buffer = buffer, []
                else:
                    batch = buffer[:take]
                    del buffer[:take]
                try:
                    await anyio.to_thread.run_sync(self._write, batch)
                except Exception:
                    logger.exception("request log write failed; keeping %d rows for the next flush", len(batch))
                    self._buffer[:0] = batch
                    self._failing = True
                    return
                self._failing = False
                self.written += take
                remaining -= take

    async def run_retention(
        self,
        keep: timedelta | None,
        interval_s: float,
        *,
        keep_rollup: timedelta | None = None,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Delete rows (and their bodies) older than `keep`, and rollup days older than `keep_rollup`, now and
        then every `interval_s` seconds, until cancelled; returns at once when both are None (keep everything,
        see `hub.governance.periods.parse_retention`). Reports started (for `TaskGroup.start`) once the first purge
        is done. A failed purge is logged and tried again next time."""
        if keep is None and keep_rollup is None:
            task_status.started()
            return
        while True:
            try:
                if keep is not None:
                    await self.purge(keep)
                if keep_rollup is not None:
                    await self.purge_rollup(keep_rollup)
            except Exception:
                logger.exception("request log purge failed; trying again in %ss", interval_s)
            task_status.started()
            task_status = anyio.TASK_STATUS_IGNORED
            await anyio.sleep(interval_s)

    async def purge(self, keep: timedelta) -> int:
        """Delete rows written more than `keep` before the clock's now, and their stored bodies, in batches of at
        most `purge_batch` rows (each a transaction of its own, so a large backlog never holds a long lock);
        returns how many rows went."""
        cutoff = self._clock() - keep
        total = 0
        while True:
            deleted = await anyio.to_thread.run_sync(self._delete_batch, cutoff)
            total += deleted
            self.purged += deleted
            if deleted < self._purge_batch:
                break
        while await anyio.to_thread.run_sync(self._delete_bodies, cutoff) >= self._purge_batch:
            pass
        return total

    async def purge_rollup(self, keep: timedelta) -> int:
        """Delete the rollup's days that ended more than `keep` before the clock's now (a few rows per day, one
        statement); returns how many rows went."""
        first_kept = (self._clock() - keep).astimezone(UTC).date().isoformat()
        return await anyio.to_thread.run_sync(self._delete_rollup, first_kept)

    def _delete_batch(self, cutoff: datetime) -> int:
        with self._store.engine.begin() as conn:
            return conn.execute(purge_statement(cutoff, self._purge_batch)).rowcount

    def _delete_bodies(self, cutoff: datetime) -> int:
        with self._store.engine.begin() as conn:
            return conn.execute(purge_bodies_statement(cutoff, self._purge_batch)).rowcount

    def _delete_rollup(self, first_kept: str) -> int:
        with self._store.engine.begin() as conn:
            return conn.execute(delete(RequestLogDailyRow).where(col(RequestLogDailyRow.day) < first_kept)).rowcount

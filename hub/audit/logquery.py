"""Reading the request log at scale: filters, keyset pages, a bounded total, call trees and exports.

Every query is shaped so that an index answers it (schema version 4, `hub.store.tables.REQUEST_LOG_INDEXES`):
an equality filter and the time range walk one `(column, ts)` index newest first, and `LIMIT` stops the walk
after one page; the next page starts where the last ended (keyset on `(ts, id)`, carried in an opaque cursor),
so page 1000 costs what page 1 costs and rows written meanwhile neither repeat nor shift a page. The total is a
capped count (`count_query`): exact up to `TOTAL_CAP` rows, "at least `TOTAL_CAP`" beyond, so it never walks
more than `TOTAL_CAP` index entries of the filtered range; with a threshold filter (`min_latency_ms`,
`min_cost_usd`), which no index serves, it tests at most the newest `SCAN_CAP` rows the indexed filters select
and says "at least" when there were more. Summaries read the daily rollup (`logsummary`).

Functions here are synchronous (run them in a worker thread or in the CLI) and take the engine to read.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select
from sqlalchemy.engine import Engine, RowMapping
from sqlmodel import col

from hub.governance.periods import parse_retention
from hub.store.tables import RequestLogBodyRow, RequestLogRow

TOTAL_CAP = 10_000
"""The most rows a total counts; past it the total reads "at least 10000"."""

SCAN_CAP = 50_000
"""The most rows a total with a threshold filter tests."""

MAX_LIMIT = 500
"""The largest page."""

MAX_TREE = 1000
"""The most calls one call tree shows (a Code Mode run may make thousands); the tree says when it stopped."""

_T = RequestLogRow
_TS, _ID = col(_T.ts), col(_T.id)
_TABLE: Any = _T.__table__  # pyright: ignore[reportAttributeAccessIssue]

EQUALITY = {
    "key": "key_id", "team": "team", "customer": "customer", "door": "door", "operation": "operation",
    "model": "model", "server": "server", "tool": "tool", "outcome": "outcome",
}  # fmt: skip
"""Query parameter -> column, for the filters that match a value exactly."""


class BadFilter(ValueError):
    """A filter, cursor or limit that cannot be read; the message says which and why."""


@dataclass(frozen=True, slots=True)
class LogFilter:
    """What `GET /api/v1/logs` and `agenthub logs export` select: a time range and any of the filters."""

    since: datetime | None = None
    until: datetime | None = None
    key: str | None = None
    team: str | None = None
    customer: str | None = None
    door: str | None = None
    operation: str | None = None
    model: str | None = None
    server: str | None = None
    tool: str | None = None
    status: int | None = None
    outcome: str | None = None
    min_latency_ms: float | None = None
    min_cost_usd: float | None = None
    loop: str | None = None
    """A loop's calls: the outermost call and every call nested in it."""


FILTER_NAMES = frozenset(f.name for f in fields(LogFilter))


def parse_time(text: str, now: datetime, name: str) -> datetime:
    """An RFC 3339 instant (`2026-12-07T10:00:00Z`; without an offset, UTC) or a span back from `now` (`24h`,
    `7d`, `30m`), as an aware UTC datetime.

    Raises:
        BadFilter: neither.
    """
    text = text.strip()
    try:
        if text and text[-1] in "smhd" and text[:-1].isdigit():
            return now - (parse_retention(text) or timedelta(0))
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadFilter(
            f"{name} must be an RFC 3339 time (2026-12-07T10:00:00Z) or a span back from now (24h, 7d, 30m);"
            f" got {text!r}"
        ) from None


def _number(params: Mapping[str, str], name: str, kind: type[int] | type[float]) -> Any:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value = kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise BadFilter(f"{name} must be {what}; got {raw!r}") from None
    if value != value or value < 0:  # NaN or negative
        raise BadFilter(f"{name} must be zero or more; got {raw!r}")
    return value


def parse_filter(params: Mapping[str, str], now: datetime) -> LogFilter:
    """The filter that query parameters ask for (unknown parameters are the caller's to refuse).

    Raises:
        BadFilter: a value cannot be read, or the range ends before it starts.
    """
    since = parse_time(params["since"], now, "since") if "since" in params else None
    until = parse_time(params["until"], now, "until") if "until" in params else None
    if since is not None and until is not None and until < since:
        raise BadFilter("until must not be before since")
    text: dict[str, str | None] = {}
    for name in EQUALITY:
        value = params.get(name)
        if value is not None and (not value or len(value) > 256):
            raise BadFilter(f"{name} must be 1 to 256 characters")
        text[name] = value
    status = _number(params, "status", int)
    if status is not None and not 100 <= status <= 599:
        raise BadFilter(f"status must be an HTTP status (100 to 599); got {status}")
    loop = params.get("loop")
    if loop is not None and (not loop or len(loop) > 64):
        raise BadFilter("loop must be a call id")
    return LogFilter(
        since=since, until=until, status=status, loop=loop,
        min_latency_ms=_number(params, "min_latency_ms", float), min_cost_usd=_number(params, "min_cost_usd", float),
        **text,
    )  # fmt: skip


def _utc(when: datetime) -> datetime:
    """A time as the column binds it: aware, in UTC (`timestamptz` on PostgreSQL; on SQLite the same text the
    flush wrote, so comparisons are the index's order)."""
    return when.astimezone(UTC)


def conditions(f: LogFilter) -> list[ColumnElement[bool]]:
    """The WHERE terms of a filter."""
    terms: list[ColumnElement[bool]] = []
    if f.since is not None:
        terms.append(_TS >= _utc(f.since))
    if f.until is not None:
        terms.append(_TS < _utc(f.until))
    for name, column in EQUALITY.items():
        value = getattr(f, name)
        if value is not None:
            terms.append(_TABLE.c[column] == value)
    if f.status is not None:
        terms.append(col(_T.status) == f.status)
    if f.min_latency_ms is not None:
        terms.append(col(_T.latency_ms) >= f.min_latency_ms)
    if f.min_cost_usd is not None:
        terms.append(col(_T.cost_usd) >= f.min_cost_usd)
    if f.loop is not None:
        terms.append(or_(col(_T.loop_id) == f.loop, col(_T.call_id) == f.loop))
    return terms


# -- cursors -----------------------------------------------------------------------------------------------


def encode_cursor(ts: datetime, row_id: int) -> str:
    """An opaque cursor: the `(ts, id)` of the last row of a page."""
    raw = orjson.dumps([ts.isoformat(), row_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The `(ts, id)` an `encode_cursor` cursor holds.

    Raises:
        BadFilter: not a cursor this API gave out.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts_text, row_id = orjson.loads(raw)
        ts = datetime.fromisoformat(ts_text)
        if not isinstance(row_id, int) or isinstance(row_id, bool):
            raise TypeError
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise BadFilter("cursor is not one this API returned") from None
    return (ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)), row_id


# -- reading -----------------------------------------------------------------------------------------------


def page_query(f: LogFilter, limit: int, cursor: str | None = None) -> Select[Any]:
    """Newest first, `limit` rows after `cursor` (plus one, to know whether another page follows)."""
    terms = conditions(f)
    if cursor is not None:
        ts, row_id = decode_cursor(cursor)
        terms.append(_TS <= ts)  # the range bound the index walks; the tie on ts is broken by id
        terms.append(or_(_TS < ts, _ID < row_id))
    return select(_TABLE).where(and_(*terms)).order_by(_TS.desc(), _ID.desc()).limit(limit + 1)


def count_query(f: LogFilter, cap: int = TOTAL_CAP, scan: int = SCAN_CAP) -> Select[int, Any]:
    """`(rows tested, rows matching)`: without a threshold filter every tested row matches and at most `cap + 1`
    are; with one, the newest `scan` rows of the other filters are tested."""
    if f.min_latency_ms is None and f.min_cost_usd is None:
        inner = select(_ID).where(and_(*conditions(f))).limit(cap + 1).subquery()
        return select(func.count(), func.count()).select_from(inner)
    indexed = conditions(replace(f, min_latency_ms=None, min_cost_usd=None))
    threshold = and_(*conditions(LogFilter(min_latency_ms=f.min_latency_ms, min_cost_usd=f.min_cost_usd)))
    hit = case((threshold, 1), else_=0).label("hit")
    tested = select(hit).where(and_(*indexed)).order_by(_TS.desc()).limit(scan).subquery()
    return select(func.count(), func.coalesce(func.sum(tested.c.hit), 0)).select_from(tested)


def total_of(tested: int, matching: int, cap: int = TOTAL_CAP, scan: int = SCAN_CAP) -> tuple[int, bool]:
    """`(total, exact)` from a `count_query` answer: exact when the count stopped neither at `cap` nor at `scan`."""
    return min(matching, cap), matching <= cap and tested < scan


def row_view(row: RowMapping) -> dict[str, Any]:
    """A row as the API shows it (times in RFC 3339, UTC)."""
    out = {name: row[name] for name in _TABLE.c.keys()}
    ts: datetime = out["ts"]
    out["ts"] = (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).isoformat().replace("+00:00", "Z")
    return out


@dataclass(frozen=True, slots=True)
class Page:
    data: list[dict[str, Any]]
    next_cursor: str | None
    total: int
    total_exact: bool


def read_page(
    engine: Engine, f: LogFilter, limit: int, cursor: str | None = None, *, total: bool = True, cap: int = TOTAL_CAP
) -> Page:
    """One page of rows and the total counted up to `cap`, in one read transaction."""
    with engine.connect() as conn:
        rows = list(conn.execute(page_query(f, limit, cursor)).mappings())
        tested, matching = tuple(conn.execute(count_query(f, cap)).one()) if total else (0, 0)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["ts"], rows[-1]["id"]) if more else None
    counted, exact = total_of(int(tested), int(matching), cap)
    return Page([row_view(r) for r in rows], next_cursor, counted, exact)


def call_tree(engine: Engine, call_id: str, max_calls: int = MAX_TREE) -> dict[str, Any] | None:
    """The call and every call whose parent chain leads to it (Agent Mode turns and tool runs, Code Mode inner
    calls), nested under `children`, oldest first; bodies when stored. None when no row has this call id.

    Walks the tree one level per query through the `parent_id` index, so old rows (without a loop id) have
    their trees too; stops at `max_calls` calls and says so (`truncated`)."""
    with engine.connect() as conn:
        root = conn.execute(select(_TABLE).where(col(_T.call_id) == call_id).limit(1)).mappings().first()
        if root is None:
            return None
        nodes: dict[str, dict[str, Any]] = {call_id: {**row_view(root), "children": []}}
        level, truncated = [call_id], False
        while level and not truncated:
            query = select(_TABLE).where(col(_T.parent_id).in_(level)).order_by(_TS, _ID).limit(max_calls + 1)
            found = list(conn.execute(query).mappings())
            level = []
            for row in found:
                if len(nodes) >= max_calls:
                    truncated = True
                    break
                node = {**row_view(row), "children": []}
                nodes[row["call_id"]] = node
                nodes[row["parent_id"]]["children"].append(node)
                level.append(row["call_id"])
        bodies = _bodies(conn, list(nodes))
    for key, node in nodes.items():
        if key in bodies:
            node["bodies"] = bodies[key]
    return {**nodes[call_id], "calls": len(nodes), "truncated": truncated}


def _bodies(conn: Any, call_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    table: Any = RequestLogBodyRow.__table__  # pyright: ignore[reportAttributeAccessIssue]
    for start in range(0, len(call_ids), 500):
        chunk = call_ids[start : start + 500]
        for row in conn.execute(select(table).where(table.c.call_id.in_(chunk))).mappings():
            out[row["call_id"]] = {name: row[name] for name in ("request", "response", "truncated")}
    return out


def export_rows(engine: Engine, f: LogFilter, batch: int = 1000) -> Iterator[dict[str, Any]]:
    """Every matching row, oldest first, read `batch` rows at a time (keyset, one short query each: memory stays
    flat and no read transaction is held open between batches)."""
    after: tuple[datetime, int] | None = None
    terms = conditions(f)
    while True:
        where = list(terms)
        if after is not None:
            where += [_TS >= after[0], or_(_TS > after[0], _ID > after[1])]
        query = select(_TABLE).where(and_(*where)).order_by(_TS, _ID).limit(batch)
        with engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
        for row in rows:
            yield row_view(row)
        if len(rows) < batch:
            return
        after = (rows[-1]["ts"], rows[-1]["id"])


def rows_after(engine: Engine, after_id: int, limit: int = 1000) -> list[dict[str, Any]]:
    """Rows with an id past `after_id`, in id order (for `agenthub logs tail`)."""
    query = select(_TABLE).where(_ID > after_id).order_by(_ID).limit(limit)
    with engine.connect() as conn:
        return [row_view(r) for r in conn.execute(query).mappings()]


def last_id(engine: Engine) -> int:
    """The highest row id so far (0 for an empty log)."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.max(_ID))).scalar_one() or 0)

"""Reading the request log at scale: filters, keyset pages, a bounded total, call trees and exports.

Every page and every total reads a bounded stretch of one index, whatever the filters, so no combination of them
walks the table (schema version 5, `hub.store.tables.REQUEST_LOG_INDEXES`). One filter drives: of those an index
serves (`DRIVERS`, most selective first: the loop, the key, the tool...), the first one given; the time range and
the cursor bound the same index range, which is walked newest first. When nothing else is asked, every row of
that walk matches, and `LIMIT` stops it after one page. The other filters (a second or third equality, a status,
the latency and cost thresholds) are tested on the rows of the walk, which reads at most `SCAN_CAP` rows: a page
holds the matches among them and, when the walk stopped at the cap before the page was full, a `next_cursor`
that resumes where the walk stopped, so a page may hold fewer rows than asked, or none, and still be followed by
another. A rare combination is found page by page at a bounded cost each, never by one query that reads millions
of rows (the database cannot know that a team and a model rarely meet, and nothing short of an index per pair
could).

Pages are keyset on `(ts, id)`, carried in an opaque cursor, so page 1000 costs what page 1 costs and rows
written meanwhile neither repeat nor shift a page. The total is a capped count (`count_query`): with the driving
filter alone, exact up to `TOTAL_CAP` rows and "at least `TOTAL_CAP`" beyond; with other filters to test, the
matches among the newest `SCAN_CAP` rows of the driving filter, "at least" that many when there were more. It is
counted with the first page and carried in the cursor, so a later page costs its walk alone and reports the total
as it was when the listing began. Summaries read the daily rollup (`logsummary`).

Functions here are synchronous (run them in a worker thread or in the CLI) and take the engine to read.
"""

from __future__ import annotations

import base64
import binascii
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Select, TextClause, and_, case, func, literal, or_, select, text
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlmodel import col

from hub.governance.periods import parse_retention
from hub.store.tables import FAILED, RequestLogBodyRow, RequestLogRow

TOTAL_CAP = 10_000
"""The most rows a total counts; past it the total reads "at least 10000"."""

SCAN_CAP = 3_000
"""The most rows of the driving filter's index range that one page, or one total, tests against the other
filters."""

MAX_LIMIT = 500
"""The largest page."""

MAX_TREE = 1000
"""The most calls one call tree shows (a Code Mode run may make thousands); the tree says when it stopped."""

_T = RequestLogRow
_TS, _ID = col(_T.ts), col(_T.id)
_TABLE: Any = _T.__table__  # pyright: ignore[reportAttributeAccessIssue]
_EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
"""Before every row: the lower bound of a walk whose range has fewer rows than it may read."""

EQUALITY = {
    "key": "key_id", "team": "team", "customer": "customer", "door": "door", "operation": "operation",
    "model": "model", "server": "server", "tool": "tool", "outcome": "outcome",
}  # fmt: skip
"""Query parameter -> column, for the filters that match a value exactly."""

DRIVERS = ("loop", "key", "tool", "model", "server", "failed", "team", "customer", "operation", "door")
"""The filters an index serves in time order, in the order one is chosen to drive a query: the one that usually
selects the fewest rows first (a loop has a few calls; a key, a tool or a model a small share of the traffic;
failed calls, asked for by a status other than 200 or an outcome other than `ok`, are few; a door or an
operation many). Without any, the `ts` index drives."""


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


def _range(f: LogFilter, c: Any) -> list[ColumnElement[bool]]:
    terms: list[ColumnElement[bool]] = []
    if f.since is not None:
        terms.append(c.ts >= _utc(f.since))
    if f.until is not None:
        terms.append(c.ts < _utc(f.until))
    return terms


def _failed(f: LogFilter) -> bool:
    """Whether the filter asks only for calls that did not end well (the rows `FAILED` holds)."""
    return (f.status is not None and f.status != 200) or (f.outcome is not None and f.outcome != "ok")


def driver(f: LogFilter) -> str | None:
    """The filter that drives the query (one of `DRIVERS`), or None for the time range alone."""
    for name in DRIVERS:
        if _failed(f) if name == "failed" else getattr(f, name) is not None:
            return name
    return None


def _terms(f: LogFilter, c: Any, names: frozenset[str] | None) -> list[ColumnElement[bool]]:
    """The terms of the filters in `names` (every filter but the time range when None), over columns `c`."""
    terms: list[ColumnElement[bool]] = []

    def wanted(name: str) -> bool:
        return names is None or name in names

    for name, column in EQUALITY.items():
        value = getattr(f, name)
        if value is not None and wanted(name):
            terms.append(c[column] == value)
    if f.status is not None and wanted("status"):
        terms.append(c.status == f.status)
    if f.min_latency_ms is not None and wanted("min_latency_ms"):
        terms.append(c.latency_ms >= f.min_latency_ms)
    if f.min_cost_usd is not None and wanted("min_cost_usd"):
        terms.append(c.cost_usd >= f.min_cost_usd)
    if f.loop is not None and wanted("loop"):
        terms.append(or_(c.loop_id == f.loop, c.call_id == f.loop))
    return terms


def conditions(f: LogFilter) -> list[ColumnElement[bool]]:
    """The WHERE terms of a filter, all of them (an export, which reads every match, walks the whole range)."""
    return _range(f, _TABLE.c) + _terms(f, _TABLE.c, None)


def _ts(op: Callable[[Any, Any], ColumnElement[bool]], bound: Any) -> ColumnElement[bool]:
    """A bound on `ts` (a time, or an expression)."""
    return op(_TS, bound if isinstance(bound, ColumnElement) else literal(bound, _TABLE.c.ts.type))


@dataclass(frozen=True, slots=True)
class Plan:
    """How a filter is read: the index range walked, and the filters tested on its rows."""

    drive: list[ColumnElement[bool] | TextClause]
    """The driving filter; for failed calls, `FAILED` word for word (the partial index's predicate, which the
    database must see to use that index)."""
    rest: frozenset[str]
    """The filters tested on the rows of the walk (empty: every row of the walk matches)."""
    since: datetime | None
    until: datetime | None

    def range(self, cursor: str | None = None, cut: Any = None) -> list[ColumnElement[bool]]:
        """The bounds on `ts` of a walk: after `cursor`, within the range, and not below `cut` (an expression,
        NULL for none). One term per end, the tighter of the candidates: given two, SQLite may walk from or to
        the looser one."""
        terms: list[ColumnElement[bool]] = []
        if cut is not None:
            terms.append(_ts(operator.ge, func.coalesce(cut, literal(self.since or _EARLIEST, _TABLE.c.ts.type))))
        elif self.since is not None:
            terms.append(_ts(operator.ge, self.since))
        position = None if cursor is None else decode_cursor(cursor)
        if position is not None and (self.until is None or position[0] < self.until):
            ts, row_id = position
            terms += [_ts(operator.le, ts), or_(_TS < ts, _ID < row_id)]  # ties on ts broken by id
        elif self.until is not None:
            terms.append(_ts(operator.lt, self.until))
        return terms


def plan(f: LogFilter) -> Plan:
    """Which index range a filter walks and which filters remain to test (see `DRIVERS`)."""
    given = {fd.name for fd in fields(LogFilter) if fd.name not in ("since", "until")}
    given = {name for name in given if getattr(f, name) is not None}
    chosen = driver(f)
    drive: list[ColumnElement[bool] | TextClause] = []
    if chosen == "failed":
        drive.append(text(f"({FAILED})"))
    elif chosen is not None:
        drive += _terms(f, _TABLE.c, frozenset({chosen}))
        given.discard(chosen)
    since, until = (None if t is None else _utc(t) for t in (f.since, f.until))
    return Plan(drive, frozenset(given), since, until)


# -- cursors -----------------------------------------------------------------------------------------------


def encode_cursor(ts: datetime, row_id: int, total: tuple[int, bool] | None = None) -> str:
    """An opaque cursor: the `(ts, id)` of the last row of a page, and the filter's `(total, exact)` when the first
    page counted it (a later page reports it again instead of counting again)."""
    raw = orjson.dumps([ts.isoformat(), row_id] if total is None else [ts.isoformat(), row_id, *total])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_cursor(cursor: str) -> tuple[datetime, int, tuple[int, bool] | None]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts_text, row_id, *rest = orjson.loads(raw)
        ts = datetime.fromisoformat(ts_text)
        if not isinstance(row_id, int) or isinstance(row_id, bool):
            raise TypeError
        carried: tuple[int, bool] | None = None
        if rest:
            counted, exact = rest
            if not isinstance(counted, int) or isinstance(counted, bool) or counted < 0 or not isinstance(exact, bool):
                raise TypeError
            carried = (counted, exact)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise BadFilter("cursor is not one this API returned") from None
    return (ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)), row_id, carried


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The `(ts, id)` an `encode_cursor` cursor holds.

    Raises:
        BadFilter: not a cursor this API gave out.
    """
    ts, row_id, _ = _read_cursor(cursor)
    return ts, row_id


def cursor_total(cursor: str) -> tuple[int, bool] | None:
    """The `(total, exact)` a cursor carries from the first page, None when it carries none.

    Raises:
        BadFilter: not a cursor this API gave out.
    """
    return _read_cursor(cursor)[2]


# -- reading -----------------------------------------------------------------------------------------------


def _edge(p: Plan, cursor: str | None, scan: int) -> Select[Any]:
    """The `ts` of the `scan`-th row of the walk (after `cursor`): read from the driving index alone."""
    where = [*p.drive, *p.range(cursor)]
    return select(_TS).where(and_(*where)).order_by(_TS.desc()).offset(scan - 1).limit(1)


def _walk(p: Plan, cursor: str | None, scan: int) -> list[ColumnElement[bool] | TextClause]:
    """The terms of a walk that reads at most `scan` rows of the driving index (and the rows that share the last
    one's `ts`): the driving range, cut at the `ts` of its `scan`-th row when it has that many."""
    return [*p.drive, *p.range(cursor, _edge(p, cursor, scan).scalar_subquery())]


def _tested(f: LogFilter, p: Plan) -> ColumnElement[bool]:
    """The filters left to test, as one term that no index serves, so that the database walks the driving index
    and no other (a second equality, served by its own index, could otherwise tempt the planner into a walk of
    millions of rows)."""
    return case((and_(*_terms(f, _TABLE.c, p.rest)), 1), else_=0) == 1


def page_query(f: LogFilter, limit: int, cursor: str | None = None, scan: int = SCAN_CAP) -> Select[Any]:
    """Newest first, `limit` rows after `cursor` (plus one, to know whether another page follows), among the
    first `scan` rows of the driving filter's walk when other filters remain to test."""
    p = plan(f)
    where = _walk(p, cursor, scan) + [_tested(f, p)] if p.rest else [*p.drive, *p.range(cursor)]
    return select(_TABLE).where(and_(*where)).order_by(_TS.desc(), _ID.desc()).limit(limit + 1)


def edge_query(f: LogFilter, cursor: str | None = None, scan: int = SCAN_CAP) -> Select[Any]:
    """The `ts` of the last row a page's walk reads when it reads `scan` rows (no row when the range ends before):
    a page that found fewer matches than asked ends there, and the next resumes past every row with that `ts`."""
    return _edge(plan(f), cursor, scan)


def count_query(f: LogFilter, cap: int = TOTAL_CAP, scan: int = SCAN_CAP) -> Select[int, Any]:
    """`(rows tested, rows matching)`: with the driving filter alone every tested row matches and at most
    `cap + 1` are; otherwise the newest `scan` rows of the driving filter are tested against the rest. Both read
    newest first and stop at their count, so no plan counts through a scan of the table (one that misjudged how
    many rows the range holds could), and, by `ts` alone, from the index's entries where no other column is
    tested."""
    p = plan(f)
    if not p.rest:
        inner = select(_TS).where(and_(*p.drive, *p.range())).order_by(_TS.desc()).limit(cap + 1).subquery()
        return select(func.count(), func.count()).select_from(inner)
    hit = case((and_(*_terms(f, _TABLE.c, p.rest)), 1), else_=0).label("hit")
    tested = select(hit).where(and_(*_walk(p, None, scan))).order_by(_TS.desc()).limit(scan).subquery()
    return select(func.count(), func.coalesce(func.sum(tested.c.hit), 0)).select_from(tested)


def walked_query(f: LogFilter, scan: int = SCAN_CAP) -> Select[int]:
    """How many rows the first page's walk reads: from the driving index alone (its entries, not the rows)."""
    p = plan(f)
    inner = select(_TS).where(and_(*_walk(p, None, scan))).order_by(_TS.desc()).limit(scan).subquery()
    return select(func.count()).select_from(inner)


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


def settle(conn: Connection) -> None:
    """Settings for the read transaction of a page (PostgreSQL; SQLite needs none)."""
    if conn.dialect.name == "postgresql":
        # A page reads a few thousand rows at most: parallel workers and JIT compilation only add their
        # start-up. The driving index's rows lie scattered over the table; at the default random_page_cost
        # (4, for spinning disks) the planner would rather walk the `ts` index, in the table's own order, and
        # read fifty times the rows; 1.1 is the cost of a random read on SSD storage or a cached table.
        conn.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
        conn.execute(text("SET LOCAL jit = off"))
        conn.execute(text("SET LOCAL random_page_cost = 1.1"))


def read_page(
    engine: Engine,
    f: LogFilter,
    limit: int,
    cursor: str | None = None,
    *,
    total: bool = True,
    cap: int = TOTAL_CAP,
    scan: int = SCAN_CAP,
) -> Page:
    """One page of rows and the total counted up to `cap`, in one read transaction. When other filters than the
    driving one remain to test and the walk read `scan` rows without filling the page, the page ends there: its
    cursor resumes the walk after the last row read. The total is the filter's, whatever the page: the first page
    counts it and its cursor carries it on, so a later page reports it again without counting (a client that
    asked for no total on the first page gets it counted on the first later page that asks)."""
    carried = None if cursor is None or not total else cursor_total(cursor)
    counted: tuple[int, bool] | None = carried
    with engine.connect() as conn:
        settle(conn)
        rows = list(conn.execute(page_query(f, limit, cursor, scan)).mappings())
        more = len(rows) > limit
        rows = rows[:limit]
        resume: tuple[datetime, int] | None = (rows[-1]["ts"], rows[-1]["id"]) if more else None
        if not more and plan(f).rest:
            edge = conn.execute(edge_query(f, cursor, scan)).scalar()
            resume = None if edge is None else (edge, 0)  # ids start at 1: past every row at `edge`
            if total and cursor is None:  # the page holds every match of the walk: the total needs only its length
                counted = total_of(int(conn.execute(walked_query(f, scan)).scalar_one()), len(rows), cap, scan)
        if total and counted is None:
            tested, matching = tuple(conn.execute(count_query(f, cap, scan)).one())
            counted = total_of(int(tested), int(matching), cap, scan)
    next_cursor = None if resume is None else encode_cursor(*resume, counted)
    shown, exact = counted or (0, True)
    return Page([row_view(r) for r in rows], next_cursor, shown, exact)


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

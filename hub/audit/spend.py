"""What each key, team and customer spent since some instant, read back from the request log.

The request log is the durable record of every priced call's cost, so it is where budgets come back from after a
restart (`hub.governance.seed`). A window is read in up to three parts: its whole UTC days from the daily rollup
(`request_log_daily`, a row per day and entity, written in the same transaction as the raw rows), and the partial
days at either end (before the first midnight, and today) from the raw rows. So a month's budget costs about thirty
rollup rows and today's calls per entity, not every call of the month, and the raw log's shorter retention
(`[hub] request_log_retention`) does not shorten what a budget remembers.

Queries go out grouped, never one per entity: entities whose parts have the same bounds share one statement,
`... WHERE column IN (...) AND ts >= ? AND ts < ? GROUP BY column`, which the `(column, ts)` indexes of
`request_log` (and `(dim, day)` of the rollup) answer with one short index walk per entity.

One case is read differently: a customer's spend through the keys that inherit it from their team (their rows name
the team and no customer). The rollup cannot tell those rows apart, so they come from the raw rows of the whole
window; for the days the raw log no longer holds, the team's rollup days stand in (counting also that team's keys
that name a customer of their own: an over-count, never an under-count). What cannot be recovered at all is the
part of a window's first day before its start once the raw rows of that day are purged; docs/governance.md says so.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import col

from hub.governance.seed import SpendQuery
from hub.store.tables import RequestLogDailyRow, RequestLogRow

__all__ = ["window_spend"]

_DIMS = {"key_id": "key", "team": "team", "customer": "customer"}
"""Request-log column -> the rollup's dimension of the same values."""

_DAY = timedelta(days=1)
_IN = 500
"""The most values named in an `IN (...)` list (well under every driver's parameter limit); for more entities, one
statement reads every entity's sum in the span and the ones asked for are picked out (a single walk of the span,
where lists of 500 would walk it once per list)."""

_Raw = tuple[str, bool, datetime, datetime]
"""Column, rows without a customer only, from, until."""
_Rolled = tuple[str, str, str]
"""Rollup dimension, first day, day after the last (ISO dates)."""


def _midnight(instant: datetime) -> datetime:
    return instant.replace(hour=0, minute=0, second=0, microsecond=0)


def _next_midnight(instant: datetime) -> datetime:
    """`instant` itself when it is a UTC midnight, else the UTC midnight after it."""
    midnight = _midnight(instant)
    return midnight if midnight == instant else midnight + _DAY


def _plan(
    queries: Sequence[SpendQuery], until: datetime, keep: timedelta | None
) -> tuple[dict[_Raw, list[int]], dict[_Rolled, list[int]]]:
    """Which query needs which raw span and which rollup days, grouped by identical bounds."""
    raw: dict[_Raw, list[int]] = defaultdict(list)
    rolled: dict[_Rolled, list[int]] = defaultdict(list)
    today = _midnight(until)
    purged_before = None if keep is None else _next_midnight(until - keep)
    for index, query in enumerate(queries):
        since = datetime.fromtimestamp(query.start, UTC)
        first = _next_midnight(since)
        if query.unattributed:
            if purged_before is not None and since < purged_before:
                if first < purged_before:
                    rolled[("team", first.date().isoformat(), purged_before.date().isoformat())].append(index)
                since = purged_before
            spans = [(since, until)]
        elif first < today:
            rolled[(_DIMS[query.column], first.date().isoformat(), today.date().isoformat())].append(index)
            spans = [(since, first), (today, until)]
        else:
            spans = [(since, until)]
        for start, end in spans:
            if start < end:
                raw[(query.column, query.unattributed, start, end)].append(index)
    return raw, rolled


def _raw_sums(conn: Connection, span: _Raw, values: list[str]) -> dict[str, float]:
    column_name, unattributed, since, until = span
    c = RequestLogRow
    column = col(getattr(c, column_name))
    terms = [column.in_(values) if len(values) <= _IN else column.is_not(None), col(c.ts) >= since, col(c.ts) < until]
    if unattributed:
        terms.append(col(c.customer).is_(None))
    statement = select(column, func.sum(col(c.cost_usd))).where(*terms).group_by(column)
    return {value: total or 0.0 for value, total in conn.execute(statement)}


def _rolled_sums(conn: Connection, days: _Rolled, values: list[str]) -> dict[str, float]:
    dim, first, end = days
    r = RequestLogDailyRow
    terms = [col(r.dim) == dim, col(r.day) >= first, col(r.day) < end]
    if len(values) <= _IN:
        terms.append(col(r.value).in_(values))
    statement = select(col(r.value), func.sum(col(r.cost_usd))).where(*terms).group_by(col(r.value))
    return {value: total or 0.0 for value, total in conn.execute(statement)}


def window_spend(
    engine: Engine, queries: Sequence[SpendQuery], now: float, *, keep: timedelta | None = None
) -> list[float]:
    """US dollars each query's entity spent from the query's start up to `now` (Unix seconds), in one connection.

    `keep` is the raw log's retention (None: forever); it matters only for customers' spend through their teams.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database failed.
    """
    raw, rolled = _plan(queries, datetime.fromtimestamp(now, UTC), keep)
    totals = [0.0] * len(queries)
    with engine.connect() as conn:
        for span, indexes in raw.items():
            sums = _raw_sums(conn, span, sorted({queries[i].value for i in indexes}))
            for i in indexes:
                totals[i] += sums.get(queries[i].value, 0.0)
        for days, indexes in rolled.items():
            sums = _rolled_sums(conn, days, sorted({queries[i].value for i in indexes}))
            for i in indexes:
                totals[i] += sums.get(queries[i].value, 0.0)
    return totals

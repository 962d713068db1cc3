"""Spend and volume summaries from the daily rollup (`request_log_daily`), never from the raw request log.

The flush adds each batch's calls, errors, tokens and cost per UTC day and per key, team, customer, model and
server, so a summary over a year reads at most a few rows per day and entity, whatever the traffic. The range is
whole UTC days: a range starting or ending inside a day counts that whole day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from hub.audit.requestlog import ROLLUP_DIMS
from hub.store.tables import RequestLogDailyRow

_D = RequestLogDailyRow


@dataclass(frozen=True, slots=True)
class Summary:
    by: str
    since: date
    until: date
    data: list[dict[str, Any]]
    """One entry per day (`by=day`, oldest first) or per entity (highest spend first)."""


def summarize(engine: Engine, by: str, since: date, until: date, limit: int = 1000) -> Summary:
    """Calls, errors, tokens and cost per `by` (one of `ROLLUP_DIMS`) over the days `since` to `until`
    inclusive."""
    assert by in ROLLUP_DIMS
    group = col(_D.day) if by == "day" else col(_D.value)
    cost = func.sum(col(_D.cost_usd))
    query = (
        select(group, func.sum(col(_D.calls)), func.sum(col(_D.errors)), func.sum(col(_D.tokens)), cost)
        .where(col(_D.dim) == by, col(_D.day) >= since.isoformat(), col(_D.day) <= until.isoformat())
        .group_by(group)
        .order_by(group if by == "day" else cost.desc(), group)
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    name = "day" if by == "day" else by
    data = [
        {name: value, "calls": int(calls), "errors": int(errors), "tokens": int(tokens), "cost_usd": float(usd)}
        for value, calls, errors, tokens, usd in rows
    ]
    return Summary(by, since, until, data)

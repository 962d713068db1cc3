"""The overview: traffic, errors and spend per day (the log API's daily rollup, so the page costs the same at ten
million rows as at ten), latency and the hub's own overhead over the latest calls, and upstream health. Charts
are SVG drawn on the server."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from hub.console.bridge import api_path
from hub.console.common import UI_PREFIX
from hub.console.web import Console, Page

DAYS = 14
RECENT = 200
"""The latest calls that latency and overhead are measured over."""


@dataclass(frozen=True)
class Bar:
    """One bar of a chart, in SVG units."""

    x: float
    y: float
    width: float
    height: float
    label: str
    value: float


def bars(values: list[tuple[str, float]], width: float = 560, height: float = 120) -> list[Bar]:
    """Bars scaled to the largest value (a chart of zeros has no bars)."""
    top = max((v for _label, v in values), default=0)
    if not values or top <= 0:
        return []
    step = width / len(values)
    out: list[Bar] = []
    for i, (label, value) in enumerate(values):
        h = height * value / top
        out.append(Bar(round(i * step + 2, 1), round(height - h, 1), round(step - 4, 1), round(h, 1), label, value))
    return out


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def daily(rows: list[dict[str, Any]], today: date) -> list[dict[str, Any]]:
    """One entry per day of the last `DAYS` days, zero where the rollup has none."""
    by_day = {str(r["day"]): r for r in rows}
    out: list[dict[str, Any]] = []
    for back in range(DAYS - 1, -1, -1):
        day = (today - timedelta(days=back)).isoformat()
        row = by_day.get(day, {})
        out.append({"day": day, "calls": row.get("calls", 0), "errors": row.get("errors", 0),
                    "cost_usd": row.get("cost_usd", 0.0)})  # fmt: skip
    return out


async def overview(console: Console, page: Page) -> Response:
    today = datetime.now(UTC).date()
    since = min(today.replace(day=1), today - timedelta(days=DAYS - 1))
    summary = await console.api(
        page, "GET", api_path("logs", "summary"), query={"by": "day", "since": since.isoformat()}
    )
    if not summary.ok:
        return console.refused(page, summary)
    rows: list[dict[str, Any]] = summary.json()["data"]
    month = today.replace(day=1).isoformat()
    spend_today = sum(float(r["cost_usd"]) for r in rows if str(r["day"]) == today.isoformat())
    spend_month = sum(float(r["cost_usd"]) for r in rows if str(r["day"]) >= month)
    days = daily(rows, today)
    recent = await console.api(page, "GET", api_path("logs"), query={"limit": str(RECENT), "total": "false"})
    if not recent.ok:
        return console.refused(page, recent)
    calls: list[dict[str, Any]] = recent.json()["data"]
    latency = [float(c["latency_ms"]) for c in calls]
    overhead = [float(c["latency_ms"]) - float(c["upstream_ms"]) for c in calls if c.get("upstream_ms") is not None]
    servers = await console.api(page, "GET", api_path("servers"))
    return console.render(
        "overview.html", page, days=days,
        traffic=bars([(d["day"], float(d["calls"])) for d in days]),
        errors=bars([(d["day"], float(d["errors"])) for d in days]),
        spend_today=spend_today, spend_month=spend_month, recent=len(calls),
        failed=sum(1 for c in calls if c["outcome"] != "ok"),
        p50=percentile(latency, 0.5), p95=percentile(latency, 0.95),
        overhead50=percentile(overhead, 0.5), overhead95=percentile(overhead, 0.95),
        servers=servers.json()["data"] if servers.ok else None,
    )  # fmt: skip


def routes(console: Console) -> list[Route]:
    return [Route(f"{UI_PREFIX}/overview", console.page(overview), methods=["GET"])]

"""The teams and customers page: each one's budget and rate limit, usage in the current window against them (an
SVG bar per limit), and spend over the last 30 days (the log API's rollup by team and by customer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from hub.console.bridge import api_path
from hub.console.common import UI_PREFIX
from hub.console.web import Console, Page

BAR_WIDTH = 240.0


@dataclass(frozen=True)
class Gauge:
    """One limit's usage in its window, drawn as a bar `BAR_WIDTH` wide."""

    metric: str
    period: str
    used: float
    limit: float
    filled: float
    over: bool


def gauges(limits: list[dict[str, Any]]) -> list[Gauge]:
    out: list[Gauge] = []
    for snap in limits:
        limit, used = float(snap["limit"]), float(snap["used"]) + float(snap.get("in_flight", 0))
        share = min(1.0, used / limit) if limit > 0 else 1.0
        out.append(Gauge(str(snap["metric"]), str(snap["period"]), used, limit, round(share * BAR_WIDTH, 1),
                         used >= limit))  # fmt: skip
    return out


async def _entities(console: Console, page: Page, kind: str, plural: str) -> list[dict[str, Any]] | None:
    """The teams or customers the grant may read, each with its usage gauges and 30-day spend (None: refused)."""
    answer = await console.api(page, "GET", api_path(plural))
    if not answer.ok:
        return None
    spend = await console.api(page, "GET", api_path("logs", "summary"), query={"by": kind})
    spent = {str(r[kind]): r for r in spend.json()["data"]} if spend.ok else {}
    rows: list[dict[str, Any]] = answer.json()["data"]
    for row in rows:
        usage = await console.api(page, "GET", api_path("usage", kind, str(row["name"])))
        row["gauges"] = gauges(usage.json()["limits"]) if usage.ok else []
        row["spent"] = spent.get(str(row["name"]))
    return rows


async def teams(console: Console, page: Page) -> Response:
    listed = await _entities(console, page, "team", "teams")
    customers = await _entities(console, page, "customer", "customers")
    if listed is None and customers is None:
        answer = await console.api(page, "GET", api_path("teams"))
        return console.refused(page, answer)
    return console.render("teams.html", page, teams=listed, customers=customers, width=BAR_WIDTH)


def routes(console: Console) -> list[Route]:
    return [Route(f"{UI_PREFIX}/teams", console.page(teams), methods=["GET"])]

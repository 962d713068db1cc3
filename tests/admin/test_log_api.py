"""The request-log API: every filter with a time range answers what a plain reading of the seeded rows answers,
page after page through opaque cursors, on SQLite and on PostgreSQL; pages stay stable while rows are written;
a call's tree comes whole; summaries come from the daily rollup; bad values are a 400 that names them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Generator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import text

from hub.audit.requestlog import LogEntry
from tests.admin.helpers import admin_client, token_with
from tests.admin.services import postgres_server
from tests.hub.harness import RunningHub, base_config, running_hub
from tests.tools.logseed import NOW, ROOT, TREE, expected, seed, seeded

pytestmark = pytest.mark.anyio

SINCE, UNTIL = (NOW.replace(day=5)).isoformat(), (NOW.replace(day=7, hour=6)).isoformat()

FILTERS: list[dict[str, str]] = [
    {},
    {"key": "key_a"},
    {"team": "payments"},
    {"customer": "acme"},
    {"door": "mcp"},
    {"operation": "llm.embed"},
    {"model": "gpt-4o"},
    {"server": "fixture"},
    {"tool": "search_issues"},
    {"status": "429"},
    {"outcome": "tool_error"},
    {"min_latency_ms": "1500"},
    {"min_cost_usd": "0.005"},
    {"loop": ROOT},
    {"team": "payments", "door": "openai", "min_latency_ms": "500"},
]
"""Each alone, then each again within a time range."""


@contextlib.contextmanager
def database(kind: str, tmp_path: Path) -> Generator[str]:
    if kind == "postgresql":
        with postgres_server() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'hub.db'}"


@contextlib.asynccontextmanager
async def seeded_hub(kind: str, tmp_path: Path) -> AsyncGenerator[tuple[RunningHub, list[LogEntry]]]:
    with database(kind, tmp_path) as url:
        config = base_config({}, keys=[], database=url, request_log_retention="0")
        async with running_hub(config, tmp_path) as hub:
            entries = seeded()
            await seed(hub.hub.store, entries)
            yield hub, entries


async def _all_pages(api: httpx2.AsyncClient, params: dict[str, str], limit: int = 7) -> list[str]:
    """Every call id the API lists for `params`, following `next_cursor` to the end."""
    seen: list[str] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        response = await api.get("/api/v1/logs", params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["data"]) <= limit
        seen += [row["call_id"] for row in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_each_filter_alone_and_within_a_time_range_lists_what_the_rows_say_page_after_page(
    kind: str, tmp_path: Path
) -> None:
    async with seeded_hub(kind, tmp_path) as (hub, entries), admin_client(hub.base) as api:
        for params in FILTERS + [{**f, "since": SINCE, "until": UNTIL} for f in FILTERS]:
            want = expected(entries, params)
            assert await _all_pages(api, params) == want, params
            first = (await api.get("/api/v1/logs", params={**params, "limit": "3"})).json()
            assert (first["total"], first["total_exact"]) == (len(want), True), params
        row = (await api.get("/api/v1/logs", params={"loop": ROOT, "operation": "code.run"})).json()["data"][0]
        assert {k: row[k] for k in ("call_id", "parent_id", "loop_id", "key_name", "team", "customer")} == {
            "call_id": "call_code", "parent_id": ROOT, "loop_id": ROOT, "key_name": "alpha", "team": "payments",
            "customer": "acme",
        }  # fmt: skip
        assert row["ts"].endswith("Z")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_call_comes_with_its_whole_tree_and_a_nested_call_with_its_own_subtree(
    kind: str, tmp_path: Path
) -> None:
    async with seeded_hub(kind, tmp_path) as (hub, _entries), admin_client(hub.base) as api:
        tree = (await api.get(f"/api/v1/logs/{ROOT}")).json()
        assert (tree["calls"], tree["truncated"]) == (len(TREE) + 1, False)
        assert _shape(tree) == {
            ROOT: {"call_turn_1": {}, "call_code": {"call_inner_1": {}, "call_inner_2": {"call_deep": {}},
                                                    "call_inner_3": {}}, "call_turn_2": {}}
        }  # fmt: skip
        assert [c["call_id"] for c in tree["children"]] == ["call_turn_1", "call_code", "call_turn_2"]  # oldest first
        inner = (await api.get("/api/v1/logs/call_code")).json()
        assert _shape(inner) == {
            "call_code": {"call_inner_1": {}, "call_inner_2": {"call_deep": {}}, "call_inner_3": {}}
        }
        missing = await api.get("/api/v1/logs/call_nowhere")
        assert missing.status_code == 404 and "call_nowhere" in missing.json()["error"]["message"]


def _shape(node: dict[str, Any]) -> dict[str, Any]:
    return {node["call_id"]: {k: v for child in node["children"] for k, v in _shape(child).items()}}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_summaries_per_day_and_per_entity_sum_the_rows_and_come_from_the_rollup_alone(
    kind: str, tmp_path: Path
) -> None:
    async with seeded_hub(kind, tmp_path) as (hub, entries), admin_client(hub.base) as api:
        window = {"since": "2026-12-01T00:00:00Z", "until": "2026-12-07T23:00:00Z"}
        answers = {by: (await api.get("/api/v1/logs/summary", params={**window, "by": by})).json()
                   for by in ("day", "key", "team", "customer", "model", "server")}  # fmt: skip
        assert answers["day"]["data"] == _sums(entries, lambda e: e.ts.date().isoformat(), "day")
        for by, attr in [("key", "key_id"), ("team", "team"), ("customer", "customer"), ("model", "model"),
                         ("server", "server")]:  # fmt: skip
            want = _sums(entries, lambda e, attr=attr: getattr(e, attr), by)
            assert sorted(answers[by]["data"], key=lambda r: r[by]) == sorted(want, key=lambda r: r[by]), by
            costs = [r["cost_usd"] for r in answers[by]["data"]]
            assert costs == sorted(costs, reverse=True), "highest spend first"
        with hub.hub.store.engine.begin() as conn:
            conn.execute(text("DELETE FROM request_log"))
        again = (await api.get("/api/v1/logs/summary", params={**window, "by": "day"})).json()
        assert again == answers["day"], "the summary reads the rollup, not the raw rows"
        early = (await api.get("/api/v1/logs/summary", params={"since": "2026-11-01", "until": "2026-11-30"})).json()
        assert early["data"] == []


def _sums(entries: list[LogEntry], group: Any, name: str) -> list[dict[str, Any]]:
    sums: dict[str, list[Any]] = {}
    for e in entries:
        value = group(e)
        if value is None:
            continue
        row = sums.setdefault(value, [0, 0, 0, 0.0])
        row[0] += 1
        row[1] += e.outcome != "ok"
        row[2] += e.tokens or 0
        row[3] += e.cost_usd or 0.0
    return [{name: value, "calls": c, "errors": err, "tokens": t, "cost_usd": pytest.approx(usd)}
            for value, (c, err, t, usd) in sorted(sums.items())]  # fmt: skip


async def test_pages_neither_repeat_nor_skip_a_row_while_new_rows_are_written(tmp_path: Path) -> None:
    async with seeded_hub("sqlite", tmp_path) as (hub, entries), admin_client(hub.base) as api:
        want = expected(entries, {"team": "payments"})
        first = (await api.get("/api/v1/logs", params={"team": "payments", "limit": "10"})).json()
        listed = [row["call_id"] for row in first["data"]]
        newest = entries[-1].ts
        later = [
            LogEntry(ts=newest, call_id=f"call_late_{n}", parent_id=None, key_id="key_a", key_name="alpha",
                     door="mcp", operation="mcp.tool", target="fixture__echo", outcome="ok", status=200,
                     latency_ms=1.0, error=None, team="payments")
            for n in range(25)
        ]  # fmt: skip
        await seed(hub.hub.store, later)
        cursor = first["next_cursor"]
        while cursor is not None:
            page = (await api.get("/api/v1/logs", params={"team": "payments", "limit": "10", "cursor": cursor})).json()
            listed += [row["call_id"] for row in page["data"]]
            cursor = page["next_cursor"]
        assert listed == want


async def test_a_total_past_the_cap_says_at_least_and_never_counts_further(tmp_path: Path) -> None:
    from hub.audit.logquery import LogFilter, count_query, read_page, total_of

    async with seeded_hub("sqlite", tmp_path) as (hub, entries):
        engine = hub.hub.store.engine
        page = read_page(engine, LogFilter(), 5, cap=100)
        assert (page.total, page.total_exact) == (100, False) and len(entries) > 100
        page = read_page(engine, LogFilter(team="platform"), 5, cap=1000)
        assert (page.total, page.total_exact) == (len(expected(entries, {"team": "platform"})), True)
        slow = LogFilter(team="payments", min_latency_ms=1000)
        with engine.connect() as conn:
            tested, matching = conn.execute(count_query(slow, 1000, scan=40)).one()
            whole = conn.execute(count_query(slow, 1000)).one()
        newest = [e for e in entries if e.team == "payments"]
        newest = sorted(newest, key=lambda e: e.ts, reverse=True)[:40]
        assert (tested, matching) == (40, sum(e.latency_ms >= 1000 for e in newest))
        assert total_of(tested, matching, 1000, scan=40) == (matching, False), "only the newest 40 were tested"
        want = len(expected(entries, {"team": "payments", "min_latency_ms": "1000"}))
        assert total_of(int(whole[0]), int(whole[1]), 1000) == (want, True)


BAD: list[tuple[str, dict[str, str], str]] = [
    ("/api/v1/logs", {"since": "yesterday"}, "since must be an RFC 3339 time"),
    ("/api/v1/logs", {"until": "2026-13-01"}, "until must be an RFC 3339 time"),
    ("/api/v1/logs", {"since": "0h"}, "since must be an RFC 3339 time"),
    ("/api/v1/logs", {"since": "99999999999d"}, "since must be an RFC 3339 time"),
    ("/api/v1/logs", {"since": "2026-12-07T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, "until must not be before"),
    ("/api/v1/logs", {"status": "abc"}, "status must be an integer"),
    ("/api/v1/logs", {"status": "42"}, "status must be an HTTP status"),
    ("/api/v1/logs", {"min_latency_ms": "-1"}, "min_latency_ms must be zero or more"),
    ("/api/v1/logs", {"min_cost_usd": "nan"}, "min_cost_usd must be zero or more"),
    ("/api/v1/logs", {"limit": "0"}, "limit must be an integer from 1 to 500"),
    ("/api/v1/logs", {"limit": "100000"}, "limit must be an integer from 1 to 500"),
    ("/api/v1/logs", {"cursor": "not-a-cursor"}, "cursor is not one this API returned"),
    ("/api/v1/logs", {"teem": "payments"}, "unknown query parameter(s): teem"),
    ("/api/v1/logs", {"team": ""}, "team must be 1 to 256 characters"),
    ("/api/v1/logs", {"total": "maybe"}, "total must be true or false"),
    ("/api/v1/logs/summary", {"by": "color"}, "by must be one of day, key, team, customer, model, server"),
    ("/api/v1/logs/summary", {"since": "soon"}, "since must be an RFC 3339 time"),
    ("/api/v1/logs/summary", {"team": "payments"}, "unknown query parameter(s): team"),
]


async def test_bad_filter_values_are_refused_with_a_400_that_names_them(tmp_path: Path) -> None:
    async with running_hub(base_config({}, keys=[]), tmp_path) as hub, admin_client(hub.base) as api:
        for path, params, message in BAD:
            response = await api.get(path, params=params)
            assert response.status_code == 400, (params, response.text)
            error = response.json()["error"]
            assert error["type"] == "invalid_request_error" and message in error["message"], (params, error)
        repeated = await api.get("/api/v1/logs?team=a&team=b")
        assert repeated.status_code == 400 and "more than once: team" in repeated.json()["error"]["message"]


async def test_reading_the_log_needs_the_logs_read_permission(tmp_path: Path) -> None:
    async with seeded_hub("sqlite", tmp_path) as (hub, _entries), admin_client(hub.base) as admin:
        reader = await token_with(admin, "log-reader", ["logs:read"])
        other = await token_with(admin, "key-reader", ["keys:read", "usage:read"])
        async with admin_client(hub.base, reader) as api:
            assert (await api.get("/api/v1/logs", params={"limit": "1"})).status_code == 200
            assert (await api.get(f"/api/v1/logs/{ROOT}")).status_code == 200
            assert (await api.get("/api/v1/logs/summary")).status_code == 200
        async with admin_client(hub.base, other) as api:
            for path in ("/api/v1/logs", f"/api/v1/logs/{ROOT}", "/api/v1/logs/summary"):
                refused = await api.get(path)
                assert refused.status_code == 403 and "may not read logs" in refused.json()["error"]["message"]
        async with admin_client(hub.base, "not-a-token") as api:
            assert (await api.get("/api/v1/logs")).status_code == 401

"""What the audit stage puts in a request-log row for the log API's filters (team, customer, model, server, tool,
upstream time, the loop of nested calls), the bodies `[hub] log_bodies` keeps (redacted, capped, in their own
table), retention of bodies and rollup, the version 4 migration, and the indexes the filters' query plans use."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import orjson
import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Engine

from hub.audit.bodies import Bodies, BodyMode, BodyRecorder, guardrail_redactors
from hub.audit.logquery import LogFilter, page_query
from hub.audit.requestlog import LogEntry, RequestLog
from hub.call import Call, Outcome, Principal
from hub.errors import RateLimited
from hub.governance.keys import VirtualKey
from hub.guardrails.config import GuardrailConfig
from hub.guardrails.engine import Guardrails
from hub.stages.audit import AuditStage
from hub.store.sql import SqlStore
from hub.store.tables import FILTERED_COLUMNS, REQUEST_LOG_INDEXES, RequestLogBodyRow
from tests.admin.services import postgres_server

pytestmark = pytest.mark.anyio

KEY = VirtualKey("key_1", "alice", team="payments", customer="acme")
WHO = Principal(KEY)


def _store(tmp_path: Path) -> SqlStore:
    return SqlStore(f"sqlite:///{tmp_path / 'hub.db'}")


def _rows(store: SqlStore) -> dict[str, Any]:
    with store.engine.connect() as conn:
        return {r["call_id"]: r for r in conn.execute(text("SELECT * FROM request_log")).mappings()}


def _locate(call: Call) -> tuple[str, str] | None:
    return {"gh__search": ("github", "search")}.get(call.target)


async def test_a_row_names_team_customer_model_server_tool_and_the_upstreams_share(tmp_path: Path) -> None:
    store = _store(tmp_path)
    log = RequestLog(store)
    stage = AuditStage(log, locate=_locate)

    async def upstream(call: Call) -> Outcome:
        return Outcome({"ok": True}, upstream_ms=12.5)

    await stage(Call("openai", "llm.chat", "fast", principal=WHO, call_id="call_llm"), upstream)
    await stage(Call("mcp", "mcp.tool", "gh__search", principal=WHO, call_id="call_tool"), upstream)
    await stage(Call("mcp", "mcp.tool", "gone__tool", principal=WHO, call_id="call_unknown"), upstream)
    await log.flush()
    rows = _rows(store)
    llm, tool, unknown = rows["call_llm"], rows["call_tool"], rows["call_unknown"]
    assert (llm["team"], llm["customer"], llm["model"], llm["server"], llm["upstream_ms"]) == (
        "payments", "acme", "fast", None, 12.5
    )  # fmt: skip
    assert (tool["server"], tool["tool"], tool["model"], tool["loop_id"]) == ("github", "search", None, None)
    assert (unknown["server"], unknown["tool"]) == (None, None)


async def test_nested_calls_carry_the_outermost_call_as_their_loop(tmp_path: Path) -> None:
    """An Agent Mode loop runs a Code Mode program whose tool call makes a call of its own: each nested row names
    the loop, however deep, and a second loop running at the same time keeps its own."""
    store = _store(tmp_path)
    log = RequestLog(store)
    stage = AuditStage(log)

    def nested(children: list[str], suffix: str) -> Callable[[Call], Any]:
        async def run(call: Call) -> Outcome:
            for child in children:
                await anyio.lowlevel.checkpoint()  # let the other loop's calls interleave
                deeper = ["call_deep"] if child == "call_tool_1" and not suffix else []
                inner = Call("code", "mcp.tool", "t", principal=WHO, call_id=child + suffix, parent_id=call.call_id)
                await stage(inner, nested(deeper, suffix))
            return Outcome(None)

        return run

    async def loop(call: Call) -> Outcome:
        suffix = "_b" if call.call_id.endswith("_2") else ""
        inner = Call("agent", "code.run", "", principal=WHO, call_id=f"code_of_{call.call_id}", parent_id=call.call_id)
        await stage(inner, nested(["call_tool_1", "call_tool_2"], suffix))
        return Outcome(None)

    async with anyio.create_task_group() as tg:
        tg.start_soon(stage, Call("openai", "llm.chat", "m", principal=WHO, call_id="call_loop"), loop)
        tg.start_soon(stage, Call("openai", "llm.chat", "m", principal=WHO, call_id="call_loop_2"), loop)
    await log.flush()
    loops = {call_id: row["loop_id"] for call_id, row in _rows(store).items()}
    assert loops == {
        "call_loop": None, "code_of_call_loop": "call_loop", "call_tool_1": "call_loop", "call_deep": "call_loop",
        "call_tool_2": "call_loop", "call_loop_2": None, "code_of_call_loop_2": "call_loop_2",
        "call_tool_1_b": "call_loop_2", "call_tool_2_b": "call_loop_2",
    }  # fmt: skip
    assert stage._roots == {}, "nothing is kept once the calls are done"


def _guardrails() -> Guardrails:
    rule = GuardrailConfig(name="codename", kind="regex", pattern="(?i)project falcon", action="log")
    return Guardrails([rule])


PAYLOAD = {
    "messages": [{"role": "user", "content": "Mail jane.doe@example.com about Project Falcon"}],
    "api_key": "plain-value-under-a-sensitive-key",
    "note": "use sk-abcdefghijklmnopqrstuvwx for the call",
    "max_tokens": 64,
}


async def _bodies_of(tmp_path: Path, mode: BodyMode, max_bytes: int = 4096) -> dict[str, Any]:
    tmp_path.mkdir(exist_ok=True)
    store = _store(tmp_path)
    log = RequestLog(store, bodies=BodyRecorder(max_bytes, guardrail_redactors(_guardrails)))
    stage = AuditStage(log, bodies=mode)

    async def answer(call: Call) -> Outcome:
        if call.target == "refused":
            raise RateLimited("rate limit reached")
        return Outcome({"choices": [{"message": {"content": "x" * 10_000 if call.target == "big" else "hello"}}]})

    for target in ("fine", "big", "refused"):
        try:
            await stage(Call("openai", "llm.chat", target, PAYLOAD, WHO, call_id=f"call_{target}"), answer)
        except RateLimited:
            pass
    await log.flush()
    with store.engine.connect() as conn:
        table: Any = RequestLogBodyRow.__table__  # pyright: ignore[reportAttributeAccessIssue]
        return {r["call_id"]: r for r in conn.execute(select(table)).mappings()}


async def test_bodies_are_off_by_default_and_errors_keeps_only_the_failed_calls_request(tmp_path: Path) -> None:
    assert await _bodies_of(tmp_path / "none", "none") == {}
    errors = await _bodies_of(tmp_path, "errors")
    assert set(errors) == {"call_refused"}
    assert errors["call_refused"]["response"] is None and "Project" not in errors["call_refused"]["request"]


async def test_stored_bodies_are_redacted_by_the_guardrail_rules_and_capped(tmp_path: Path) -> None:
    stored = await _bodies_of(tmp_path, "all", max_bytes=512)
    assert set(stored) == {"call_fine", "call_big", "call_refused"}
    request = orjson.loads(stored["call_fine"]["request"])
    content = request["messages"][0]["content"]
    assert "jane.doe@example.com" not in content and "[REDACTED:email]" in content  # PII engine
    assert "Project Falcon" not in content and "[REDACTED:" in content  # the operator's regex guardrail
    assert request["api_key"] == "[REDACTED]" and "sk-abcdef" not in request["note"]  # key and secret scrubbing
    assert request["max_tokens"] == 64
    assert orjson.loads(stored["call_fine"]["response"])["choices"][0]["message"]["content"] == "hello"
    big = stored["call_big"]
    assert big["truncated"] is True and len(big["response"].encode()) <= 512 and big["response"].endswith("…[cut]")
    assert stored["call_fine"]["truncated"] is False and stored["call_refused"]["response"] is None


async def test_retention_takes_old_bodies_with_their_rows_and_old_rollup_days(tmp_path: Path) -> None:
    store = _store(tmp_path)
    now = datetime(2026, 6, 30, 12, tzinfo=UTC)
    log = RequestLog(store, clock=lambda: now, bodies=BodyRecorder(1024), purge_batch=2)
    for n, days_ago in enumerate([40, 35, 31, 2, 0]):
        log.record(
            LogEntry(ts=now - timedelta(days=days_ago), call_id=f"call_{days_ago}d", parent_id=None, key_id="key_1",
                     key_name="alice", door="openai", operation="llm.chat", target="m", outcome="ok", status=200,
                     latency_ms=1.0, error=None, team="payments", customer="acme", model="m",
                     bodies=Bodies({"n": n}, {"ok": True}))
        )  # fmt: skip
    await log.flush()
    assert await log.purge(timedelta(days=30)) == 3
    assert await log.purge_rollup(timedelta(days=3)) == 15  # three days, each by day, key, team, customer and model
    with store.engine.connect() as conn:
        bodies = sorted(conn.execute(text("SELECT call_id FROM request_log_bodies")).scalars())
        days = sorted(set(conn.execute(text("SELECT day FROM request_log_daily")).scalars()))
    assert bodies == ["call_0d", "call_2d"]
    assert days == ["2026-06-28", "2026-06-30"]


V3_REQUEST_LOG = """
CREATE TABLE request_log (
    id INTEGER PRIMARY KEY, ts DATETIME NOT NULL, call_id VARCHAR NOT NULL, parent_id VARCHAR, key_id VARCHAR,
    key_name VARCHAR, door VARCHAR NOT NULL, operation VARCHAR NOT NULL, target VARCHAR NOT NULL,
    outcome VARCHAR NOT NULL, status INTEGER NOT NULL, latency_ms FLOAT NOT NULL, error VARCHAR,
    deployment VARCHAR, tokens INTEGER, cost_usd FLOAT, cache_read_tokens INTEGER, cache_write_5m_tokens INTEGER,
    cache_write_1h_tokens INTEGER, reasoning_tokens INTEGER
);
CREATE INDEX ix_request_log_ts ON request_log (ts);
CREATE INDEX ix_request_log_call_id ON request_log (call_id);
CREATE INDEX ix_request_log_key_id ON request_log (key_id);
CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
INSERT INTO meta VALUES ('schema_version', '3');
INSERT INTO request_log (ts, call_id, door, operation, target, outcome, status, latency_ms)
    VALUES ('2026-01-01 00:00:00.000000', 'call_old', 'mcp', 'mcp.tool', 't__x', 'ok', 200, 1.5);
"""


def test_a_version_3_database_gains_the_filter_columns_indexes_and_tables_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    with sqlite3.connect(path) as db:
        db.executescript(V3_REQUEST_LOG)
    store = SqlStore(f"sqlite:///{path}")
    inspector = inspect(store.engine)
    columns = {c["name"] for c in inspector.get_columns("request_log")}
    indexes = {i["name"] for i in inspector.get_indexes("request_log")}
    tables = set(inspector.get_table_names())
    rows = _rows(store)
    store.close()
    assert {"team", "customer", "model", "server", "tool", "upstream_ms", "loop_id"} <= columns
    assert set(REQUEST_LOG_INDEXES) <= indexes and "ix_request_log_key_id" not in indexes
    assert {"request_log_bodies", "request_log_daily"} <= tables
    assert rows["call_old"]["target"] == "t__x" and rows["call_old"]["team"] is None


def _plans(engine: Engine, explain: str) -> dict[str, str]:
    """The query plan of a first page for each filter with a time range."""
    since = datetime(2026, 12, 1, tzinfo=UTC)
    plans: dict[str, str] = {}
    names = ("key", "team", "customer", "door", "operation", "model", "server", "tool", "outcome")
    filters = {name: replace(LogFilter(since=since), **{name: "x"}) for name in names}
    filters |= {"status": LogFilter(since=since, status=500), "loop": LogFilter(since=since, loop="call_x"),
                "none": LogFilter(since=since)}  # fmt: skip
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET enable_seqscan = off"))  # a few rows: show what the indexes allow
        for name, f in filters.items():
            compiled = page_query(f, 50).compile(engine, compile_kwargs={"literal_binds": True})
            plans[name] = "\n".join(str(r[-1]) for r in conn.execute(text(f"{explain} {compiled}")))
    return plans


def test_every_filter_with_a_time_range_is_answered_through_an_index_on_sqlite(tmp_path: Path) -> None:
    store = _store(tmp_path)
    plans = _plans(store.engine, "EXPLAIN QUERY PLAN")
    store.close()
    for name, plan in plans.items():
        column = {"key": "key_id"}.get(name, name)
        if column in FILTERED_COLUMNS:
            assert f"USING INDEX ix_request_log_{column}_ts" in plan, (name, plan)
        elif name in ("status", "outcome"):
            assert "USING INDEX ix_request_log_failed_ts" in plan, (name, plan)
        elif name == "loop":
            assert "ix_request_log_loop_id" in plan and "ix_request_log_call_id" in plan, plan
        else:
            assert "USING INDEX ix_request_log_ts" in plan, plan
        assert "SCAN request_log\n" not in plan + "\n", (name, plan)
        if name != "loop":  # a loop's rows (at most a few thousand) are sorted; every other page stops early
            assert "USE TEMP B-TREE" not in plan, (name, plan)


def test_every_filter_with_a_time_range_can_be_answered_through_an_index_on_postgresql() -> None:
    with postgres_server() as url:
        store = SqlStore(url)
        plans = _plans(store.engine, "EXPLAIN")
        store.close()
    for name, plan in plans.items():
        column = {"key": "key_id"}.get(name, name)
        if column in FILTERED_COLUMNS:
            assert f"ix_request_log_{column}_ts" in plan, (name, plan)
        elif name in ("status", "outcome"):
            assert "ix_request_log_failed_ts" in plan, (name, plan)
        elif name == "loop":
            assert "ix_request_log_loop_id" in plan and "ix_request_log_call_id" in plan, plan
        else:
            assert "ix_request_log_ts" in plan, plan
        assert "Seq Scan" not in plan, (name, plan)


def test_a_log_entry_keeps_its_bodies_out_of_the_columns() -> None:
    from hub.audit.requestlog import FIELDS

    assert "bodies" not in FIELDS and {"team", "loop_id", "upstream_ms"} <= set(FIELDS)


@pytest.mark.parametrize("origin", ["fresh", "version 3"])
def test_the_indexes_of_columns_most_rows_leave_empty_are_partial(tmp_path: Path, origin: str) -> None:
    # An MCP call has no model, an LLM call no server or tool, most calls no team or loop: a row costs the flush an
    # entry only in the indexes of the columns it fills (equality filters still use them: the plan tests above).
    path = tmp_path / "log.db"
    if origin == "version 3":
        with sqlite3.connect(path) as db:
            db.executescript(V3_REQUEST_LOG)
    SqlStore(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:
        found = dict(
            db.execute("SELECT name, sql FROM sqlite_master WHERE tbl_name = 'request_log' AND sql IS NOT NULL")
        )
    sparse = {"key_id", "team", "customer", "model", "server", "tool", "loop_id", "parent_id"}
    for name, columns in REQUEST_LOG_INDEXES.items():
        partial = f"WHERE {columns[0]} IS NOT NULL"
        if name == "ix_request_log_failed_ts":  # only the calls that did not end well
            assert found[name].endswith("WHERE status <> 200 OR outcome <> 'ok'"), found[name]
        elif columns[0] in sparse:
            assert found[name].endswith(partial), found[name]
        else:
            assert "WHERE" not in found[name], found[name]

"""Schema version 3: the request log's cache and reasoning columns are added to an existing database in place."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from hub.store.sql import SqlStore

V2_REQUEST_LOG = """
CREATE TABLE request_log (
    id INTEGER PRIMARY KEY, ts DATETIME NOT NULL, call_id VARCHAR NOT NULL, parent_id VARCHAR, key_id VARCHAR,
    key_name VARCHAR, door VARCHAR NOT NULL, operation VARCHAR NOT NULL, target VARCHAR NOT NULL,
    outcome VARCHAR NOT NULL, status INTEGER NOT NULL, latency_ms FLOAT NOT NULL, error VARCHAR,
    deployment VARCHAR, tokens INTEGER, cost_usd FLOAT
)
"""
NEW = ("cache_read_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens", "reasoning_tokens")


def test_a_version_2_database_gains_the_cache_and_reasoning_columns_and_old_rows_read_as_unknown(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v2.db"
    with sqlite3.connect(path) as db:
        db.execute(V2_REQUEST_LOG)
        db.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '2')")
        db.execute(
            "INSERT INTO request_log (ts, call_id, door, operation, target, outcome, status, latency_ms, deployment,"
            " tokens, cost_usd) VALUES ('2026-01-01 00:00:00.000000', 'call_old', 'openai', 'llm.chat', 'fast', 'ok',"
            " 200, 1.5, 'openai/gpt-4o', 13, 0.5)"
        )
    store = SqlStore(f"sqlite:///{path}")
    row = {
        "ts": datetime(2026, 1, 2, tzinfo=UTC),
        "call_id": "call_new",
        "parent_id": None,
        "key_id": "k",
        "key_name": "k",
        "door": "openai",
        "operation": "llm.chat",
        "target": "claude-sonnet-4-5",
        "outcome": "ok",
        "status": 200,
        "latency_ms": 2.0,
        "error": None,
        "deployment": "anthropic/claude-sonnet-4-5",
        "tokens": 3900,
        "cost_usd": None,
        "cache_read_tokens": 2000,
        "cache_write_5m_tokens": 500,
        "cache_write_1h_tokens": 1000,
        "reasoning_tokens": 7,
    }
    store.write_log([row])
    rows = {r.call_id: r for r in store.recent_log()}
    store.close()
    with sqlite3.connect(path) as db:
        columns = {info[1] for info in db.execute("PRAGMA table_info(request_log)")}
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert set(NEW) <= columns and version == "6"
    old, new = rows["call_old"], rows["call_new"]
    assert (old.tokens, old.cost_usd) == (13, 0.5)
    assert [getattr(old, name) for name in NEW] == [None, None, None, None]
    assert [getattr(new, name) for name in NEW] == [2000, 500, 1000, 7] and new.cost_usd is None

"""The SQL store's schema migrations."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hub.store.sql import SCHEMA_VERSION, SqlStore

V1_REQUEST_LOG = """
CREATE TABLE request_log (
    id INTEGER PRIMARY KEY, ts DATETIME NOT NULL, call_id VARCHAR NOT NULL, parent_id VARCHAR, key_id VARCHAR,
    key_name VARCHAR, door VARCHAR NOT NULL, operation VARCHAR NOT NULL, target VARCHAR NOT NULL,
    outcome VARCHAR NOT NULL, status INTEGER NOT NULL, latency_ms FLOAT NOT NULL, error VARCHAR
)
"""


def test_a_version_1_database_is_upgraded_in_place_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(V1_REQUEST_LOG)
        db.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        db.execute(
            "INSERT INTO request_log (ts, call_id, door, operation, target, outcome, status, latency_ms)"
            " VALUES ('2026-01-01 00:00:00.000000', 'call_old', 'mcp', 'mcp.tool', 't__x', 'ok', 200, 1.5)"
        )
    store = SqlStore(f"sqlite:///{path}")
    store.write_log(
        [
            {
                "ts": datetime(2026, 1, 2, tzinfo=UTC),
                "call_id": "call_new",
                "parent_id": None,
                "key_id": "k",
                "key_name": "k",
                "door": "openai",
                "operation": "llm.chat",
                "target": "fast",
                "outcome": "ok",
                "status": 200,
                "latency_ms": 2.0,
                "error": None,
                "deployment": "openai/gpt-4o-mini",
                "tokens": 13,
                "cost_usd": 0.014,
            }
        ]
    )
    rows = {r.call_id: r for r in store.recent_log()}
    store.close()
    with sqlite3.connect(path) as db:
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert int(version) == SCHEMA_VERSION == 6
    assert rows["call_old"].target == "t__x" and rows["call_old"].tokens is None
    assert rows["call_new"].deployment == "openai/gpt-4o-mini" and rows["call_new"].tokens == 13


def test_a_database_newer_than_this_hub_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SqlStore(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(RuntimeError, match="newer than this AgentHub"):
        SqlStore(f"sqlite:///{path}")

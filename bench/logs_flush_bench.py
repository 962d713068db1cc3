"""What the request log's writer spends per row: CPU seconds of the flush (`RequestLog.flush`: the `executemany`
into `request_log`, its indexes and the daily rollup) divided by the rows written, on a fresh database with the
schema of this checkout.

Every index of `request_log` costs each flushed row an entry, so this is the figure that an index change moves.
SQLite runs in the process, so the process's CPU time is the whole cost; on PostgreSQL the server backend's CPU
time (read from /proc for the connection's backend PID) is added to the client's. The rows vary like the log
benchmark's (`bench/logs_bench.py`): 1,000 keys over 50 teams, LLM and MCP calls, 1.5% failures, one call in ten
nested in a loop. A warm-up precedes the measured rows; the figure is the median of `--repeat` rounds.

Run: `.venv/bin/python bench/logs_flush_bench.py [--rows 100000] [--backend sqlite|postgresql|both] [--pg-url URL]
[--v4-indexes]` (without `--pg-url`, PostgreSQL is a throw-away cluster as in `bench/logs_bench.py`;
`--v4-indexes` writes with the index set of schema version 4, for the before figure).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.audit.requestlog import LogEntry, RequestLog
from hub.store.sql import SqlStore

START = datetime(2026, 11, 1, tzinfo=UTC)
OPERATIONS = ["llm.chat", "llm.chat", "llm.embed", "llm.messages", "mcp.tool", "mcp.tool", "mcp.tool", "mcp.list",
              "code.run"]  # fmt: skip


def entry(i: int) -> LogEntry:
    """Row `i`, varied as `bench/logs_bench.py` seeds them."""
    key = i * 7919 % 1000
    llm, mcp = i % 9 < 4, 4 <= i % 9 < 7
    failed = i % 100 == 7 or i % 200 == 11
    nested = i % 10 == 3
    return LogEntry(
        ts=START + timedelta(milliseconds=i), call_id=f"call_{i}", parent_id=f"call_{i - 1}" if nested else None,
        key_id=f"key_{key}", key_name=f"name_{key}", door=["mcp", "openai", "rest", "anthropic"][i % 4],
        operation=OPERATIONS[i % 9], target=f"target_{i % 300}",
        outcome=("rate_limit_error" if i % 100 == 7 else "upstream_error") if failed else "ok",
        status=(429 if i % 100 == 7 else 502) if failed else 200, latency_ms=(i * 2654435761 % 3000000) / 1000,
        error="failed" if failed else None, tokens=i % 5000 if llm else None,
        cost_usd=(i % 5000) * 0.000002 if llm else None, team=f"team_{key % 50}", customer=f"customer_{key % 20}",
        model=f"model_{i % 20}" if llm else None, server=f"server_{i % 30}" if mcp else None,
        tool=f"tool_{i % 300}" if mcp else None, upstream_ms=(i * 2654435761 % 3000000) / 1250,
        loop_id=f"call_{i - 1}" if nested else None,
    )  # fmt: skip


def _backend_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of a PostgreSQL backend process, 0 when it cannot be read."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _write(log: RequestLog, first: int, rows: int) -> None:
    for start in range(first, first + rows, 512):
        for i in range(start, min(start + 512, first + rows)):
            log.record(entry(i))
        await log.flush()


V4_INDEXES = ("CREATE INDEX ix_request_log_status_ts ON request_log (status, ts)",
              "CREATE INDEX ix_request_log_outcome_ts ON request_log (outcome, ts)")  # fmt: skip
"""The indexes schema version 5 replaced by the failed calls' one (`--v4-indexes` puts them back, to compare)."""


def measure(url: str, rows: int, repeat: int, v4: bool = False) -> list[float]:
    """Microseconds of CPU per row written, per round."""
    store = SqlStore(url)
    if v4:
        with store.engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_request_log_failed_ts"))
            for ddl in V4_INDEXES:
                conn.execute(text(ddl))
    log = RequestLog(store, batch=512)
    pid: int | None = None
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect() as conn:
            pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
    anyio.run(_write, log, 0, 20_000)
    per_row: list[float] = []
    first = 20_000
    for _ in range(repeat):
        cpu, server = time.process_time(), _backend_cpu(pid)
        anyio.run(_write, log, first, rows)
        spent = time.process_time() - cpu + _backend_cpu(pid) - server
        per_row.append(spent / rows * 1e6)
        first += rows
    with store.engine.connect() as conn:
        indexes = conn.execute(text(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'request_log'"
            if store.engine.dialect.name == "sqlite" else
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'request_log'"
        )).scalar_one()  # fmt: skip
    store.close()
    print(f"  {indexes} indexes on request_log (primary key included on PostgreSQL)")
    return per_row


V4 = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows per measured round")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", default=None, help="an empty PostgreSQL database to write to")
    parser.add_argument("--v4-indexes", action="store_true", help="the index set of schema version 4, to compare")
    args = parser.parse_args()
    global V4
    V4 = args.v4_indexes
    runs: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="agenthub-flush-bench-") as root:
        if args.backend in ("sqlite", "both"):
            runs.append(("SQLite", f"sqlite:///{root}/flush.db"))
        if args.backend in ("postgresql", "both"):
            if args.pg_url:
                runs.append(("PostgreSQL", args.pg_url))
            else:
                from bench.logs_bench import postgres_database

                with postgres_database() as url:
                    _report("PostgreSQL", url, args.rows, args.repeat)
        for name, url in runs:
            _report(name, url, args.rows, args.repeat)


def _report(name: str, url: str, rows: int, repeat: int) -> None:
    print(f"{name}: {repeat} rounds of {rows:,} rows, batches of 512", flush=True)
    per_row = measure(url, rows, repeat, V4)
    rounds = ", ".join(f"{v:.1f}" for v in per_row)
    print(f"  flush CPU per row: median {statistics.median(per_row):.1f} µs (rounds: {rounds})", flush=True)


if __name__ == "__main__":
    main()

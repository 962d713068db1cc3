"""The request log at scale: seed N rows (10 million by default) into a temporary database and time each query
shape of the log API, with its query plan.

SQLite: a file in a temporary directory, seeded with one recursive-CTE `INSERT ... SELECT`, secondary indexes
built after the rows (as fast as a bulk load gets). PostgreSQL: `--pg-url`, or a throw-away cluster started from
the Debian binaries (initdb/postgres under /usr/lib/postgresql/*/bin) on a loopback port and stopped by PID;
seeded with `generate_series`. Both get the schema from `SqlStore` (tables, indexes, migrations), the daily
rollup from one aggregation of the seeded rows, and `ANALYZE`.

The rows span 30 days: 1,000 keys over 50 teams and 20 customers, 4 doors, 9 operations, 20 models, 30 servers
with 10 tools each, 1% 429s and 0.5% 502s, latencies up to 3 s, a cost on LLM calls, and one call in ten nested
in a loop. Each shape runs `--runs` times with a different value each time (another key, team...) over the last
24 hours and over the last 7 days; the figures are the page query (50 rows, newest first), the capped total
(10,000) and both together, as the API runs them; p50 and p95 in milliseconds.

Run: `.venv/bin/python bench/logs_bench.py [--rows 10000000] [--backend sqlite|postgresql|both] [--runs 30]`
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._procs import free_port
from hub.audit.logquery import LogFilter, call_tree, count_query, page_query
from hub.audit.logsummary import summarize
from hub.store.sql import SqlStore
from hub.store.tables import REQUEST_LOG_INDEXES

END = datetime(2026, 12, 1, tzinfo=UTC)
SPAN = timedelta(days=30)
START = END - SPAN

# Each value is an SQL expression of the row number `i` (1..N), the same text on both databases.
OPERATIONS = ["llm.chat", "llm.chat", "llm.embed", "llm.messages", "mcp.tool", "mcp.tool", "mcp.tool", "mcp.list",
              "code.run"]  # fmt: skip
COLUMNS: dict[str, str] = {
    "call_id": "'call_' || i",
    "parent_id": "CASE WHEN i % 10 = 3 THEN 'call_' || (i - 1) END",
    "loop_id": "CASE WHEN i % 10 = 3 THEN 'call_' || (i - 1) END",
    "key_id": "'key_' || (i * 7919 % 1000)",
    "key_name": "'name_' || (i * 7919 % 1000)",
    "team": "'team_' || (i * 7919 % 1000 % 50)",
    "customer": "'customer_' || (i * 7919 % 1000 % 20)",
    "door": "CASE i % 4 WHEN 0 THEN 'mcp' WHEN 1 THEN 'openai' WHEN 2 THEN 'rest' ELSE 'anthropic' END",
    "operation": "CASE i % 9 " + " ".join(f"WHEN {n} THEN '{op}'" for n, op in enumerate(OPERATIONS)) + " END",
    "target": "'target_' || (i % 300)",
    "model": "CASE WHEN i % 9 < 4 THEN 'model_' || (i % 20) END",
    "server": "CASE WHEN i % 9 >= 4 AND i % 9 < 7 THEN 'server_' || (i % 30) END",
    "tool": "CASE WHEN i % 9 >= 4 AND i % 9 < 7 THEN 'tool_' || (i % 300) END",
    "status": "CASE WHEN i % 100 = 7 THEN 429 WHEN i % 200 = 11 THEN 502 ELSE 200 END",
    "outcome": "CASE WHEN i % 100 = 7 THEN 'rate_limit_error' WHEN i % 200 = 11 THEN 'upstream_error' ELSE 'ok' END",
    "latency_ms": "(i * 2654435761 % 3000000) / 1000.0",
    "upstream_ms": "(i * 2654435761 % 3000000) / 1250.0",
    "tokens": "CASE WHEN i % 9 < 4 THEN i % 5000 END",
    "cost_usd": "CASE WHEN i % 9 < 4 THEN (i % 5000) * 0.000002 END",
}


def _shapes() -> list[tuple[str, Callable[[int], LogFilter]]]:
    """Each filter of the API, with a value that changes per run."""
    return [
        ("time range only", lambda n: LogFilter()),
        ("key", lambda n: LogFilter(key=f"key_{n * 37 % 1000}")),
        ("team", lambda n: LogFilter(team=f"team_{n % 50}")),
        ("customer", lambda n: LogFilter(customer=f"customer_{n % 20}")),
        ("door", lambda n: LogFilter(door=["mcp", "openai", "rest", "anthropic"][n % 4])),
        ("operation", lambda n: LogFilter(operation=OPERATIONS[n % 9])),
        ("model", lambda n: LogFilter(model=f"model_{n % 20}")),
        ("server", lambda n: LogFilter(server=f"server_{n % 30}")),
        ("tool", lambda n: LogFilter(tool=f"tool_{n * 7 % 300}")),
        ("status (502: rare)", lambda n: LogFilter(status=502)),
        ("outcome (429s)", lambda n: LogFilter(outcome="rate_limit_error")),
        ("min latency (top 1%)", lambda n: LogFilter(min_latency_ms=2970.0)),
        ("min cost (top 10%)", lambda n: LogFilter(min_cost_usd=0.009)),
        ("loop", lambda n: LogFilter(loop=f"call_{N_ROWS - 97 - 10 * n}")),
        ("team + door + min latency", lambda n: LogFilter(team=f"team_{n % 50}", door="openai", min_latency_ms=1500)),
    ]


N_ROWS = 10_000_000


# -- seeding -----------------------------------------------------------------------------------------------


def _ts_sql(dialect: str, rows: int) -> str:
    step = SPAN.total_seconds() / rows
    start = START.timestamp()
    if dialect == "postgresql":
        return f"to_timestamp({start} + i * {step})"
    return f"strftime('%Y-%m-%d %H:%M:%f', {start} + i * {step}, 'unixepoch') || '000'"


def seed(engine: Engine, rows: int) -> float:
    """Fill `request_log` with `rows` rows and the rollup from them; returns the seconds it took."""
    started = time.perf_counter()
    dialect = engine.dialect.name
    names = ["ts", *COLUMNS]
    values = [_ts_sql(dialect, rows), *COLUMNS.values()]
    if dialect == "postgresql":
        source = f"FROM generate_series(1::bigint, {rows}) AS g(i)"
    else:
        numbers = f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})"
        source = f"FROM ({numbers} SELECT i FROM n)"
    with engine.begin() as conn:
        for name in REQUEST_LOG_INDEXES:
            conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
        conn.execute(text("DROP INDEX IF EXISTS ix_request_log_ts"))
        conn.execute(text("DROP INDEX IF EXISTS ix_request_log_call_id"))
        if dialect == "sqlite":
            conn.execute(text("PRAGMA cache_size = -1000000"))
        conn.execute(text(f"INSERT INTO request_log ({', '.join(names)}) SELECT {', '.join(values)} {source}"))
    seeded = time.perf_counter()
    print(f"  rows inserted in {seeded - started:.0f} s", flush=True)
    with engine.begin() as conn:
        if dialect == "postgresql":
            conn.execute(text("SET maintenance_work_mem = '1GB'"))
        conn.execute(text("CREATE INDEX ix_request_log_ts ON request_log (ts)"))
        conn.execute(text("CREATE INDEX ix_request_log_call_id ON request_log (call_id)"))
        for name, indexed in REQUEST_LOG_INDEXES.items():
            conn.execute(text(f"CREATE INDEX {name} ON request_log ({', '.join(indexed)})"))
    indexed_at = time.perf_counter()
    print(f"  indexes built in {indexed_at - seeded:.0f} s", flush=True)
    day = "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD')" if dialect == "postgresql" else "substr(ts, 1, 10)"
    with engine.begin() as conn:
        for dim, value in [("day", "''"), ("key", "key_id"), ("team", "team"), ("customer", "customer"),
                           ("model", "model"), ("server", "server")]:  # fmt: skip
            conn.execute(text(
                f"INSERT INTO request_log_daily (day, dim, value, calls, errors, tokens, cost_usd)"
                f" SELECT {day}, '{dim}', {value}, count(*), sum(CASE WHEN outcome = 'ok' THEN 0 ELSE 1 END),"
                f" coalesce(sum(tokens), 0), coalesce(sum(cost_usd), 0) FROM request_log WHERE {value} IS NOT NULL"
                " GROUP BY 1, 3"
            ))  # fmt: skip
        conn.execute(text("ANALYZE"))
    print(f"  rollup and ANALYZE in {time.perf_counter() - indexed_at:.0f} s", flush=True)
    return time.perf_counter() - started


# -- measuring ---------------------------------------------------------------------------------------------


def _time(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _explain(engine: Engine, query: Any) -> str:
    compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
    prefix = "EXPLAIN" if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN"
    with engine.connect() as conn:
        return "\n".join("      " + str(r[-1]) for r in conn.execute(text(f"{prefix} {compiled}")))


def measure(engine: Engine, runs: int, explain: bool) -> list[tuple[str, str, float, float, float, float]]:
    """(shape, range, page p50, page p95, page+total p50, page+total p95) per shape and range."""
    out: list[tuple[str, str, float, float, float, float]] = []
    for label, since in [("24 h", END - timedelta(hours=24)), ("7 d", END - timedelta(days=7))]:
        for name, make in _shapes():
            pages: list[float] = []
            both: list[float] = []
            for n in range(runs):
                f = replace(make(n), since=since, until=END)
                with engine.connect() as conn:
                    page = _time(lambda: conn.execute(page_query(f, 50)).all())  # noqa: B023
                    total = _time(lambda: conn.execute(count_query(f)).one())  # noqa: B023
                pages.append(page)
                both.append(page + total)
            out.append((name, label, _pct(pages, 0.5), _pct(pages, 0.95), _pct(both, 0.5), _pct(both, 0.95)))
            print(f"  {name:28} {label:>4}  page p50 {out[-1][2]:7.2f} p95 {out[-1][3]:7.2f}   page+total p50"
                  f" {out[-1][4]:7.2f} p95 {out[-1][5]:7.2f} ms", flush=True)  # fmt: skip
            if explain and label == "24 h":
                f = replace(make(0), since=since, until=END)
                print(_explain(engine, page_query(f, 50)))
                print(_explain(engine, count_query(f)))
    return out


def measure_other(engine: Engine, runs: int) -> None:
    """The call tree, a deep page (cursor) and the summaries."""
    tree = [_time(lambda n=n: call_tree(engine, f"call_{N_ROWS - 98 - 10 * n}")) for n in range(runs)]
    print(f"  {'call tree':28}       p50 {_pct(tree, 0.5):7.2f} p95 {_pct(tree, 0.95):7.2f} ms")
    for by in ("day", "key", "team", "model"):
        times = [_time(lambda by=by: summarize(engine, by, date(2026, 11, 1), date(2026, 11, 30))) for _ in range(runs)]
        label = f"summary by {by} (30 d)"
        print(f"  {label:28}       p50 {_pct(times, 0.5):7.2f} p95 {_pct(times, 0.95):7.2f} ms")
    f = LogFilter(since=START, until=END, team="team_7")
    cursor_rows: list[Any] = []
    with engine.connect() as conn:
        rows = conn.execute(page_query(f, 50)).mappings().all()
        cursor_rows = list(rows)
    from hub.audit.logquery import encode_cursor

    cursor = encode_cursor(cursor_rows[-2]["ts"], cursor_rows[-2]["id"])
    with engine.connect() as conn:
        deep = [_time(lambda: conn.execute(page_query(f, 50, cursor)).all()) for _ in range(runs)]
    print(f"  {'next page (cursor), team':28}       p50 {_pct(deep, 0.5):7.2f} p95 {_pct(deep, 0.95):7.2f} ms")


# -- databases ---------------------------------------------------------------------------------------------


@contextmanager
def sqlite_database() -> Iterator[str]:
    root = Path(tempfile.mkdtemp(prefix="agenthub-logs-bench-"))
    try:
        yield f"sqlite:///{root / 'bench.db'}"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return candidates[-1] if candidates else None


@contextmanager
def postgres_database() -> Iterator[str]:
    """A throw-away PostgreSQL cluster on a loopback port; stopped by PID and deleted afterwards."""
    import psycopg

    initdb, postgres = _pg_binary("initdb"), _pg_binary("postgres")
    if initdb is None or postgres is None:
        raise SystemExit("PostgreSQL binaries not found (apt-get install postgresql), or pass --pg-url")
    root = Path(tempfile.mkdtemp(prefix="agenthub-logs-bench-pg-"))
    user = None
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
        user = "nobody"
    port = free_port()
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run([initdb, "-D", str(root / "data"), "-U", "agenthub", "--auth=trust", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True, user=user, cwd=root)  # fmt: skip
        proc = subprocess.Popen(
            [postgres, "-D", str(root / "data"), "-p", str(port), "-k", str(root), "-c", "listen_addresses=127.0.0.1",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "shared_buffers=2GB", "-c", "work_mem=64MB",
             "-c", "max_wal_size=8GB"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user=user, cwd=root,
        )  # fmt: skip
        conninfo = f"host=127.0.0.1 port={port} user=agenthub dbname=postgres"
        for _ in range(600):
            try:
                psycopg.connect(conninfo, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None:
                    raise SystemExit("postgres did not start") from None
                time.sleep(0.1)
        yield f"postgresql+psycopg://agenthub@127.0.0.1:{port}/postgres"
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def run(backend: str, url: str, rows: int, runs: int, explain: bool) -> None:
    store = SqlStore(url)
    try:
        print(f"{backend}: seeding {rows:,} rows", flush=True)
        seconds = seed(store.engine, rows)
        print(f"  seeded in {seconds:.0f} s; queries ({runs} runs each, different values):", flush=True)
        measure(store.engine, runs, explain)
        measure_other(store.engine, runs)
    finally:
        store.close()


def main() -> None:
    global N_ROWS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=N_ROWS)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", default=None, help="an existing PostgreSQL database to fill (it is written to)")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--no-explain", action="store_true", help="leave out the query plans")
    args = parser.parse_args()
    N_ROWS = args.rows
    if args.backend in ("sqlite", "both"):
        with sqlite_database() as url:
            run("SQLite", url, args.rows, args.runs, not args.no_explain)
    if args.backend in ("postgresql", "both"):
        if args.pg_url:
            run("PostgreSQL", args.pg_url, args.rows, args.runs, not args.no_explain)
        else:
            with postgres_database() as url:
                run("PostgreSQL", url, args.rows, args.runs, not args.no_explain)


if __name__ == "__main__":
    main()

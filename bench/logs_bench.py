"""The request log at scale: seed N rows (10 million by default) and time every query shape of the log API as the
API runs it (`read_page`: the page, where the next page resumes, the capped total), first page and a later page,
with the query plans.

SQLite: a file, seeded with one recursive-CTE `INSERT ... SELECT`; secondary indexes built after the rows (as fast
as a bulk load gets). PostgreSQL: `--pg-url`, or a throw-away cluster started from the Debian binaries
(initdb/postgres under /usr/lib/postgresql/*/bin) on a loopback port and stopped by PID; seeded with
`generate_series`. Both get the schema from `SqlStore` (tables, indexes, migrations), the daily rollup from one
aggregation of the seeded rows, and `VACUUM ANALYZE`. With `--keep DIR` the SQLite file stays in DIR and a
database that holds the rows already (SQLite in DIR, PostgreSQL at `--pg-url`) is not seeded again, only brought
to this checkout's schema by `SqlStore` (which is how an upgrade of a large log is timed: the figure is printed).

The rows span 30 days: 1,000 keys over 50 teams and 20 customers, 4 doors, 9 operations, 20 models, 30 servers
with 10 tools each, 1% 429s and 0.5% 502s, latencies up to 3 s, a cost on LLM calls, and one call in ten nested
in a loop. Each shape (every filter alone, then pairs and triples: selective and unselective ones, combinations
that rarely or never meet, a latency threshold few rows pass) runs `--runs` times with a different value each time
(another key, team...) over the last 24 hours and over the last 7 days; p50 and p95 in milliseconds of the first
page (50 rows, newest first, with its total) and of the page after it (through the first page's cursor), and how
many rows the first page held.

Run: `.venv/bin/python bench/logs_bench.py [--rows 10000000] [--backend sqlite|postgresql|both] [--runs 30]
[--keep DIR] [--pg-url URL]`
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
from hub.audit.logquery import (
    LogFilter,
    call_tree,
    count_query,
    driver,
    edge_query,
    page_query,
    plan,
    read_page,
    settle,
)
from hub.audit.logsummary import summarize
from hub.store.sql import SqlStore
from hub.store.tables import REQUEST_LOG_INDEXES, RETIRED_INDEXES, index_where

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


DOORS = ["mcp", "openai", "rest", "anthropic"]


def _shapes() -> list[tuple[str, Callable[[int], LogFilter]]]:
    """Each filter of the API, then pairs and triples, with a value that changes per run."""
    return [
        ("time range only", lambda n: LogFilter()),
        ("key", lambda n: LogFilter(key=f"key_{n * 37 % 1000}")),
        ("team", lambda n: LogFilter(team=f"team_{n % 50}")),
        ("customer", lambda n: LogFilter(customer=f"customer_{n % 20}")),
        ("door", lambda n: LogFilter(door=DOORS[n % 4])),
        ("operation", lambda n: LogFilter(operation=OPERATIONS[n % 9])),
        ("model", lambda n: LogFilter(model=f"model_{n % 20}")),
        ("server", lambda n: LogFilter(server=f"server_{n % 30}")),
        ("tool", lambda n: LogFilter(tool=f"tool_{n * 7 % 300}")),
        ("status 502 (0.5%)", lambda n: LogFilter(status=502)),
        ("status 200 (98.5%)", lambda n: LogFilter(status=200)),
        ("outcome (429s)", lambda n: LogFilter(outcome="rate_limit_error")),
        ("min latency (top 1%)", lambda n: LogFilter(min_latency_ms=2970.0)),
        ("min latency (top 0.02%)", lambda n: LogFilter(min_latency_ms=2999.4)),
        ("min cost (top 10%)", lambda n: LogFilter(min_cost_usd=0.009)),
        ("loop", lambda n: LogFilter(loop=f"call_{N_ROWS - 97 - 10 * n}")),
        ("key + model (sparse)", lambda n: LogFilter(key=f"key_{n * 37 % 1000}", model=f"model_{n % 20}")),
        ("team + model (half never meet)", lambda n: LogFilter(team=f"team_{n % 50}", model=f"model_{n % 20}")),
        ("team + door", lambda n: LogFilter(team=f"team_{n % 50}", door=DOORS[n % 4])),
        ("door + operation", lambda n: LogFilter(door=DOORS[n % 4], operation=OPERATIONS[n % 9])),
        ("server + tool", lambda n: LogFilter(server=f"server_{n % 30}", tool=f"tool_{n % 300}")),
        ("customer + status 502", lambda n: LogFilter(customer=f"customer_{n % 20}", status=502)),
        ("operation + status 200", lambda n: LogFilter(operation=OPERATIONS[n % 9], status=200)),
        ("model + min latency (top 1%)", lambda n: LogFilter(model=f"model_{n % 20}", min_latency_ms=2970.0)),
        ("team + min cost", lambda n: LogFilter(team=f"team_{n % 50}", min_cost_usd=0.009)),
        ("key + status 429", lambda n: LogFilter(key=f"key_{n * 37 % 1000}", status=429)),
        ("loop + operation", lambda n: LogFilter(loop=f"call_{N_ROWS - 97 - 10 * n}", operation="llm.chat")),
        ("team + door + min latency", lambda n: LogFilter(team=f"team_{n % 50}", door="openai", min_latency_ms=1500)),
        ("customer + model + min cost",
         lambda n: LogFilter(customer=f"customer_{n % 20}", model=f"model_{n % 20}", min_cost_usd=0.009)),
        ("door + operation + status 502",
         lambda n: LogFilter(door=DOORS[n % 4], operation=OPERATIONS[n % 9], status=502)),
        ("key + tool + min latency (rare)",
         lambda n: LogFilter(key=f"key_{n * 37 % 1000}", tool=f"tool_{n * 7 % 300}", min_latency_ms=2990.0)),
    ]  # fmt: skip


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
        for name in [*REQUEST_LOG_INDEXES, *RETIRED_INDEXES]:
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
            where = index_where(name, indexed)
            partial = f" WHERE {where}" if where is not None else ""
            conn.execute(text(f"CREATE INDEX {name} ON request_log ({', '.join(indexed)}){partial}"))
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
    _vacuum(engine)
    print(f"  rollup and ANALYZE in {time.perf_counter() - indexed_at:.0f} s", flush=True)
    return time.perf_counter() - started


def _vacuum(engine: Engine) -> None:
    """`VACUUM ANALYZE` on PostgreSQL (statistics, and the visibility map that index-only scans need: autovacuum
    keeps it on a live database), `ANALYZE` on SQLite."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE request_log"))
            conn.execute(text("ANALYZE"))
    else:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))


def rows_in(engine: Engine) -> int:
    """The highest row id of the log (the seeded rows are numbered 1..N)."""
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(max(id), 0) FROM request_log")).scalar_one())


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
        settle(conn)  # the settings a page is read with
        return "\n".join("      " + str(r[-1]) for r in conn.execute(text(f"{prefix} {compiled}")))


def measure(engine: Engine, runs: int, explain: bool) -> None:
    """p50 and p95 of the first page (with its total) and of the page after it, per shape and range."""
    for label, since in [("24 h", END - timedelta(hours=24)), ("7 d", END - timedelta(days=7))]:
        for name, make in _shapes():
            first: list[float] = []
            later: list[float] = []
            held: list[int] = []
            for n in range(runs):
                f = replace(make(n), since=since, until=END)
                page = _timed(lambda: read_page(engine, f, 50), first)  # noqa: B023
                held.append(len(page.data))
                if page.next_cursor is not None:
                    cursor = page.next_cursor
                    _timed(lambda: read_page(engine, f, 50, cursor), later)  # noqa: B023
            p_later = f"p50 {_pct(later, 0.5):6.1f} p95 {_pct(later, 0.95):6.1f}" if later else f"{'(one page)':>21}"
            print(f"  {name:34} {label:>4}  first page p50 {_pct(first, 0.5):6.1f} p95 {_pct(first, 0.95):6.1f}"
                  f"   next page {p_later} ms   rows on page 1: {min(held)}-{max(held)}", flush=True)  # fmt: skip
            if explain and label == "24 h":
                f = replace(make(0), since=since, until=END)
                print(
                    f"      driven by {driver(f) or 'the time range'};"
                    f" tests {', '.join(sorted(plan(f).rest)) or 'nothing'}"
                )
                for query in (page_query(f, 50), edge_query(f), count_query(f)):
                    print(_explain(engine, query))


def _timed(run: Callable[[], Any], into: list[float]) -> Any:
    started = time.perf_counter()
    out = run()
    into.append((time.perf_counter() - started) * 1000)
    return out


def measure_other(engine: Engine, runs: int) -> None:
    """The call tree, a deep page (cursor) and the summaries."""
    tree = [_time(lambda n=n: call_tree(engine, f"call_{N_ROWS - 98 - 10 * n}")) for n in range(runs)]
    print(f"  {'call tree':34}       p50 {_pct(tree, 0.5):6.1f} p95 {_pct(tree, 0.95):6.1f} ms")
    for by in ("day", "key", "team", "model"):
        times = [_time(lambda by=by: summarize(engine, by, date(2026, 11, 1), date(2026, 11, 30))) for _ in range(runs)]
        label = f"summary by {by} (30 d)"
        print(f"  {label:34}       p50 {_pct(times, 0.5):6.1f} p95 {_pct(times, 0.95):6.1f} ms")
    f = LogFilter(since=START, until=END, team="team_7")
    cursor = None
    for _ in range(100):  # 100 pages deep
        cursor = read_page(engine, f, 50, cursor, total=False).next_cursor
    deep: list[float] = []
    for _ in range(runs):
        _timed(lambda: read_page(engine, f, 50, cursor), deep)
    print(f"  {'page 101 (cursor), team, 30 d':34}       p50 {_pct(deep, 0.5):6.1f} p95 {_pct(deep, 0.95):6.1f} ms")


# -- databases ---------------------------------------------------------------------------------------------


@contextmanager
def sqlite_database(keep: str | None) -> Iterator[str]:
    """A file in `keep` (left there), or in a temporary directory deleted afterwards."""
    if keep is not None:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{Path(keep) / 'bench.db'}"
        return
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
    started = time.perf_counter()
    store = SqlStore(url)  # creates the schema, or brings a kept database to this checkout's version
    try:
        present = rows_in(store.engine)
        if present >= rows:
            print(f"{backend}: {present:,} rows there already; schema brought up to date in"
                  f" {time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
            _vacuum(store.engine)
        else:
            print(f"{backend}: seeding {rows:,} rows", flush=True)
            seconds = seed(store.engine, rows)
            print(f"  seeded in {seconds:.0f} s", flush=True)
        print(f"  queries ({runs} runs each, different values):", flush=True)
        measure(store.engine, runs, explain)
        measure_other(store.engine, runs)
    finally:
        store.close()


def main() -> None:
    global N_ROWS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=N_ROWS)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", default=None, help="a PostgreSQL database to fill (it is written to), or reuse")
    parser.add_argument("--keep", default=None, help="a directory to keep the SQLite database in, and reuse")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--no-explain", action="store_true", help="leave out the query plans")
    args = parser.parse_args()
    N_ROWS = args.rows
    if args.backend in ("sqlite", "both"):
        with sqlite_database(args.keep) as url:
            run("SQLite", url, args.rows, args.runs, not args.no_explain)
    if args.backend in ("postgresql", "both"):
        if args.pg_url:
            run("PostgreSQL", args.pg_url, args.rows, args.runs, not args.no_explain)
        else:
            with postgres_database() as url:
                run("PostgreSQL", url, args.rows, args.runs, not args.no_explain)


if __name__ == "__main__":
    main()

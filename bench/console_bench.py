"""The admin console at scale: every page's time with N request-log rows (10 million by default).

Seeds the rows as `bench/logs_bench.py` does (SQLite; `--keep DIR` keeps the file and reuses it), starts a hub on
that database on a loopback port, signs in through the console's form, then fetches each page `--runs` times and
prints p50 and p95 in milliseconds, measured at the client over loopback (so an upper bound of the server's time).

Run: `.venv/bin/python bench/console_bench.py [--rows 10000000] [--runs 20] [--keep DIR]`
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from pathlib import Path

import httpx2
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._procs import free_port
from bench.logs_bench import rows_in, seed, sqlite_database
from hub.app import open_hub
from hub.http import build_app
from hub.settings import settings_from_dict
from hub.store.sql import SqlStore

TOKEN = "console-bench-admin-token-0123456789abcdef"


def pages(http: httpx2.Client) -> dict[str, str]:
    """The pages to time: each list page, a filtered log, the log's second page, one call's tree."""
    first = http.get("/ui/logs").text
    more = re.search(r'<a href="(/ui/logs\?[^"]*cursor=[^"]+)"', first)
    call = re.search(r'href="/ui/logs/([^"?]+)"', first)
    out = {
        "overview": "/ui/overview",
        "keys": "/ui/keys",
        "servers": "/ui/servers",
        "logs": "/ui/logs",
        "logs ?since=24h&team=team-7": "/ui/logs?since=24h&team=team-7",
        "logs ?outcome=error&since=7d": "/ui/logs?outcome=error&since=7d",
        "audit": "/ui/audit",
    }
    if more is not None:
        out["logs, next page"] = more.group(1).replace("&amp;", "&")
    if call is not None:
        out["one call's tree"] = f"/ui/logs/{call.group(1)}"
    return out


def measure(base: str, runs: int) -> None:
    with httpx2.Client(base_url=base, timeout=120) as http:
        form = http.get("/ui/signin").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None
        signed = http.post("/ui/signin", data={"csrf": csrf.group(1), "token": TOKEN})
        assert signed.status_code == 303, signed.text
        for name, path in pages(http).items():
            times: list[float] = []
            for _ in range(runs):
                started = time.perf_counter()
                answer = http.get(path)
                times.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            times.sort()
            p50, p95 = times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.95))]
            print(f"  {name:<32} p50 {p50:8.1f} ms   p95 {p95:8.1f} ms", flush=True)


def run(url: str, rows: int, runs: int) -> None:
    store = SqlStore(url)
    try:
        present = rows_in(store.engine)
        if present < rows:
            print(f"seeding {rows:,} rows", flush=True)
            print(f"  seeded in {seed(store.engine, rows):.0f} s", flush=True)
        else:
            print(f"{present:,} rows there already", flush=True)
    finally:
        store.close()
    port = free_port()
    settings = settings_from_dict(
        {"hub": {"listen": f"127.0.0.1:{port}", "database": url}}, Path(url.removeprefix("sqlite:///")).parent / "x"
    )
    hub = open_hub(settings)
    server = uvicorn.Server(uvicorn.Config(build_app(settings, hub), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        print(f"pages ({runs} runs each):", flush=True)
        measure(f"http://127.0.0.1:{port}", runs)
    finally:
        server.should_exit = True
        thread.join()
        hub.store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", default=None, help="a directory to keep the SQLite database in, and reuse")
    args = parser.parse_args()
    os.environ["AGENTHUB_ADMIN_TOKEN"] = TOKEN
    os.environ.setdefault("AGENTHUB_AUDIT_KEY", "console-bench-audit-key-0123456789abcdef0123")
    with sqlite_database(args.keep) as url:
        run(url, args.rows, args.runs)


if __name__ == "__main__":
    main()

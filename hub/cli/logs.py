"""`agenthub logs`: the request log from a terminal, read straight from the database.

```
agenthub logs export [--since 24h] [--until TIME] [--format jsonl|csv] [--output FILE] [filters]
agenthub logs tail   [--lines N] [--interval S] [--json]
```
`export` streams the rows of a time range oldest first, a thousand at a time (keyset batches, so memory stays
flat over millions of rows and no read transaction stays open); the filters are the log API's. `tail` prints
the last rows, then polls the database every `--interval` seconds for rows past the last one shown, until
interrupted; it works against any replica's database, with or without a hub running.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

import orjson

from hub.settings import load_settings

if TYPE_CHECKING:
    from hub.store.sql import SqlStore

FILTER_OPTIONS = ("key", "team", "customer", "door", "operation", "model", "server", "tool", "outcome", "status",
                  "min_latency_ms", "min_cost_usd", "loop")  # fmt: skip
"""The log API's filters, as options (`--min-latency-ms`); the database modules load only when a command runs."""


def _store(args: argparse.Namespace) -> SqlStore:
    from hub.store.sql import SqlStore

    return SqlStore(load_settings(args.config).database_url())


def cmd_logs_export(args: argparse.Namespace) -> int:
    from hub.audit.logquery import BadFilter, export_rows, parse_filter

    params = {name: str(value) for name in ("since", "until", *FILTER_OPTIONS)
              if (value := getattr(args, name, None)) is not None}  # fmt: skip
    try:
        f = parse_filter(params, datetime.now(UTC))
    except BadFilter as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    store = _store(args)
    out: IO[str] = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
    try:
        write = _csv_writer(out) if args.format == "csv" else _jsonl_writer(out)
        count = 0
        for row in export_rows(store.engine, f):
            write(row)
            count += 1
        out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
        store.close()
    if args.output:
        sys.stderr.write(f"{count} rows written to {args.output}\n")
    return 0


def _jsonl_writer(out: IO[str]) -> Callable[[dict[str, Any]], None]:
    def write(row: dict[str, Any]) -> None:
        out.write(orjson.dumps(row).decode() + "\n")

    return write


def _csv_writer(out: IO[str]) -> Callable[[dict[str, Any]], None]:
    writer: csv.DictWriter[str] | None = None

    def write(row: dict[str, Any]) -> None:
        nonlocal writer
        if writer is None:
            writer = csv.DictWriter(out, fieldnames=list(row))
            writer.writeheader()
        writer.writerow(row)

    return write


def line(row: dict[str, Any]) -> str:
    """One row as `tail` prints it: time, status, outcome, door, operation, target, key, latency, cost."""
    cost = f" ${row['cost_usd']:.6f}" if row.get("cost_usd") is not None else ""
    key = row.get("key_name") or row.get("key_id") or "-"
    parent = f" in {row['loop_id']}" if row.get("loop_id") else ""
    return (
        f"{row['ts']} {row['status']} {row['outcome']} {row['door']} {row['operation']} {row['target']}"
        f" key={key} {row['latency_ms']:.1f}ms{cost} {row['call_id']}{parent}"
    )


def cmd_logs_tail(args: argparse.Namespace) -> int:
    from hub.audit.logquery import last_id, rows_after

    store = _store(args)
    show = (lambda row: orjson.dumps(row).decode()) if args.json else line
    try:
        start = max(0, last_id(store.engine) - args.lines)
        after = start
        while True:
            rows = rows_after(store.engine, after)
            for row in rows:
                sys.stdout.write(show(row) + "\n")
                after = row["id"]
            sys.stdout.flush()
            if len(rows) < 1000:
                time.sleep(args.interval)  # the poll interval of a terminal follower; nothing waits on it
    except KeyboardInterrupt:
        return 0
    finally:
        store.close()


def add_logs_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register `agenthub logs export|tail`."""
    logs = sub.add_parser("logs", help="the request log").add_subparsers(dest="logs_command", required=True)
    export = logs.add_parser("export", parents=[common], help="write a time range of the request log")
    export.add_argument("--since", default="24h", help="RFC 3339 time or a span back from now (24h, 7d); default 24h")
    export.add_argument("--until", default=None, help="RFC 3339 time or a span back from now; default now")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--output", default=None, help="file to write (default: standard output)")
    for name in FILTER_OPTIONS:
        export.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, help=f"filter on {name}")
    export.set_defaults(func=cmd_logs_export)
    tail = logs.add_parser("tail", parents=[common], help="print new request-log rows as they are written")
    tail.add_argument("--lines", "-n", type=int, default=10, help="rows already written to show first (default 10)")
    tail.add_argument("--interval", type=float, default=1.0, help="seconds between polls (default 1)")
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.set_defaults(func=cmd_logs_tail)

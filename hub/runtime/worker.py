"""The children of the `agenthub serve --workers N` supervisor (`hub.runtime.supervisor`), and how many workers a
configuration asks for.

- `python -m hub.runtime.worker prepare --report-fd F ...`: what must happen once per machine, not per worker: the
  configuration is validated (a refusal prints `config error: ...` and exits 2, as `agenthub serve` does), the
  database is migrated, and the secrets of configured keys without one are generated and stored, so every worker
  finds them (they are reported to the supervisor, which prints them once). The report is one JSON object on `F`.
- `python -m hub.runtime.worker serve --fd S --ready-fd R ...`: one worker. It serves the same app with the same
  HTTP protocol class as a single-process hub (`hub.runtime.serving.serve_hub`) on the inherited listening socket `S`,
  and writes one JSON line on `R` once it serves (with the upstreams' state lines when asked to `--announce`). Its
  share of the Code Mode sandbox pool is `[hub] code_mode_pool` divided by the worker count, at least one.

A worker asks the kernel to stop it when the supervisor dies (`PR_SET_PDEATHSIG`), so no worker outlives it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from connectors.auth.crypto import MASTER_KEY_ENV
from hub.settings import MAX_WORKERS, ConfigError, Settings, load_settings, parse_listen

if TYPE_CHECKING:
    from hub.app import Hub

__all__ = ["WORKERS_ENV", "main", "pool_share", "shares_sessions", "usable_cores", "worker_count"]

WORKERS_ENV = "AGENTHUB_WORKERS"
"""Overrides `[hub] workers` (below `--workers`)."""


def usable_cores() -> int:
    """The cores this process may run on: `os.process_cpu_count()` where Python has it, else the scheduler's
    affinity mask, else `os.cpu_count()`."""
    count = getattr(os, "process_cpu_count", None)
    if callable(count):
        found = count()
        if isinstance(found, int):
            return max(1, found)
    with contextlib.suppress(AttributeError, OSError):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def worker_count(settings: Settings, cli: int | None) -> int:
    """Workers to run: `--workers`, else `AGENTHUB_WORKERS`, else `[hub] workers`. `auto` is `usable_cores()`: the
    workers of one supervisor always share handshake-era MCP sessions (through Redis, or through the supervisor
    without it; see `hub.doors.mcp_shared`).

    Raises:
        ConfigError: `AGENTHUB_WORKERS` is neither `auto` nor a number in range.
    """
    if cli is not None:
        return cli
    value: int | str = os.environ.get(WORKERS_ENV) or settings.hub.workers
    if value == "auto":
        return usable_cores()
    if isinstance(value, str):
        if not value.isdigit():
            raise ConfigError(f'{WORKERS_ENV} must be "auto" or a number from 1 to {MAX_WORKERS}, got {value!r}')
        value = int(value)
    if not 1 <= value <= MAX_WORKERS:
        raise ConfigError(f'workers must be "auto" or a number from 1 to {MAX_WORKERS}, got {value}')
    return value


def shares_sessions(settings: Settings) -> bool:
    """Whether the replicas of this configuration (hubs on other machines, or started apart) serve each other's
    handshake-era MCP sessions: Redis and `AGENTHUB_MASTER_KEY`. The workers of one supervisor always do."""
    return settings.redis_url() is not None and bool(os.environ.get(MASTER_KEY_ENV))


def pool_share(pool: int, workers: int) -> int:
    """One worker's share of the machine's Code Mode sandbox pool: an equal part, at least one process."""
    return max(1, pool // max(1, workers))


# -- prepare ----------------------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace) -> int:
    from hub.runtime.serving import open_checked

    settings = load_settings(args.config, listen=args.listen)
    workers = worker_count(settings, args.workers)
    host, port = parse_listen(settings.hub.listen)
    opened = open_checked(settings)  # the store's constructor migrates the schema
    try:
        opened.sync_config_keys()
    finally:
        opened.store.close()
    report = {
        "host": host,
        "port": port,
        "workers": workers,
        "grace": settings.hub.shutdown_grace_s,
        "redis": settings.redis_url() is not None,
        "keys": [[key.name, key.secret] for key in opened.generated_keys],
    }
    with os.fdopen(args.report_fd, "wb") as out:
        out.write(orjson.dumps(report))
    return 0


# -- serve ------------------------------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    from hub.runtime.serving import open_checked, serve_hub, settle_gc, upstream_lines

    _die_with_parent()
    _name_worker(args.index)
    settings = load_settings(args.config, listen=args.listen)
    share = pool_share(settings.hub.code_mode_pool, args.workers or 1)
    settings = settings.model_copy(update={"hub": settings.hub.model_copy(update={"code_mode_pool": share})})
    sock = socket.socket(fileno=args.fd)  # family and type read from the descriptor
    ready_fd: int = args.ready_fd
    announce: bool = args.announce

    def ready(hub: Hub) -> None:
        lines = upstream_lines(hub) if announce else []
        with os.fdopen(ready_fd, "wb") as out:
            out.write(orjson.dumps({"pid": os.getpid(), "lines": lines}) + b"\n")
        settle_gc()

    serve_hub(settings, open_checked(settings), on_ready=ready, sockets=[sock])
    return 0


_PR_SET_PDEATHSIG = 1
_REPLICA_ENV = "AGENTHUB_REPLICA_NAME"
"""= `hub.doors.mcp_shared.REPLICA_ENV` (not imported here: the worker loads the app once its settings are read)."""


def _name_worker(index: int) -> None:
    """`AGENTHUB_REPLICA_NAME` (sent back as `x-agenthub-replica`, see `hub.doors.mcp_shared`) gains this worker's
    index, `NAME/INDEX`, so an operator sees which worker of which replica served a request."""
    name = os.environ.get(_REPLICA_ENV)
    if name:
        os.environ[_REPLICA_ENV] = f"{name}/{index}"


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the supervisor dies (it drains like any stop); elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() == 1:  # the supervisor was already gone
        raise SystemExit(1)


# -- command line -----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", required=True)
    common.add_argument("--listen", default=None)
    common.add_argument("--workers", type=int, default=None)
    parser = argparse.ArgumentParser(prog="python -m hub.runtime.worker")
    sub = parser.add_subparsers(dest="command", required=True)
    ready = sub.add_parser("prepare", parents=[common])
    ready.add_argument("--report-fd", type=int, required=True)
    ready.set_defaults(func=prepare)
    work = sub.add_parser("serve", parents=[common])
    work.add_argument("--fd", type=int, required=True)
    work.add_argument("--ready-fd", type=int, required=True)
    work.add_argument("--index", type=int, default=0)
    work.add_argument("--announce", action="store_true")
    work.set_defaults(func=serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from hub.runtime.serving import configure_logging

    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        sys.stderr.write(f"config error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())

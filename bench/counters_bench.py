"""Reserve + settle round trips per second, and CPU per pair, on each counter store.

Stores: `InMemoryCounters` (one process), `SocketCounters` against a `CounterServer` in another process (what
`agenthub serve --workers N` runs: the server lives in the supervisor), and `RedisCounters` against a
redis-server the benchmark starts on a free port and stops by PID. Each pair is one `reserve` and one `settle`
over `--slots` counters (7 = key + team + customer levels, as a governed call with limits on every level),
sequential (`--concurrency 1`) or from many tasks at once. CPU is reported for the calling process (the worker)
and for the server process (the supervisor, or redis-server), per pair.

Run: `.venv/bin/python bench/counters_bench.py [--n 20000] [--slots 1 7] [--concurrency 1 32] [--stores ...]`
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._procs import ROOT, free_port, start, stop
from hub.governance.counters import Counters, Slot
from hub.store.counters import InMemoryCounters
from hub.store.redis_counters import RedisCounters
from hub.store.socket_counters import SocketCounters

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used, from /proc; this process when `pid` is None."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


@dataclass
class Store:
    name: str
    counters: Counters
    server_pid: int | None


@contextlib.contextmanager
def _counter_server() -> Generator[tuple[str, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "counters.sock")
        argv = [sys.executable, "-m", "hub.store.shared_counters", path]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
        try:
            assert proc.stdout is not None
            if not proc.stdout.readline().startswith("listening on"):
                raise RuntimeError(f"the counter server exited with {proc.wait()}")
            yield path, proc.pid
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


@contextlib.contextmanager
def _redis_server() -> Generator[tuple[str, int]]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server), or leave out --stores redis")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = start(argv, port)
    try:
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        stop(proc)


@contextlib.asynccontextmanager
async def _store(name: str) -> AsyncGenerator[Store]:
    with contextlib.ExitStack() as stack:
        if name == "memory":
            counters: Counters = InMemoryCounters()
            pid = None
        elif name == "socket":
            path, pid = stack.enter_context(_counter_server())
            counters = SocketCounters(path)
        else:
            url, pid = stack.enter_context(_redis_server())
            counters = RedisCounters.from_url(url)
        try:
            yield Store(name, counters, pid)
        finally:
            await counters.aclose()


async def _run(store: Store, n: int, slots: int, concurrency: int, run: int) -> tuple[float, float, float]:
    """Pairs per second, client CPU µs per pair, server CPU µs per pair."""
    level = [Slot(f"run{run}/level{i}", 10**15, 1, 3600.0) for i in range(slots)]
    ids = itertools.count()
    per_task = n // concurrency

    async def pairs(count: int = per_task) -> None:
        counters = store.counters
        for _ in range(count):
            hold = f"h{next(ids)}"
            await counters.reserve(level, hold_id=hold, now=1000.0, lease=60.0)
            await counters.settle(level, hold_id=hold, now=1000.0)

    await pairs(200)  # connect, and warm the code paths
    total = per_task * concurrency
    wall, cpu, server = time.perf_counter(), _cpu_of(None), _cpu_of(store.server_pid)
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(pairs)
    wall = time.perf_counter() - wall
    cpu = _cpu_of(None) - cpu
    server = _cpu_of(store.server_pid) - server if store.server_pid is not None else 0.0
    return total / wall, cpu / total * 1e6, server / total * 1e6


async def main(args: argparse.Namespace) -> None:
    print(
        f"{'store':<8} {'slots':>5} {'conc':>5} {'pairs/s':>10} {'worker CPU µs/pair':>19} {'server CPU µs/pair':>19}"
    )
    run = itertools.count()
    for name in args.stores:
        async with _store(name) as store:
            for slots in args.slots:
                for concurrency in args.concurrency:
                    rate, cpu, server = await _run(store, args.n, slots, concurrency, next(run))
                    shown = f"{server:19.1f}" if store.server_pid is not None else f"{'-':>19}"
                    print(f"{name:<8} {slots:>5} {concurrency:>5} {rate:>10.0f} {cpu:>19.1f} {shown}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Reserve + settle round trips on each counter store.")
    parser.add_argument("--n", type=int, default=20000, help="reserve + settle pairs per measurement")
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 7])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--stores", nargs="+", choices=["memory", "socket", "redis"], default=["memory", "socket", "redis"]
    )
    parser.add_argument("--asyncio", action="store_true", help="the standard event loop instead of uvloop")
    options = parser.parse_args()
    anyio.run(main, options, backend_options={"use_uvloop": not options.asyncio})

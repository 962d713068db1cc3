"""Code Mode sandbox benchmark: python bench/sandbox_bench.py [--runs N] [--cold]

Measures in one run: warm run of a trivial program, per-call bridge latency, a 10-call program vs 10 separate
runs of one call, worker start from the cache, cold build (with --cold: an empty cache directory), and runs per
second through the worker pool. Prints a table; medians unless stated.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox import RunOk, SandboxLimits, SandboxPool, ensure_artifact


async def echo(name: str, arguments: dict[str, Any]) -> Any:
    return arguments


async def timed(pool: SandboxPool, code: str, limits: SandboxLimits | None = None) -> float:
    started = time.perf_counter()
    result = await pool.run(code, echo, limits=limits)
    elapsed = time.perf_counter() - started
    assert isinstance(result, RunOk), result
    return elapsed


async def median_of(pool: SandboxPool, code: str, runs: int, limits: SandboxLimits | None = None) -> float:
    return statistics.median([await timed(pool, code, limits) for _ in range(runs)])


async def main(runs: int, cold: bool) -> None:
    rows: list[tuple[str, str]] = []
    if cold:
        with tempfile.TemporaryDirectory() as empty:
            started = time.perf_counter()
            async with SandboxPool(size=1, cache_dir=Path(empty)) as pool:
                elapsed = time.perf_counter() - started
                rows.append(("cold start, empty cache (build + compile + 1 worker)", f"{elapsed:.1f} s"))
                assert pool.built
    ensure_artifact()
    started = time.perf_counter()
    async with SandboxPool(size=1) as pool:
        elapsed = time.perf_counter() - started
        rows.append(("start from cache (artifact check + 1 worker ready)", f"{elapsed * 1000:.0f} ms"))
        warm = await median_of(pool, "result = 1", runs)
        rows.append(("warm run, trivial program (end to end)", f"{warm * 1000:.2f} ms"))
        many = SandboxLimits(max_tool_calls=10_000)
        n = 1000
        loop = await median_of(pool, f"for i in range({n}):\n    tools.call('echo', {{'i': i}})", 5, many)
        base = await median_of(pool, f"for i in range({n}):\n    pass", 5, many)
        rows.append((f"bridge latency per tool call ({n} calls)", f"{(loop - base) / n * 1e6:.0f} us"))
        ten = await median_of(pool, "result = [tools.call('echo', {'i': i}) for i in range(10)]", runs)
        one = await median_of(pool, "result = tools.call('echo', {'i': 0})", runs)
        rows.append(("one program making 10 calls", f"{ten * 1000:.2f} ms"))
        rows.append(("10 separate runs of one call each", f"{one * 10 * 1000:.2f} ms"))
        fan = await median_of(pool, "result = tools.call_many([('echo', {'i': i}) for i in range(10)])", runs)
        rows.append(("one program, 10 calls with call_many", f"{fan * 1000:.2f} ms"))
    for size in (1, 2):
        async with SandboxPool(size=size) as pool:
            total = 200
            started = time.perf_counter()
            async with anyio.create_task_group() as group:
                for _ in range(total):
                    group.start_soon(timed, pool, "result = sum(range(100))")
            rate = total / (time.perf_counter() - started)
            rows.append((f"runs per second, pool of {size}", f"{rate:.0f}"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--cold", action="store_true", help="also measure a build into an empty cache")
    args = parser.parse_args()
    anyio.run(main, args.runs, args.cold)

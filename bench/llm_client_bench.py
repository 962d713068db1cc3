"""HTTP client choice for the LLM data plane, and the router's own overhead.

Starts the fake OpenAI server (uvicorn, one worker, in a subprocess) and measures chat-completion
requests per second through:

  - `http1.H1Pool` (the client `llm/transport.py` and the MCP hot path use),
  - aiohttp's ClientSession,
  - httpx2's AsyncClient,
  - `llm.Router.chat` (the transport plus routing, translation, usage and cost),
  - `llm.Router.stream_chat` (a 16-chunk stream, fully read).

Each at a fixed concurrency, with this process's CPU time per request (the server runs in another).
Run: `.venv/bin/python bench/llm_client_bench.py [seconds] [concurrency]`.

`--baseline DIR` compares `http1` with another version of its client, `DIR/http1/client.py` (for instance the
committed one: `mkdir -p /tmp/h1_before/http1 && git show HEAD:http1/client.py > /tmp/h1_before/http1/client.py`;
the file must import nothing of this project): the two alternate for `--rounds` rounds against the same server,
and the medians and their ratio are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx2

from http1 import H1Pool
from llm import Router, load_config
from llm.testing import FakeScript, Reply, openai_app

BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}'
app = openai_app(FakeScript(default=Reply("a sixty-four character answer, split in sixteen pieces of four")))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _measure(one: Callable[[], Awaitable[object]], seconds: float, concurrency: int) -> tuple[float, float]:
    """Requests per second and this process's CPU microseconds per request."""
    deadline = time.perf_counter() + seconds
    done = 0
    cpu = time.process_time()

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await one()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = done / (time.perf_counter() - start)
    return rate, (time.process_time() - cpu) / max(done, 1) * 1e6


async def _rate(name: str, one: Callable[[], Awaitable[object]], seconds: float, concurrency: int) -> float:
    rate, per_request = await _measure(one, seconds, concurrency)
    print(f"{name:<28} {rate:8.0f} req/s {per_request:7.1f} us CPU/request")
    return rate


def _load_baseline(directory: str) -> Any:
    """The `H1Pool` of `directory/http1/client.py`, loaded beside the current one under another module name."""
    path = Path(directory) / "http1" / "client.py"
    spec = importlib.util.spec_from_file_location("http1_baseline_client", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.H1Pool


def _pool_factory(which: str, baseline: str | None) -> Any:
    return H1Pool if which == "current" else _load_baseline(baseline or "")


async def _requests(pool: Any, count: int, concurrency: int) -> None:
    """`count` chat requests through `pool`, `concurrency` at a time."""
    headers = [("content-type", "application/json"), ("authorization", "Bearer sk-bench")]
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await pool.request("POST", "/v1/chat/completions", headers, BODY)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def compare(url: str, seconds: float, concurrency: int, baseline: Any, rounds: int) -> None:
    """`http1` against the baseline client, alternating for `rounds` rounds; medians, minima and their ratios."""
    headers = [("content-type", "application/json"), ("authorization", "Bearer sk-bench")]
    results: dict[str, list[tuple[float, float]]] = {"baseline": [], "current": []}
    for n in range(rounds):
        order = [("baseline", baseline), ("current", H1Pool)]
        for name, factory in order if n % 2 == 0 else order[::-1]:
            pool = factory(url, max_connections=concurrency)

            async def one(pool: Any = pool) -> None:
                await pool.request("POST", "/v1/chat/completions", headers, BODY)

            await _requests(pool, concurrency, concurrency)  # connections open before the clock starts
            rate, cpu = await _measure(one, seconds, concurrency)
            await pool.aclose()
            results[name].append((rate, cpu))
            print(f"round {n + 1} {name:<9} {rate:8.0f} req/s {cpu:7.1f} us CPU/request")
    for label, pick in (("median", statistics.median), ("best", None)):
        figures: dict[str, tuple[float, float]] = {}
        for name, runs in results.items():
            rates, cpus = [r for r, _ in runs], [c for _, c in runs]
            figures[name] = (pick(rates), pick(cpus)) if pick else (max(rates), min(cpus))
            print(f"{label:<7} {name:<9} {figures[name][0]:8.0f} req/s {figures[name][1]:7.1f} us CPU/request")
        (base_rate, base_cpu), (rate, cpu) = figures["baseline"], figures["current"]
        print(f"{label:<7} current / baseline: {rate / base_rate:.3f}x req/s, {cpu / base_cpu:.3f}x CPU per request")


def _instructions(url: str, which: str, baseline: str | None, count: int, concurrency: int) -> int:
    """Instructions a client process executes for `count` requests (valgrind's callgrind; start-up included)."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--count-child",
        url,
        which,
        str(count),
        str(concurrency),
        *(["--baseline", baseline] if baseline else []),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rpartition(":")[2])
    raise SystemExit(f"no instruction count from callgrind:\n{done.stderr}")


def count_instructions(url: str, baseline: str, concurrency: int, calls: int) -> None:
    """Instructions per request of each client: the difference between runs of `calls` and `2 * calls` requests,
    so start-up and imports cancel out (the same count on a busy or an idle machine)."""
    per_request: dict[str, float] = {}
    for which in ("baseline", "current"):
        low = _instructions(url, which, baseline, calls, concurrency)
        high = _instructions(url, which, baseline, 2 * calls, concurrency)
        per_request[which] = (high - low) / calls
        print(f"{which:<9} {per_request[which]:10.0f} instructions/request (c={concurrency})")
    print(f"current / baseline: {per_request['current'] / per_request['baseline']:.3f}x instructions per request")


async def _count_child(url: str, which: str, baseline: str | None, count: int, concurrency: int) -> None:
    pool = _pool_factory(which, baseline)(url, max_connections=concurrency)
    await _requests(pool, concurrency, concurrency)  # connections open in both runs alike
    await _requests(pool, count, concurrency)
    await pool.aclose()


async def main(url: str, seconds: float, concurrency: int) -> None:
    """Measure each client against the fake at `url`."""
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
    pool = H1Pool(url, max_connections=concurrency)
    pairs = list(headers.items())

    async def h1() -> None:
        await pool.request("POST", "/v1/chat/completions", pairs, BODY)

    await _rate("http1", h1, seconds, concurrency)
    await pool.aclose()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def aio() -> None:
            async with session.post(f"{url}/v1/chat/completions", data=BODY, headers=headers) as resp:
                await resp.read()

        await _rate("aiohttp", aio, seconds, concurrency)
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx2.AsyncClient(limits=limits) as client:

        async def hx() -> None:
            await client.post(f"{url}/v1/chat/completions", content=BODY, headers=headers)

        await _rate("httpx2", hx, seconds, concurrency)
    os.environ["BENCH_KEY"] = "sk-bench"
    config = load_config(
        {"providers": {"oa": {"kind": "openai", "base_url": f"{url}/v1", "keys": [{"secret": "env:BENCH_KEY"}]}}}
    )
    async with Router(config) as router:
        request = {"model": "oa/gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}

        async def routed() -> None:
            await router.chat(request)

        async def streamed() -> None:
            async with await router.stream_chat(request) as stream:
                async for _ in stream:
                    pass

        await _rate("Router.chat", routed, seconds, concurrency)
        await _rate("Router.stream_chat", streamed, seconds, concurrency)


def run(
    seconds: float, concurrency: int, baseline: str | None = None, rounds: int = 5, instructions: int | None = None
) -> None:
    """Start the fake server in a subprocess, wait until it listens, measure, stop it."""
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            os.path.dirname(__file__),
            "llm_client_bench:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
    )
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        if baseline is None:
            asyncio.run(main(url, seconds, concurrency))
        elif instructions:
            count_instructions(url, baseline, concurrency, instructions)
        else:
            asyncio.run(compare(url, seconds, concurrency, _load_baseline(baseline), rounds))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--count-child"]:
        url, which, count, concurrency = sys.argv[2:6]
        asyncio.run(_count_child(url, which, sys.argv[7] if len(sys.argv) > 7 else None, int(count), int(concurrency)))
        raise SystemExit
    parser = argparse.ArgumentParser(description="HTTP clients against the fake OpenAI provider.")
    parser.add_argument("seconds", type=float, nargs="?", default=5.0)
    parser.add_argument("concurrency", type=int, nargs="?", default=32)
    parser.add_argument("--baseline", metavar="DIR", help="compare http1 with DIR/http1/client.py")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of a comparison")
    parser.add_argument(
        "--instructions", type=int, metavar="CALLS", help="with --baseline: count instructions per request instead"
    )
    args = parser.parse_args()
    run(args.seconds, args.concurrency, args.baseline, args.rounds, args.instructions)

"""The LLM doors' cost: the hub against the same mock upstream called directly, and against a bare proxy.

Three targets, each a separate process, all in front of one mock upstream (the `llm.testing` OpenAI and Anthropic
fakes under uvicorn with uvloop and httptools):

  - direct: the mock itself (the floor);
  - bare:   a pass-through proxy, starlette + the hub's HTTP client (`http1`), no governance (the Python
            ceiling);
  - hub:    `agenthub serve` with a key that has a budget and a rate limit (authn, limits, audit all active).

For each: non-streaming chat throughput at concurrency 32 and 128, p50/p99 latency at concurrency 1, the same
for streaming chat (16 chunks, read to the end) and embeddings, and for the Anthropic door's `/v1/messages`
passed through to the Anthropic fake, whole and streamed (16 text deltas). The load generator is aiohttp in this
process.
The proxies' CPU time per request (from /proc, during the throughput runs) is printed too: on a shared machine
it moves much less than requests per second do.

With `rounds` > 1 the runs of the three targets (throughput, then latency) alternate that many times and each
figure is the median over the rounds, so a burst of other work on the machine does not land on one target only.
`--baseline DIR` adds a fourth target, the hub of another checkout (say `git worktree add /tmp/base HEAD~1`), for
before/after figures taken in the same rounds.

The embeddings case asks for two vectors of 1,536 dimensions (the size of OpenAI's small model), about 64 KB of
JSON back: a vector-sized body is what an embeddings proxy handles.

`--workers N` starts the hub (and the baseline hub) with N worker processes (default 1); the hub's CPU time is then
that of its supervisor and all its workers. Each row also carries the load generator's own CPU during the throughput
runs (`loadgen32`, `loadgen128`, in cores), since on a small machine it shares the cores with the hub.

`--telemetry` measures only what observability costs: this tree's hub with metrics off, with metrics on, and with
tracing on at 100% sampling (exported to a sink on 127.0.0.1), in alternating rounds (`bench/_telemetry.py`):
throughput and CPU per request at concurrency 32 and 128, for chat (or the `--cases` given).

Run: `.venv/bin/python bench/llm_bench.py [seconds-per-run] [rounds] [--baseline DIR] [--cases messages,...]
[--workers N] [--telemetry]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from _procs import free_port, start, stop
from _workers import start_hub_workers, tree_cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
KEY = "ahk-bench-llm-000000000000000000000000000000000"
CHAT = b'{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"hello there"}],"max_tokens":64}'
STREAM = CHAT[:-1] + b',"stream":true}'
EMBED = (
    b'{"model":"openai/text-embedding-3-small","input":["one sentence to embed","and another one"],"dimensions":1536}'
)
"""Two inputs at the small model's full size: 1,536 floats each, about 64 KB of JSON back."""
MESSAGES = b'{"model":"anthropic/claude-bench","max_tokens":64,"messages":[{"role":"user","content":"hello there"}]}'
MESSAGES_STREAM = MESSAGES[:-1] + b',"stream":true}'
ANSWER = "a sixty-four character answer, split in sixteen pieces of four."

MOCK = f"""
import sys, uvicorn
from starlette.applications import Starlette
from llm.testing import FakeScript, Reply, anthropic_app, openai_app
reply = Reply({ANSWER!r})
routes = [*openai_app(FakeScript(default=reply)).routes, *anthropic_app(FakeScript(default=reply)).routes]
app = Starlette(routes=routes)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error", loop="uvloop", http="httptools",
            access_log=False, timeout_keep_alive=300)
"""
# The proxies' pooled connections to the mock sit idle while the other targets are measured: a keep-alive
# longer than a round keeps the mock from closing them under a request.

BARE = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from http1 import H1Pool
upstream = sys.argv[2]
state = {}

async def lifespan(app):
    state["p"] = H1Pool(upstream, max_connections=256)
    yield
    await state["p"].aclose()

HEADERS = [("content-type", "application/json"), ("authorization", "Bearer sk-bench"),
           ("anthropic-version", "2023-06-01")]

async def forward(request):
    body = await request.body()
    pool = state["p"]
    if b'"stream":true' in body:
        cm = pool.stream("POST", request.url.path, HEADERS, body)
        response = await cm.__aenter__()
        async def relay():
            try:
                while (chunk := await response.next_chunk()) is not None:
                    yield chunk
            finally:
                await cm.__aexit__(None, None, None)
        return StreamingResponse(relay(), media_type="text/event-stream")
    response = await pool.request("POST", request.url.path, HEADERS, body)
    return Response(response.body, status_code=response.status, media_type="application/json")

app = Starlette(routes=[Route("/v1/chat/completions", forward, methods=["POST"]),
                        Route("/v1/embeddings", forward, methods=["POST"]),
                        Route("/v1/messages", forward, methods=["POST"])], lifespan=lifespan)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error", loop="uvloop", http="httptools",
            access_log=False)
"""

HUB_CONFIG = """
[hub]
listen = "127.0.0.1:{port}"
database = "sqlite:///{dir}/hub.db"

[[keys]]
name = "bench"
secret = "{key}"
models = ["*"]
budget = {{ max_usd = 1000000.0, reset = "1d" }}
rate_limit = {{ requests = 100000000, tokens = 100000000000, period = "1m" }}

[providers.openai]
kind = "openai"
base_url = "{upstream}/v1"
keys = [ {{ name = "main", secret = "env:BENCH_OPENAI_KEY" }} ]
max_connections = 256

[providers.anthropic]
kind = "anthropic"
base_url = "{upstream}"
keys = [ {{ name = "main", secret = "env:BENCH_OPENAI_KEY" }} ]
max_connections = 256

[prices."anthropic/claude-bench"]
input = 3.0
output = 15.0
"""


Request = Callable[[], Awaitable[float | None]]


def requester(session: aiohttp.ClientSession, url: str, body: bytes, stream: bool) -> Request:
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}", "anthropic-version": "2023-06-01"}

    async def one() -> float | None:
        async with session.post(url, data=body, headers=headers) as response:
            if response.status != 200:
                raise RuntimeError(f"{url}: HTTP {response.status}: {(await response.read())[:200]!r}")
            if stream:
                async for _ in response.content.iter_any():
                    pass
            else:
                await response.read()
            overhead = response.headers.get("x-agenthub-overhead-ms")
            return float(overhead) if overhead is not None else None

    return one


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process and its children so far (Linux /proc: with `--workers N`, the hub's
    supervisor and its workers), or None where it cannot be read."""
    if not Path(f"/proc/{pid}/stat").exists():
        return None
    return tree_cpu_seconds(pid)


async def throughput(one: Request, concurrency: int, seconds: float) -> float:
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await one()
            done += 1

    start_at = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start_at)


async def latency(one: Request, n: int) -> tuple[float, float, float | None]:
    for _ in range(50):
        await one()
    samples: list[float] = []
    overheads: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        overhead = await one()
        samples.append((time.perf_counter() - t0) * 1000)
        if overhead is not None:
            overheads.append(overhead)
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return p50, p99, statistics.median(overheads) if overheads else None


KINDS = {
    "chat": ("/v1/chat/completions", CHAT, False),
    "stream": ("/v1/chat/completions", STREAM, True),
    "embed": ("/v1/embeddings", EMBED, False),
    "messages": ("/v1/messages", MESSAGES, False),
    "msg-stream": ("/v1/messages", MESSAGES_STREAM, True),
}


Target = tuple[str, int | None]
"""Base URL and the PID whose CPU time is measured (None for the mock)."""


def client() -> aiohttp.ClientSession:
    """A fresh client per run: a pooled connection left idle while other targets run may be closed by then."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False))


async def measure(targets: dict[str, Target], seconds: float, rounds: int) -> dict[tuple[str, str], dict[str, float]]:
    results: dict[tuple[str, str], dict[str, float]] = {}
    for kind, (path, body, stream) in KINDS.items():
        samples: dict[str, dict[str, list[float]]] = {t: {} for t in targets}
        for _ in range(rounds):
            for target, (base, pid) in targets.items():
                async with client() as session:
                    one = requester(session, base + path, body, stream)
                    for concurrency in (32, 128):
                        before = cpu_seconds(pid) if pid is not None else None
                        own = time.process_time()
                        rps = await throughput(one, concurrency, seconds)
                        samples[target].setdefault(f"rps{concurrency}", []).append(rps)
                        loadgen = (time.process_time() - own) / seconds  # the load generator's cores meanwhile
                        samples[target].setdefault(f"loadgen{concurrency}", []).append(loadgen)
                        after = cpu_seconds(pid) if pid is not None else None
                        if before is not None and after is not None and rps > 0:
                            cpu_us = (after - before) / (rps * seconds) * 1e6
                            samples[target].setdefault(f"cpu{concurrency}", []).append(cpu_us)
                    p50, p99, overhead = await latency(one, 400)
                    samples[target].setdefault("p50", []).append(p50)
                    samples[target].setdefault("p99", []).append(p99)
                    if overhead is not None:
                        samples[target].setdefault("overhead", []).append(overhead)
        for target in targets:
            row = {name: statistics.median(values) for name, values in samples[target].items()}
            results[(kind, target)] = row
            print(f"{kind:<7}{target:<8}" + "  ".join(f"{k}={v:8.2f}" for k, v in row.items()), flush=True)
    return results


def report_baseline(results: dict[tuple[str, str], dict[str, float]]) -> None:
    """This checkout's hub against the baseline checkout's, per case."""
    print(
        "\n| case | hub req/s (32 / 128) | baseline hub req/s | hub / baseline | CPU us/req hub / baseline (32; 128) |"
    )
    print("|---|---|---|---|---|")
    for kind in KINDS:
        h, b = results[(kind, "hub")], results[(kind, "baseline")]
        print(
            f"| {kind} | {h['rps32']:.0f} / {h['rps128']:.0f} | {b['rps32']:.0f} / {b['rps128']:.0f} | "
            f"{h['rps32'] / b['rps32']:.0%} / {h['rps128'] / b['rps128']:.0%} | "
            f"{h['cpu32']:.0f} / {b['cpu32']:.0f}; {h['cpu128']:.0f} / {b['cpu128']:.0f} |"
        )


def report(results: dict[tuple[str, str], dict[str, float]]) -> None:
    columns = [
        "case", "direct req/s (32 / 128)", "bare proxy req/s", "hub req/s", "hub / bare",
        "p50 direct / bare / hub (ms)", "p99 hub (ms)", "added p50 vs bare", "overhead header p50",
        "CPU us/req bare / hub (32; 128)",
    ]  # fmt: skip
    print("\n| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    nan = float("nan")
    for kind in KINDS:
        d, b, h = results[(kind, "direct")], results[(kind, "bare")], results[(kind, "hub")]
        ratio = f"{h['rps32'] / b['rps32']:.0%} / {h['rps128'] / b['rps128']:.0%}"
        cpu = (
            f"{b.get('cpu32', nan):.0f} / {h.get('cpu32', nan):.0f}; {b.get('cpu128', nan):.0f} / "
            f"{h.get('cpu128', nan):.0f}"
        )
        print(
            f"| {kind} | {d['rps32']:.0f} / {d['rps128']:.0f} | {b['rps32']:.0f} / {b['rps128']:.0f} | "
            f"{h['rps32']:.0f} / {h['rps128']:.0f} | {ratio} | {d['p50']:.2f} / {b['p50']:.2f} / {h['p50']:.2f} | "
            f"{h['p99']:.2f} | {h['p50'] - b['p50']:+.2f} ms | {h.get('overhead', nan):.3f} ms | {cpu} |"
        )


def telemetry_axis(seconds: float, rounds: int, workers: int, cases: list[str]) -> None:
    """`--telemetry`: three hubs of this tree (metrics off, metrics on, tracing on) in front of one mock, measured
    in alternating rounds (`bench/_telemetry.py`)."""
    from _telemetry import VARIANTS, alternate, config_of, env_of, load_average, otlp_sink, report

    at_start = load_average()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp, otlp_sink() as sink:
        try:
            mock_port = free_port()
            procs.append(start([sys.executable, "-c", MOCK, str(mock_port)], mock_port))
            upstream = f"http://127.0.0.1:{mock_port}"
            hubs: dict[str, Target] = {}
            agenthub = str(Path(sys.executable).with_name("agenthub"))
            for variant in VARIANTS:
                port, folder = free_port(), Path(tmp) / variant.replace(" ", "-")
                folder.mkdir()
                config = folder / "agenthub.toml"
                text = HUB_CONFIG.format(port=port, dir=folder, key=KEY, upstream=upstream) + config_of(variant)
                config.write_text(text)
                env = {**os.environ, "BENCH_OPENAI_KEY": "sk-bench", "AGENTHUB_MASTER_KEY": "bench-" + "0" * 40}
                env |= env_of(variant, sink)
                hub = start_hub_workers([agenthub, "serve", "--config", str(config)], port, env, workers)
                procs.append(hub)
                hubs[variant] = (f"http://127.0.0.1:{port}", hub.pid)

            async def run(variant: str) -> dict[str, float]:
                base, pid = hubs[variant]
                out: dict[str, float] = {}
                for case in cases:
                    path, body, stream = KINDS[case]
                    async with client() as session:
                        one = requester(session, base + path, body, stream)
                        for _ in range(50):  # warm the connections
                            await one()
                        for concurrency in (32, 128):
                            before = cpu_seconds(pid) if pid is not None else None
                            rps = await throughput(one, concurrency, seconds)
                            after = cpu_seconds(pid) if pid is not None else None
                            out[f"{case} rps{concurrency}"] = rps
                            if before is not None and after is not None and rps > 0:
                                out[f"{case} cpu{concurrency}"] = (after - before) / (rps * seconds) * 1e6
                return out

            samples = alternate(rounds, lambda variant: asyncio.run(run(variant)))
        finally:
            for proc in reversed(procs):
                stop(proc)
    rows: list[tuple[str, str]] = []
    for case in cases:
        rows += [(f"{case} req/s, c={c}", f"{case} rps{c}") for c in (32, 128)]
        rows += [(f"{case} hub CPU per request (µs), c={c}", f"{case} cpu{c}") for c in (32, 128)]
    report(samples, rows, (at_start, load_average()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("seconds", nargs="?", type=float, default=3.0, help="seconds per throughput run")
    parser.add_argument("rounds", nargs="?", type=int, default=1)
    parser.add_argument("--baseline", type=Path, help="another checkout whose hub is measured in the same rounds")
    parser.add_argument("--cases", help=f"comma-separated cases to run (default: all of {', '.join(KINDS)})")
    parser.add_argument("--workers", type=int, default=1, help="worker processes of the hub under test")
    parser.add_argument(
        "--telemetry", action="store_true", help="only measure metrics off / metrics on / tracing on (this tree)"
    )
    args = parser.parse_args()
    if args.telemetry:
        telemetry_axis(args.seconds, args.rounds, args.workers, args.cases.split(",") if args.cases else ["chat"])
        return
    if args.cases:
        for name in set(KINDS) - set(args.cases.split(",")):
            del KINDS[name]
    seconds, rounds = args.seconds, args.rounds
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            mock_port, bare_port, hub_port = free_port(), free_port(), free_port()
            procs.append(start([sys.executable, "-c", MOCK, str(mock_port)], mock_port))
            upstream = f"http://127.0.0.1:{mock_port}"
            bare = start([sys.executable, "-c", BARE, str(bare_port), upstream], bare_port)
            procs.append(bare)
            config = Path(tmp) / "agenthub.toml"
            config.write_text(HUB_CONFIG.format(port=hub_port, dir=tmp, key=KEY, upstream=upstream))
            env = {**os.environ, "BENCH_OPENAI_KEY": "sk-bench", "AGENTHUB_MASTER_KEY": "bench-" + "0" * 40}
            agenthub = str(Path(sys.executable).with_name("agenthub"))  # as users start it
            hub = start_hub_workers([agenthub, "serve", "--config", str(config)], hub_port, env, args.workers)
            procs.append(hub)
            targets: dict[str, Target] = {
                "direct": (upstream, None),
                "bare": (f"http://127.0.0.1:{bare_port}", bare.pid),
                "hub": (f"http://127.0.0.1:{hub_port}", hub.pid),
            }
            if args.baseline is not None:
                base_port, base_dir = free_port(), Path(tmp) / "baseline"
                base_dir.mkdir()
                base_config = base_dir / "agenthub.toml"
                base_config.write_text(HUB_CONFIG.format(port=base_port, dir=base_dir, key=KEY, upstream=upstream))
                base_env = {**env, "PYTHONPATH": str(args.baseline.resolve())}
                base_argv = [agenthub, "serve", "--config", str(base_config)]
                baseline = start_hub_workers(base_argv, base_port, base_env, args.workers)
                procs.append(baseline)
                targets["baseline"] = (f"http://127.0.0.1:{base_port}", baseline.pid)
            results = asyncio.run(measure(targets, seconds, rounds))
            report(results)
            if args.baseline is not None:
                report_baseline(results)
        finally:
            for proc in reversed(procs):
                stop(proc)


if __name__ == "__main__":
    main()

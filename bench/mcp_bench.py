"""MCP hub benchmark: `tools/call` and `tools/list` through AgentHub vs the same upstream called directly.

One run starts, on 127.0.0.1:
  - the upstream: `tests/servers/fixture_server.py` over Streamable HTTP (an `mcp` SDK server), with 200 extra tools;
  - the hub: `agenthub serve` with that upstream and full governance on (key check, tool filter, request log);
and drives both with the same raw JSON-RPC load generator (aiohttp, one session per worker), so the figures are
ratios measured in the same conditions. With `--rounds N` the direct and hub measurements alternate N times and
every figure is the median over the rounds (ratios and added latency are taken within each round first), so a
burst of other work on the machine does not land on one side only. It prints a Markdown table (paste it into
docs/performance.md).

The hub's CPU time per call (user plus system, from /proc, over the sequential calls at concurrency 1 and over the
run at concurrency 16) moves much less than latency on a shared machine. `--baseline DIR` serves a second hub from
another checkout (say `git worktree add /tmp/base HEAD~1`) on the same upstream, measured in the same rounds, for
before/after figures.

`--signed-in` turns `[sign_in]` on in the hub and measures it a second time in the same rounds with a signed-in
person's access token instead of the virtual key (same grant: `fixture__*`). The token is minted for the bench
only, straight into the hub's database before it starts (no identity provider is involved; the hub loads it like
any live token), so the figure compares the two checks on the hot path and nothing else.

`--workers N` starts the hub under test with N worker processes (default 1); its CPU time is then that of the
supervisor and all its workers, and the load generator's own CPU (in cores) is printed beside it, since on a small
machine the two share the cores.

`--telemetry` measures only what observability costs: this tree's hub with metrics off, with metrics on, and with
tracing on at 100% sampling (exported to a sink on 127.0.0.1), in alternating rounds (`bench/_telemetry.py`).

    .venv/bin/python bench/mcp_bench.py [--seconds 5] [--rounds 3] [--baseline DIR] [--signed-in] [--workers N] [--json]
    .venv/bin/python bench/mcp_bench.py --telemetry [--seconds 5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from _procs import free_port, start, stop
from _workers import start_hub_workers, tree_cpu_seconds, tree_rss_mib

ROOT = Path(__file__).resolve().parents[1]
KEY = "ahk-bench-0000000000000000000000000000000000000"
ACCEPT = "application/json, text/event-stream"
PROTOCOL = "2025-11-25"


def cpu_seconds(pid: int | None) -> float:
    """User plus system CPU time of a process and its children so far (Linux /proc: with `--workers N`, the
    supervisor and its workers); 0 without a process."""
    if pid is None:
        return 0.0
    return tree_cpu_seconds(pid)


class McpSession:
    """A minimal handshake-era Streamable HTTP client: initialize once, then POST requests on the session."""

    def __init__(self, http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
        self.http = http
        self.url = url
        self.headers = {"Accept": ACCEPT, "Content-Type": "application/json", **headers}
        self.next_id = 0

    async def open(self) -> None:
        init = {
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        }
        async with self.http.post(self.url, json=self._msg("initialize", init), headers=self.headers) as r:
            await r.read()
            session = r.headers["mcp-session-id"]
        self.headers = {**self.headers, "mcp-session-id": session, "mcp-protocol-version": PROTOCOL}
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        async with self.http.post(self.url, json=note, headers=self.headers) as r:
            await r.read()

    async def close(self) -> None:
        async with self.http.delete(self.url, headers=self.headers) as r:
            await r.read()

    def _msg(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        return {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}

    async def request(self, method: str, params: dict[str, Any]) -> bytes:
        async with self.http.post(self.url, json=self._msg(method, params), headers=self.headers) as r:
            body = await r.read()
        if b'"result"' not in body:
            raise RuntimeError(f"{method} failed: {body[:300]!r}")
        return body


def _result(body: bytes) -> dict[str, Any]:
    """The JSON-RPC result in a JSON or SSE response body."""
    if not body.lstrip().startswith(b"{"):
        body = next(line[5:] for line in body.splitlines() if line.startswith(b"data:") and b'"result"' in line)
    return json.loads(body)["result"]


async def latency(session: McpSession, call: Callable[[], Awaitable[Any]], n: int) -> dict[str, float]:
    for _ in range(20):
        await call()
    samples: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return {"p50": statistics.median(samples), "p99": samples[int(len(samples) * 0.99) - 1]}


MEMORY_NOTE = "; idle: the supervisor and one worker, after load: all processes"
LOADGEN_CORES: list[float] = []
"""The load generator's own CPU time over each throughput run, in cores (it shares the machine with the hub)."""


async def throughput(
    url: str, headers: dict[str, str], concurrency: int, seconds: float, pid: int | None = None
) -> tuple[float, float]:
    """Calls per second at `concurrency`, and the CPU time per call of process `pid` meanwhile (µs)."""
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as http:
        sessions = [McpSession(http, url, headers) for _ in range(concurrency)]
        await asyncio.gather(*(s.open() for s in sessions))
        params = {"name": "echo", "arguments": {"message": "bench"}}
        done = 0
        stop_at = 0.0

        async def worker(s: McpSession, name: str) -> None:
            nonlocal done
            p = {**params, "name": name}
            while time.perf_counter() < stop_at:
                await s.request("tools/call", p)
                done += 1

        name = "fixture__echo" if "8" in headers.get("x-bench", "") else "echo"
        stop_at = time.perf_counter() + 1.0
        await asyncio.gather(*(worker(s, name) for s in sessions))  # warm-up
        done = 0
        cpu = cpu_seconds(pid)
        own = time.process_time()
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(worker(s, name) for s in sessions))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu
        LOADGEN_CORES.append((time.process_time() - own) / elapsed)
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        return done / elapsed, cpu / max(done, 1) * 1e6


async def first_call_ms(url: str, headers: dict[str, str], tool: str, n: int = 30) -> float:
    samples: list[float] = []
    async with aiohttp.ClientSession() as http:
        for _ in range(n):
            t0 = time.perf_counter()
            s = McpSession(http, url, headers)
            await s.open()
            await s.request("tools/call", {"name": tool, "arguments": {"message": "first"}})
            samples.append((time.perf_counter() - t0) * 1000)
            await s.close()
    return statistics.median(samples[3:])


CALLS_C1 = 400
"""Sequential calls timed at concurrency 1 (after 20 to warm up)."""


async def measure(
    url: str, headers: dict[str, str], tool: str, seconds: float, pid: int | None = None
) -> dict[str, float]:
    """Every figure for one target; `pid` is the process whose CPU time per call is read (None: not read)."""
    out: dict[str, float] = {}
    async with aiohttp.ClientSession() as http:
        s = McpSession(http, url, headers)
        await s.open()
        cpu = cpu_seconds(pid)
        lat = await latency(s, lambda: s.request("tools/call", {"name": tool, "arguments": {"message": "x"}}), CALLS_C1)
        out["cpu_c1_us"] = (cpu_seconds(pid) - cpu) / (CALLS_C1 + 20) * 1e6
        out["call_p50_ms"], out["call_p99_ms"] = lat["p50"], lat["p99"]
        lst = await latency(s, lambda: s.request("tools/list", {}), 100)
        out["list_p50_ms"] = lst["p50"]
        out["listed_tools"] = len(_result(await s.request("tools/list", {}))["tools"])
        await s.close()
    for c in (16, 64):
        out[f"rps_c{c}"], out[f"cpu_c{c}_us"] = await throughput(url, headers, c, seconds, pid)
        out[f"loadgen_c{c}_cores"] = LOADGEN_CORES[-1]
    out["first_call_ms"] = await first_call_ms(url, headers, tool)
    return out


HUB_CONFIG = """
[hub]
listen = "127.0.0.1:{port}"
database = "sqlite:///{dir}/bench.db"

[servers.fixture]
transport = "http"
url = "http://127.0.0.1:{upstream}/mcp"

[[keys]]
name = "bench"
secret = "{key}"
tools = ["fixture__*"]
"""


SIGN_IN_CONFIG = """
[sign_in]
issuer = "http://127.0.0.1:{port}"
idp = {{ issuer = "http://127.0.0.1:9", client_id = "bench" }}
allowed_redirects = ["http://127.0.0.1/*"]

[[sign_in.grants]]
group = "bench"
tools = ["fixture__*"]
"""


def mint_person_token(database: str, issuer: str) -> str:
    """Bench only: a signed-in person's access token written into the hub's database before it starts (no identity
    provider; the hub loads it with the other live tokens)."""
    import json as _json
    import secrets
    from datetime import UTC, datetime, timedelta

    from hub.signin.people import Person
    from hub.signin.store import SignInStore, token_hash
    from hub.signin.tokens import ACCESS_PREFIX
    from hub.store.signin_tables import SignInTokenRow
    from hub.store.sql import SqlStore

    person = Person("http://127.0.0.1:9", "bench-person", "bench@example.com", ("bench",), {})
    token = ACCESS_PREFIX + secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    row = SignInTokenRow(
        token_hash=token_hash(token), kind="access", family=secrets.token_hex(16), client_id="bench",
        person_id=person.id, person=_json.dumps(person.to_json()), resource=issuer + "/mcp",
        expires_at=now + timedelta(days=1),
    )  # fmt: skip
    sql = SqlStore(database)
    try:
        SignInStore(sql.engine).add_tokens([row], now)
    finally:
        sql.close()
    return token


def start_hub(
    upstream_port: int,
    tree: Path | None,
    *,
    signed_in: bool = False,
    workers: int = 1,
    config_extra: str = "",
    env_extra: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], int, str | None]:
    """`agenthub serve --workers N` (of this checkout, or of `tree` on PYTHONPATH) in front of the upstream; with
    `signed_in`, `[sign_in]` on and a person's access token (returned) minted for it; `config_extra` is appended to
    its configuration file and `env_extra` to its environment."""
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="agenthub-bench-"))
    config = tmp / "bench.toml"
    text = HUB_CONFIG.format(port=port, dir=tmp, upstream=upstream_port, key=KEY) + config_extra
    token = None
    if signed_in:
        text += SIGN_IN_CONFIG.format(port=port)
        token = mint_person_token(f"sqlite:///{tmp}/bench.db", f"http://127.0.0.1:{port}")
    config.write_text(text)
    env = dict(os.environ)  # with N workers, sessions are shared through the supervisor (or Redis, when set)
    env |= env_extra or {}
    if tree is not None:
        env["PYTHONPATH"] = str(tree.resolve())
    agenthub = str(Path(sys.executable).parent / "agenthub")
    return start_hub_workers([agenthub, "serve", "--config", str(config)], port, env, workers), port, token


def telemetry_axis(args: argparse.Namespace, upstream_port: int) -> None:
    """`--telemetry`: throughput and the hub's CPU per call at c=16 and c=64 with metrics off, metrics on, and
    tracing on (100%, exported to a sink on 127.0.0.1), three hubs of this tree in alternating rounds
    (`bench/_telemetry.py`)."""
    from _telemetry import VARIANTS, alternate, config_of, env_of, load_average, otlp_sink, report

    headers = {"Authorization": f"Bearer {KEY}", "x-bench": "8"}
    at_start = load_average()
    hubs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    with otlp_sink() as sink:
        try:
            for variant in VARIANTS:
                extra, env = config_of(variant), env_of(variant, sink)
                process, port, _none = start_hub(upstream_port, None, workers=args.workers, config_extra=extra,
                                                 env_extra=env)  # fmt: skip
                hubs[variant] = (process, port)
            time.sleep(2.0)

            def one(variant: str) -> dict[str, float]:
                process, port = hubs[variant]
                url, out = f"http://127.0.0.1:{port}/mcp", {}
                for c in (16, 64):
                    rps, cpu = asyncio.run(throughput(url, headers, c, args.seconds, process.pid))
                    out[f"rps_c{c}"], out[f"cpu_c{c}_us"] = rps, cpu
                return out

            samples = alternate(args.rounds, one)
        finally:
            for process, _port in hubs.values():
                stop(process)
    rows = [
        ("tools/call throughput (calls/s), c=16", "rps_c16"),
        ("tools/call throughput (calls/s), c=64", "rps_c64"),
        ("hub CPU per call (µs), c=16", "cpu_c16_us"),
        ("hub CPU per call (µs), c=64", "cpu_c64_us"),
    ]
    report(samples, rows, (at_start, load_average()))


def median_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


def ratio_of(top: list[dict[str, float]], bottom: list[dict[str, float]]) -> dict[str, float]:
    """Per figure, the median over the rounds of `top / bottom` taken within each round."""
    return {
        key: statistics.median(t[key] / b[key] for t, b in zip(top, bottom, strict=True) if b[key])
        for key in top[0]
        if any(b[key] for b in bottom)
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--baseline", type=Path, help="another checkout whose hub is measured in the same rounds")
    parser.add_argument("--signed-in", action="store_true", help="also measure a signed-in person's token")
    parser.add_argument("--workers", type=int, default=1, help="worker processes of the hub under test")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--telemetry", action="store_true", help="only measure metrics off / metrics on / tracing on (this tree)"
    )
    args = parser.parse_args()

    up_port = free_port()
    argv = [sys.executable, "tests/servers/fixture_server.py", "--transport", "streamable-http"]
    upstream = start([*argv, "--port", str(up_port), "--extra-tools", "200"], up_port)
    if args.telemetry:
        try:
            telemetry_axis(args, up_port)
        finally:
            stop(upstream)
        return
    hubs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    samples: dict[str, list[dict[str, float]]] = {"direct": [], "hub": []}
    headers = {"Authorization": f"Bearer {KEY}", "x-bench": "8"}
    person: str | None = None
    try:
        process, port, person = start_hub(up_port, None, signed_in=args.signed_in, workers=args.workers)
        hubs["hub"] = (process, port)
        if args.baseline is not None:
            process, port, _none = start_hub(up_port, args.baseline)
            hubs["baseline"] = (process, port)
            samples["baseline"] = []
        if person is not None:
            samples["person"] = []
        time.sleep(2.0)
        idle_tree = tree_rss_mib(hubs["hub"][0].pid)
        idle_mb = idle_tree[0] if args.workers == 1 else idle_tree[0] + max(idle_tree[1:])
        for _ in range(max(1, args.rounds)):
            direct_url = f"http://127.0.0.1:{up_port}/mcp"
            samples["direct"].append(asyncio.run(measure(direct_url, {}, "echo", args.seconds)))
            for name, (process, port) in hubs.items():
                url = f"http://127.0.0.1:{port}/mcp"
                samples[name].append(asyncio.run(measure(url, headers, "fixture__echo", args.seconds, process.pid)))
            if person is not None:
                process, port = hubs["hub"]
                url, as_person = f"http://127.0.0.1:{port}/mcp", {**headers, "Authorization": f"Bearer {person}"}
                signed = measure(url, as_person, "fixture__echo", args.seconds, process.pid)
                samples["person"].append(asyncio.run(signed))
        loaded_mb = sum(tree_rss_mib(hubs["hub"][0].pid))
    finally:
        for process, _ in hubs.values():
            stop(process)
        stop(upstream)
    direct, via_hub = median_of(samples["direct"]), median_of(samples["hub"])
    ratio = ratio_of(samples["hub"], samples["direct"])
    added = statistics.median(
        h["call_p50_ms"] - d["call_p50_ms"] for d, h in zip(samples["direct"], samples["hub"], strict=True)
    )
    result: dict[str, object] = {
        "direct": direct,
        "hub": via_hub,
        "ratio": ratio,
        "added_p50_ms": added,
        "rounds": len(samples["hub"]),
        "workers": args.workers,
        "hub_idle_rss_mib": idle_mb,
        "hub_after_load_rss_mib": loaded_mb,
    }
    base: dict[str, float] = {}
    versus: dict[str, float] = {}
    if "baseline" in samples:
        base = median_of(samples["baseline"])
        versus = ratio_of(samples["hub"], samples["baseline"])
        result |= {
            "baseline": base,
            "baseline_ratio": ratio_of(samples["baseline"], samples["direct"]),
            "hub_vs_baseline": versus,
        }
    if "person" in samples:
        result |= {"person": median_of(samples["person"]), "person_vs_key": ratio_of(samples["person"], samples["hub"])}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    rows = [
        ("tools/call p50 (ms), c=1", "call_p50_ms", False),
        ("tools/call p99 (ms), c=1", "call_p99_ms", False),
        ("tools/call throughput (calls/s), c=16", "rps_c16", True),
        ("tools/call throughput (calls/s), c=64", "rps_c64", True),
        (f"tools/list of {via_hub['listed_tools']:.0f} tools p50 (ms)", "list_p50_ms", False),
        ("first call of a fresh session (ms)", "first_call_ms", False),
    ]
    cpu_rows = [("hub CPU per call (µs), c=1", "cpu_c1_us"), ("hub CPU per call (µs), c=16", "cpu_c16_us")]
    extra = " baseline hub | this hub / baseline |" if base else ""
    print("| measure | direct | through AgentHub | ratio |" + extra)
    print("| --- | ---: | ---: | ---: |" + (" ---: | ---: |" if base else ""))
    for label, key, higher_better in rows:
        note = f"{ratio[key]:.2f}x" + (" of direct" if higher_better else "")
        tail = f" {base[key]:.2f} | {versus[key]:.3f} |" if base else ""
        print(f"| {label} | {direct[key]:.2f} | {via_hub[key]:.2f} | {note} |" + tail)
    for label, key in cpu_rows:
        tail = f" {base[key]:.0f} | {versus[key]:.3f} |" if base else ""
        print(f"| {label} | | {via_hub[key]:.0f} | |" + tail)
    for c in (16, 64):
        loadgen = f"{direct[f'loadgen_c{c}_cores']:.2f} | {via_hub[f'loadgen_c{c}_cores']:.2f}"
        print(f"| load generator CPU (cores), c={c} | {loadgen} | |" + (" | |" if base else ""))
    print(f"| added latency at p50 (ms) | | {added:.2f} | |" + (" | |" if base else ""))
    print(
        f"| hub memory idle / after load (MiB RSS{MEMORY_NOTE if args.workers > 1 else ''}) | | "
        f"{idle_mb:.0f} / {loaded_mb:.0f} | |" + (" | |" if base else "")
    )
    if "person" in samples:
        signed, versus_key = median_of(samples["person"]), ratio_of(samples["person"], samples["hub"])
        print("\n| measure (same hub, same rounds) | virtual key | signed-in person's token | token / key |")
        print("| --- | ---: | ---: | ---: |")
        for label, key, _higher in rows[:4]:
            print(f"| {label} | {via_hub[key]:.2f} | {signed[key]:.2f} | {versus_key[key]:.3f} |")
        for label, key in cpu_rows:
            print(f"| {label} | {via_hub[key]:.0f} | {signed[key]:.0f} | {versus_key[key]:.3f} |")


if __name__ == "__main__":
    main()

"""What the hub's hot paths cost in CPU instructions: `tools/call` on the MCP door, a chat completion on the
OpenAI door and a Messages request passed through to Anthropic on the Anthropic door (whole, and streamed with
`messages-stream`), counted by valgrind's callgrind in the hub process (the same count on a busy or an idle machine,
unlike wall-clock figures), optionally against another checkout measured in the same run.

One measurement starts, on 127.0.0.1, the upstream (the fixture MCP server over Streamable HTTP, or the
`llm.testing` OpenAI and Anthropic fakes) and `agenthub serve` under callgrind with full governance on; sends 100
requests one at a time to warm up, zeroes the counters, sends `--calls` more, dumps the counters and divides. The
request log's flushes and the change follower's polls run on timers, so a run that takes longer counts more of them
(and under callgrind a run takes a minute or more, longer on a busy machine): before the calls, the hub is left idle
for `--idle` seconds and what it does meanwhile gives the timers' rate, and the "net" figure takes that rate times
the calls' duration off the total. Each side is measured `--runs` times, alternating, and the lowest count is shown.
The work a call leaves behind is counted with it: after the warm-up and after the calls the benchmark waits until
the hub has written its request log and, when it traces, until the sink has received the spans and records, so that
the idle window holds none of the warm-up's export and the calls' window holds all of their own.

`--tracing` measures this tree a second time with tracing on at 100% sampling (`OTEL_EXPORTER_OTLP_ENDPOINT` set to
an OTLP/HTTP sink the benchmark serves on 127.0.0.1, answering every export with 200): spans and log records are
encoded and posted as they would be to a collector, and the table shows on against off.

`--signed-in` measures `tools/call` of this tree with the virtual key and with a signed-in person's access token
(`[sign_in]` on, the token minted into the hub's database before it starts, the same tools): the token check on the
hot path against the key check.

    .venv/bin/python bench/instructions_bench.py [--calls 400] [--runs 2] [--door mcp|llm|messages|messages-stream]
        [--idle 10] [--baseline ../other-checkout --baseline-python PY] [--tracing] [--signed-in]
    .venv/bin/python bench/instructions_bench.py --sink PORT   (the sink alone, for bench/_telemetry.py)

Needs valgrind (Debian package `valgrind`).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
MCP_KEY = "ahk-bench-0000000000000000000000000000000000000"
LLM_KEY = "ahk-bench-llm-000000000000000000000000000000000"
MOCK = """
import sys, uvicorn
from starlette.applications import Starlette
from llm.testing import FakeScript, Reply, anthropic_app, openai_app
reply = Reply("Hello from the mock.")
routes = [*openai_app(FakeScript(default=reply)).routes, *anthropic_app(FakeScript(default=reply)).routes]
app = Starlette(routes=routes)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error", access_log=False, timeout_keep_alive=300)
"""
MCP_CONFIG = """
[hub]
listen = "127.0.0.1:{port}"
database = "sqlite:///{dir}/hub.db"
upstream_start_timeout_s = 120

[servers.fixture]
transport = "http"
url = "http://127.0.0.1:{upstream}/mcp"
timeout_s = 600

[[keys]]
name = "bench"
secret = "{key}"
tools = ["fixture__*"]
"""
LLM_CONFIG = """
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
base_url = "http://127.0.0.1:{upstream}/v1"
keys = [ {{ name = "main", secret = "env:BENCH_OPENAI_KEY" }} ]

[providers.anthropic]
kind = "anthropic"
base_url = "http://127.0.0.1:{upstream}"
keys = [ {{ name = "main", secret = "env:BENCH_OPENAI_KEY" }} ]

[prices."anthropic/claude-bench"]
input = 3.0
output = 15.0
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port}")


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def mcp_calls(url: str, n: int, key: str = MCP_KEY) -> None:
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {key}"}
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}
    async with aiohttp.ClientSession(headers=headers) as http:
        body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}
        async with http.post(url, json=body) as response:
            session = {"mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
            await response.read()
        async with http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session) as r:
            await r.read()
        call = {"name": "fixture__echo", "arguments": {"message": "x"}}
        for i in range(n):
            async with http.post(
                url, json={"jsonrpc": "2.0", "id": i + 1, "method": "tools/call", "params": call}, headers=session
            ) as response:
                await response.read()


async def chat_calls(url: str, n: int) -> None:
    body = json.dumps({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]})
    await _posts(url, body, {"Authorization": f"Bearer {LLM_KEY}", "Content-Type": "application/json"}, n)


async def messages_calls(url: str, n: int) -> None:
    body = json.dumps(
        {"model": "anthropic/claude-bench", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}
    )
    headers = {"x-api-key": LLM_KEY, "anthropic-version": "2023-06-01", "Content-Type": "application/json"}
    await _posts(url, body, headers, n)


async def messages_stream_calls(url: str, n: int) -> None:
    body = json.dumps(
        {
            "model": "anthropic/claude-bench",
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "hello"}],
        }
    )
    headers = {"x-api-key": LLM_KEY, "anthropic-version": "2023-06-01", "Content-Type": "application/json"}
    await _posts(url, body, headers, n)


async def _posts(url: str, body: str, headers: dict[str, str], n: int) -> None:
    async with aiohttp.ClientSession(headers=headers) as http:
        for _ in range(n):
            async with http.post(url, data=body) as response:
                if response.status != 200:
                    raise RuntimeError(await response.text())
                await response.read()


class _Sink(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that accepts every export and keeps nothing (counts requests and bytes)."""

    protocol_version = "HTTP/1.1"
    received: dict[str, int] = {}

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        received = _Sink.received
        received[self.path] = received.get(self.path, 0) + 1
        received["bytes"] = received.get("bytes", 0) + len(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        """What the sink received so far, as JSON (the sink's process reports it this way)."""
        body = json.dumps(_Sink.received).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_sink(port: int) -> None:
    """Serve the sink on `port` until the process is stopped (`--sink PORT`: the throughput benchmarks run it in a
    process of its own)."""
    http.server.ThreadingHTTPServer(("127.0.0.1", port), _Sink).serve_forever()


def otlp_sink() -> tuple[http.server.ThreadingHTTPServer, str]:
    """A running sink and its base URL (stopped by the caller: `shutdown()`)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


SETTLE_S = 2.0
"""After the calls, the time the request log's writer (a flush every 0.5 s) is given to write their rows."""


def settle(otlp: str | None) -> None:
    """Wait until what the hub does after the calls is done: its request log's last flush and, when it exports
    (`otlp`), the export of the spans and log records the calls made (sent in batches up to 5 s after the first
    span of a batch, and slower under callgrind): until the sink has received nothing for a while."""
    time.sleep(SETTLE_S)
    if otlp is None:
        return
    quiet, last = 0, dict(_Sink.received)
    while quiet < 8:  # 8 s without an export: the batch threads had nothing left to send
        time.sleep(1.0)
        now = dict(_Sink.received)
        quiet = quiet + 1 if now == last else 0
        last = now


def _total(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no total in the callgrind dump {dump}")


def measure(
    root: Path, python: str, door: str, calls: int, idle: float, otlp: str | None = None, signed_in: bool = False
) -> tuple[float, float]:
    """Instructions per request of the hub in `root` (run by `python`) on `door` (`mcp`, `llm`, `messages`,
    `messages-stream`): the total, and the total less the timers' work over the calls' duration (the rate measured
    while the hub was idle).
    With `otlp` (a collector's base URL) the hub traces every call and exports there."""
    upstream_port, hub_port = free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="agenthub-instructions-"))
    # one process: callgrind counts the process it starts (a supervisor's workers would run uncounted)
    env = {**os.environ, "PYTHONPATH": str(root), "BENCH_OPENAI_KEY": "sk-bench", "AGENTHUB_WORKERS": "1"}
    token = MCP_KEY
    if otlp is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp
    if door == "mcp":
        argv = [python, str(root / "tests/servers/fixture_server.py"), "--transport", "streamable-http"]
        upstream = subprocess.Popen([*argv, "--port", str(upstream_port)], cwd=root, env=env)
        config = MCP_CONFIG.format(port=hub_port, dir=tmp, upstream=upstream_port, key=MCP_KEY)
        if signed_in:  # the calls carry a signed-in person's token (same tools) instead of the key
            from mcp_bench import SIGN_IN_CONFIG, mint_person_token

            config += SIGN_IN_CONFIG.format(port=hub_port)
            token = mint_person_token(f"sqlite:///{tmp}/hub.db", f"http://127.0.0.1:{hub_port}")
    else:
        upstream = subprocess.Popen([python, "-c", MOCK, str(upstream_port)], cwd=root, env=env)
        config = LLM_CONFIG.format(port=hub_port, dir=tmp, upstream=upstream_port, key=LLM_KEY)
    (tmp / "agenthub.toml").write_text(config, encoding="utf-8")
    module = "hub.cli.main" if (root / "hub/cli/main.py").exists() else "hub.cli"
    out = tmp / "callgrind.out"
    hub: subprocess.Popen[bytes] | None = None
    try:
        wait_listening(upstream_port, 60)
        hub = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", python, "-m", module, "serve"]
            + ["--config", str(tmp / "agenthub.toml")],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(hub_port, 1800)  # hub start-up under callgrind takes minutes, more on a busy machine
        path, drive = {
            "mcp": ("/mcp", lambda url, n: mcp_calls(url, n, token)),
            "llm": ("/v1/chat/completions", chat_calls),
            "messages-stream": ("/v1/messages", messages_stream_calls),
        }.get(door, ("/v1/messages", messages_calls))
        url = f"http://127.0.0.1:{hub_port}{path}"
        asyncio.run(drive(url, 100))
        settle(otlp)  # the warm-up's spans and records are exported before the counts start
        subprocess.run(["callgrind_control", "-z", str(hub.pid)], check=True, capture_output=True)
        time.sleep(idle)  # the hub does nothing but its timers meanwhile
        subprocess.run(["callgrind_control", "-d", str(hub.pid)], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-z", str(hub.pid)], check=True, capture_output=True)
        started = time.monotonic()
        asyncio.run(drive(url, calls))
        settle(otlp)  # and the calls' own are exported within them
        busy = time.monotonic() - started
        subprocess.run(["callgrind_control", "-d", str(hub.pid)], check=True, capture_output=True)
    finally:
        if hub is not None:
            stop(hub, signal.SIGINT)
        stop(upstream)
    try:
        if not glob.glob(f"{out}.1") or not glob.glob(f"{out}.2"):
            raise RuntimeError("callgrind wrote no dump")
        timers = _total(Path(f"{out}.1")) / idle
        total = _total(Path(f"{out}.2"))
        return total / calls, (total - timers * busy) / calls
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--baseline", type=Path, help="another checkout to measure in the same run")
    parser.add_argument("--baseline-python", default=sys.executable, help="the Python that has its dependencies")
    parser.add_argument("--runs", type=int, default=2, help="measurements of each side, alternating; the lowest counts")
    parser.add_argument(
        "--door",
        choices=("mcp", "llm", "messages", "messages-stream"),
        action="append",
        help="measure only this door (repeatable)",
    )
    parser.add_argument("--idle", type=float, default=10.0, help="seconds the hub idles to measure its timers' rate")
    parser.add_argument("--tracing", action="store_true", help="also measure this tree with tracing on (100%%)")
    parser.add_argument(
        "--signed-in", action="store_true", help="measure tools/call with a virtual key against a signed-in token"
    )
    parser.add_argument("--sink", type=int, metavar="PORT", help="only serve the OTLP/HTTP sink on PORT, until stopped")
    args = parser.parse_args()
    if args.sink is not None:
        serve_sink(args.sink)
        return
    if args.tracing:
        trace_table(args)
        return
    if args.signed_in:
        signed_in_table(args)
        return
    rows: list[tuple[str, tuple[float, float], tuple[float, float] | None]] = []
    doors = (
        ("mcp", "tools/call, c=1"),
        ("llm", "chat completion, c=1"),
        ("messages", "Messages passed through, c=1"),
        ("messages-stream", "Messages streamed through, c=1"),
    )
    for door, label in doors:
        if args.door and door not in args.door:
            continue
        bases: list[tuple[float, float]] = []
        heres: list[tuple[float, float]] = []
        for _ in range(args.runs):
            if args.baseline:
                bases.append(measure(args.baseline, args.baseline_python, door, args.calls, args.idle))
            heres.append(measure(ROOT, sys.executable, door, args.calls, args.idle))
        best = (min(h[0] for h in heres), min(h[1] for h in heres))
        rows.append((label, best, (min(b[0] for b in bases), min(b[1] for b in bases)) if bases else None))
    print("| instructions per request | this tree: total / net of timers | baseline: total / net | ratio of net |")
    print("| --- | --- | --- | --- |")
    for label, here, base in rows:
        ratio = f"{here[1] / base[1]:.3f}" if base else ""
        baseline = f"{base[0]:,.0f} / {base[1]:,.0f}" if base else ""
        print(f"| {label} | {here[0]:,.0f} / {here[1]:,.0f} | {baseline} | {ratio} |")


def signed_in_table(args: argparse.Namespace) -> None:
    """`tools/call` with a virtual key against a signed-in person's access token (minted into the hub's database
    before it starts, as `bench/mcp_bench.py --signed-in` does; same tools), this tree, the runs alternating."""
    keys: list[tuple[float, float]] = []
    tokens: list[tuple[float, float]] = []
    for _ in range(args.runs):
        keys.append(measure(ROOT, sys.executable, "mcp", args.calls, args.idle))
        tokens.append(measure(ROOT, sys.executable, "mcp", args.calls, args.idle, signed_in=True))
    key = (min(k[0] for k in keys), min(k[1] for k in keys))
    token = (min(t[0] for t in tokens), min(t[1] for t in tokens))
    print("| instructions per request | virtual key: total / net | signed-in token: total / net | ratio of net |")
    print("| --- | --- | --- | --- |")
    print(f"| tools/call, c=1 | {key[0]:,.0f} / {key[1]:,.0f} | {token[0]:,.0f} / {token[1]:,.0f} "
          f"| {token[1] / key[1]:.3f} |")  # fmt: skip


def trace_table(args: argparse.Namespace) -> None:
    """Tracing off against tracing on, this tree, each door, the runs alternating."""
    sink, url = otlp_sink()
    print("| instructions per request | tracing off: total / net | tracing on: total / net | ratio of net |")
    print("| --- | --- | --- | --- |")
    try:
        for door, label in (("mcp", "tools/call, c=1"), ("llm", "chat completion, c=1"), ("messages", "Messages, c=1")):
            if args.door and door not in args.door:
                continue
            off: list[tuple[float, float]] = []
            on: list[tuple[float, float]] = []
            for _ in range(args.runs):
                off.append(measure(ROOT, sys.executable, door, args.calls, args.idle))
                on.append(measure(ROOT, sys.executable, door, args.calls, args.idle, url))
            a = (min(o[0] for o in off), min(o[1] for o in off))
            b = (min(o[0] for o in on), min(o[1] for o in on))
            ratio = b[1] / a[1]
            print(f"| {label} | {a[0]:,.0f} / {a[1]:,.0f} | {b[0]:,.0f} / {b[1]:,.0f} | {ratio:.3f} |", flush=True)
    finally:
        sink.shutdown()
    print(f"collector received: {_Sink.received}")


if __name__ == "__main__":
    main()

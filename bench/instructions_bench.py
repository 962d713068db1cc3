"""What the hub's hot paths cost in CPU instructions: `tools/call` on the MCP door, a chat completion on the
OpenAI door and a Messages request passed through to Anthropic on the Anthropic door, counted by valgrind's
callgrind in the hub process (the same count on a busy or an idle machine, unlike wall-clock figures), optionally
against another checkout measured in the same run.

One measurement starts, on 127.0.0.1, the upstream (the fixture MCP server over Streamable HTTP, or the
`llm.testing` OpenAI and Anthropic fakes) and `agenthub serve` under callgrind with full governance on; sends 100
requests one at a time to warm up, zeroes the counters, sends `--calls` more, dumps the counters and divides. The
request log's flushes and the change follower's polls run on timers, so a run that takes longer counts more of them
(and under callgrind a run takes a minute or more, longer on a busy machine): before the calls, the hub is left idle
for `--idle` seconds and what it does meanwhile gives the timers' rate, and the "net" figure takes that rate times
the calls' duration off the total. Each side is measured `--runs` times, alternating, and the lowest count is shown.

    .venv/bin/python bench/instructions_bench.py [--calls 400] [--runs 2] [--door mcp|llm|messages] [--idle 10]
        [--baseline ../other-checkout --baseline-python PY]

Needs valgrind (Debian package `valgrind`).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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


async def mcp_calls(url: str, n: int) -> None:
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {MCP_KEY}"}
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


async def _posts(url: str, body: str, headers: dict[str, str], n: int) -> None:
    async with aiohttp.ClientSession(headers=headers) as http:
        for _ in range(n):
            async with http.post(url, data=body) as response:
                if response.status != 200:
                    raise RuntimeError(await response.text())
                await response.read()


def _total(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no total in the callgrind dump {dump}")


def measure(root: Path, python: str, door: str, calls: int, idle: float) -> tuple[float, float]:
    """Instructions per request of the hub in `root` (run by `python`) on `door` (`mcp`, `llm`, `messages`): the
    total, and the total less the timers' work over the calls' duration (the rate measured while the hub was idle)."""
    upstream_port, hub_port = free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="agenthub-instructions-"))
    env = {**os.environ, "PYTHONPATH": str(root), "BENCH_OPENAI_KEY": "sk-bench"}
    if door == "mcp":
        argv = [python, str(root / "tests/servers/fixture_server.py"), "--transport", "streamable-http"]
        upstream = subprocess.Popen([*argv, "--port", str(upstream_port)], cwd=root, env=env)
        config = MCP_CONFIG.format(port=hub_port, dir=tmp, upstream=upstream_port, key=MCP_KEY)
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
        wait_listening(hub_port, 600)
        path, drive = {"mcp": ("/mcp", mcp_calls), "llm": ("/v1/chat/completions", chat_calls)}.get(
            door, ("/v1/messages", messages_calls)
        )
        url = f"http://127.0.0.1:{hub_port}{path}"
        asyncio.run(drive(url, 100))
        subprocess.run(["callgrind_control", "-z", str(hub.pid)], check=True, capture_output=True)
        time.sleep(idle)  # the hub does nothing but its timers meanwhile
        subprocess.run(["callgrind_control", "-d", str(hub.pid)], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-z", str(hub.pid)], check=True, capture_output=True)
        started = time.monotonic()
        asyncio.run(drive(url, calls))
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
        "--door", choices=("mcp", "llm", "messages"), action="append", help="measure only this door (repeatable)"
    )
    parser.add_argument("--idle", type=float, default=10.0, help="seconds the hub idles to measure its timers' rate")
    args = parser.parse_args()
    rows: list[tuple[str, tuple[float, float], tuple[float, float] | None]] = []
    doors = (("mcp", "tools/call, c=1"), ("llm", "chat completion, c=1"), ("messages", "Messages passed through, c=1"))
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


if __name__ == "__main__":
    main()

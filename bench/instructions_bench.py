"""What the hub's hot paths cost in CPU instructions: `tools/call` on the MCP door and a chat completion on the
OpenAI door, counted by valgrind's callgrind in the hub process (the same count on a busy or an idle machine, unlike
wall-clock figures), optionally against another checkout measured in the same run.

One measurement starts, on 127.0.0.1, the upstream (the fixture MCP server over Streamable HTTP, or the `llm.testing`
OpenAI fake) and `agenthub serve` under callgrind with full governance on; sends 100 requests one at a time to warm
up, zeroes the counters, sends `--calls` more, dumps the counters and divides. The request log's flushes and the
change follower's polls run on timers, so a run that takes longer counts a little more of them: each side is
measured `--runs` times, alternating, and the lowest count is shown.

    .venv/bin/python bench/instructions_bench.py [--calls 400] [--runs 2] [--door mcp|llm]
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
from llm.testing import FakeScript, Reply, openai_app
app = openai_app(FakeScript(default=Reply("Hello from the mock.")))
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
    headers = {"Authorization": f"Bearer {LLM_KEY}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for _ in range(n):
            async with http.post(url, data=body) as response:
                if response.status != 200:
                    raise RuntimeError(await response.text())
                await response.read()


def measure(root: Path, python: str, door: str, calls: int) -> float:
    """Instructions per request of the hub in `root` (run by `python`) on `door` (`mcp` or `llm`)."""
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
        url = f"http://127.0.0.1:{hub_port}" + ("/mcp" if door == "mcp" else "/v1/chat/completions")
        drive = mcp_calls if door == "mcp" else chat_calls
        asyncio.run(drive(url, 100))
        subprocess.run(["callgrind_control", "-z", str(hub.pid)], check=True, capture_output=True)
        asyncio.run(drive(url, calls))
        subprocess.run(["callgrind_control", "-d", str(hub.pid)], check=True, capture_output=True)
    finally:
        if hub is not None:
            stop(hub, signal.SIGINT)
        stop(upstream)
    try:
        dumps = glob.glob(f"{out}.1")
        if not dumps:
            raise RuntimeError("callgrind wrote no dump")
        for line in Path(dumps[0]).read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1]) / calls
        raise RuntimeError("no total in the callgrind dump")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--baseline", type=Path, help="another checkout to measure in the same run")
    parser.add_argument("--baseline-python", default=sys.executable, help="the Python that has its dependencies")
    parser.add_argument("--runs", type=int, default=2, help="measurements of each side, alternating; the lowest counts")
    parser.add_argument("--door", choices=("mcp", "llm"), action="append", help="measure only this door (repeatable)")
    args = parser.parse_args()
    rows: list[tuple[str, float, float | None]] = []
    for door, label in (("mcp", "tools/call, c=1"), ("llm", "chat completion, c=1")):
        if args.door and door not in args.door:
            continue
        bases: list[float] = []
        heres: list[float] = []
        for _ in range(args.runs):
            if args.baseline:
                bases.append(measure(args.baseline, args.baseline_python, door, args.calls))
            heres.append(measure(ROOT, sys.executable, door, args.calls))
        rows.append((label, min(heres), min(bases) if bases else None))
    print("| instructions per request | this tree | baseline | ratio |")
    print("| --- | --- | --- | --- |")
    for label, here, base in rows:
        ratio = f"{here / base:.3f}" if base else ""
        baseline = f"{base:,.0f}" if base else ""
        print(f"| {label} | {here:,.0f} | {baseline} | {ratio} |")


if __name__ == "__main__":
    main()

"""Python bytecodes the hub runs per request, in every thread, tracing off and on: a count that, like callgrind's,
does not move with the machine's load, and much quicker to take (the hub starts at Python's own speed; only the
counted requests run under the trace function).

The hub runs under `bench/_opcount.py`, which counts every bytecode of every thread between two signals (the span
and log export threads included). As `bench/instructions_bench.py` does, one measurement sends warm-up requests one
at a time, waits for what they left behind (request-log flush, span export: `settle`), counts an idle window for the
timers' rate, then counts `--calls` requests and what they leave behind, and takes the timers' rate over that window
off ("net"). Tracing on exports to a sink on 127.0.0.1 at 100% sampling. `--baseline DIR` measures another checkout
the same way. With `OPCOUNT_BY_FUNCTION=1` in the environment each count's 40 busiest functions go to stderr.

    .venv/bin/python bench/bytecodes_bench.py [--door mcp|llm] [--calls 100] [--idle 5] [--baseline DIR]

Bytecodes are not instructions (a bytecode that calls into C counts one), so the figures compare Python work;
callgrind (`bench/instructions_bench.py`) counts everything.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from instructions_bench import (
    LLM_CONFIG,
    LLM_KEY,
    MCP_CONFIG,
    MCP_KEY,
    MOCK,
    chat_calls,
    free_port,
    mcp_calls,
    otlp_sink,
    settle,
    stop,
    wait_listening,
)

ROOT = Path(__file__).resolve().parents[1]
COUNTER = Path(__file__).resolve().with_name("_opcount.py")


def _count(pid: int, out: Path) -> int:
    """The hub's count so far (SIGUSR2 writes it to `out`)."""
    out.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if out.exists() and out.read_text():
            total, _, functions = out.read_text().partition("\n")
            if functions:
                print(f"-- {total} bytecodes, by function:\n{functions}", file=sys.stderr)
            return int(total)
        time.sleep(0.05)
    raise RuntimeError("the hub wrote no count")


def measure(root: Path, door: str, calls: int, idle: float, otlp: str | None) -> tuple[float, float]:
    """Bytecodes per request of the hub in `root` on `door`: total, and net of the timers' rate."""
    upstream_port, hub_port = free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="agenthub-bytecodes-"))
    env = {**os.environ, "PYTHONPATH": str(root), "BENCH_OPENAI_KEY": "sk-bench", "AGENTHUB_WORKERS": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("OTEL_")}
    if otlp is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp
    python = sys.executable
    if door == "mcp":
        argv = [python, str(root / "tests/servers/fixture_server.py"), "--transport", "streamable-http"]
        upstream = subprocess.Popen([*argv, "--port", str(upstream_port)], cwd=root, env=env)
        config = MCP_CONFIG.format(port=hub_port, dir=tmp, upstream=upstream_port, key=MCP_KEY)
        url, drive = f"http://127.0.0.1:{hub_port}/mcp", mcp_calls
    else:
        upstream = subprocess.Popen([python, "-c", MOCK, str(upstream_port)], cwd=root, env=env)
        config = LLM_CONFIG.format(port=hub_port, dir=tmp, upstream=upstream_port, key=LLM_KEY)
        url, drive = f"http://127.0.0.1:{hub_port}/v1/chat/completions", chat_calls
    (tmp / "agenthub.toml").write_text(config, encoding="utf-8")
    module = "hub.cli.main" if (root / "hub/cli/main.py").exists() else "hub.cli"
    out = tmp / "count"
    hub: subprocess.Popen[bytes] | None = None
    try:
        wait_listening(upstream_port, 60)
        hub = subprocess.Popen(
            [python, str(COUNTER), str(out), "-m", module, "serve", "--config", str(tmp / "agenthub.toml")],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(hub_port, 600)
        asyncio.run(drive(url, 100))
        settle(otlp)
        os.kill(hub.pid, signal.SIGUSR1)
        time.sleep(idle)
        timers = _count(hub.pid, out) / idle
        os.kill(hub.pid, signal.SIGUSR1)
        started = time.monotonic()
        asyncio.run(drive(url, calls))
        settle(otlp)
        busy = time.monotonic() - started
        total = _count(hub.pid, out)
    finally:
        if hub is not None:
            stop(hub, signal.SIGINT)
        stop(upstream)
        shutil.rmtree(tmp, ignore_errors=True)
    return total / calls, (total - timers * busy) / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--door", choices=("mcp", "llm"), action="append")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--baseline", type=Path, help="another checkout measured the same way")
    args = parser.parse_args()
    sink, url = otlp_sink()
    trees = [("this tree", ROOT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    print("| bytecodes per request, c=1 | tree | tracing off: total / net | tracing on: total / net | on / off (net) |")
    print("| --- | --- | ---: | ---: | ---: |")
    try:
        for door in args.door or ["mcp", "llm"]:
            for name, root in trees:
                off = measure(root, door, args.calls, args.idle, None)
                on = measure(root, door, args.calls, args.idle, url)
                label = "tools/call" if door == "mcp" else "chat completion"
                print(
                    f"| {label} | {name} | {off[0]:,.0f} / {off[1]:,.0f} | {on[0]:,.0f} / {on[1]:,.0f} "
                    f"| {on[1] / off[1]:.3f} |",
                    flush=True,
                )
    finally:
        sink.shutdown()


if __name__ == "__main__":
    main()

"""Bytecodes the hub's event loop runs per LLM request, by function: where a request's Python work goes, counted
(not timed), so the figure is the same on a busy machine as on an idle one, and a change's gain shows per function.

The upstream is the `llm.testing` OpenAI and Anthropic fakes, the hub `agenthub serve` with the configuration of
`bench/instructions_bench.py` (a key with a budget and a rate limit), run under a wrapper that counts, on the main
thread, every bytecode executed between two `SIGUSR1`s (`sys.settrace` with opcode events). The benchmark sends
50 requests to warm up, starts the count, sends `--calls` more one at a time, stops it, and prints the total per
request and the functions that ran the most. Work of other threads (the request log's writer, SQLite) is not
counted, and neither is C code (orjson, the regex engine, httptools): a bytecode count shows Python work only, and
the timers that fire during the count (the request log's flush, the change follower's poll) add a few hundred
bytecodes per request of noise; callgrind (`bench/instructions_bench.py`) counts everything.

    .venv/bin/python bench/bytecodes_by_function.py [--door messages|messages-stream|llm] [--calls 40] [--top 40]
        [--baseline ../other-checkout] [--rounds 2]

With `--baseline` the other checkout is measured in alternating rounds, and each side's lowest total is shown.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from instructions_bench import (  # noqa: E402 - the bench folder is not a package
    LLM_CONFIG,
    LLM_KEY,
    MOCK,
    chat_calls,
    free_port,
    messages_calls,
    messages_stream_calls,
    stop,
    wait_listening,
)

COUNTING = """
import collections, json, signal, sys
counts = collections.Counter()
root = sys.argv[3]


def tracer(frame, event, arg):
    frame.f_trace_opcodes = True
    code = frame.f_code
    key = f"{code.co_filename.replace(root, '')}:{code.co_firstlineno}:{code.co_name}"
    if code.co_filename == "<string>":  # a dataclass's or a named tuple's generated method: name its class
        key += ":" + type(frame.f_locals.get("self")).__name__

    def local(frame, event, arg):
        if event == "opcode":
            counts[key] += 1
        return local

    return local


on = [False]


def toggle(signum, frame):
    if not on[0]:
        counts.clear()
        on[0] = True
        sys.settrace(tracer)
    else:
        sys.settrace(None)
        on[0] = False
        with open(sys.argv[2], "w") as out:
            json.dump(counts, out)


signal.signal(signal.SIGUSR1, toggle)
from hub.cli.main import main
sys.exit(main(["serve", "--config", sys.argv[1]]))
"""

DOORS = {
    "messages": ("/v1/messages", messages_calls),
    "messages-stream": ("/v1/messages", messages_stream_calls),
    "llm": ("/v1/chat/completions", chat_calls),
}


def measure(root: Path, door: str, calls: int) -> dict[str, float]:
    """Bytecodes per request by function, for the hub in `root` on `door`."""
    upstream_port, hub_port = free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="agenthub-bytecodes-"))
    env = {**os.environ, "PYTHONPATH": str(root), "BENCH_OPENAI_KEY": "sk-bench"}
    python = sys.executable
    upstream = subprocess.Popen([python, "-c", MOCK, str(upstream_port)], cwd=root, env=env)
    config = tmp / "agenthub.toml"
    config.write_text(LLM_CONFIG.format(port=hub_port, dir=tmp, upstream=upstream_port, key=LLM_KEY), "utf-8")
    out = tmp / "counts.json"
    argv = [python, "-c", COUNTING, str(config), str(out), f"{root}/"]
    hub = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path, drive = DOORS[door]
    url = f"http://127.0.0.1:{hub_port}{path}"
    try:
        wait_listening(upstream_port, 60)
        wait_listening(hub_port, 120)
        asyncio.run(drive(url, 50))
        hub.send_signal(signal.SIGUSR1)
        time.sleep(0.5)  # the count starts when the hub's main thread next runs Python
        asyncio.run(drive(url, calls))
        hub.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 60
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the dump is written in one go; let it finish
        counts: dict[str, int] = json.loads(out.read_text())
    finally:
        stop(hub, signal.SIGINT)
        stop(upstream)
    return {name: count / calls for name, count in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--door", choices=tuple(DOORS), default="messages")
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--top", type=int, default=40, help="functions to list")
    parser.add_argument("--baseline", type=Path, help="another checkout measured in alternating rounds")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    here: list[dict[str, float]] = []
    base: list[dict[str, float]] = []
    for _ in range(args.rounds):
        here.append(measure(ROOT, args.door, args.calls))
        if args.baseline is not None:
            base.append(measure(args.baseline.resolve(), args.door, args.calls))
    best = min(here, key=lambda counts: sum(counts.values()))
    print(f"this tree: {sum(best.values()):,.0f} bytecodes per request ({args.door}); totals of the rounds:", end="")
    print(", ".join(f" {sum(c.values()):,.0f}" for c in here))
    if base:
        low = min(base, key=lambda counts: sum(counts.values()))
        print(
            f"baseline: {sum(low.values()):,.0f}; totals of the rounds:"
            + ", ".join(f" {sum(c.values()):,.0f}" for c in base)
        )
    for name, count in sorted(best.items(), key=lambda item: -item[1])[: args.top]:
        print(f"{count:9.1f}  {name}")


if __name__ == "__main__":
    main()

"""Start-up of the stdio bridge: the time from launching `agenthub stdio --url` to its `initialize` answer.

MCP clients launch the bridge as a command and give it a few seconds to answer `initialize` (some give up after
5 s), so what counts is the whole start-up: interpreter, imports, reaching the hub, the first answer. One run
starts, on 127.0.0.1, a hub (`agenthub serve` with the fixture upstream over stdio), then launches the bridge
`--runs` times, one after the other; each time it writes `initialize` to the bridge's stdin as soon as the process
exists and measures until the answer line arrives on its stdout (then closes stdin and waits for the exit). It
also reports what one bridge run imports (`python -X importtime`): the module count and the summed import time.

    .venv/bin/python bench/stdio_bench.py [--runs 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _procs import ROOT, free_port, start, stop

AGENTHUB = str(Path(sys.executable).with_name("agenthub"))
KEY = "ahk-bench-0000000000000000000000000000000000000"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
}


def write_config(folder: Path, port: int) -> Path:
    path = folder / "agenthub.toml"
    fixture = ROOT / "tests" / "servers" / "fixture_server.py"
    path.write_text(
        f"""
[hub]
listen = "127.0.0.1:{port}"
database = "sqlite:///{folder / "hub.db"}"

[servers.fixture]
transport = "stdio"
command = "{sys.executable}"
args = ["{fixture}"]

[[keys]]
name = "bench"
secret = "{KEY}"
tools = ["*"]
"""
    )
    return path


def first_answer(url: str, env: dict[str, str]) -> float:
    """Seconds from launching the bridge to its `initialize` answer (stdin then closes; the bridge must exit 0)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [AGENTHUB, "stdio", "--url", url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=ROOT
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(INITIALIZE).encode() + b"\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - started
    proc.stdin.close()
    code = proc.wait(30)
    answer = json.loads(line)
    if code != 0 or "result" not in answer:
        raise RuntimeError(f"bridge answered {line!r} and exited {code}")
    return elapsed


def import_profile(url: str, env: dict[str, str]) -> tuple[int, float]:
    """(modules imported, seconds of import time) of one bridge run (`initialize`, then stdin closes), as
    `python -X importtime` reports them for the `agenthub` script."""
    argv = [sys.executable, "-X", "importtime", AGENTHUB, "stdio", "--url", url]
    line = json.dumps(INITIALIZE).encode() + b"\n"
    done = subprocess.run(argv, input=line, capture_output=True, env=env, cwd=ROOT, check=False, timeout=60)
    rows = [line.split("|") for line in done.stderr.decode().splitlines() if line.startswith("import time:")]
    timed = [row for row in rows if row[0].split(":")[1].strip().isdigit()]
    return len(timed), sum(int(row[0].split(":")[1]) for row in timed) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    env = {**os.environ, "AGENTHUB_KEY": KEY}
    env.pop("AGENTHUB_LOG_LEVEL", None)
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        hub = start([AGENTHUB, "serve", "--config", str(write_config(Path(folder), port))], port)
        try:
            url = f"http://127.0.0.1:{port}/mcp"
            first_answer(url, env)  # warm the page cache and the hub's first session
            times = [first_answer(url, env) for _ in range(args.runs)]
            modules, seconds = import_profile(url, env)
        finally:
            stop(hub)
    result = {
        "runs": args.runs,
        "initialize_median_s": round(statistics.median(times), 3),
        "initialize_max_s": round(max(times), 3),
        "modules_imported": modules,
        "import_time_s": round(seconds, 3),
    }
    if args.json:
        print(json.dumps(result))
        return
    print("| start-up of `agenthub stdio --url` | value |")
    print("| --- | ---: |")
    print(f"| launch to `initialize` answer, median of {args.runs} | {result['initialize_median_s']:.3f} s |")
    print(f"| launch to `initialize` answer, slowest | {result['initialize_max_s']:.3f} s |")
    print(f"| modules imported by the entry point | {modules} |")
    print(f"| their import time (`-X importtime`, self) | {seconds:.3f} s |")


if __name__ == "__main__":
    main()

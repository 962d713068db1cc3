"""How long a list-changed fan-out takes: from the change to the moment the last of N listening clients has the
notification in hand.

Starts, on 127.0.0.1, `agenthub serve` (one process, SQLite, the fixture MCP server over stdio, `--keys` keys that
see everything) and opens `--sessions` sessions spread over those keys: handshake-era ones (initialize, then the
`GET` notification stream) and 2026-07-28 ones (a `subscriptions/listen` stream), half and half unless
`--modern-share` says otherwise. Then, `--runs` times, it asks the fixture to add a tool (a `tools/call` of
`fixture__add_tool`): the upstream announces its new list, the hub re-reads it and tells every session whose key
sees the new tool, which is all of them. The figure is the time from sending that call to the last notification
read, so it includes the upstream's round trip and the catalog re-read, not only the fan-out; the median and the
worst run are shown. On a shared machine that figure is mostly waiting for a CPU, so the hub process's own CPU
time for the same span (user + system, from /proc) is shown beside it: what the fan-out costs the hub, whatever
the load.

    .venv/bin/python bench/listchanged_bench.py [--sessions 1000] [--keys 10] [--runs 5] [--modern-share 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _procs import ROOT, free_port, start, stop

MODERN = "2026-07-28"
HANDSHAKE = "2025-11-25"
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "listchanged-bench", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
ACCEPT = "application/json, text/event-stream"


def key_secret(n: int) -> str:
    return f"ahk-listbench-{n:04d}-" + "0" * 28


def config_text(keys: int, sessions: int) -> str:
    fixture = ROOT / "tests" / "servers" / "fixture_server.py"
    lines = [
        "[hub]",
        f"max_sessions_per_key = {sessions + 10}",
        f"max_connections = {sessions + 200}",  # every session holds a stream open
        "session_idle_s = 3600",
        "",
        "[servers.fixture]",
        'transport = "stdio"',
        f'command = "{sys.executable}"',
        f'args = ["{fixture}"]',
        "",
    ]
    for n in range(keys):
        lines += ["[[keys]]", f'name = "bench{n}"', f'secret = "{key_secret(n)}"', 'tools = ["*"]', ""]
    return "\n".join(lines)


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The JSON messages of an event stream, one at a time."""
    data: list[str] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield json.loads("\n".join(data))
            data = []


class Listener:
    """One client session with its notification stream open; counts `tools/list_changed` notifications."""

    def __init__(self) -> None:
        self.heard = 0
        self.changed = asyncio.Event()

    async def hear(self, response: aiohttp.ClientResponse, ready: asyncio.Event) -> None:
        async for message in sse_events(response):
            method = message.get("method", "")
            if method == "notifications/subscriptions/acknowledged":
                ready.set()
            elif method == "notifications/tools/list_changed":
                self.heard += 1
                self.changed.set()


async def open_modern(http: aiohttp.ClientSession, url: str, key: str, listener: Listener) -> asyncio.Task[None]:
    headers = {
        "Authorization": f"Bearer {key}",
        "Accept": ACCEPT,
        "Mcp-Protocol-Version": MODERN,
        "Mcp-Method": "subscriptions/listen",
    }
    body = {
        "jsonrpc": "2.0",
        "id": "listen-1",
        "method": "subscriptions/listen",
        "params": {"_meta": MODERN_META, "notifications": {"toolsListChanged": True}},
    }
    response = await http.post(url, json=body, headers=headers)
    assert response.status == 200, await response.text()
    ready = asyncio.Event()
    task = asyncio.create_task(listener.hear(response, ready))
    await ready.wait()
    return task


async def open_handshake(
    http: aiohttp.ClientSession, url: str, key: str, listener: Listener, streams: list[int]
) -> asyncio.Task[None]:
    headers = {"Authorization": f"Bearer {key}", "Accept": ACCEPT}
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
    }
    async with http.post(url, json=initialize, headers=headers) as opened:
        assert opened.status == 200, await opened.text()
        session_id = opened.headers["mcp-session-id"]
        await opened.read()
    session = {**headers, "Mcp-Session-Id": session_id, "Mcp-Protocol-Version": HANDSHAKE}
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    async with http.post(url, json=note, headers=session) as done:
        assert done.status == 202, await done.text()
    response = await http.get(url, headers={**session, "Accept": "text/event-stream"})
    assert response.status == 200, await response.text()
    streams.append(1)
    ready = asyncio.Event()
    ready.set()  # the stream is registered before the response starts
    return asyncio.create_task(listener.hear(response, ready))


async def add_tool(http: aiohttp.ClientSession, url: str, key: str, name: str) -> None:
    headers = {
        "Authorization": f"Bearer {key}",
        "Accept": ACCEPT,
        "Mcp-Protocol-Version": MODERN,
        "Mcp-Method": "tools/call",
        "Mcp-Name": "fixture__add_tool",
    }
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"_meta": MODERN_META, "name": "fixture__add_tool", "arguments": {"name": name}},
    }
    async with http.post(url, json=body, headers=headers) as response:
        assert response.status == 200, await response.text()
        await response.read()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench(
    url: str, sessions: int, keys: int, runs: int, modern_share: float, pid: int
) -> tuple[list[float], list[float]]:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        listeners = [Listener() for _ in range(sessions)]
        modern = int(sessions * modern_share)
        streams: list[int] = []
        tasks: list[asyncio.Task[None]] = []
        for start_at in range(0, sessions, 50):  # open in batches: the hub admits each as a governed call
            batch = []
            for i in range(start_at, min(sessions, start_at + 50)):
                key = key_secret(i % keys)
                if i < modern:
                    batch.append(open_modern(http, url, key, listeners[i]))
                else:
                    batch.append(open_handshake(http, url, key, listeners[i], streams))
            tasks += await asyncio.gather(*batch)
        print(f"{sessions} sessions open ({modern} listen streams, {len(streams)} handshake-era streams)")
        figures: list[float] = []
        cpu: list[float] = []
        for run in range(runs):
            for listener in listeners:
                listener.changed.clear()
            began, began_cpu = time.perf_counter(), cpu_seconds(pid)
            await add_tool(http, url, key_secret(0), f"late{run}")
            await asyncio.gather(*(listener.changed.wait() for listener in listeners))
            figures.append(time.perf_counter() - began)
            cpu.append(cpu_seconds(pid) - began_cpu)
            assert all(listener.heard == run + 1 for listener in listeners), "a session heard too much or too little"
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return figures, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description="How long a list-changed fan-out to N sessions takes.")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--modern-share", type=float, default=0.5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "agenthub.toml"
        config.write_text(config_text(args.keys, args.sessions), encoding="utf-8")
        port = free_port()
        env = {
            **os.environ,
            "AGENTHUB_DATABASE_URL": f"sqlite:///{Path(tmp) / 'hub.db'}",
            "AGENTHUB_AUDIT_KEY": "listchanged-bench-audit-key-0123456789abcdef",
            "AGENTHUB_WORKERS": "1",
        }
        launch = "import sys; from hub.cli.main import main; sys.exit(main())"
        argv = [sys.executable, "-c", launch, "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"]
        hub = start(argv, port, env)
        try:
            url = f"http://127.0.0.1:{port}/mcp"
            figures, cpu = asyncio.run(bench(url, args.sessions, args.keys, args.runs, args.modern_share, hub.pid))
        finally:
            stop(hub)
    ms = sorted(f * 1000 for f in figures)
    cpu_ms = sorted(c * 1000 for c in cpu)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| sessions | keys | runs | median ms | worst ms | hub CPU ms, median | hub CPU ms, worst |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {args.sessions} | {args.keys} | {len(ms)} | {statistics.median(ms):.0f} | {ms[-1]:.0f} "
        f"| {statistics.median(cpu_ms):.0f} | {cpu_ms[-1]:.0f} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

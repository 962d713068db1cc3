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
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

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


async def _rate(name: str, one: Callable[[], Awaitable[object]], seconds: float, concurrency: int) -> float:
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
    per_request = (time.process_time() - cpu) / max(done, 1) * 1e6
    print(f"{name:<28} {rate:8.0f} req/s {per_request:7.1f} us CPU/request")
    return rate


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


def run(seconds: float, concurrency: int) -> None:
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
        asyncio.run(main(f"http://127.0.0.1:{port}", seconds, concurrency))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    run(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0, int(sys.argv[2]) if len(sys.argv) > 2 else 32)

"""`agenthub serve` against slow clients: a hub with few file descriptors keeps serving while more slow
connections than it has descriptors hang on it, and requests that never finish get closed.

Each hub is a real `agenthub serve` subprocess (stopped by PID) with small timeouts in its config file. The slow
clients send a request line and part of a header, then nothing (or one more byte now and then); the test waits
on what it can observe (a response, a closed socket), guarded by generous `anyio.fail_after` deadlines.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import httpx2
import pytest
from anyio.abc import SocketStream

from tests.tools import ServedProcess, served
from tests.tools.patience import PATIENCE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

AGENTHUB = str(Path(sys.executable).with_name("agenthub"))
ALICE = "ahk-alice-limits-test-000000000000000000000000"

FD_LIMIT = 256
"""The hub's file-descriptor limit (soft and hard) in the descriptor test."""

SLOW_CLIENTS = 300
"""More slow connections than the hub has descriptors."""

LIMITED = (
    "import os, resource, sys; soft, hard = int(sys.argv[1]), int(sys.argv[2]); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)); os.execv(sys.argv[3], sys.argv[3:])"
)
"""Run a command under file-descriptor limits: `python -c LIMITED SOFT HARD argv...` (the process keeps its PID)."""


def limited(soft: int, hard: int, argv: list[str]) -> list[str]:
    return [sys.executable, "-c", LIMITED, str(soft), str(hard), *argv]


def descriptor_limits(pid: int) -> tuple[int, int]:
    """The soft and hard file-descriptor limits of a running process."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no descriptor limits for {pid}")


INITIALIZE = (
    b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",'
    b'"capabilities":{},"clientInfo":{"name":"limits-test","version":"1"}}}'
)

SLOW_START = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
"""A request line and the start of a header that never ends."""


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def write_config(tmp_path: Path, hub: str) -> Path:
    config = tmp_path / "agenthub.toml"
    config.write_text(
        f'[hub]\nlisten = "127.0.0.1:1"\ndatabase = "sqlite:///{tmp_path / "hub.db"}"\n{hub}\n'
        f'[[keys]]\nname = "alice"\nsecret = "{ALICE}"\ntools = ["*"]\n',
        encoding="utf-8",
    )
    return config


def serve_argv(config: Path) -> list[str]:
    return [AGENTHUB, "serve", "--config", str(config), "--listen", "127.0.0.1:{port}"]


async def read_until_closed(stream: SocketStream) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    try:
        while True:
            received += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
        return received


async def legitimate_requests_succeed(hub: ServedProcess) -> None:
    """A health check and an MCP `initialize` with a key, each on a new connection."""
    async with httpx2.AsyncClient(timeout=None) as client:
        health = await client.get(hub.url("/healthz"))
        assert health.status_code == 200, health.text
    headers = {
        "Authorization": f"Bearer {ALICE}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    async with httpx2.AsyncClient(timeout=None) as client:
        initialized = await client.post(hub.url("/mcp"), content=INITIALIZE, headers=headers)
        assert initialized.status_code == 200, initialized.text
        assert b'"serverInfo"' in initialized.content


@pytest.fixture
async def starved_hub(tmp_path: Path) -> AsyncIterator[ServedProcess]:
    """A hub limited to `FD_LIMIT` descriptors, whose header timeout is far longer than the test."""
    config = write_config(tmp_path, "header_timeout_s = 3600")
    async with served(limited(FD_LIMIT, FD_LIMIT, serve_argv(config))) as hub:
        yield hub


async def test_more_slow_connections_than_descriptors_do_not_starve_legitimate_requests(
    starved_hub: ServedProcess,
) -> None:
    async with AsyncExitStack() as stack:
        slow: list[SocketStream] = []
        with anyio.fail_after(60):
            for _ in range(SLOW_CLIENTS):
                stream = await stack.enter_async_context(await anyio.connect_tcp("127.0.0.1", starved_hub.port))
                await stream.send(SLOW_START)
                slow.append(stream)
        with anyio.fail_after(PATIENCE):
            await legitimate_requests_succeed(starved_hub)
        with anyio.fail_after(PATIENCE):  # the connections that waited longest made room for the newer ones
            for stream in slow[: SLOW_CLIENTS - FD_LIMIT]:
                await read_until_closed(stream)
    assert descriptor_limits(starved_hub.pid) == (FD_LIMIT, FD_LIMIT)
    assert "max_connections lowered from 1000 to " in starved_hub.output()  # to fit the descriptors, with a warning


@pytest.fixture(scope="module")
async def impatient_hub(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServedProcess]:
    """A hub with one-second header, body and keep-alive timeouts, started with a low soft descriptor limit under a
    high enough hard one."""
    config = write_config(
        tmp_path_factory.mktemp("impatient"), "header_timeout_s = 1\nbody_timeout_s = 1\nkeep_alive_timeout_s = 1"
    )
    async with served(limited(FD_LIMIT, 4096, serve_argv(config))) as hub:
        yield hub


async def test_a_low_soft_descriptor_limit_is_raised_to_fit_the_connection_cap(impatient_hub: ServedProcess) -> None:
    soft, hard = descriptor_limits(impatient_hub.pid)
    assert hard == 4096
    assert 1000 < soft <= hard  # room for the default 1000 connections and the reserve
    assert "max_connections lowered" not in impatient_hub.output()


async def test_a_connection_that_never_sends_a_request_is_closed(impatient_hub: ServedProcess) -> None:
    with anyio.fail_after(PATIENCE):
        async with await anyio.connect_tcp("127.0.0.1", impatient_hub.port) as stream:
            assert await read_until_closed(stream) == b""


async def test_headers_that_never_end_get_a_408_and_the_connection_closed(impatient_hub: ServedProcess) -> None:
    with anyio.fail_after(PATIENCE):
        async with await anyio.connect_tcp("127.0.0.1", impatient_hub.port) as stream:
            await stream.send(SLOW_START)
            answer = await read_until_closed(stream)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close\r\n" in answer


async def test_headers_trickling_in_a_byte_at_a_time_are_cut_off_too(impatient_hub: ServedProcess) -> None:
    async def trickle(stream: SocketStream) -> None:
        await stream.send(SLOW_START)
        try:
            while True:  # one more header byte every 0.2 s, each one before the header timeout
                await anyio.sleep(0.2)
                await stream.send(b"x")
        except (anyio.BrokenResourceError, ConnectionResetError, BrokenPipeError):
            return

    with anyio.fail_after(PATIENCE):
        async with await anyio.connect_tcp("127.0.0.1", impatient_hub.port) as stream, anyio.create_task_group() as tg:
            tg.start_soon(trickle, stream)
            assert (await read_until_closed(stream)).startswith(b"HTTP/1.1 408 ")
            tg.cancel_scope.cancel()


async def test_a_body_that_never_completes_gets_a_408_and_the_connection_closed(impatient_hub: ServedProcess) -> None:
    head = (
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nAuthorization: Bearer {ALICE}\r\n"
        "Content-Length: 1000\r\n\r\n"
    )
    with anyio.fail_after(PATIENCE):
        async with await anyio.connect_tcp("127.0.0.1", impatient_hub.port) as stream:
            await stream.send(head.encode() + INITIALIZE[:20])
            answer = await read_until_closed(stream)
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_an_idle_keep_alive_connection_is_closed_after_its_response(impatient_hub: ServedProcess) -> None:
    with anyio.fail_after(PATIENCE):
        async with await anyio.connect_tcp("127.0.0.1", impatient_hub.port) as stream:
            await stream.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = await read_until_closed(stream)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.count(b"HTTP/1.1 ") == 1


async def test_legitimate_requests_pass_while_slow_connections_are_open(impatient_hub: ServedProcess) -> None:
    async with AsyncExitStack() as stack:
        slow: list[SocketStream] = []
        for _ in range(20):
            slow.append(await stack.enter_async_context(await anyio.connect_tcp("127.0.0.1", impatient_hub.port)))
            await slow[-1].send(SLOW_START)
        with anyio.fail_after(PATIENCE):
            await legitimate_requests_succeed(impatient_hub)
            for stream in slow:
                assert (await read_until_closed(stream)).startswith(b"HTTP/1.1 408 ")

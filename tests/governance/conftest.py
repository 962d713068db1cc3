"""Fixtures for the governance tests: a controllable clock and a real redis-server on 127.0.0.1."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hub.governance.clock import ManualClock
from hub.governance.counters import Counters
from hub.store.counters import InMemoryCounters
from hub.store.redis_counters import RedisCounters
from tests.tools.requirements import unavailable


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a private redis-server for the session (skipped when the binary is absent, failed under CI)."""
    binary = shutil.which("redis-server") or unavailable("redis-server", "apt-get install redis-server")
    workdir: Path = tmp_path_factory.mktemp("redis")
    port = _free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", ""]
    args += ["--appendonly", "no", "--daemonize", "no", "--loglevel", "notice"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # redis says when it is ready; the loop ends if it exits instead
            if "Ready to accept connections" in line:
                break
        else:
            pytest.fail(f"redis-server exited with {proc.wait()}")
        proc.stdout.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


_prefix_counter = iter(range(1_000_000))


def unique_prefix() -> str:
    return f"t{next(_prefix_counter)}"


@pytest.fixture
def prefix() -> str:
    """A Redis key prefix no other test uses."""
    return unique_prefix()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[Counters]:
    """Each contract test runs on the in-memory store and on a real Redis."""
    if request.param == "memory":
        yield InMemoryCounters()
        return
    url: str = request.getfixturevalue("redis_url")
    store = RedisCounters.from_url(url, prefix=unique_prefix())
    try:
        yield store
    finally:
        await store.aclose()

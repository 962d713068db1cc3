"""Fixtures for the shared counters: a `CounterServer` on a Unix socket in a short private directory, and a
`SocketCounters` connected to it."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hub.store.shared_counters import CounterServer
from hub.store.socket_counters import SocketCounters


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A directory for socket files (a Unix socket path holds at most 107 bytes, so not under pytest's tmp_path)."""
    with tempfile.TemporaryDirectory(prefix="ahc-", dir="/tmp") as directory:
        yield Path(directory)


@pytest.fixture
def server(socket_dir: Path) -> Iterator[CounterServer]:
    with CounterServer(str(socket_dir / "counters.sock")) as running:
        yield running


@pytest.fixture
async def counters(server: CounterServer) -> AsyncIterator[SocketCounters]:
    """The `Counters` contract fixture of tests/governance, here served over the socket."""
    client = SocketCounters(server.path)
    try:
        yield client
    finally:
        await client.aclose()

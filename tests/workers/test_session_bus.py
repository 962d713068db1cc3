"""The supervisor's session bus (`hub.store.session_bus`) through the workers' client (`hub.doors.mcp_bus_socket`):
what one worker publishes every subscriber receives, an ended session is ended for every worker until its id
expires, a malformed frame closes only its own connection, a client whose connection broke opens a new one, and
the server closes cleanly. The supervisor's imports stay within its memory budget."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Generator
from pathlib import Path

import anyio
import pytest

from hub.doors.mcp_bus_socket import SocketBus
from hub.doors.mcp_relay import SessionsUnavailable
from hub.store.session_bus import SessionBusServer, frame, write_key
from tests.tools import PATIENCE, REPO_ROOT

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def socket_dir() -> Generator[Path]:
    """A short private directory (a Unix socket path must fit in 108 bytes)."""
    path = Path(f"/tmp/ahb-{os.urandom(4).hex()}")
    path.mkdir(mode=0o700)
    yield path
    if path.exists():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


class Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.subscribed = anyio.Event()
        self.changed = anyio.Event()

    def on_subscribed(self) -> None:
        self.subscribed.set()

    async def deliver(self, data: bytes) -> None:
        self.messages.append(data)
        self.changed.set()

    async def wait_for(self, count: int) -> list[bytes]:
        while len(self.messages) < count:
            self.changed = anyio.Event()
            await self.changed.wait()
        return self.messages


async def test_every_subscriber_receives_what_any_worker_publishes(socket_dir: Path) -> None:
    with SessionBusServer(str(socket_dir / "s.sock")) as server:
        first, second = SocketBus(server.path), SocketBus(server.path)
        inboxes = [Inbox(), Inbox()]
        with anyio.fail_after(PATIENCE):
            async with anyio.create_task_group() as tasks:
                for bus, inbox in zip((first, second), inboxes, strict=True):
                    tasks.start_soon(bus.listen, inbox.on_subscribed, inbox.deliver)
                    await inbox.subscribed.wait()
                await first.publish(b'{"m": 1}')
                await second.publish(b"x" * 200_000)  # larger than a socket buffer
                for inbox in inboxes:
                    assert await inbox.wait_for(2) == [b'{"m": 1}', b"x" * 200_000]
                tasks.cancel_scope.cancel()
        await first.aclose()
        await second.aclose()


async def test_an_ended_session_is_ended_for_every_worker_until_its_id_expires(socket_dir: Path) -> None:
    clock = Clock()
    with SessionBusServer(str(socket_dir / "s.sock"), clock=clock) as server:
        one, other = SocketBus(server.path), SocketBus(server.path)
        with anyio.fail_after(PATIENCE):
            assert not await other.ended("abc")
            await one.end("abc", 5_000)
            assert await other.ended("abc") and await one.ended("abc")
            assert not await other.ended("abd")
            clock.now += 5.0
            assert not await other.ended("abc")
            clock.now += 61.0
            await one.end("later", 1_000)  # sweeps what expired
        assert server.ended_count() == 1
        await one.aclose()
        await other.aclose()


async def test_a_malformed_frame_closes_only_its_connection(socket_dir: Path) -> None:
    with SessionBusServer(str(socket_dir / "s.sock")) as server:
        bus = SocketBus(server.path)
        for bad in (struct.pack(">I", 2) + b"ab", frame(99, 1), frame(4, 1, struct.pack(">d", -1.0) + b"n")):
            with socket.socket(socket.AF_UNIX) as raw:
                raw.connect(server.path)
                raw.sendall(bad)
                assert raw.recv(100) == b""  # closed by the server
        with anyio.fail_after(PATIENCE):
            await bus.end("still", 1_000)
            assert await bus.ended("still")
        await bus.aclose()


async def test_a_broken_connection_is_opened_again_and_a_gone_server_is_reported(socket_dir: Path) -> None:
    path = str(socket_dir / "s.sock")
    bus = SocketBus(path)
    with SessionBusServer(path):
        with anyio.fail_after(PATIENCE):
            await bus.end("a", 60_000)
    with SessionBusServer(path):  # a new server on the same path (the old connection is closed)
        with anyio.fail_after(PATIENCE):
            assert not await bus.ended("a")  # opened anew: the new server knows nothing of "a"
    with pytest.raises(SessionsUnavailable, match="session bus"):
        await bus.ended("a")
    inbox = Inbox()
    with pytest.raises(SessionsUnavailable, match="session bus"):
        await bus.listen(inbox.on_subscribed, inbox.deliver)
    await bus.aclose()


def test_the_session_key_file_is_new_and_readable_by_its_owner_only(socket_dir: Path) -> None:
    path = socket_dir / "session.key"
    write_key(str(path))
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(bytes.fromhex(path.read_text())) == 32
    with pytest.raises(FileExistsError):
        write_key(str(path))


def test_the_supervisor_loads_no_dataclasses_inspect_ast_nor_third_party_modules(socket_dir: Path) -> None:
    """What the supervisor imports to serve counters and sessions, by its own code path: its memory is budgeted
    (`dataclasses` alone pulls `inspect` and `ast`, some 1.5 MiB)."""
    probe = f"""
import json, sys
from hub.runtime.supervisor import Options, Plan, Supervisor
supervisor = Supervisor(Options("unused.toml"))
supervisor._dir = {str(socket_dir)!r}
supervisor._ensure_session_key()
supervisor._ensure_counters(Plan("127.0.0.1", 1, 2, 1.0, redis=False))
loaded = sorted(sys.modules)
supervisor._close()
print(json.dumps(loaded))
"""
    # Without the master key; and without the test run's coverage measurement, whose start-up hook in the child
    # would load modules of its own (`dataclasses`, `inspect`, ...) that the supervisor never does.
    unwanted = {"AGENTHUB_MASTER_KEY", "COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START"}
    env = {key: value for key, value in os.environ.items() if key not in unwanted}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=PATIENCE
    )
    assert out.returncode == 0, out.stderr
    loaded: list[str] = json.loads(out.stdout)
    assert "hub.store.session_bus" in loaded and "hub.store.shared_counters" in loaded
    assert not {"dataclasses", "inspect", "ast", "anyio", "pydantic", "orjson", "asyncio"} & set(loaded)
    ours = {name for name in loaded if name.split(".")[0] in {"hub", "connectors", "llm", "http1", "sandbox"}}
    assert ours == {
        "hub",
        "hub.governance",
        "hub.governance.counters",
        "hub.runtime",
        "hub.runtime.supervisor",
        "hub.store",
        "hub.store.counter_wire",
        "hub.store.counters",
        "hub.store.session_bus",
        "hub.store.shared_counters",
    }
    assert not socket_dir.exists()  # the key, the sockets and the directory went with the supervisor

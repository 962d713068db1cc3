"""Live forwarding of the audit log from a running hub to a syslog receiver (TCP octet counting, UDP)."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from tests.admin.helpers import admin_client
from tests.hub.harness import base_config, running_hub
from tests.tools import free_port
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

SEQ = re.compile(r' seq="(\d+)"')


class Receiver:
    """Collects syslog messages; `wait_for(seqs)` returns once every seq in the set has arrived."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self._changed = anyio.Event()

    def add(self, message: str) -> None:
        self.messages.append(message)
        self._changed.set()
        self._changed = anyio.Event()

    def seqs(self) -> list[int]:
        return [int(m.group(1)) for m in (SEQ.search(msg) for msg in self.messages) if m]

    async def wait_for(self, wanted: set[int]) -> None:
        with anyio.fail_after(PATIENCE):
            while not wanted <= set(self.seqs()):
                await self._changed.wait()


async def _read_frames(stream: anyio.abc.ByteStream, receiver: Receiver) -> None:
    """RFC 6587 octet counting: `LEN SP MSG`."""
    buffer = b""
    async with stream:
        while True:
            try:
                buffer += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return
            while b" " in buffer:
                length, _, rest = buffer.partition(b" ")
                if len(rest) < int(length):
                    break
                receiver.add(rest[: int(length)].decode())
                buffer = rest[int(length) :]


@asynccontextmanager
async def tcp_receiver(port: int, receiver: Receiver) -> AsyncGenerator[None]:
    """A syslog-over-TCP receiver on 127.0.0.1:`port` until the block ends (connections are closed then)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, lambda s: _read_frames(s, receiver))
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
    await listener.aclose()


def _forwarding(transport: str, port: int) -> dict[str, Any]:
    config = base_config({}, keys=[])
    config["audit"] = {"forward": {"transport": transport, "host": "127.0.0.1", "port": port, "hostname": "hub-test",
                                   "poll_interval_s": 0.2, "lease_s": 3}}  # fmt: skip
    return config


async def test_tcp_forwarding_loses_nothing_while_the_receiver_is_down_or_the_hub_restarts(tmp_path: Path) -> None:
    port = free_port()
    receiver = Receiver()
    config = _forwarding("tcp", port)
    async with tcp_receiver(port, receiver):
        async with running_hub(config, tmp_path) as hub, admin_client(hub.base) as api:
            for name in ("a", "b", "c"):
                assert (await api.post("/api/v1/customers", json={"name": name})).status_code == 201
            await receiver.wait_for({1, 2, 3})
    assert receiver.messages[0].startswith("<110>1 ") and " hub-test agenthub " in receiver.messages[0]

    # the receiver is down: changes go on and are kept in the database behind the cursor
    async with running_hub(config, tmp_path) as hub, admin_client(hub.base) as api:
        for name in ("d", "e"):
            assert (await api.post("/api/v1/customers", json={"name": name})).status_code == 201
        async with tcp_receiver(port, receiver):
            await receiver.wait_for({4, 5})
        assert (await api.post("/api/v1/customers", json={"name": "f"})).status_code == 201

    # the hub stopped with seq 6 unsent; the next start ships it from the persisted cursor
    async with tcp_receiver(port, receiver), running_hub(config, tmp_path):
        await receiver.wait_for({6})
    seqs = receiver.seqs()
    assert sorted(set(seqs)) == [1, 2, 3, 4, 5, 6]
    assert seqs == sorted(seqs)  # in order; at least once means a repeat is possible, never a gap


async def test_udp_forwarding_sends_one_datagram_per_entry(tmp_path: Path) -> None:
    receiver = Receiver()
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
        port = sock.extra(anyio.abc.SocketAttribute.local_port)

        async def receive() -> None:
            async for data, _addr in sock:
                receiver.add(data.decode())

        async with anyio.create_task_group() as tg:
            tg.start_soon(receive)
            async with running_hub(_forwarding("udp", port), tmp_path) as hub, admin_client(hub.base) as api:
                await api.post("/api/v1/teams", json={"name": "t1"})
                await api.post("/api/v1/teams", json={"name": "t2"})
                await receiver.wait_for({1, 2})
            tg.cancel_scope.cancel()
    assert all("team.create" in m for m in receiver.messages)

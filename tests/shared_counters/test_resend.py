"""A broken connection: the worker reconnects once and resends, and the server answers a reserve or settle it
already applied from memory, so a lost answer never holds a reservation twice nor adds usage twice."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hub.governance.counters import Slot, SlotValue
from hub.governance.errors import CountersUnavailable
from hub.store import counter_wire as wire
from hub.store.shared_counters import CounterServer
from hub.store.socket_counters import SocketCounters
from tests.shared_counters.relay import Relay

pytestmark = pytest.mark.anyio

SLOT = Slot("k", 10, 3, 60.0)


async def test_a_reservation_whose_answer_was_lost_is_resent_and_held_once(
    server: CounterServer, counters: SocketCounters, socket_dir: Path
) -> None:
    with Relay(server.path, str(socket_dir / "relay.sock"), cut="answer") as relay:
        through = SocketCounters(relay.path)
        try:
            result = await through.reserve([SLOT], hold_id="h1", now=0.0, lease=60.0)
        finally:
            await through.aclose()
    assert result.granted and result.values == (SlotValue(0, 3),)
    assert relay.seen == [[wire.RESERVE], [wire.RESERVE | wire.RESEND]]
    assert await counters.read(["k"], now=0.0) == [SlotValue(0, 3)]


async def test_a_settle_whose_answer_was_lost_is_resent_and_counted_once(
    server: CounterServer, counters: SocketCounters, socket_dir: Path
) -> None:
    await counters.reserve([SLOT], hold_id="h1", now=0.0, lease=60.0)
    with Relay(server.path, str(socket_dir / "relay.sock"), cut="answer") as relay:
        through = SocketCounters(relay.path)
        try:
            await through.settle([Slot("k", 10, 2, 60.0)], hold_id="h1", now=1.0)
        finally:
            await through.aclose()
    # a settle is not waited for: closing waits for the server to confirm it (a read answered after it), which
    # finds the connection broken, resends the settle first and then the read
    assert relay.seen == [[wire.SETTLE], [wire.SETTLE | wire.RESEND, wire.READ | wire.RESEND]]
    assert await counters.read(["k"], now=1.0) == [SlotValue(2, 0)]


async def test_settles_left_unanswered_by_a_broken_connection_go_first_on_the_next(
    server: CounterServer, counters: SocketCounters, socket_dir: Path
) -> None:
    await counters.reserve([SLOT], hold_id="h1", now=0.0, lease=60.0)
    with Relay(server.path, str(socket_dir / "relay.sock"), cut="answer") as relay:
        through = SocketCounters(relay.path)
        try:
            await through.settle([Slot("k", 10, 2, 60.0)], hold_id="h1", now=1.0)
            result = await through.reserve([Slot("k", 10, 8, 60.0)], hold_id="h2", now=1.0, lease=60.0)
        finally:
            await through.aclose()
    assert relay.seen == [[wire.SETTLE], [wire.SETTLE | wire.RESEND, wire.RESERVE | wire.RESEND]]
    assert result.granted and result.values == (SlotValue(2, 8),)  # the settle applied once, before it
    assert await counters.read(["k"], now=1.0) == [SlotValue(2, 8)]


async def test_a_settle_is_sent_without_waiting_for_its_answer(
    socket_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(socket_dir / "silent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(path)
        silent.listen()  # accepts into its backlog; never reads, never answers
        counters = SocketCounters(path, timeout=0.2)
        await counters.settle([SLOT], hold_id="h", now=0.0)  # returns: nothing waits on the answer
        with pytest.raises(CountersUnavailable, match="did not answer read"):
            await counters.read(["k"], now=0.0)
        await counters.aclose()
    assert "closing the counters with 1 settles unconfirmed" in caplog.text


async def test_a_request_that_never_reached_the_server_is_applied_when_resent(
    server: CounterServer, counters: SocketCounters, socket_dir: Path
) -> None:
    with Relay(server.path, str(socket_dir / "relay.sock"), cut="request") as relay:
        through = SocketCounters(relay.path)
        try:
            assert (await through.reserve([SLOT], hold_id="h1", now=0.0, lease=60.0)).granted
            await through.settle([Slot("k", 10, 1, 60.0)], hold_id="h1", now=0.0)
            assert await through.read(["k"], now=0.0) == [SlotValue(1, 0)]
        finally:
            await through.aclose()
    assert relay.seen == [[wire.RESERVE], [wire.RESERVE | wire.RESEND, wire.SETTLE, wire.READ]]


async def test_a_read_is_resent_after_a_lost_answer(
    server: CounterServer, counters: SocketCounters, socket_dir: Path
) -> None:
    await counters.settle([Slot("k", 10, 4, 60.0)], hold_id="h1", now=0.0)
    assert await counters.read(["k"], now=0.0) == [SlotValue(4, 0)]  # applied (a settle is not waited for)
    with Relay(server.path, str(socket_dir / "relay.sock"), cut="answer") as relay:
        through = SocketCounters(relay.path)
        try:
            assert await through.read(["k"], now=0.0) == [SlotValue(4, 0)]
        finally:
            await through.aclose()
    assert relay.seen == [[wire.READ], [wire.READ | wire.RESEND]]


async def test_a_reset_is_not_resent_and_says_it_may_have_been_applied(
    server: CounterServer, counters: SocketCounters, socket_dir: Path
) -> None:
    await counters.settle([Slot("k", 10, 4, 60.0)], hold_id="h1", now=0.0)
    assert await counters.read(["k"], now=0.0) == [SlotValue(4, 0)]  # applied (a settle is not waited for)
    with Relay(server.path, str(socket_dir / "relay.sock"), cut="answer") as relay:
        through = SocketCounters(relay.path)
        try:
            with pytest.raises(CountersUnavailable, match="may or may not have been applied"):
                await through.reset(["k"], now=0.0)
        finally:
            await through.aclose()
    assert relay.seen == [[wire.RESET]]
    assert await counters.read(["k"], now=0.0) == [SlotValue(0, 0)]  # it was applied, once


def _exchange(sock: socket.socket, frame: bytes) -> bytes:
    sock.sendall(frame)
    buffer = bytearray()
    while not (bodies := wire.split_frames(buffer)):
        buffer += sock.recv(65536)
    return bodies[0]


def test_the_server_applies_a_repeated_request_again_but_answers_a_resend_from_memory(server: CounterServer) -> None:
    reserve = wire.encode_reserve(7, [SLOT], hold_id="h", now=0.0, lease=60.0)
    read = wire.encode_keys(wire.READ, 8, ["k"], now=0.0)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(server.path)
        first = _exchange(sock, reserve)
        assert _exchange(sock, wire.resent(reserve)) == first  # the same answer: held 3, once
        assert wire.values_of(_exchange(sock, read), refused=False)[1] == (SlotValue(0, 3),)
        _exchange(sock, reserve)  # not a resend: a second reservation under the same id, as in memory
        assert wire.values_of(_exchange(sock, read), refused=False)[1] == (SlotValue(0, 6),)


def test_answers_are_remembered_for_remember_seconds_only(socket_dir: Path) -> None:
    now = [0.0]
    with CounterServer(str(socket_dir / "c.sock"), remember=30.0, clock=lambda: now[0]) as server:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(server.path)
            for n in range(3):
                _exchange(sock, wire.encode_reserve(n, [SLOT], hold_id=f"h{n}", now=0.0, lease=60.0))
            _exchange(sock, wire.encode_settle(9, [SLOT], hold_id="h0", now=0.0))
            assert server.remembered() == 3  # h1's and h2's reserves, h0's settle (h0's reserve is settled)
            now[0] = 29.0
            _exchange(sock, wire.encode_keys(wire.READ, 10, ["k"], now=0.0))
            assert server.remembered() == 3  # reads neither remember nor forget
            now[0] = 30.0
            _exchange(sock, wire.encode_settle(11, [SLOT], hold_id="h3", now=0.0))
            assert server.remembered() == 1  # the three older answers are forgotten; this settle's is kept

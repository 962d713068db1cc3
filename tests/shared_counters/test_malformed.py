"""A malformed frame closes the connection that sent it, with the reason logged; the server and every other
connection go on, and the valid requests sent before it are answered."""

from __future__ import annotations

import logging
import socket
import struct
import threading
from pathlib import Path

import pytest

from hub.governance.counters import Slot, SlotValue
from hub.governance.errors import CountersUnavailable
from hub.store import counter_wire as wire
from hub.store.shared_counters import CounterServer
from hub.store.socket_counters import SocketCounters

pytestmark = pytest.mark.anyio

_RESERVE = wire.encode_reserve(1, [Slot("k", 10, 1, 60.0)], hold_id="h", now=0.0, lease=60.0)


def _framed(body: bytes) -> bytes:
    return len(body).to_bytes(4) + body


BAD = {
    "size zero": (b"\x00\x00\x00\x00", "frame size 0"),
    "size too large": ((wire.MAX_FRAME + 1).to_bytes(4), "outside 1.."),
    "unknown operation": (_framed(b"\x09\x00\x00\x00\x01"), "unknown operation 9"),
    "no header": (_framed(b"\x01\x00"), "has no header"),
    "truncated": (_framed(_RESERVE[4:-3]), "the frame ends early"),
    "trailing bytes": (_framed(_RESERVE[4:] + b"\x00"), "1 bytes after the request"),
    "not utf-8": (
        _framed(b"\x03\x00\x00\x00\x01" + struct.pack(">dH", 0.0, 1) + b"\x00\x02\xff\xfe"),
        "not UTF-8",
    ),
    "string past the end": (_framed(b"\x03\x00\x00\x00\x01" + struct.pack(">dHH", 0.0, 1, 50)), "runs past"),
    "time not finite": (_framed(b"\x03\x00\x00\x00\x01" + struct.pack(">dH", float("nan"), 0)), "not finite"),
    "lease not finite": (
        wire.encode_reserve(1, [Slot("k", 10, 1, 60.0)], hold_id="h", now=0.0, lease=float("nan")),
        "the lease is not finite",
    ),
    "ttl not finite": (
        wire.encode_settle(1, [Slot("k", 10, 1, float("inf"))], hold_id="h", now=0.0),
        "a ttl is not finite",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
async def test_a_malformed_frame_closes_its_connection_with_the_reason_logged_and_nothing_else(
    case: str, server: CounterServer, counters: SocketCounters, caplog: pytest.LogCaptureFixture
) -> None:
    frame, reason = BAD[case]
    assert (await counters.reserve([Slot("k", 10, 2, 60.0)], hold_id="a", now=0.0, lease=60.0)).granted
    valid = wire.encode_keys(wire.READ, 5, ["k"], now=0.0)
    with caplog.at_level(logging.WARNING, "hub.store.shared_counters"), socket.socket(socket.AF_UNIX) as sock:
        sock.connect(server.path)
        sock.sendall(valid + frame)
        received = b""
        while chunk := sock.recv(65536):  # ends when the server closes the connection
            received += chunk
    buffer = bytearray(received)
    (answer,) = wire.split_frames(buffer)  # the read sent before the bad frame was answered
    assert wire.answer_id(answer) == 5 and wire.values_of(answer, refused=False)[1] == (SlotValue(0, 2),)
    assert any("malformed frame" in r.message and reason in r.message for r in caplog.records), caplog.text
    # the other connection (a worker's) is untouched, and the server still serves
    assert await counters.read(["k"], now=0.0) == [SlotValue(0, 2)]
    assert (await counters.reserve([Slot("k", 10, 1, 60.0)], hold_id="b", now=0.0, lease=60.0)).granted


async def test_a_frame_split_across_many_writes_is_read_whole(server: CounterServer) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(server.path)
        for i in range(len(_RESERVE)):
            sock.send(_RESERVE[i : i + 1])
        buffer = bytearray()
        while not (bodies := wire.split_frames(buffer)):
            buffer += sock.recv(65536)
    assert wire.values_of(bodies[0], refused=True) == (-1, (SlotValue(0, 1),))


async def test_a_peer_that_hangs_up_mid_frame_leaves_the_server_serving(
    server: CounterServer, counters: SocketCounters
) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(server.path)
        sock.sendall(_RESERVE[:10])
    assert await counters.read(["k"], now=0.0) == [SlotValue(0, 0)]


def _answer_with(reply: bytes, listener: socket.socket) -> None:
    """Serve each connection: read one request frame, send `reply` with the request's id, until the listener closes."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            buffer = bytearray()
            while not (bodies := wire.split_frames(buffer)):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                buffer += chunk
            if bodies:
                conn.sendall(reply.replace(b"RID!", bodies[0][1:5]))


HOSTILE = {
    "unknown status": (b"\x00\x00\x00\x05RID!\x07", "sent a malformed answer: answer status 7"),
    "values cut short": (b"\x00\x00\x00\x09RID!\x00\xff\xff\xff\xff", "sent a malformed answer"),
    "a frame of size zero": (b"\x00\x00\x00\x00", "is unreachable: frame size 0"),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
async def test_a_malformed_answer_is_a_clear_error_never_a_wrong_count(case: str, socket_dir: Path) -> None:
    reply, message = HOSTILE[case]
    path = str(socket_dir / "hostile.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen()
        thread = threading.Thread(target=_answer_with, args=(reply, listener), daemon=True)
        thread.start()
        counters = SocketCounters(path)
        try:
            with pytest.raises(CountersUnavailable, match=message):
                await counters.reserve([Slot("k", 10, 1, 60.0)], hold_id="h", now=0.0, lease=60.0)
        finally:
            await counters.aclose()
            listener.shutdown(socket.SHUT_RDWR)
            thread.join()

"""`LimitedHttpToolsProtocol` in process: which connection makes room at the cap, when a new one is refused, what
the deadlines cost a request, and that uvicorn still has every internal the protocol relies on.

Servers run on 127.0.0.1 inside the test's event loop, so the test can hold the app (a gate) and watch the
connection table; it waits on observable events (a response, a closed socket), never on time.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import uvicorn
from anyio.abc import SocketStream
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from hub.runtime.limits import ConnectionTable, ServingLimits, plan_descriptors
from hub.runtime.protocol import UVICORN_INTERNALS, LimitedHttpToolsProtocol, limited_protocol
from tests.hub.test_serve_protocol import RecordingTransport
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

PATIENT_WITH_TWO = ServingLimits(
    header_timeout_s=3600, body_timeout_s=3600, keep_alive_timeout_s=3600, max_connections=2
)
"""Room for two connections, and deadlines far beyond any test: only the cap closes connections."""


class HeldRequests:
    """Requests to `/hold` wait until the test opens the gate; `arrived` is set once `expected` of them came."""

    def __init__(self) -> None:
        self.reset(0)

    def reset(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.arrived = anyio.Event()
        self.gate = anyio.Event()


HELD = HeldRequests()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    while scope["path"] != "/early" and (await receive()).get("more_body", False):  # /early answers unread
        pass
    if scope["path"] == "/hold":
        HELD.count += 1
        if HELD.count == HELD.expected:
            HELD.arrived.set()
        await HELD.gate.wait()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@asynccontextmanager
async def serving(limits: ServingLimits) -> AsyncGenerator[tuple[int, type[LimitedHttpToolsProtocol]]]:
    """Serve `app` with a protocol bound to `limits`; yields the port and the protocol class."""
    protocol = limited_protocol(limits)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    config = uvicorn.Config(app, http=protocol, log_level="critical", lifespan="off", ws="none")
    server = uvicorn.Server(config)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(PATIENCE):
                while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
                    await anyio.sleep(0.01)
            try:
                yield sock.getsockname()[1], protocol
            finally:
                server.should_exit = True
    finally:
        sock.close()


def get(path: str = "/ok") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


async def response(stream: SocketStream) -> bytes:
    """One whole response (they all have a two-byte body)."""
    received = b""
    while not (b"\r\n\r\n" in received and received.endswith(b"ok")):
        received += await stream.receive()
    return received


async def closed(stream: SocketStream) -> bytes:
    """What the server sends until it closes the connection."""
    received = b""
    try:
        while True:
            received += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
        return received


async def test_at_the_cap_the_connection_that_waited_longest_for_a_request_makes_room() -> None:
    async with serving(PATIENT_WITH_TWO) as (port, protocol):
        with anyio.fail_after(PATIENCE):
            async with (
                await anyio.connect_tcp("127.0.0.1", port) as first,
                await anyio.connect_tcp("127.0.0.1", port) as second,
            ):
                for stream in (first, second):  # both idle after a response, `first` since longer
                    await stream.send(get())
                    assert (await response(stream)).startswith(b"HTTP/1.1 200 ")
                async with await anyio.connect_tcp("127.0.0.1", port) as third:  # sends nothing yet
                    assert await closed(first) == b""
                    await second.send(get())  # busy, then idle again: now it waited less than `third`
                    assert (await response(second)).startswith(b"HTTP/1.1 200 ")
                    async with await anyio.connect_tcp("127.0.0.1", port) as fourth:
                        assert await closed(third) == b""
                        await fourth.send(get())
                        assert (await response(fourth)).startswith(b"HTTP/1.1 200 ")
                    await second.send(get())
                    assert (await response(second)).startswith(b"HTTP/1.1 200 ")
                assert protocol.connection_table.evicted == 2
                assert protocol.connection_table.refused == 0


async def test_when_every_connection_is_busy_with_a_request_a_new_one_is_refused() -> None:
    HELD.reset(expected=2)
    async with serving(PATIENT_WITH_TWO) as (port, protocol):
        with anyio.fail_after(PATIENCE):
            async with (
                await anyio.connect_tcp("127.0.0.1", port) as first,
                await anyio.connect_tcp("127.0.0.1", port) as second,
            ):
                for stream in (first, second):
                    await stream.send(get("/hold"))
                await HELD.arrived.wait()
                async with await anyio.connect_tcp("127.0.0.1", port) as refused:
                    assert await closed(refused) == b""
                assert protocol.connection_table.refused == 1
                HELD.gate.set()
                for stream in (first, second):  # the busy ones were left alone
                    assert (await response(stream)).startswith(b"HTTP/1.1 200 ")
                async with await anyio.connect_tcp("127.0.0.1", port) as later:  # room again: `first` makes it
                    await later.send(get())
                    assert (await response(later)).startswith(b"HTTP/1.1 200 ")
                    assert await closed(first) == b""
    assert protocol.connection_table.evicted == 1


class CountingLoop:
    """The protocol's event loop, counting the timers set through it."""

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self.timers = 0

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Any:
        self.timers += 1
        return self._loop.call_later(delay, callback, *args)

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Any:
        self.timers += 1
        return self._loop.call_at(when, callback, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)


def connect(protocol_class: type[HttpToolsProtocol]) -> tuple[HttpToolsProtocol, CountingLoop, RecordingTransport]:
    config = uvicorn.Config(app, log_level="critical", lifespan="off")
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    loop = CountingLoop(protocol.loop)
    protocol.loop = loop  # pyright: ignore[reportAttributeAccessIssue]
    transport = RecordingTransport()
    protocol.connection_made(transport)  # pyright: ignore[reportArgumentType]
    return protocol, loop, transport


async def answered(protocol: HttpToolsProtocol, raw: bytes) -> None:
    protocol.data_received(raw)
    with anyio.fail_after(PATIENCE):
        while not protocol.cycle.response_complete:  # noqa: ASYNC110 - the cycle exposes a flag, not an event
            await anyio.sleep(0.001)


async def test_requests_that_arrive_whole_set_no_timer_beyond_uvicorns_keep_alive() -> None:
    stock, stock_loop, _ = connect(HttpToolsProtocol)
    ours, our_loop, transport = connect(limited_protocol(ServingLimits()))
    assert (stock_loop.timers, our_loop.timers) == (0, 1)  # the first request's header deadline, from the opening
    for _ in range(3):
        await answered(stock, get())
        await answered(ours, get())
    assert our_loop.timers - 1 == stock_loop.timers == 3  # one keep-alive timer per response, as uvicorn sets
    ours.data_received(b"GET /ok HTTP/1.1\r\nHo")  # a request in two pieces: a header deadline for the rest
    assert our_loop.timers == 5
    await answered(ours, b"st: 127.0.0.1\r\n\r\n")
    assert our_loop.timers == 6
    assert not transport.closed


async def test_the_rest_of_a_body_the_app_did_not_read_cannot_hold_the_connection_open() -> None:
    protocol, loop, transport = connect(limited_protocol(ServingLimits(header_timeout_s=0.05)))
    head = b"POST /early HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
    await answered(protocol, head + b"x" * 10)
    timers = loop.timers  # the header deadline from the opening, then uvicorn's keep-alive timer
    protocol.data_received(b"x" * 10)  # more of the unread body: uvicorn stops its keep-alive timer
    assert loop.timers == timers + 1
    with anyio.fail_after(PATIENCE):
        while not transport.closed:  # noqa: ASYNC110 - the recording transport exposes a flag, not an event
            await anyio.sleep(0.01)
    assert [write[:13] for write in transport.writes] == [b"HTTP/1.1 200 ", b"HTTP/1.1 408 "]


async def test_uvicorn_still_has_every_internal_the_protocol_relies_on() -> None:
    for name in UVICORN_INTERNALS["HttpToolsProtocol methods"]:
        assert callable(getattr(HttpToolsProtocol, name, None)), f"uvicorn's HttpToolsProtocol lost {name}()"
    protocol, _, _ = connect(HttpToolsProtocol)
    protocol.data_received(get())
    for name in UVICORN_INTERNALS["HttpToolsProtocol attributes"]:
        assert hasattr(protocol, name), f"uvicorn's HttpToolsProtocol lost .{name}"
    for name in UVICORN_INTERNALS["RequestResponseCycle attributes"]:
        assert hasattr(protocol.cycle, name), f"uvicorn's RequestResponseCycle lost .{name}"
    ours = {*vars(LimitedHttpToolsProtocol), *LimitedHttpToolsProtocol.__annotations__}
    ours = {name for name in ours if not name.startswith("__")}
    stock_data = {name for name in dir(HttpToolsProtocol) if not callable(getattr(HttpToolsProtocol, name))}
    taken = ours & (stock_data | set(vars(protocol)))
    assert not taken, f"uvicorn now uses names of the limited protocol: {taken}"
    overridden = {name for name in ours if callable(getattr(HttpToolsProtocol, name, None))}
    assert overridden <= set(UVICORN_INTERNALS["HttpToolsProtocol methods"]), overridden


# -- the connection table and the descriptor plan ----------------------------------------------------------------


class FakeConnection:
    def __init__(self, name: str) -> None:
        self.name = name
        self.evicted = False
        self.waiting_since: int | None = None

    def evict(self) -> None:
        self.evicted = True


def test_the_table_evicts_the_longest_waiting_connection_and_refuses_when_all_are_busy() -> None:
    table = ConnectionTable[FakeConnection](3)
    a, b, c, d, e = (FakeConnection(name) for name in "abcde")
    for connection in (a, b, c):
        assert table.admit(connection)
    table.busy(a)
    table.busy(b)
    table.waiting(a)  # a's response is done: it waits again, after c
    assert table.admit(d) and c.evicted and not a.evicted
    assert table.admit(e) and a.evicted
    assert len(table) == 3 and table.evicted == 2
    for connection in (b, d, e):
        table.busy(connection)
    assert not table.admit(FakeConnection("f")) and table.refused == 1
    table.leave(b)
    table.leave(b)  # twice is harmless
    table.waiting(b)  # a connection that left does not come back
    assert len(table) == 2
    assert table.admit(FakeConnection("g")) and table.evicted == 2


def test_a_table_needs_room_for_one_connection() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ConnectionTable[FakeConnection](0)


@pytest.mark.parametrize(
    ("cap", "reserve", "soft", "hard", "planned"),
    [
        (1000, 64, 20000, 20000, (20000, 1000)),  # fits already
        (1000, 64, 1024, 4096, (1064, 1000)),  # the soft limit is raised as far as needed
        (1000, 64, 1024, -1, (1064, 1000)),  # no hard limit: raised to what is needed
        (1000, 64, 256, 256, (256, 192)),  # cannot be raised: the cap is lowered, the reserve kept
        (1000, 64, 512, 900, (900, 836)),  # raised as far as it goes, and the cap lowered
        (1000, 64, 100, 100, (100, 50)),  # a tiny limit: half for connections, half kept
        (1000, 64, -1, -1, (-1, 1000)),  # no limit at all
    ],
)
def test_the_descriptor_plan_raises_the_soft_limit_first_and_lowers_the_cap_last(
    cap: int, reserve: int, soft: int, hard: int, planned: tuple[int, int]
) -> None:
    assert plan_descriptors(cap, reserve, soft, hard, unlimited=-1) == planned


def test_a_client_gone_mid_request_leaves_no_error_record_of_the_sdk() -> None:
    """A body deadline ends the request of a slow client: the SDK's traceback for it is dropped, other errors stay."""
    from starlette.requests import ClientDisconnect

    from hub.doors.mcp_http import ClientGoneFilter

    def record(error: BaseException) -> logging.LogRecord:
        return logging.LogRecord(
            "mcp.server.streamable_http", logging.ERROR, "", 0, "x", (), (type(error), error, None)
        )

    keep = ClientGoneFilter()
    assert not keep.filter(record(ClientDisconnect()))
    assert keep.filter(record(RuntimeError("boom")))

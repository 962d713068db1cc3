"""`hub.runtime.protocol`: responses with a `Content-Length` leave in one write, everything else as uvicorn writes it.

Two uvicorn servers run the same ASGI app on 127.0.0.1, one with uvicorn's own httptools protocol and one with
`OneWriteHttpToolsProtocol` (or the limited protocol `agenthub serve` runs, built on it); every response must be
byte for byte the same on both. A protocol driven by hand
over a recording transport shows the number of writes (and fails if uvicorn's internals it relies on change).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import uvicorn
from starlette.types import Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from hub.runtime.limits import ServingLimits
from hub.runtime.protocol import OneWriteHttpToolsProtocol, limited_protocol
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

BIG = b"x" * (200 * 1024)
"""Larger than the size up to which held headers and body are joined into one buffer."""


class Gate:
    """Lets a test hold the app between two messages (a stream's first event, a slow body), and tells it when the
    app reached the gate and when it sent what came after it."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.opened = anyio.Event()
        self.reached = anyio.Event()
        self.passed = anyio.Event()


GATE = Gate()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """An ASGI app with one path per kind of response."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    path = scope["path"]
    start: Message = {"type": "http.response.start", "status": 200}
    if path == "/json":
        payload = b'{"jsonrpc":"2.0","id":1,"result":{"echo":"' + body + b'"}}'
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
    elif path == "/big":
        await send({**start, "headers": [(b"content-length", str(len(BIG)).encode())]})
        await send({"type": "http.response.body", "body": BIG})
    elif path == "/pieces":  # a known length, sent in three chunks
        await send({**start, "headers": [(b"content-length", b"9")]})
        for piece in (b"abc", b"def", b"ghi"):
            await send({"type": "http.response.body", "body": piece, "more_body": piece != b"ghi"})
    elif path == "/chunked":
        await send({**start, "headers": [(b"content-type", b"text/plain")]})
        for piece in (b"one", b"", b"two"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/sse":  # headers first; the first event waits for the test
        await send({**start, "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]})
        await GATE.opened.wait()
        await send({"type": "http.response.body", "body": b"event: message\r\ndata: {}\r\n\r\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/slow":  # a known length, the body never comes while the client waits
        await send({**start, "headers": [(b"content-length", b"5")]})
        GATE.reached.set()
        await GATE.opened.wait()
        await send({"type": "http.response.body", "body": b"late!"})
        GATE.passed.set()
    elif path == "/fails-after-start":
        await send({**start, "headers": [(b"content-length", b"5")]})
        raise RuntimeError("the app failed after starting its response")
    elif path == "/empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    else:
        payload = b"not found"
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"9")]})
        await send({"type": "http.response.body", "body": payload})


@asynccontextmanager
async def served(protocol: type[HttpToolsProtocol] | str) -> AsyncGenerator[int]:
    """Serve `app` on 127.0.0.1 with `protocol`; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    config = uvicorn.Config(
        app, http=protocol, log_level="critical", lifespan="off", server_header=False, date_header=False
    )
    server = uvicorn.Server(config)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(PATIENCE):
                while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
                    await anyio.sleep(0.01)
            try:
                yield sock.getsockname()[1]
            finally:
                server.should_exit = True
    finally:
        sock.close()


def request(method: str, path: str, body: bytes = b"", *, close: bool = True) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    return (head + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


async def exchange(port: int, raw: bytes) -> bytes:
    """Send `raw` and read until the server closes the connection."""
    with anyio.fail_after(PATIENCE):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(raw)
            received = b""
            try:
                while True:
                    received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return received


CASES = [
    request("POST", "/json", b"hello"),
    request("GET", "/big"),
    request("GET", "/pieces"),
    request("GET", "/chunked"),
    request("GET", "/empty"),
    request("HEAD", "/json"),
    request("GET", "/nowhere"),
    request("GET", "/fails-after-start"),
    request("POST", "/json", b"1", close=False) + request("POST", "/json", b"2"),  # keep-alive, pipelined
    request("HEAD", "/json", close=False) + request("GET", "/nowhere"),  # a HEAD answer has a length, no body
]


@pytest.mark.parametrize("limited", [False, True], ids=["one-write", "limited"])
async def test_responses_are_byte_identical_to_uvicorns_own_protocol(limited: bool) -> None:
    GATE.opened.set()
    ours = limited_protocol(ServingLimits()) if limited else OneWriteHttpToolsProtocol
    async with served("httptools") as stock_port, served(ours) as port:
        for raw in CASES:
            expected = await exchange(stock_port, raw)
            assert expected.startswith(b"HTTP/1.1 "), raw
            assert await exchange(port, raw) == expected, raw
            if b"/chunked" in raw:
                assert b"transfer-encoding: chunked" in expected
            if b"/fails-after-start" in raw:  # the headers went out, then the connection closed
                assert expected.startswith(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n")


async def test_a_stream_shows_its_headers_before_its_first_event() -> None:
    GATE.reset()
    async with served(OneWriteHttpToolsProtocol) as port:
        with anyio.fail_after(PATIENCE):
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(request("GET", "/sse"))
                head = b""
                while b"\r\n\r\n" not in head:
                    head += await stream.receive()
                assert head.startswith(b"HTTP/1.1 200 OK\r\n")
                assert b"transfer-encoding: chunked" in head
                assert b"event: message" not in head
                GATE.opened.set()
                rest = head
                while not rest.endswith(b"0\r\n\r\n"):
                    rest += await stream.receive()
                assert b"data: {}" in rest


async def test_a_client_that_leaves_before_the_body_does_not_break_the_server() -> None:
    GATE.reset()
    async with served(OneWriteHttpToolsProtocol) as port:
        with anyio.fail_after(PATIENCE):
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(request("GET", "/slow"))
                await GATE.reached.wait()  # the app has sent its headers (held) and waits for the gate
            GATE.opened.set()  # the body is sent after the client went away
            await GATE.passed.wait()
            assert (await exchange(port, request("POST", "/json", b"after"))).endswith(b'"after"}}')


async def test_a_client_that_leaves_in_the_middle_of_a_large_body_does_not_break_the_server() -> None:
    async with served(OneWriteHttpToolsProtocol) as port:
        with anyio.fail_after(PATIENCE):
            for _ in range(3):
                async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                    await stream.send(request("GET", "/big", close=False))
                    await stream.receive(1024)
            assert (await exchange(port, request("GET", "/big"))).endswith(BIG)


class RecordingTransport:
    """Just enough of an asyncio transport for uvicorn's protocol; keeps every write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, chunks: list[bytes]) -> None:
        self.writes.append(b"".join(chunks))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        pass


async def writes_for(protocol_class: type[HttpToolsProtocol], raw: bytes) -> list[bytes]:
    """Drive one protocol instance over a recording transport until the app answered `raw`."""
    config = uvicorn.Config(app, log_level="critical", lifespan="off", server_header=False, date_header=False)
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)  # pyright: ignore[reportArgumentType]
    protocol.data_received(raw)
    with anyio.fail_after(PATIENCE):
        while not protocol.cycle.response_complete:  # noqa: ASYNC110 - the cycle exposes a flag, not an event
            await anyio.sleep(0.001)
    return transport.writes


async def test_a_response_with_a_length_is_one_write() -> None:
    stock = await writes_for(HttpToolsProtocol, request("POST", "/json", b"hi", close=False))
    assert len(stock) == 2, "uvicorn's own protocol writes headers and body apart (what this protocol improves on)"
    ours = await writes_for(OneWriteHttpToolsProtocol, request("POST", "/json", b"hi", close=False))
    assert ours == [b"".join(stock)]
    limited = await writes_for(limited_protocol(ServingLimits()), request("POST", "/json", b"hi", close=False))
    assert limited == ours
    big = await writes_for(OneWriteHttpToolsProtocol, request("GET", "/big", close=False))
    assert len(big) == 1 and big[0].endswith(BIG)


async def test_chunked_and_multi_part_bodies_write_as_uvicorn_writes_them() -> None:
    GATE.opened.set()
    for path in ("/chunked", "/sse"):
        stock = await writes_for(HttpToolsProtocol, request("GET", path, close=False))
        assert await writes_for(OneWriteHttpToolsProtocol, request("GET", path, close=False)) == stock
    stock = await writes_for(HttpToolsProtocol, request("GET", "/pieces", close=False))
    ours = await writes_for(OneWriteHttpToolsProtocol, request("GET", "/pieces", close=False))
    assert ours == [stock[0] + stock[1], *stock[2:]]  # headers ride with the first piece

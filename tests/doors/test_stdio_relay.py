"""The stdio bridge's relay (`HubRelay`) against a scripted `/mcp` on a real socket: a hub that answers oddly,
forgets sessions, refuses headers, or is asked to cancel. Each case ends in what the client must see, with nothing
relayed twice and no request sent again unless the hub refused it before running it."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import orjson
import pytest
import uvicorn
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from hub.doors.stdio_relay import HubRelay
from tests.tools import PATIENCE

pytestmark = pytest.mark.anyio

META = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


@dataclass
class Seen:
    """One HTTP request the scripted hub received."""

    method: str
    headers: dict[str, str]
    body: Any


Script = Callable[[Seen], Awaitable[Response]]


def answer(message_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": message_id, "result": result}


def events(*data: str) -> StreamingResponse:
    """An SSE response carrying `data` as events, then the end of the stream."""

    async def body() -> AsyncIterator[bytes]:
        for item in data:
            lines = "".join(f"data: {line}\n" for line in item.split("\n"))
            yield f"event: message\n{lines}\n".encode()

    return StreamingResponse(body(), media_type="text/event-stream")


class HeldOpen(Response):
    """The head of an SSE stream, then nothing until the client goes away (`gone` is set then)."""

    def __init__(self, gone: anyio.Event) -> None:
        super().__init__(media_type="text/event-stream")
        self.gone = gone

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        head = [(b"content-type", b"text/event-stream")]  # no length: the body stays open
        await send({"type": "http.response.start", "status": 200, "headers": head})
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone.set()


def opened(seen: Seen, session: str = "s1") -> Response:
    return JSONResponse(answer(seen.body["id"], {"protocolVersion": "2025-11-25"}), headers={"mcp-session-id": session})


@dataclass
class FakeHub:
    """`/mcp` answering each POST with `script` and each session stream (`GET`) with `stream` (405 without one);
    `DELETE` ends a session. Every request is recorded."""

    script: Script
    stream: Script | None = None
    seen: list[Seen] = field(default_factory=list[Seen])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        raw = await request.body()
        seen = Seen(request.method, dict(request.headers), orjson.loads(raw) if raw else None)
        self.seen.append(seen)
        if request.method == "POST":
            response = await self.script(seen)
        elif request.method == "GET" and self.stream is not None:
            response = await self.stream(seen)
        else:
            response = Response(status_code=200 if request.method == "DELETE" else 405)
        await response(scope, receive, send)

    def bodies(self, method: str | None = None) -> list[Any]:
        return [s.body for s in self.seen if s.body is not None and (method is None or s.body.get("method") == method)]


@dataclass
class Client:
    """The client side of a relay: what it writes to the relay's stdin, what the relay writes to its stdout."""

    stdin: MemoryObjectSendStream[bytes]
    stdout: MemoryObjectReceiveStream[bytes]

    async def send(self, message: dict[str, Any]) -> None:
        await self.stdin.send(orjson.dumps(message))

    async def send_raw(self, line: bytes) -> None:
        await self.stdin.send(line)

    async def receive(self) -> dict[str, Any]:
        with anyio.fail_after(PATIENCE):
            line = await self.stdout.receive()
        assert b"\n" not in line
        message: dict[str, Any] = orjson.loads(line)
        return message


@contextlib.asynccontextmanager
async def relaying(script: Script, stream: Script | None = None) -> AsyncGenerator[tuple[Client, FakeHub]]:
    """A scripted hub on a real 127.0.0.1 socket and a `HubRelay` to it; the relay ends when the block does."""
    hub = FakeHub(script, stream)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/mcp"
    server = uvicorn.Server(uvicorn.Config(hub, log_level="warning", lifespan="off"))
    stdin_send, stdin_receive = anyio.create_memory_object_stream[bytes](100)
    stdout_send, stdout_receive = anyio.create_memory_object_stream[bytes](100)
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    async with stdin_send, stdin_receive, stdout_send, stdout_receive, anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [listener])
        async with httpx2.AsyncClient(headers=headers, timeout=PATIENCE) as http:
            relay = HubRelay(url, http, stdout_send.send_nowait)
            done = anyio.Event()

            async def run() -> None:
                await relay.run(stdin_receive)
                done.set()

            tg.start_soon(run)
            yield Client(stdin_send, stdout_receive), hub
            await stdin_send.aclose()
            with anyio.fail_after(PATIENCE):
                await done.wait()
        server.should_exit = True
    listener.close()


async def test_a_multi_line_event_reaches_the_client_as_one_line() -> None:
    pretty = orjson.dumps(answer(2, {"tools": []}), option=orjson.OPT_INDENT_2).decode()

    async def script(seen: Seen) -> Response:
        if seen.body["method"] == "initialize":
            return opened(seen)
        return events(pretty)

    async with relaying(script) as (client, _):
        await client.send(INITIALIZE)
        await client.receive()
        await client.send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        assert await client.receive() == answer(2, {"tools": []})


async def test_odd_answers_become_answers_the_client_can_match() -> None:
    """An error without an id, a stream that ends without the answer, a 202, an error without a JSON-RPC body:
    each request gets exactly one answer with its own id; what is not JSON-RPC on the stream is skipped."""

    async def script(seen: Seen) -> Response:
        method, message_id = seen.body.get("method"), seen.body.get("id")
        if method == "initialize":
            return opened(seen)
        if method == "notifications/initialized":
            return Response(status_code=202)
        if message_id == 2:
            return JSONResponse({"jsonrpc": "2.0", "id": None, "error": {"code": -32602, "message": "bad"}}, 400)
        if message_id == 3:
            note = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}}
            return events("not json", "[1, 2]", orjson.dumps(note).decode())
        if message_id == 4:
            return Response(status_code=202)
        return Response("boom", status_code=500, media_type="text/plain")

    async with relaying(script) as (client, _):
        await client.send(INITIALIZE)
        await client.receive()
        await client.send(INITIALIZED)
        got: list[dict[str, Any]] = []
        for message_id in (2, 3, 4, 5):
            await client.send({"jsonrpc": "2.0", "id": message_id, "method": "tools/call", "params": {"name": "x"}})
            got.append(await client.receive())
            if message_id == 3:
                got.append(await client.receive())
    assert got[0] == {"jsonrpc": "2.0", "id": 2, "error": {"code": -32602, "message": "bad"}}
    assert got[1]["method"] == "notifications/progress"
    assert got[2]["id"] == 3 and got[2]["error"]["message"].endswith("ended the answer before sending it")
    assert got[3]["id"] == 4 and got[3]["error"]["message"].endswith("accepted the request without answering it")
    assert got[4]["id"] == 5 and got[4]["error"]["message"].endswith("answered HTTP 500")


async def test_lines_that_are_no_json_rpc_object_are_answered_and_the_relay_goes_on() -> None:
    async def script(seen: Seen) -> Response:
        return opened(seen)

    async with relaying(script) as (client, hub):
        await client.send_raw(b"{not json")
        parse_error = await client.receive()
        await client.send_raw(b"[1, 2]")
        not_an_object = await client.receive()
        await client.send(INITIALIZE)
        initialized = await client.receive()
    assert parse_error == {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
    assert not_an_object["error"]["code"] == -32600
    assert initialized["id"] == 1 and hub.bodies() == [INITIALIZE]


async def test_a_forgotten_session_is_renewed_once_however_many_requests_notice() -> None:
    """The hub forgets session s1: every request on it gets 404 (the hub ran none of them). The relay opens s2 with
    the client's own `initialize`, once, and sends each request again on s2; the client sees one answer each."""

    async def script(seen: Seen) -> Response:
        body, session = seen.body, seen.headers.get("mcp-session-id")
        if body["method"] == "initialize":
            return opened(seen, "s1" if body["id"] == 1 else "s2")
        if body["method"] == "notifications/initialized":
            return Response(status_code=202)
        if session == "s1":
            return JSONResponse({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "gone"}}, 404)
        return JSONResponse(answer(body["id"], {"session": session}))

    async with relaying(script) as (client, hub):
        await client.send(INITIALIZE)
        await client.receive()
        for message_id in (2, 3, 4):
            await client.send({"jsonrpc": "2.0", "id": message_id, "method": "tools/list"})
        answers = sorted([await client.receive() for _ in range(3)], key=lambda m: m["id"])
    openings = hub.bodies("initialize")
    assert answers == [answer(n, {"session": "s2"}) for n in (2, 3, 4)]
    assert [o["id"] for o in openings] == [1, "agenthub-bridge-1"]
    assert openings[1]["params"] == INITIALIZE["params"]
    renewed = [s for s in hub.seen if s.method == "POST" and s.body.get("method") == "notifications/initialized"]
    assert [s.headers["mcp-session-id"] for s in renewed] == ["s2"]
    delete = [s for s in hub.seen if s.method == "DELETE"]
    assert [s.headers["mcp-session-id"] for s in delete] == ["s2"]


async def test_a_2026_call_to_a_tool_never_listed_learns_its_header_and_is_sent_again() -> None:
    """The hub refuses the call before running it (`-32020`, its `Mcp-Param-Region` header is missing); the relay
    lists the tools (two pages) with the call's envelope, learns the annotation, and sends the call again."""
    schema = {"type": "object", "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}}

    async def script(seen: Seen) -> Response:
        body = seen.body
        if body["method"] == "tools/list":
            if body["params"].get("cursor") is None:
                return JSONResponse(answer(body["id"], {"tools": [], "nextCursor": "page-2"}))
            return events(
                orjson.dumps(answer(body["id"], {"tools": [{"name": "geo", "inputSchema": schema}]})).decode()
            )
        if "mcp-param-region" not in seen.headers:
            error = {"code": -32020, "message": "Mcp-Param-Region header is missing"}
            return JSONResponse({"jsonrpc": "2.0", "id": body["id"], "error": error}, 400)
        return JSONResponse(answer(body["id"], {"content": [], "isError": False}))

    call = {"name": "geo", "arguments": {"region": "eu-west"}, "_meta": META}
    async with relaying(script) as (client, hub):
        await client.send({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": call})
        result = await client.receive()
    calls = [s for s in hub.seen if s.method == "POST" and s.body["method"] == "tools/call"]
    listings = hub.bodies("tools/list")
    assert result == answer(7, {"content": [], "isError": False})
    assert len(calls) == 2 and calls[1].headers["mcp-param-region"] == "eu-west"
    assert calls[1].headers["mcp-name"] == "geo" and calls[1].headers["mcp-protocol-version"] == "2026-07-28"
    assert [listing["params"] for listing in listings] == [{"_meta": META}, {"_meta": META, "cursor": "page-2"}]


async def test_cancelling_a_2026_request_closes_its_exchange_and_posts_nothing() -> None:
    """Under 2026-07-28 on HTTP, closing a request's stream is its cancellation: the hub sees the stream end."""
    arrived = anyio.Event()
    closed = anyio.Event()

    async def script(seen: Seen) -> Response:
        arrived.set()
        return HeldOpen(closed)

    async with relaying(script) as (client, hub):
        await client.send({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "x", "_meta": META}})
        with anyio.fail_after(PATIENCE):
            await arrived.wait()
        await client.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}})
        with anyio.fail_after(PATIENCE):
            await closed.wait()
    assert [body["method"] for body in hub.bodies()] == ["tools/call"]


async def test_cancelling_a_handshake_request_tells_the_hub() -> None:
    told = anyio.Event()

    async def script(seen: Seen) -> Response:
        method = seen.body["method"]
        if method == "initialize":
            return opened(seen)
        if method == "notifications/cancelled":
            told.set()
            return Response(status_code=202)
        if method == "notifications/initialized":
            return Response(status_code=405)  # no session stream either: nothing else is asked
        await told.wait()
        return events(orjson.dumps(answer(seen.body["id"], {})).decode())

    async with relaying(script) as (client, hub):
        await client.send(INITIALIZE)
        await client.receive()
        await client.send(INITIALIZED)
        await client.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "x"}})
        await client.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}})
        await client.send({"jsonrpc": "2.0", "id": 3, "method": "ping"})
        pong = await client.receive()
    cancelled = next(s for s in hub.seen if s.body["method"] == "notifications/cancelled")
    assert pong == answer(3, {})  # the cancelled request's answer is not relayed
    assert cancelled.headers["mcp-session-id"] == "s1" and cancelled.body["params"] == {"requestId": 2}


async def test_the_session_stream_relays_what_the_hub_sends_outside_requests() -> None:
    note = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}

    async def script(seen: Seen) -> Response:
        if seen.body["method"] == "initialize":
            return opened(seen)
        return Response(status_code=202)

    async def stream(seen: Seen) -> Response:
        return events(orjson.dumps(note).decode())

    async with relaying(script, stream) as (client, hub):
        await client.send(INITIALIZE)
        await client.receive()
        await client.send(INITIALIZED)
        relayed = await client.receive()
    streams = [s for s in hub.seen if s.method == "GET"]
    assert relayed == note
    assert streams[0].headers["mcp-session-id"] == "s1" and streams[0].headers["accept"] == "text/event-stream"

"""A scripted Streamable HTTP upstream: a raw HTTP/1.1 server on 127.0.0.1 that answers exactly as a test says.

By default it is a minimal handshake-era MCP server that the `mcp` SDK client (legacy mode) and the lean sessions
both accept: `initialize` opens a session (`s1`, `s2`, ...), notifications get 202, the GET stream 405, `tools/list`
lists one tool and `tools/call` answers a text result. A request naming a session the server does not hold gets
404, as the SDK's server answers. A test overrides any JSON-RPC method with its own `Handler`, which may answer
raw bytes (anything at all), close the connection without a byte of answer (`None`), or never answer.

It counts what it saw (JSON-RPC methods, connections, connections the client closed), so a test can assert on the
server's side: a request that reached it twice, a re-handshake too many, a connection left open.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import orjson
from anyio.streams.buffered import BufferedByteReceiveStream

PROTOCOL_VERSION = "2025-11-25"


@dataclass(frozen=True)
class Request:
    """One HTTP request as the server read it."""

    method: str
    target: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes
    connection: int
    """Which connection carried it (1 for the first accepted)."""
    served_before: int
    """How many requests that connection carried before this one."""

    @property
    def message(self) -> dict[str, Any]:
        """The JSON-RPC message of a POST ({} when the body is not one)."""
        try:
            message = orjson.loads(self.body) if self.body else {}
        except orjson.JSONDecodeError:
            return {}
        return message if isinstance(message, dict) else {}

    @property
    def rpc(self) -> str:
        """The JSON-RPC method, or the HTTP method for a request without one (GET, DELETE)."""
        method = self.message.get("method")
        return method if isinstance(method, str) else self.method

    @property
    def session(self) -> str | None:
        return self.headers.get("mcp-session-id")

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


Handler = Callable[[Request], Awaitable[bytes | None]]
"""Answers one request: the raw response bytes, or None to close the connection without answering."""


def http_response(
    status: int, body: bytes = b"", *, content_type: str = "application/json", headers: Iterable[tuple[str, str]] = ()
) -> bytes:
    """A complete HTTP/1.1 response with a content-length."""
    lines = [f"HTTP/1.1 {status} X", f"content-type: {content_type}", f"content-length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def rpc_result(request: Request, result: Any, *, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A JSON body answering `request` with `result`."""
    body = orjson.dumps({"jsonrpc": "2.0", "id": request.message.get("id"), "result": result})
    return http_response(200, body, headers=headers)


def rpc_error(request: Request, error: Any) -> bytes:
    """A JSON body answering `request` with `error`, whatever its shape."""
    return http_response(200, orjson.dumps({"jsonrpc": "2.0", "id": request.message.get("id"), "error": error}))


def sse_response(events: bytes) -> bytes:
    """An SSE body, exactly the bytes given."""
    return http_response(200, events, content_type="text/event-stream")


def rpc_line(request: Request, result: Any) -> bytes:
    """The JSON-RPC response to `request` as one line of JSON (to put in an SSE body)."""
    return orjson.dumps({"jsonrpc": "2.0", "id": request.message.get("id"), "result": result})


TEXT_RESULT: dict[str, Any] = {"content": [{"type": "text", "text": "ok"}], "isError": False}
TOOLS: list[dict[str, Any]] = [{"name": "echo", "inputSchema": {"type": "object"}}]


@dataclass
class ScriptedUpstream:
    """The server's state and script; `serve_upstream()` runs it."""

    port: int = 0
    on: dict[str, Handler] = field(default_factory=dict[str, Handler])
    """JSON-RPC method (or HTTP method, or a path other than /mcp) -> the handler that replaces the default answer."""
    seen: Counter[str] = field(default_factory=Counter[str])
    """Requests received, by the same key as `on`."""
    sessions: set[str] = field(default_factory=set[str])
    """Live session ids; a test may discard one to make the server forget it."""
    connections: int = 0
    closed_by_client: int = 0
    """Connections the client closed (the server read the end of the stream)."""
    requests: list[Request] = field(default_factory=list[Request])
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def forget_sessions(self) -> None:
        """Lose every session (a restarted upstream): their requests get 404 from now on."""
        self.sessions.clear()

    async def answer(self, request: Request) -> bytes | None:
        self.requests.append(request)
        key = request.rpc if request.path == "/mcp" else request.path
        self.seen[key] += 1
        handler = self.on.get(key)
        if handler is not None:
            return await handler(request)
        return self.default(request)

    def default(self, request: Request) -> bytes:
        """The answer of a well-behaved upstream."""
        if request.method == "GET":
            return http_response(405)
        if request.rpc == "initialize":
            session = f"s{next(self._ids)}"
            self.sessions.add(session)
            result = {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "scripted", "version": "1.0"},
            }
            return rpc_result(request, result, headers=[("mcp-session-id", session)])
        if request.session not in self.sessions:
            body = orjson.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "no session"}})
            return http_response(404, body)
        if request.method == "DELETE":
            self.sessions.discard(request.session or "")
            return http_response(200)
        if "id" not in request.message:
            return http_response(202)
        if request.rpc == "tools/list":
            return rpc_result(request, {"tools": TOOLS})
        if request.rpc == "tools/call":
            return rpc_result(request, TEXT_RESULT)
        return rpc_error(request, {"code": -32601, "message": "Method not found"})


async def _read_request(buffered: BufferedByteReceiveStream, connection: int, served: int) -> Request:
    head = await buffered.receive_until(b"\r\n\r\n", 65536)
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await buffered.receive_exactly(length) if length else b""
    return Request(method, target, headers, body, connection, served)


@asynccontextmanager
async def serve_upstream(upstream: ScriptedUpstream | None = None) -> AsyncGenerator[ScriptedUpstream]:
    """Serve `upstream` (a fresh default one if None) on a free 127.0.0.1 port until the block ends."""
    upstream = upstream or ScriptedUpstream()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    upstream.port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def serve(stream: anyio.abc.SocketStream) -> None:
        upstream.connections += 1
        connection = upstream.connections
        buffered = BufferedByteReceiveStream(stream)
        async with stream:
            for served in itertools.count():
                try:
                    request = await _read_request(buffered, connection, served)
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                    upstream.closed_by_client += 1
                    return
                reply = await upstream.answer(request)
                if reply is None:
                    return
                try:
                    await stream.send(reply)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    upstream.closed_by_client += 1
                    return

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        try:
            yield upstream
        finally:
            tg.cancel_scope.cancel()


async def never(request: Request) -> bytes | None:
    """A handler that never answers (the test's end cancels it)."""
    await anyio.sleep_forever()
    return None


async def hang_up(request: Request) -> bytes | None:
    """A handler that reads the request and closes the connection without a byte of answer."""
    return None

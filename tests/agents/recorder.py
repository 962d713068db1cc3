"""Record every HTTP request a client makes, answer each by route, and trap any attempt to leave 127.0.0.1.

    recorder = Recorder({("POST", "/v1/messages"): fake.messages}, not_found=fake.not_found)
    async with serve(recorder) as base_url, proxy_trap() as trap:
        ...                                 # run a CLI with base_url, and HTTPS_PROXY=trap.url
    assert [r.target for r in recorder.requests] == ["/v1/messages?beta=true"]
    assert trap.attempts == []              # nothing tried to reach another host

The recorder keeps the raw body and the headers as sent (names lower-cased, repeated ones joined with ", "),
so a test can pin exactly what a client puts on the wire. A request to a route nobody scripted is recorded
too and answered with the fake's own 404 body: a client probing an endpoint shows up in `requests`.

The trap is a plain TCP listener given to the CLIs as their HTTP(S) proxy (`NO_PROXY` exempts 127.0.0.1): a
CLI that reaches for the internet (telemetry, update checks, plugin catalogues) sends `CONNECT host:443` to it
instead of resolving the host, the trap records that first line and refuses, and the run stays offline.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field

import anyio
import orjson
from anyio.abc import SocketStream
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from llm.schema import JSON

__all__ = ["Handler", "ProxyTrap", "RecordedRequest", "Recorder", "proxy_trap"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as it arrived."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    """Header names lower-cased; a repeated header's values joined with ", "."""
    raw: bytes

    @property
    def target(self) -> str:
        """Path and query as the client wrote them (`/v1/messages?beta=true`)."""
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def body(self) -> JSON:
        """The body as a JSON object ({} when empty or not an object)."""
        try:
            data = orjson.loads(self.raw) if self.raw else {}
        except orjson.JSONDecodeError:
            return {}
        return data if isinstance(data, dict) else {}

    def header_list(self, name: str) -> list[str]:
        """A comma-separated header (`anthropic-beta`) split into its values, in order."""
        value = self.headers.get(name.lower(), "")
        return [part.strip() for part in value.split(",") if part.strip()]


Handler = Callable[[RecordedRequest], Response]
"""Answers one recorded request."""


class Recorder:
    """An ASGI app that records each request, then hands it to the handler of its `(method, path)`."""

    def __init__(self, routes: Mapping[tuple[str, str], Handler], *, not_found: Handler) -> None:
        self.routes = dict(routes)
        self.not_found = not_found
        self.requests: list[RecordedRequest] = []

    def to(self, path: str) -> list[RecordedRequest]:
        """The recorded requests whose path is `path`, in arrival order."""
        return [request for request in self.requests if request.path == path]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off; nothing else reaches a plain HTTP server
            return
        request = Request(scope, receive)
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        recorded = RecordedRequest(request.method, request.url.path, request.url.query, headers, await request.body())
        self.requests.append(recorded)
        handler = self.routes.get((recorded.method, recorded.path), self.not_found)
        await handler(recorded)(scope, receive, send)


@dataclass
class ProxyTrap:
    """A proxy that lets nothing through and remembers who asked."""

    url: str
    attempts: list[str] = field(default_factory=list[str])
    """The request line of each connection (`CONNECT api.example.com:443 HTTP/1.1`)."""


_REFUSAL = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_HEAD_LIMIT = 16 * 1024


@contextlib.asynccontextmanager
async def proxy_trap() -> AsyncGenerator[ProxyTrap]:
    """Listen on a fresh 127.0.0.1 port until the block ends; every connection is recorded and refused."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    trap = ProxyTrap(f"http://127.0.0.1:{port}")

    async def refuse(stream: SocketStream) -> None:
        async with stream:
            head = b""
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                while b"\r\n" not in head and len(head) < _HEAD_LIMIT:
                    head += await stream.receive()
            trap.attempts.append(head.split(b"\r\n", 1)[0].decode("latin-1"))
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stream.send(_REFUSAL)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, refuse)
        try:
            yield trap
        finally:
            tg.cancel_scope.cancel()

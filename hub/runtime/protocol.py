"""uvicorn's httptools protocol, writing a response with a `Content-Length` in one piece.

Stock uvicorn writes a response's status line and headers as soon as the app sends `http.response.start`, and
the body with the next `http.response.body`: two writes (two syscalls), and on a keep-alive connection the
client typically wakes up twice. A response with a `Content-Length` has its whole body ready in almost every
case (the MCP fast path, Starlette's `Response`), so this protocol holds the header bytes and writes them with
the first body chunk. Responses without a length (chunked, SSE streams, 204/304) and answers to `HEAD` (no body
follows) are written exactly as uvicorn writes them, headers at once, so a stream's client sees its headers
before its first event. Held headers are also written when the app closes the connection (an error after the
response started).

It relies on uvicorn's `RequestResponseCycle` writing through its `transport` attribute and on the attributes
`response_started` and `chunked_encoding`; `tests/hub/test_serve_protocol.py` checks them against the
installed uvicorn (the supported range is pinned in pyproject.toml).
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - uvicorn's protocols are asyncio protocols
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

_JOIN_LIMIT = 64 * 1024
"""Above this body size the held headers and the body go out as two buffers of one `writelines` (no copy)."""


class _HeadersWithBody(asyncio.Transport):
    """One response's view of the connection: the header block of a response with a `Content-Length` waits
    for the body's first write (or a close), every other write passes straight through."""

    __slots__ = ("_cycle", "_held", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        super().__init__()
        self._transport = transport
        self._cycle = cycle
        self._pending = not cycle.response_started
        """Whether the header block is still to come (the first write once the response started)."""
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(data) <= _JOIN_LIMIT:
                self._transport.write(held + bytes(data))
            else:
                self._transport.writelines((held, data))
            return
        if self._pending and self._cycle.response_started:  # this write is the status line and headers
            self._pending = False
            cycle = self._cycle
            if cycle.chunked_encoding is False and cycle.scope["method"] != "HEAD":  # a length, and a body follows
                self._held = bytes(data)
                return
        self._transport.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview[Any]]) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` whose responses with a `Content-Length` leave in one write (pass the class as
    `uvicorn.Config(http=...)`)."""

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not previous:  # a new request (an upgrade leaves the cycle as it was, possibly None)
            cycle.transport = _HeadersWithBody(self.transport, cycle)

"""`hub.runtime.protocol` writes a response's status line and headers itself (one check per header set instead of
uvicorn's per-header loop): for any header set an app sends, the bytes on the wire, the connection's fate and the
error the app sees must be those of uvicorn's own protocol.

Each case drives uvicorn's `HttpToolsProtocol` and the hub's protocols by hand over a recording transport (the
same request, the same app messages) and compares what each wrote. The header sets come from a fixed table of
edge cases (framing headers, names in capitals, values a provider could send with CR/LF or control characters,
names uvicorn refuses) and from a seeded generator mixing them.
"""

from __future__ import annotations

import random
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from hub.runtime.limits import ServingLimits
from hub.runtime.protocol import OneWriteHttpToolsProtocol, limited_protocol
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

Headers = list[tuple[bytes, bytes]]


class Recording:
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


class Case:
    """One response an app sends: status, headers, body pieces; and what the app saw of `send`."""

    def __init__(self, status: int, headers: Headers, pieces: list[bytes]) -> None:
        self.status = status
        self.headers = headers
        self.pieces = pieces
        self.error: str | None = None
        self.ran = False

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.ran = True
        while (await receive()).get("more_body", False):
            pass
        try:
            await send({"type": "http.response.start", "status": self.status, "headers": list(self.headers)})
            for index, piece in enumerate(self.pieces):
                more = index < len(self.pieces) - 1
                await send({"type": "http.response.body", "body": piece, "more_body": more})
        except Exception as exc:  # what uvicorn's `send` raises is part of what is compared
            self.error = f"{type(exc).__name__}: {exc}"
            raise


async def answer(protocol_class: type[HttpToolsProtocol], case: Case, request: bytes) -> tuple[bytes, bool, str | None]:
    """Serve `request` with `case`'s app on one protocol instance: the bytes written, whether the connection was
    closed, and the error the app's `send` raised."""
    case.error, case.ran = None, False
    config = uvicorn.Config(
        case.app,
        interface="asgi3",
        access_log=False,
        log_level="critical",
        lifespan="off",
        server_header=False,
        date_header=False,
    )
    state = ServerState()
    state.default_headers = [(b"server", b"uvicorn")]
    protocol = protocol_class(config=config, server_state=state, app_state={})
    transport = Recording()
    protocol.connection_made(transport)  # pyright: ignore[reportArgumentType]
    protocol.data_received(request)
    with anyio.fail_after(PATIENCE):
        while not (protocol.cycle.response_complete or transport.closed):  # the cycle has flags, no event
            await anyio.lowlevel.checkpoint()
    protocol.connection_lost(None)
    assert case.ran, "the app ran"
    return b"".join(transport.writes), transport.closed, case.error


REQUESTS = {
    "keep-alive": b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "close": b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
    "http/1.0": b"GET /x HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
    "head": b"HEAD /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
}

BODY = b"hello"
FIXED: list[tuple[str, int, list[Any], list[bytes]]] = [  # some header sets are not byte pairs, on purpose
    (
        "the hub's shape",
        200,
        [(b"x-agenthub-model", b"m"), (b"content-length", b"5"), (b"content-type", b"a/j")],
        [BODY],
    ),
    ("capitals", 200, [(b"Content-Length", b"5"), (b"X-Request-ID", b"AbC")], [BODY]),
    ("no length: chunked", 200, [(b"content-type", b"text/event-stream")], [b"one", b"", b"two"]),
    ("no headers at all", 200, [], [BODY]),
    ("204 without a length", 204, [(b"x-a", b"b")], [b""]),
    ("304 without a length", 304, [], [b""]),
    ("a status of no name", 299, [(b"content-length", b"5")], [BODY]),
    ("connection: close", 200, [(b"connection", b"close"), (b"content-length", b"5")], [BODY]),
    ("connection: keep-alive", 200, [(b"Connection", b"Keep-Alive"), (b"content-length", b"5")], [BODY]),
    ("transfer-encoding", 200, [(b"transfer-encoding", b"chunked")], [BODY]),
    ("another transfer-encoding", 200, [(b"Transfer-Encoding", b"gzip"), (b"content-length", b"5")], [BODY]),
    ("two lengths", 200, [(b"content-length", b"5"), (b"Content-Length", b"7")], [BODY]),
    ("a length that is no number", 200, [(b"content-length", b"five")], [BODY]),
    ("a body longer than its length", 200, [(b"content-length", b"2")], [BODY]),
    ("a body shorter than its length", 200, [(b"content-length", b"9")], [BODY]),
    ("CR LF in a value", 200, [(b"x-up", b"a\r\nset-cookie: s=1"), (b"content-length", b"5")], [BODY]),
    ("LF in a value", 200, [(b"content-length", b"5"), (b"x-up", b"a\nb")], [BODY]),
    ("NUL in a value", 200, [(b"x-up", b"\x00"), (b"content-length", b"5")], [BODY]),
    ("a tab in a value", 200, [(b"x-up", b"a\tb"), (b"content-length", b"5")], [BODY]),
    ("latin-1 in a value", 200, [(b"x-up", b"caf\xe9 \xff"), (b"content-length", b"5")], [BODY]),
    ("CR LF in a name", 200, [(b"x\r\nset-cookie", b"1"), (b"content-length", b"5")], [BODY]),
    ("a space in a name", 200, [(b"content-length", b"5"), (b"bad name", b"1")], [BODY]),
    ("a bad name and a bad value", 200, [(b"x-v", b"a\rb"), (b"x:n", b"1"), (b"content-length", b"5")], [BODY]),
    ("an empty name", 200, [(b"", b"v"), (b"content-length", b"5")], [BODY]),
    ("a header of three parts", 200, [(b"content-length", b"5", b"x")], [BODY]),
    ("a name as text", 200, [("content-length", b"5")], [BODY]),
    ("a value as text", 200, [(b"content-length", "5")], [BODY]),
    ("a bytearray value", 200, [(b"content-length", bytearray(b"5"))], [BODY]),
]

PROTOCOLS = {
    "one-write": OneWriteHttpToolsProtocol,
    "limited": limited_protocol(ServingLimits()),
}


@pytest.mark.parametrize("kind", list(PROTOCOLS))
@pytest.mark.parametrize("request_name", list(REQUESTS))
@pytest.mark.parametrize(("status", "headers", "pieces"), [c[1:] for c in FIXED], ids=[c[0] for c in FIXED])
async def test_each_edge_case_is_written_or_refused_as_uvicorn_does(
    kind: str, request_name: str, status: int, headers: Headers, pieces: list[bytes]
) -> None:
    request = REQUESTS[request_name]
    expected = await answer(HttpToolsProtocol, Case(status, headers, pieces), request)
    assert expected[0] or expected[1], "uvicorn answered or closed"
    assert await answer(PROTOCOLS[kind], Case(status, headers, pieces), request) == expected


async def test_a_value_with_cr_lf_writes_nothing_of_its_headers() -> None:
    """A provider's header value cannot add a header or a response of its own: the app's `send` is refused and the
    connection closed, as uvicorn does, with not a byte of that header block written."""
    case = Case(200, [(b"x-up", b"1\r\nset-cookie: stolen=1"), (b"content-length", b"5")], [BODY])
    written, closed, error = await answer(PROTOCOLS["limited"], case, REQUESTS["keep-alive"])
    assert (written, closed, error) == (b"", True, "RuntimeError: Invalid HTTP header value.")


NAMES = [b"content-type", b"X-Agenthub-Cost-Usd", b"x-ratelimit-remaining-requests", b"Content-Length", b"vary"]
ODD_NAMES = [b"connection", b"Transfer-Encoding", b"bad name", b"x;y", b"", b"a\nb", b"\x7f"]
VALUES = [b"", b"1", b"application/json", b"a\tb", b"caf\xe9", b"close", b"chunked", b"5", b"Close, Upgrade"]
ODD_VALUES = [b"a\r\nb", b"\x00", b"\x1f", b"x\x7f"]


def generated(seed: int) -> Case:
    """A header set mixing the hub's usual names with framing headers and what uvicorn refuses."""
    rng = random.Random(seed)
    headers: Headers = []
    for _ in range(rng.randrange(0, 12)):
        name = rng.choice(ODD_NAMES) if rng.random() < 0.1 else rng.choice(NAMES)
        value = rng.choice(ODD_VALUES) if rng.random() < 0.05 else rng.choice(VALUES)
        if name.lower() == b"content-length" and rng.random() < 0.8:
            value = b"5"
        headers.append((name, value))
    status = rng.choice([200, 200, 200, 201, 204, 304, 404, 500])
    return Case(status, headers, [BODY] if rng.random() < 0.7 else [b"he", b"llo"])


async def test_generated_header_sets_are_written_or_refused_as_uvicorn_does() -> None:
    for seed in range(400):
        request = list(REQUESTS.values())[seed % len(REQUESTS)]
        expected = await answer(HttpToolsProtocol, generated(seed), request)
        for kind, protocol in PROTOCOLS.items():
            assert await answer(protocol, generated(seed), request) == expected, (seed, kind)

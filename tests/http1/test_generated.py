"""Generated hostile answers: arbitrary bytes cut at arbitrary points, and well-formed responses (interim responses,
any framing, stray bytes after them) cut the same way.

Whatever arrives, a request ends in a response or in HttpError / TimeoutError (never another exception, never past
its deadline), reaches the server once, and leaves nothing broken in the pool: once the server has sent everything,
the next request gets its own answer, and every connection the server kept open is closed by the client when the
pool closes. A well-formed response comes back exactly as sent, however it was cut and whatever followed it.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from http1 import H1Pool, HttpError, HttpResponse
from tests.http1.scripted import Peer, chunk, keep_alive, serving

pytestmark = pytest.mark.anyio

SLOW_IS_FINE = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@dataclass(frozen=True)
class Wire:
    """What the server sends after reading the request, and how."""

    raw: bytes
    cuts: tuple[int, ...]
    close: bool
    """Close the connection after sending (else keep it open and answer further requests properly)."""

    def pieces(self) -> list[bytes]:
        edges = [0, *sorted(set(self.cuts)), len(self.raw)]
        return [self.raw[a:b] for a, b in zip(edges, edges[1:], strict=False)]


async def exchange(wire: Wire, timeout: float) -> HttpResponse | Exception:
    """Send a request to a server that answers with `wire`; check the properties every answer must keep."""
    sent_all = anyio.Event()

    async def script(peer: Peer) -> None:
        try:
            await peer.read_request()
            await peer.send(*wire.pieces())
            if wire.close:
                await peer.stream.aclose()
        finally:
            sent_all.set()
        if not wire.close:
            await keep_alive(peer)

    async with serving(script, keep_alive) as server:
        pool = H1Pool(server.url, max_body=4096, max_head=4096)
        outcome: HttpResponse | Exception
        with anyio.fail_after(5):
            try:
                outcome = await pool.request("POST", "/", [], b"{}", timeout=timeout)
            except (HttpError, TimeoutError) as exc:
                outcome = exc
            assert len(server.requests) == 1
            await sent_all.wait()  # every byte and the close are at the client, read or not
            follow_up = await pool.request("POST", "/", [], b"{}", timeout=5)
        assert follow_up.status == 200 and follow_up.body.startswith(b'{"echo":'), follow_up
        assert len(server.requests) == 2
        await pool.aclose()
        await server.all_ended(server.connections)
    assert all(peer.closed_by_client for peer in server.peers[1:])
    if not wire.close:
        assert server.peers[0].closed_by_client
    return outcome


def wires(raw: st.SearchStrategy[bytes], *, close: st.SearchStrategy[bool]) -> st.SearchStrategy[Wire]:
    return raw.flatmap(
        lambda data: st.builds(Wire, st.just(data), st.lists(st.integers(0, len(data)), max_size=4).map(tuple), close)
    )


STARTS = st.sampled_from([b"", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"])


@settings(max_examples=60, deadline=None, suppress_health_check=SLOW_IS_FINE)
@given(wire=wires(st.tuples(STARTS, st.binary(max_size=200)).map(b"".join), close=st.booleans()))
async def test_arbitrary_bytes_end_in_a_response_or_an_http_error_within_the_deadline(wire: Wire) -> None:
    outcome = await exchange(wire, timeout=0.05)
    assert isinstance(outcome, HttpResponse | HttpError | TimeoutError)


@dataclass(frozen=True)
class Expected:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


NAMES = st.sampled_from(["x-a", "X-Request-Id", "content-type", "mcp-session-id", "Keep-Alive", "Server"])
VALUES = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20).map(str.strip)
INTERIM = st.sampled_from(
    [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 102 Processing\r\nx-i: 1\r\n\r\n",
        b"HTTP/1.1 103 Early\r\nlink: </a>\r\n\r\n",
    ]
)
STRAY = st.one_of(
    st.just(b""),
    st.sampled_from([b"\r\n", b"\r\n\r\n"]),
    st.sampled_from([b"HTTP/1.1 500 Bad\r\ncontent-length: 3\r\n\r\nbad", b"HTTP/1.1 5", b"x" * 10]),
    st.binary(min_size=1, max_size=40),
)


@st.composite
def well_formed(draw: st.DrawFn) -> tuple[bytes, Expected]:
    """A response (after 0-2 interim ones), framed by length, by chunks or by the close, then maybe stray bytes."""
    status = draw(st.sampled_from([200, 201, 202, 400, 404, 429, 500, 503]))
    headers = tuple((name.lower(), value) for name, value in draw(st.lists(st.tuples(NAMES, VALUES), max_size=4)))
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    if framing == "length":
        framed = (*headers, ("content-length", str(len(body))))
        payload = body
    elif framing == "chunked":
        cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=4)))) if body else []
        edges = [0, *[cut for cut in cuts if cut < len(body)], len(body)]
        framed = (*headers, ("transfer-encoding", "chunked"))
        payload = b"".join(chunk(body[a:b]) for a, b in zip(edges, edges[1:], strict=False) if b > a) + b"0\r\n\r\n"
    else:
        framed = (*headers, ("connection", "close"))
        payload = body
    head = f"HTTP/1.1 {status} Reason\r\n" + "".join(f"{name}: {value}\r\n" for name, value in framed) + "\r\n"
    interim = b"".join(draw(st.lists(INTERIM, max_size=2)))
    stray = draw(STRAY) if framing != "close" else b""
    return interim + head.encode("latin-1") + payload + stray, Expected(status, framed, body)


@settings(max_examples=120, deadline=None, suppress_health_check=SLOW_IS_FINE)
@given(data=st.data(), response=well_formed())
async def test_a_well_formed_response_comes_back_exactly_however_it_is_cut(
    data: st.DataObject, response: tuple[bytes, Expected]
) -> None:
    raw, expected = response
    ends_with_close = ("connection", "close") in expected.headers
    wire = data.draw(wires(st.just(raw), close=st.just(True) if ends_with_close else st.booleans()))
    outcome = await exchange(wire, timeout=5)
    assert isinstance(outcome, HttpResponse), outcome
    assert (outcome.status, tuple(outcome.headers), outcome.body) == (
        expected.status,
        expected.headers,
        expected.body,
    )

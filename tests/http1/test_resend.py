"""A request is sent once unless it is safe to repeat, and stale connections are not picked for it.

When a pooled connection closes without a byte of answer just as a request leaves on it, the server may or may not
have taken the request. Only an idempotent one (by method, or as the caller declares) goes out again; any other
raises `RequestMayHaveBeenProcessed`, and the server's count of requests proves nothing ran twice.
"""

from __future__ import annotations

import anyio
import pytest

from http1 import ConnectFailed, H1Pool, HttpError, RequestMayHaveBeenProcessed
from tests.http1.scripted import Peer, keep_alive, response, serving

pytestmark = pytest.mark.anyio


async def answer_once_then_drop(peer: Peer) -> None:
    """Answer the first request; take the second and close without a byte (an idle timeout as it arrived)."""
    request = await peer.read_request()
    answer = response(b"fresh")
    await peer.send(answer if not request.startswith(b"HEAD ") else answer[: answer.index(b"\r\n\r\n") + 4])
    await peer.read_request()


async def test_a_post_dropped_by_a_pooled_connection_is_not_sent_again() -> None:
    async with serving(answer_once_then_drop, keep_alive) as server:
        pool = H1Pool(server.url)
        assert (await pool.request("POST", "/", [], b"{}")).body == b"fresh"
        with pytest.raises(RequestMayHaveBeenProcessed, match="may have processed"):
            await pool.request("POST", "/", [], b"{}")
        assert not pool._idle
        await pool.aclose()
        await server.all_ended()
    assert len(server.requests) == 2, "two calls, two requests: the dropped POST was not repeated"
    assert server.connections == 1


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
async def test_an_idempotent_method_dropped_by_a_pooled_connection_is_sent_once_more(method: str) -> None:
    async with serving(answer_once_then_drop, keep_alive) as server:
        pool = H1Pool(server.url)
        with anyio.fail_after(5):
            assert (await pool.request(method, "/", [])).status == 200
            assert (await pool.request(method, "/", [])).status == 200
        await pool.aclose()
        await server.all_ended(2)
    assert len(server.requests) == 3 and server.connections == 2


async def test_the_caller_decides_for_a_post_that_is_safe_to_repeat_and_for_a_get_that_is_not() -> None:
    async with serving(answer_once_then_drop, keep_alive) as server:
        pool = H1Pool(server.url)
        await pool.request("POST", "/", [], b"{}")
        assert (await pool.request("POST", "/", [], b"{}", idempotent=True)).status == 200
        await pool.aclose()
    assert len(server.requests) == 3

    async with serving(answer_once_then_drop, keep_alive) as server:
        pool = H1Pool(server.url)
        await pool.request("GET", "/", [])
        with pytest.raises(RequestMayHaveBeenProcessed):
            await pool.request("GET", "/", [], idempotent=False)
        await pool.aclose()
    assert len(server.requests) == 2


async def test_a_stream_follows_the_same_rule() -> None:
    async with serving(answer_once_then_drop, keep_alive) as server:
        pool = H1Pool(server.url)
        async with pool.stream("POST", "/", [], b"{}") as answer:
            assert await answer.next_chunk() == b"fresh"
        with pytest.raises(RequestMayHaveBeenProcessed):
            async with pool.stream("POST", "/", [], b"{}"):
                pass
        await pool.aclose()
    assert len(server.requests) == 2

    async with serving(answer_once_then_drop, keep_alive) as server:
        pool = H1Pool(server.url)
        async with pool.stream("POST", "/", [], b"{}", idempotent=True):
            pass
        async with pool.stream("POST", "/", [], b"{}", idempotent=True) as answer:
            assert (await answer.next_chunk() or b"").startswith(b'{"echo":')
        await pool.aclose()
    assert len(server.requests) == 3


async def test_a_drop_on_a_new_connection_is_never_retried_even_when_idempotent() -> None:
    async def drop(peer: Peer) -> None:
        await peer.read_request()

    async with serving(drop, keep_alive) as server:
        pool = H1Pool(server.url)
        with pytest.raises(RequestMayHaveBeenProcessed):
            await pool.request("GET", "/", [])
        await pool.aclose()
    assert len(server.requests) == 1 and server.connections == 1


async def test_a_failure_to_connect_means_the_request_was_never_sent() -> None:
    async with serving(keep_alive) as server:
        url = server.url
    pool = H1Pool(url)  # the server is gone: its port refuses
    with pytest.raises(ConnectFailed, match="cannot connect") as caught:
        await pool.request("POST", "/", [], b"{}")
    assert not isinstance(caught.value, RequestMayHaveBeenProcessed) and isinstance(caught.value, HttpError)
    await pool.aclose()
    with pytest.raises(ConnectFailed, match="closed"):
        await pool.request("POST", "/", [], b"{}")


class Clock:
    """The pool's idle clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_connection_idle_past_the_servers_keep_alive_timeout_less_a_margin_is_not_reused() -> None:
    clock = Clock()
    advertised = response(b"ok", extra=b"keep-alive: timeout=5, max=100\r\n")

    async def answers(peer: Peer) -> None:
        while True:
            await peer.read_request()
            await peer.send(advertised)

    async with serving(answers) as server:
        pool = H1Pool(server.url, clock=clock)
        await pool.request("POST", "/", [], b"{}")
        clock.now += 3.9
        await pool.request("POST", "/", [], b"{}")
        assert server.connections == 1, "reused within the server's timeout less the margin"
        clock.now += 4.1
        await pool.request("POST", "/", [], b"{}")
        assert server.connections == 2, "past 5 s less the margin: a new connection, the old one closed"
        await pool.aclose()
        await server.all_ended(2)
    assert len(server.requests) == 3 and all(peer.closed_by_client for peer in server.peers)


async def test_the_pools_own_keepalive_applies_when_the_server_advertises_none_or_a_longer_one() -> None:
    clock = Clock()
    async with serving(keep_alive) as server:
        pool = H1Pool(server.url, keepalive_s=2, clock=clock)
        await pool.request("POST", "/", [], b"{}")
        clock.now += 2.5
        await pool.request("POST", "/", [], b"{}")
        await pool.aclose()
    assert server.connections == 2


@pytest.mark.parametrize(
    "header",
    [b"keep-alive: timeout=1\r\n", b"keep-alive: timeout=0\r\n", b"keep-alive: timeout=30, max=0\r\n"],
    ids=["timeout-within-the-margin", "timeout-zero", "max-zero"],
)
async def test_a_server_that_allows_no_more_idle_time_or_requests_gets_a_new_connection(header: bytes) -> None:
    async def answers(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(response(b"ok", extra=header))
        await peer.hold()

    async with serving(answers) as server:
        pool = H1Pool(server.url)
        with anyio.fail_after(5):
            for _ in range(2):
                assert (await pool.request("POST", "/", [], b"{}")).body == b"ok"
        assert not pool._idle
        await pool.aclose()
        await server.all_ended(2)
    assert server.connections == 2 and all(peer.closed_by_client for peer in server.peers)


async def test_keep_alive_parameters_that_are_not_whole_numbers_are_ignored() -> None:
    clock = Clock()
    garbage = response(b"ok", extra=b"keep-alive: timeout=soon, max=-1, timeout=, other\r\n")

    async def answers(peer: Peer) -> None:
        while True:
            await peer.read_request()
            await peer.send(garbage)

    async with serving(answers) as server:
        pool = H1Pool(server.url, clock=clock)
        for _ in range(3):
            await pool.request("POST", "/", [], b"{}")
            clock.now += 30
        await pool.aclose()
    assert server.connections == 1, "the pool's own keepalive (60 s) applies"


async def test_a_server_that_sends_stray_bytes_to_an_idle_connection_never_gets_a_request_on_it() -> None:
    strayed = anyio.Event()

    async def stray(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(response(b"one"))
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstray")
        strayed.set()
        await peer.hold()

    async with serving(stray, keep_alive) as server:
        pool = H1Pool(server.url)
        assert (await pool.request("POST", "/", [], b"{}")).body == b"one"
        await strayed.wait()  # the bytes wait at the client, whether or not its event loop has read them yet
        assert (await pool.request("POST", "/", [], b"{}")).body.startswith(b'{"echo":'), "not the stray bytes"
        await pool.aclose()
        await server.all_ended(2)
    assert server.connections == 2 and len(server.requests) == 2 and server.peers[0].closed_by_client

"""`timeout` is one deadline for the whole request: the wait for a free slot, connecting (TLS included), the
exchange, and a resend if one is allowed, all fall inside it.

The tests assert on what happened (the kind of error, what the server saw, the event loop's clock), never on
wall-clock bounds. Where a test needs time to pass it moves the event loop's clock (`SkewedLoop`), so the
deadline is crossed at a known point of the script, as fast on a busy machine as on an idle one.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - a selector event loop whose clock the test moves
from pathlib import Path
from typing import Any

import anyio
import pytest

from http1 import ConnectFailed, H1Pool
from tests.http1.scripted import Peer, keep_alive, response, serving
from tests.http1.test_client import tls_contexts

pytestmark = pytest.mark.anyio


async def holds(peer: Peer) -> None:
    """Read a request and never answer it (until the client closes)."""
    await peer.read_request()
    await peer.hold()


async def test_waiting_for_a_free_slot_counts_against_the_deadline() -> None:
    async with serving(holds, keep_alive) as server:
        pool = H1Pool(server.url, max_connections=1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.request, "POST", "/", [], b"{}")  # takes the only slot, never answered
            with anyio.fail_after(5):
                await server.request_seen.wait()
            with anyio.move_on_after(5) as guard, pytest.raises(TimeoutError, match="no free connection"):
                await pool.request("POST", "/", [], b"{}", timeout=0.05)
            assert not guard.cancelled_caught, "the second request waited for the slot past its deadline"
            tg.cancel_scope.cancel()
        await pool.aclose()
        await server.all_ended()
    assert len(server.requests) == 1, "the request that never had a slot was never sent"


async def test_a_slot_freed_in_time_serves_the_waiting_request() -> None:
    async with serving(keep_alive) as server:
        pool = H1Pool(server.url, max_connections=1)
        results: list[int] = []

        async def one() -> None:
            results.append((await pool.request("POST", "/", [], b"{}", timeout=5)).status)

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(one)
        await pool.aclose()
    assert results == [200] * 5 and server.connections == 1


async def test_a_tls_handshake_that_never_completes_counts_against_the_deadline(tmp_path: Path) -> None:
    _, client_ctx = tls_contexts(tmp_path)

    async def silent(peer: Peer) -> None:  # accepts the TCP connection, never answers the ClientHello
        await peer.buffered.receive()
        await peer.hold()

    async with serving(silent) as server:
        pool = H1Pool(f"https://localhost:{server.port}/", ssl_context=client_ctx, connect_timeout=30)
        with anyio.move_on_after(5) as guard, pytest.raises(TimeoutError, match="while connecting"):
            await pool.request("POST", "/", [], b"{}", timeout=0.05)
        assert not guard.cancelled_caught, "connecting ran on its own 30 s instead of the request's deadline"
        await pool.aclose()
        await server.all_ended()
    assert not server.requests and server.peers[0].closed_by_client


async def test_the_connect_timeout_still_applies_when_it_is_the_shorter(tmp_path: Path) -> None:
    _, client_ctx = tls_contexts(tmp_path)

    async def silent(peer: Peer) -> None:
        await peer.buffered.receive()
        await peer.hold()

    async with serving(silent) as server:
        pool = H1Pool(f"https://localhost:{server.port}/", ssl_context=client_ctx, connect_timeout=0.05)
        with anyio.fail_after(5), pytest.raises(ConnectFailed, match="no answer within"):
            await pool.request("POST", "/", [], b"{}", timeout=30)
        await pool.aclose()


async def test_a_slowloris_server_trickling_its_headers_cannot_outlast_the_deadline() -> None:
    async def trickles(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\nx-slow: ")
        while True:  # a byte at a time, never ending the header
            await peer.send(b"a")
            await anyio.sleep(0.005)

    async with serving(trickles) as server:
        pool = H1Pool(server.url)
        with anyio.move_on_after(5) as guard, pytest.raises(TimeoutError):
            await pool.request("POST", "/", [], b"{}", timeout=0.1)
        assert not guard.cancelled_caught
        assert not pool._idle
        await pool.aclose()
        await server.all_ended()
    assert len(server.requests) == 1 and server.peers[0].closed_by_client


async def test_a_slowloris_server_trickling_its_body_cannot_outlast_the_deadline() -> None:
    async def trickles(peer: Peer) -> None:
        await peer.read_request()
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n")
        while True:
            await peer.send(b"a")
            await anyio.sleep(0.005)

    async with serving(trickles) as server:
        pool = H1Pool(server.url)
        with anyio.move_on_after(5) as guard, pytest.raises(TimeoutError):
            await pool.request("POST", "/", [], b"{}", timeout=0.1)
        assert not guard.cancelled_caught
        await pool.aclose()
        await server.all_ended()
    assert server.peers[0].closed_by_client


class SkewedLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock a test can move forward (its timers, and so the deadlines, follow it)."""

    skew = 0.0

    def time(self) -> float:
        return super().time() + self.skew


def skew(seconds: float) -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, SkewedLoop)
    loop.skew += seconds


class TestOnAMovableClock:
    """Only the plain asyncio loop lets its clock be moved (uvloop keeps its own)."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, Any]]:
        return "asyncio", {"loop_factory": SkewedLoop}

    async def test_a_resend_stays_inside_the_first_attempts_deadline(self) -> None:
        async def answers_then_drops_late(peer: Peer) -> None:
            await peer.read_request()
            await peer.send(response(b"fresh"))
            await peer.read_request()
            skew(8)  # the dropped attempt used 8 of the request's 10 s
            # then closes without answering: a GET may go once more

        async def takes_the_resend_and_stalls(peer: Peer) -> None:
            await peer.read_request()
            skew(3)  # past the first attempt's deadline; far from a fresh 10 s
            await peer.hold()

        async with serving(answers_then_drops_late, takes_the_resend_and_stalls) as server:
            pool = H1Pool(server.url)
            await pool.request("GET", "/", [])
            loop = asyncio.get_running_loop()
            start = loop.time()
            with anyio.move_on_after(30) as guard, pytest.raises(TimeoutError):
                await pool.request("GET", "/", [], timeout=10)
            elapsed = loop.time() - start
            assert not guard.cancelled_caught
            # 11 s of skew plus the real time the run took; a fresh deadline for the resend would end at 18 s.
            assert elapsed < 15, f"the resend got a deadline of its own ({elapsed:.1f} s on the loop's clock)"
            await pool.aclose()
            await server.all_ended(2)
        assert len(server.requests) == 3 and server.connections == 2

    async def test_no_resend_leaves_once_the_deadline_has_passed(self) -> None:
        async def answers_then_drops_too_late(peer: Peer) -> None:
            await peer.read_request()
            await peer.send(response(b"fresh"))
            await peer.read_request()
            skew(11)  # the request's 10 s are over as its connection drops

        async with serving(answers_then_drops_too_late, keep_alive) as server:
            pool = H1Pool(server.url)
            await pool.request("GET", "/", [])
            with anyio.fail_after(60), pytest.raises(TimeoutError):
                await pool.request("GET", "/", [], timeout=10)
            await pool.aclose()
        assert len(server.requests) == 2 and server.connections == 1, "nothing was sent after the deadline"

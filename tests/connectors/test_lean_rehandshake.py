"""A lean session the upstream lost (HTTP 404 for its session id) is opened again once, and only once.

One re-handshake serves every call that saw the same lost session; an upstream that loses the new session as well
is reported as unavailable instead of being asked again and again.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from connectors.errors import UpstreamTimeout, UpstreamUnavailable
from tests.connectors.harness import lean_session, running_upstream
from tests.connectors.scripted import TEXT_RESULT, Request, ScriptedUpstream, http_response, never, serve_upstream

pytestmark = pytest.mark.anyio

CALL = {"name": "echo", "arguments": {}}


async def not_found(request: Request) -> bytes:
    return http_response(404, b'{"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": "no session"}}')


async def test_a_lost_session_is_opened_again_and_the_call_retried_on_the_new_one() -> None:
    async with serve_upstream() as server, running_upstream(server.url) as upstream:
        before = server.seen["initialize"]
        server.forget_sessions()
        assert await upstream.call_tool_raw("echo", {}) == TEXT_RESULT
        assert server.seen["initialize"] == before + 1
        calls = [r for r in server.requests if r.rpc == "tools/call"]
        assert [r.session in server.sessions for r in calls] == [False, True]
        assert upstream.health.failures == 0


async def test_an_upstream_that_loses_the_new_session_too_is_unavailable_after_one_re_handshake() -> None:
    async with serve_upstream() as server, running_upstream(server.url) as upstream:
        server.on["tools/call"] = not_found
        before = server.seen["initialize"]
        with anyio.fail_after(10), pytest.raises(UpstreamUnavailable, match="lost the session twice"):
            await upstream.call_tool_raw("echo", {})
        assert server.seen["initialize"] == before + 1
        assert server.seen["tools/call"] == 2
        assert upstream.health.failures == 1


async def test_a_re_handshake_refused_with_404_is_unavailable_and_not_retried() -> None:
    async with serve_upstream() as server, running_upstream(server.url) as upstream:
        server.forget_sessions()
        server.on["initialize"] = not_found
        before = server.seen["initialize"]
        with anyio.fail_after(10), pytest.raises(UpstreamUnavailable, match="lost the session and a new one failed"):
            await upstream.call_tool_raw("echo", {})
        assert server.seen["initialize"] == before + 1
        assert server.seen["tools/call"] == 1
        assert upstream.health.failures == 1


async def test_concurrent_calls_on_a_lost_session_share_one_re_handshake() -> None:
    calls = 8
    server = ScriptedUpstream()
    lost_seen = anyio.Event()
    lost = 0

    async def tools_call(request: Request) -> bytes:
        nonlocal lost
        if request.session not in server.sessions:
            lost += 1
            if lost == calls:
                lost_seen.set()
        return server.default(request)

    async def initialize(request: Request) -> bytes:
        if server.seen["initialize"] > 1:  # the re-handshake waits until every call has seen its 404
            await lost_seen.wait()
        return server.default(request)

    server.on["tools/call"] = tools_call
    server.on["initialize"] = initialize
    answers: list[dict[str, Any]] = []
    async with serve_upstream(server), lean_session(server.url) as session:
        server.forget_sessions()

        async def call() -> None:
            answers.append(await session.request("tools/call", CALL, timeout=10))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(calls):
                    tg.start_soon(call)
    assert answers == [TEXT_RESULT] * calls
    assert server.seen["initialize"] == 2, "one handshake, then one re-handshake for all the calls"
    assert server.seen["tools/call"] == 2 * calls
    retried = [r.session for r in server.requests if r.rpc == "tools/call"][calls:]
    assert retried == ["s2"] * calls


async def unavailable(request: Request) -> bytes:
    return http_response(503)


async def test_concurrent_calls_on_a_lost_session_share_one_failed_re_handshake() -> None:
    calls = 4
    server = ScriptedUpstream()
    lost_seen = anyio.Event()
    lost = 0

    async def tools_call(request: Request) -> bytes:
        nonlocal lost
        lost += 1
        if lost == calls:
            lost_seen.set()
        return server.default(request)

    async def initialize(request: Request) -> bytes:
        if server.seen["initialize"] == 1:
            return server.default(request)
        await lost_seen.wait()  # the re-handshake fails once every call has seen its 404
        return await unavailable(request)

    server.on["tools/call"] = tools_call
    server.on["initialize"] = initialize
    failures: list[str] = []
    async with serve_upstream(server), lean_session(server.url) as session:
        server.forget_sessions()

        async def call() -> None:
            with pytest.raises(UpstreamUnavailable) as caught:
                await session.request("tools/call", CALL, timeout=10)
            failures.append(caught.value.message)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(calls):
                    tg.start_soon(call)
    assert (
        failures
        == ["upstream 'scripted' lost the session and a new one failed: upstream 'scripted' answered HTTP 503"] * calls
    )
    assert server.seen["initialize"] == 2, "one handshake, then one failed re-handshake for all the calls"
    assert server.seen["tools/call"] == calls


async def test_a_later_call_opens_the_session_again_after_a_failed_re_handshake() -> None:
    async with serve_upstream() as server, lean_session(server.url) as session:
        server.forget_sessions()
        server.on["initialize"] = unavailable
        with anyio.fail_after(10), pytest.raises(UpstreamUnavailable, match="lost the session and a new one failed"):
            await session.request("tools/call", CALL, timeout=10)
        del server.on["initialize"]  # the upstream is back
        with anyio.fail_after(10):
            assert await session.request("tools/call", CALL, timeout=10) == TEXT_RESULT
    assert server.seen["initialize"] == 3
    assert [r.session for r in server.requests if r.rpc == "tools/call"] == ["s1", "s1", "s2"]


async def test_a_call_waiting_for_another_calls_re_handshake_keeps_its_own_deadline() -> None:
    server = ScriptedUpstream()
    renewing = anyio.Event()

    async def initialize(request: Request) -> bytes | None:
        if server.seen["initialize"] == 1:
            return server.default(request)
        renewing.set()
        return await never(request)  # the re-handshake never ends

    server.on["initialize"] = initialize
    async with serve_upstream(server), lean_session(server.url) as session:
        server.forget_sessions()
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: session.request("tools/call", CALL, timeout=60))
            with anyio.fail_after(10):
                await renewing.wait()
            with anyio.fail_after(10), pytest.raises(UpstreamTimeout, match="within 0.5s"):
                await session.request("tools/call", CALL, timeout=0.5)
            tg.cancel_scope.cancel()
    assert server.seen["initialize"] == 2, "the waiting call did not start a re-handshake of its own"

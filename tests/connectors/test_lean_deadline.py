"""A lean tool call keeps its deadline: `call_tool_raw(timeout=T)` ends in `UpstreamTimeout` within T, whatever part
of the call is stuck (the upstream's answer, a token refresh, a re-handshake), and counts as an upstream failure.

Each test's own `fail_after` is a generous bound (ten times T), there only so that a call which ignores its deadline
fails the test instead of hanging it; the assertions are on the kind of error and on what the server saw.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import anyio
import orjson
import pytest

from connectors.auth import MemoryTokenStore, OAuth2Auth, OAuth2HttpAuth, UpstreamAuth
from connectors.errors import UpstreamTimeout
from connectors.rawhttp import Deadline, LeanSessions, RawHttpSession
from tests.connectors.harness import lean_session, running_upstream
from tests.connectors.scripted import Request, ScriptedUpstream, http_response, never, serve_upstream

pytestmark = pytest.mark.anyio

T = 0.5
BOUND = 10 * T
CALL = {"name": "echo", "arguments": {}}


async def test_a_call_the_upstream_never_answers_times_out() -> None:
    async with serve_upstream() as server, running_upstream(server.url) as upstream:
        server.on["tools/call"] = never
        with anyio.fail_after(BOUND), pytest.raises(UpstreamTimeout, match=f"within {T:g}s"):
            await upstream.call_tool_raw("echo", {}, timeout=T)
        assert server.seen["tools/call"] == 1
        assert upstream.health.failures == 1


async def test_a_call_whose_re_handshake_hangs_times_out_within_the_calls_deadline() -> None:
    async with serve_upstream() as server, running_upstream(server.url) as upstream:
        before = server.seen["initialize"]
        server.forget_sessions()
        server.on["initialize"] = never
        with anyio.fail_after(BOUND), pytest.raises(UpstreamTimeout, match=f"within {T:g}s"):
            await upstream.call_tool_raw("echo", {}, timeout=T)
        assert server.seen["initialize"] == before + 1, "the re-handshake was under way when the time ran out"
        assert upstream.health.failures == 1


async def test_a_call_retried_after_a_re_handshake_keeps_the_first_attempts_deadline() -> None:
    """The deadline runs on the test's clock, which the server moves past it while the new session opens: the
    retry must then not go out at all (with a fresh deadline of its own it would)."""
    server = ScriptedUpstream()
    now = 0.0

    async def initialized(request: Request) -> bytes | None:
        nonlocal now
        now += 2 * T  # the re-handshake took all of the call's time
        return server.default(request)

    async with serve_upstream(server), lean_session(server.url) as session:
        server.forget_sessions()
        server.on["notifications/initialized"] = initialized
        deadline = Deadline("scripted", T, clock=lambda: now)
        with anyio.fail_after(BOUND), pytest.raises(UpstreamTimeout, match=f"within {T:g}s"):
            await session.request_within("tools/call", CALL, deadline)
    assert server.seen["initialize"] == 2, "the lost session was opened again"
    assert server.seen["tools/call"] == 1, "no retry after the deadline"


async def test_a_call_that_opens_another_lean_session_keeps_its_deadline() -> None:
    server = ScriptedUpstream()
    busy = anyio.Event()

    async def tools_call(request: Request) -> bytes | None:
        if request.message["params"]["name"] == "busy":
            busy.set()
            return await never(request)
        return server.default(request)

    async def initialize(request: Request) -> bytes | None:
        if server.seen["initialize"] > 1:  # the first session opens, the next one never does
            return await never(request)
        return server.default(request)

    server.on["tools/call"] = tools_call
    server.on["initialize"] = initialize
    async with serve_upstream(server):
        lean = LeanSessions("scripted", lambda size: RawHttpSession("scripted", server.url, {}), size=4)
        await lean.open()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: lean.request("tools/call", {"name": "busy", "arguments": {}}, timeout=60))
                await busy.wait()
                with anyio.fail_after(BOUND), pytest.raises(UpstreamTimeout, match=f"within {T:g}s"):
                    await lean.request("tools/call", {"name": "echo", "arguments": {}}, timeout=T)
                tg.cancel_scope.cancel()
        finally:
            await lean.aclose()
        assert server.seen["initialize"] == 2, "the busy session made the call open another one"


@asynccontextmanager
async def oauth_upstream(server: ScriptedUpstream) -> AsyncGenerator[UpstreamAuth]:
    """Client-credentials tokens from the scripted server's `/token`: the first one is issued, later requests for
    a new one never get an answer."""

    async def token(request: Request) -> bytes | None:
        if server.seen["/token"] > 1:
            return await never(request)
        body = orjson.dumps({"access_token": "t1", "token_type": "Bearer", "expires_in": 3600})
        return http_response(200, body)

    server.on["/token"] = token
    config = OAuth2Auth(
        type="oauth2", grant="client_credentials", client_id="hub", client_secret="s3", token_url=server.base + "/token"
    )
    auth = UpstreamAuth("scripted", server.url, config, store=MemoryTokenStore(), insecure_loopback=True)
    try:
        yield auth
    finally:
        await auth.aclose()


async def test_a_call_whose_token_refresh_hangs_times_out() -> None:
    async with serve_upstream() as server, oauth_upstream(server) as auth:
        async with running_upstream(server.url, auth=OAuth2HttpAuth(auth)) as upstream:

            async def refused(request: Request) -> bytes:
                return http_response(401, headers=[("www-authenticate", 'Bearer error="invalid_token"')])

            server.on["tools/call"] = refused  # the 401 makes the auth flow fetch a new token
            with anyio.fail_after(BOUND), pytest.raises(UpstreamTimeout, match=f"within {T:g}s"):
                await upstream.call_tool_raw("echo", {}, timeout=T)
            assert server.seen["/token"] == 2, "the refresh was under way when the time ran out"
            assert upstream.health.failures == 1

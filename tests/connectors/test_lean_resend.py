"""A lean session never sends a request twice when the server may have run it.

A pooled connection that the server closes after reading a request, without a byte of answer, looks just like one
the server timed out as the request left. A `tools/call` (which may create a ticket or send a payment) is then
reported as unavailable with a warning that it may have run; a request that is safe to repeat (a listing) goes
out again on a new connection.
"""

from __future__ import annotations

import anyio
import pytest

from connectors.errors import UpstreamUnavailable
from tests.connectors.harness import lean_session, running_upstream
from tests.connectors.scripted import TOOLS, Request, ScriptedUpstream, hang_up, serve_upstream

pytestmark = pytest.mark.anyio


def hang_up_on_pooled_connections(server: ScriptedUpstream) -> None:
    """Requests for `tools/call` and `tools/list` on a connection that served before: read, then hang up."""

    async def answer(request: Request) -> bytes | None:
        if request.served_before:
            return await hang_up(request)
        return server.default(request)

    server.on["tools/call"] = answer
    server.on["tools/list"] = answer


async def test_a_tool_call_is_not_sent_again_after_the_server_hung_up_on_it() -> None:
    async with serve_upstream() as server, running_upstream(server.url) as upstream:
        hang_up_on_pooled_connections(server)
        with anyio.fail_after(10), pytest.raises(UpstreamUnavailable, match="may have run"):
            await upstream.call_tool_raw("echo", {})
        assert server.seen["tools/call"] == 1
        assert upstream.health.failures == 1


async def test_a_listing_is_sent_again_on_a_new_connection_after_the_server_hung_up_on_it() -> None:
    async with serve_upstream() as server, lean_session(server.url) as session:
        hang_up_on_pooled_connections(server)
        with anyio.fail_after(10):
            assert await session.request("tools/list", {}, timeout=10) == {"tools": TOOLS}
        assert server.seen["tools/list"] == 2
        assert [r.served_before > 0 for r in server.requests if r.rpc == "tools/list"] == [True, False]

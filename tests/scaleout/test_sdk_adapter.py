"""The private SDK internals the shared sessions use (`hub.mcp_sdk.adopt_session`, `drop_session`,
`lifespan_state_of`, `deliver_inbound`), checked on real SDK objects so an SDK upgrade that moves them fails here."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.server import Server
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.message import SessionMessage

from hub.mcp_sdk import adopt_session, deliver_inbound, drop_session, lifespan_state_of, live_owner, live_session
from tests.tools import PATIENCE

pytestmark = pytest.mark.anyio

STATE = {"lifespan": "entered once"}


@asynccontextmanager
async def _lifespan(server: Server[Any]) -> AsyncGenerator[dict[str, str]]:
    yield STATE


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_an_adopted_session_is_served_by_the_manager_and_gets_delivered_messages() -> None:
    manager = StreamableHTTPSessionManager(app=Server("probe", lifespan=_lifespan))
    owner = AuthorizationContext(client_id="key-1", issuer=None, subject="key-1")
    async with manager.run():
        assert lifespan_state_of(manager) is STATE
        transport = StreamableHTTPServerTransport(mcp_session_id="sealed-id", is_json_response_enabled=False)
        async with transport.connect() as (read_stream, _write_stream):
            adopt_session(manager, "sealed-id", transport, owner)
            assert live_session(manager, "sealed-id") and live_owner(manager, "sealed-id") == "key-1"

            answer = types.JSONRPCResponse(jsonrpc="2.0", id=3, result={})
            received: list[Any] = []
            async with anyio.create_task_group() as tg:

                async def read_one() -> None:
                    received.append(await read_stream.receive())

                tg.start_soon(read_one)
                with anyio.fail_after(PATIENCE):
                    assert await deliver_inbound(transport, SessionMessage(answer))
            [message] = received
            assert isinstance(message, SessionMessage) and message.message == answer

            other = StreamableHTTPServerTransport(mcp_session_id="sealed-id", is_json_response_enabled=False)
            drop_session(manager, "sealed-id", other)  # not the transport serving it: kept
            assert live_session(manager, "sealed-id")
            drop_session(manager, "sealed-id", transport)
            assert not live_session(manager, "sealed-id") and live_owner(manager, "sealed-id") is None
        await transport.terminate()
        assert not await deliver_inbound(transport, SessionMessage(answer))

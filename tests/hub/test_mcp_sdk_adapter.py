"""`hub.mcp_sdk` reads private internals of the `mcp` SDK: each function is checked here against the installed SDK,
on real SDK objects, so an upgrade that moves them fails in this file rather than misbehaving at run time."""

from __future__ import annotations

import inspect
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.session import ClientSession
from mcp.server import Server
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from hub.mcp_sdk import connection_of, live_owner, live_session, request_id_of, served_methods

pytestmark = pytest.mark.anyio

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": LATEST_HANDSHAKE_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "1"},
    },
}
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def _server(seen: list[Any]) -> Server[Any]:
    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        seen.append((connection_of(ctx.session), request_id_of(ctx.session)))
        return types.ListToolsResult(tools=[])

    return Server("probe", on_list_tools=list_tools)


def _as(key_id: str, app: Any) -> Any:
    """`app` with every request authenticated as `key_id`, as the hub's transport does."""

    async def authenticated(scope: Any, receive: Any, send: Any) -> None:
        token = AccessToken(token="", client_id=key_id, scopes=[], subject=key_id)
        await app({**scope, "user": AuthenticatedUser(token)}, receive, send)

    return authenticated


async def test_the_adapter_reads_sessions_owners_connections_and_handlers_of_the_installed_sdk() -> None:
    seen: list[Any] = []
    server = _server(seen)
    assert {"ping", "tools/list"} <= served_methods(server)
    assert "resources/list" not in served_methods(server)

    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    manager = StreamableHTTPSessionManager(app=server, json_response=True, security_settings=security)
    assert live_session(manager, "nope") is False
    assert live_owner(manager, "nope") is None
    async with manager.run():
        transport = httpx2.ASGITransport(app=_as("key-1", StreamableHTTPASGIApp(manager)))
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            opened = await client.post("/mcp", json=INITIALIZE, headers=HEADERS)
            assert opened.status_code == 200, opened.text
            session_id = opened.headers["mcp-session-id"]
            assert live_session(manager, session_id) is True
            assert live_owner(manager, session_id) == "key-1"

            headers = {**HEADERS, "mcp-session-id": session_id, "mcp-protocol-version": LATEST_HANDSHAKE_VERSION}
            await client.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
            listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
            listed = await client.post("/mcp", json=listing, headers=headers)
            assert listed.status_code == 200, listed.text
            ((connection, request_id),) = seen
            assert request_id == 2, "the session serving tools/list knows that request's id"
            assert isinstance(connection.state, dict)
            assert connection.exit_stack is not None
            assert connection.client_capabilities is not None

            ended = await client.delete("/mcp", headers=headers)
            assert ended.status_code == 200, ended.text
            assert live_session(manager, session_id) is False
            assert live_owner(manager, session_id) is None


async def test_the_client_session_internals_the_lean_tool_listing_reads_are_still_there() -> None:
    """`connectors/upstream.py` (which may not import `hub`, so it cannot go through `hub.mcp_sdk`) reads two
    internals of the SDK's client session to hand it a listing read by the lean session: `_stamp(request, options)`,
    which stamps a 2026-07-28 request, and `_absorb_tool_listing(result, *, complete)`. It falls back to the SDK's
    own listing when they are missing, so a change would only cost memory silently: this test makes it loud."""
    assert [(p.name, p.kind) for p in inspect.signature(ClientSession._absorb_tool_listing).parameters.values()] == [
        ("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("result", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("complete", inspect.Parameter.KEYWORD_ONLY),
    ]
    async with Client(_server([])) as client:
        session = client.session
        assert isinstance(session, ClientSession)
        stamp = session._stamp
        assert list(inspect.signature(stamp).parameters) == ["data", "opts"]
        request: dict[str, Any] = {"method": "tools/list", "params": {}}
        options: dict[str, Any] = {}
        stamp(request, options)  # a 2026-07-28 session (the in-memory default) puts its revision into `_meta`
        assert request["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == client.protocol_version
        absorbed = session._absorb_tool_listing(types.ListToolsResult(tools=[]), complete=True)
        assert isinstance(absorbed, types.ListToolsResult)

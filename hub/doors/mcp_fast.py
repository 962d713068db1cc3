"""The MCP door's hot path: `tools/call` and `tools/list` on an open handshake-era session, answered as JSON.

The SDK session manager serves everything (handshake, notifications, the GET stream, server-to-client requests,
the 2026-07-28 revision). For the two requests that make up almost all traffic, when nothing needs a stream
(no progress token) and the request is well-formed, this layer answers directly: one `orjson` parse, the
pipeline, one `orjson` dump. The response is a plain JSON body, which the transport allows for any POST.
Whatever does not qualify is handed to the SDK with its body replayed, so behaviour stays the SDK's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import Message, Receive, Scope, Send

from hub.call import Principal
from hub.doors.mcp import McpDoor
from hub.errors import HubError, PayloadTooLarge
from hub.mcp_sdk import live_owner

JSON_HEADERS = [(b"content-type", b"application/json")]
FAST_METHODS = frozenset({b"tools/call", b"tools/list"})


class FastPath:
    """Answers qualifying requests for one MCP endpoint; returns False to let the SDK answer."""

    def __init__(
        self,
        door: McpDoor,
        manager: StreamableHTTPSessionManager,
        security: TransportSecuritySettings,
        max_body: int,
        needs_session: Callable[[str], bool],
        *,
        traced: bool = False,
    ) -> None:
        """`needs_session(server)` says whether calls to a server need the client's MCP session (per-client
        upstreams that may ask the client for sampling or elicitation): those always take the SDK path. When the
        hub `traced`, a request whose `_meta` carries a `traceparent` takes it too (the tracing there reads it)."""
        self._traced = traced
        self._door = door
        self._needs_session = needs_session
        self._manager = manager
        self._security = TransportSecurityMiddleware(security)
        self._max_body = max_body

    def eligible(self, scope: Scope, headers: dict[str, str], principal: Principal) -> bool:
        """Cheap header checks: a POST on an existing session of this key, JSON accepted, Host/Origin allowed."""
        if scope["method"] != "POST":
            return False
        session_id = headers.get("mcp-session-id")
        if not session_id or headers.get("mcp-protocol-version") not in HANDSHAKE_PROTOCOL_VERSIONS:
            return False
        if "application/json" not in headers.get("accept", "") or not self._security._validate_content_type(
            headers.get("content-type")
        ):
            return False
        if not (
            self._security._validate_host(headers.get("host"))
            and self._security._validate_origin(headers.get("origin"))
        ):
            return False
        return live_owner(self._manager, session_id) == principal.key.id

    async def handle(self, scope: Scope, receive: Receive, send: Send, principal: Principal) -> Receive | None:
        """Serve the request, or return a `receive` that replays the consumed body for the SDK."""
        body = await read_body(receive, self._max_body)
        if body is None:
            return replay_body(b"", receive, truncated=True)
        message = _parse(body)
        if message is None:
            return replay_body(body, receive)
        method, request_id, params = message
        if self._traced and "traceparent" in (params.get("_meta") or ()):
            return replay_body(body, receive)
        if method == "tools/list":
            try:
                result: Any = await self._door.list_tools(principal)
            except HubError as exc:
                await _respond(send, {"jsonrpc": "2.0", "id": request_id, "error": _error(exc)})
                return None
        else:
            name = params.get("name")
            arguments = params.get("arguments", {})
            if not isinstance(name, str) or not isinstance(arguments, dict):
                return replay_body(body, receive)
            entry = self._door.view().tools.get(self._door.exposed_tool(name))
            if entry is not None and self._needs_session(entry.server):
                return replay_body(body, receive)
            try:
                result = await self._door.call_tool_value(principal, name, arguments)
            except HubError as exc:
                await _respond(send, {"jsonrpc": "2.0", "id": request_id, "error": _error(exc)})
                return None
        await _respond(send, {"jsonrpc": "2.0", "id": request_id, "result": result})
        return None


def _error(exc: HubError) -> dict[str, Any]:
    error: dict[str, Any] = {"code": exc.jsonrpc_code, "message": exc.message}
    if exc.data is not None:
        error["data"] = exc.data
    return error


def _parse(body: bytes) -> tuple[str, Any, dict[str, Any]] | None:
    if not any(m in body for m in FAST_METHODS):
        return None
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return None
    method = message.get("method")
    request_id = message.get("id")
    params = message.get("params") or {}
    if (
        method not in ("tools/call", "tools/list")
        or not isinstance(request_id, str | int)
        or isinstance(request_id, bool)
    ):
        return None
    if not isinstance(params, dict):
        return None
    meta = params.get("_meta")
    if meta is not None and (not isinstance(meta, dict) or "progressToken" in meta):
        return None
    if method == "tools/list" and params.get("cursor"):
        return None
    return method, request_id, params


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """A request's whole body, or None when the client went away first.

    Raises:
        PayloadTooLarge: the body is larger than `limit` bytes.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay_body(body: bytes, receive: Receive, *, truncated: bool = False) -> Receive:
    """`receive` that first gives back `body` (already read), or a disconnect when it was `truncated`."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            if truncated:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _respond(send: Send, payload: dict[str, Any]) -> None:
    body = orjson.dumps(payload)
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})

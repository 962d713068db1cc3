"""MCP over HTTP: `/mcp` and `/mcp/{server}` in front of the SDK's Streamable HTTP session managers.

For each request the transport learns who is calling (`McpHost.authenticate`, the authn stage's verification: the
SDK binds a session to the key that opened it), then:

- a request without a valid key is handed to the pipeline anyway, as the operation its body names
  (`hub.doors.mcp_methods.classify`), so its refusal is the authn stage's: a 401 with one request-log row;
- an `initialize` (a POST that opens a handshake-era session), and any request to a server endpoint that does not
  exist for this key, is an `mcp.session` call first: rate-limited, admitted under the key's session cap, confined
  to the endpoint's server, recorded; the session it opens is then counted until it ends;
- everything else goes to the MCP fast path (the two requests that make up most traffic), or to the SDK, whose
  handlers turn each request into a call (`hub.doors.mcp.McpDoor`).

With Redis (several replicas), a handshake-era request first goes through `hub.doors.mcp_shared`: an `initialize`
gets a sealed session id, and a session this replica has not seen is rebuilt from its id, so any replica serves it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import anyio.abc
import orjson
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from hub.call import Call, Malformed, Principal
from hub.doors.mcp import PRINCIPAL_SCOPE_KEY, SESSION_GOVERNED_KEY, McpDoor
from hub.doors.mcp_fast import FastPath, read_body
from hub.doors.mcp_methods import classify
from hub.doors.mcp_shared import SharedRequest, SharedSessions, replica_header, start_shared, with_header
from hub.doors.mcp_virtual import PREFIX as VIRTUAL_PREFIX, virtual_operation
from hub.doors.web import WWW_AUTHENTICATE, credential
from hub.errors import HubError, Internal, PayloadTooLarge, Unauthenticated
from hub.executors.session import SessionTicket
from hub.mcp_sdk import live_session
from hub.pipeline import Handler
from hub.settings import Settings, parse_listen
from hub.stages.authn import NO_KEY
from hub.telemetry.traceconfig import tracing_on

READ_HEADERS = frozenset(
    {b"authorization", b"x-api-key", b"api-key", b"accept", b"content-type", b"host", b"origin"}
    | {b"mcp-session-id", b"mcp-protocol-version"}
)
"""The request headers the transport and the MCP fast path read (ASGI servers give names in lower case)."""
REFUSED_BODY_LIMIT = 64 * 1024
"""Bytes read of a request without a valid key (to name its operation in the request log); the rest is ignored."""


class ClientGoneFilter(logging.Filter):
    """Drops the SDK's error records for a client that went away while it read the request (a body deadline of the
    serving protocol ends such requests; a slow client must not fill the log with tracebacks)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, ClientDisconnect)


_CLIENT_GONE = ClientGoneFilter()


def quiet_client_disconnects() -> None:
    """Install `ClientGoneFilter` on the SDK's Streamable HTTP logger (idempotent)."""
    sdk = logging.getLogger("mcp.server.streamable_http")
    if _CLIENT_GONE not in sdk.filters:
        sdk.addFilter(_CLIENT_GONE)


class McpHost(Protocol):
    """What the MCP transport needs of the running hub."""

    @property
    def pipeline(self) -> Handler | None: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def mcp(self) -> McpDoor | None: ...

    @property
    def task_group(self) -> anyio.abc.TaskGroup: ...

    def authenticate(self, credential: str | None, server: str | None = None) -> Principal | None: ...

    def challenge(self, server: str | None = None) -> str | None: ...

    def door_for(self, server: str) -> McpDoor | None: ...

    def needs_client_session(self, server: str) -> bool: ...


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """Host and Origin checks for /mcp (DNS-rebinding defence)."""
    host, port = parse_listen(settings.hub.listen)
    hosts = [f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "127.0.0.1", "localhost"]
    if host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):  # noqa: S104 - compared, not bound
        hosts += [host, f"{host}:{port}"]
    origins = [f"http://127.0.0.1:{port}", f"http://localhost:{port}", f"http://[::1]:{port}"]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts + settings.hub.allowed_hosts,
        allowed_origins=origins + settings.hub.allowed_origins,
    )


class McpEndpoint:
    """A running SDK session manager for one door (both protocol eras, sessions bound to the creating key)."""

    def __init__(
        self, door: McpDoor, settings: Settings, needs_session: Callable[[str], bool], name: str | None = None
    ) -> None:
        security = transport_security(settings)
        self.name = name
        self.server = door.server
        self.security = security
        self.idle_timeout: float | None = settings.hub.session_idle_s
        self.max_body = settings.hub.max_body_bytes
        self._tasks: anyio.abc.TaskGroup | None = None
        self.manager = StreamableHTTPSessionManager(
            app=door.server,
            security_settings=security,
            max_request_body_size=settings.hub.max_body_bytes,
            session_idle_timeout=settings.hub.session_idle_s,
        )
        self.asgi = StreamableHTTPASGIApp(self.manager)
        self.fast = FastPath(
            door,
            self.manager,
            security,
            settings.hub.max_body_bytes,
            needs_session,
            traced=tracing_on(settings.telemetry),
        )

    @property
    def tasks(self) -> anyio.abc.TaskGroup:
        """Where the sessions this endpoint opens or rebuilds itself run (`hub.doors.mcp_cluster`)."""
        if self._tasks is None:
            raise RuntimeError("the MCP endpoint is not serving")
        return self._tasks

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with self.manager.run(), anyio.create_task_group() as tasks:
            self._tasks = tasks
            task_status.started()
            await anyio.sleep_forever()


class McpHostRef(Protocol):
    """Where the transport finds the running hub (set once the hub started)."""

    @property
    def hub(self) -> McpHost: ...


class McpTransport:
    """Serves `/mcp` and `/mcp/{server}` for the running hub `ref.hub`."""

    def __init__(self, ref: McpHostRef) -> None:
        self._ref = ref
        quiet_client_disconnects()
        self._endpoints: dict[str | None, McpEndpoint] = {}
        self._lock = anyio.Lock()
        self._shared: SharedSessions | None = None
        self._replica = replica_header()

    def reset(self) -> None:
        """Forget the endpoints (the hub stopped; its task group ended their session managers)."""
        self._endpoints.clear()
        self._shared = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._replica is not None:
            send = with_header(send, self._replica)
        host = self._ref.hub
        path: str = scope.get("path", "")
        server = path[5:].strip("/") or None
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in READ_HEADERS}
        presented = credential(headers)
        principal = host.authenticate(presented, server)
        if principal is None:
            await self._refuse(host, scope, receive, send, server, presented)
            return
        door = host.mcp if server is None else host.door_for(server)
        opens = (
            scope["method"] == "POST"
            and "mcp-session-id" not in headers
            and headers.get("mcp-protocol-version") not in MODERN_PROTOCOL_VERSIONS
        )
        ticket: SessionTicket | None = None
        if door is None or opens:
            target = "initialize" if opens else str(scope["method"])
            call = Call(
                door="mcp",
                operation="mcp.session",
                target=target,
                principal=principal,
                scope=server if door is None else door.scope,  # a virtual server's calls are the aggregate's
                context={"opens": opens},
            )
            try:
                outcome = await _run(host, call)
            except HubError as exc:
                await jsonrpc_error(send, exc.wire.status, exc.jsonrpc_code, exc.message, None, exc.headers)
                return
            ticket = outcome.value if isinstance(outcome.value, SessionTicket) else None
            door = door or (host.mcp if server is None else host.door_for(server))
            if door is None:  # the server was removed meanwhile
                if ticket is not None:
                    ticket.release()
                await jsonrpc_error(send, 404, -32602, f"no MCP server named '{(server or '')[:64]}'")
                return
        endpoint = self._endpoints.get(server) or await self._start(host, door, server)
        if self._shared is not None and headers.get("mcp-protocol-version") not in MODERN_PROTOCOL_VERSIONS:
            replay = await _shared_session(self._shared, endpoint, scope, receive, send, principal, opens, ticket)
            if replay is None:
                return
            receive = replay
        if ticket is None and endpoint.fast.eligible(scope, headers, principal):
            try:
                replay = await endpoint.fast.handle(scope, receive, send, principal)
            except PayloadTooLarge as exc:
                await jsonrpc_error(send, 413, exc.jsonrpc_code, exc.message)
                return
            if replay is None:
                return
            receive = replay
        scope = {**scope, "user": _user(principal), PRINCIPAL_SCOPE_KEY: principal, SESSION_GOVERNED_KEY: opens}
        if ticket is None:
            await endpoint.asgi(scope, receive, send)
            return
        try:
            await endpoint.asgi(scope, receive, _session_watch(send, ticket, endpoint.manager))
        finally:
            ticket.release()  # nothing was opened (a no-op once the session is counted)

    async def _start(self, host: McpHost, door: McpDoor, server: str | None) -> McpEndpoint:
        async with self._lock:
            if self._shared is None:
                self._shared = await start_shared(host.settings, host.task_group)
            endpoint = self._endpoints.get(server)
            if endpoint is None:
                endpoint = McpEndpoint(door, host.settings, host.needs_client_session, server)
                await host.task_group.start(endpoint.serve)
                self._endpoints[server] = endpoint
            return endpoint

    async def _refuse(
        self, host: McpHost, scope: Scope, receive: Receive, send: Send, server: str | None, presented: str | None
    ) -> None:
        """Answer a request without a valid key: the pipeline refuses it (and records it) as the operation its
        body names. Its payload is the refusal itself, so nothing runs even if the key became valid meanwhile."""
        method, params, request_id = "", None, None
        if scope["method"] == "POST":
            method, params, request_id = await _peek(receive)
        operation, target = classify(method, params) if method else ("mcp.session", str(scope["method"]))
        if server is not None and server.startswith(VIRTUAL_PREFIX):
            operation, target = virtual_operation(operation, target, params)
        refusal = Unauthenticated(NO_KEY)
        call = Call(
            door="mcp",
            operation=operation,
            target=target,
            payload=Malformed(refusal),
            credential=presented,
            scope=server,
        )
        try:
            await _run(host, call)
        except HubError as exc:
            refusal = exc
        challenge = host.challenge(server) or WWW_AUTHENTICATE
        headers = {"www-authenticate": challenge} if isinstance(refusal, Unauthenticated) else {}
        await jsonrpc_error(send, refusal.wire.status, refusal.jsonrpc_code, refusal.message, request_id, headers)


async def _shared_session(
    shared: SharedSessions,
    endpoint: McpEndpoint,
    scope: Scope,
    receive: Receive,
    send: Send,
    principal: Principal,
    opens: bool,
    ticket: SessionTicket | None,
) -> Receive | None:
    """A handshake-era request when sessions are shared between replicas (`hub.doors.mcp_shared`): None when
    answered, else the `receive` the rest of the transport reads the request from."""
    user = _user(principal)
    served = {**scope, "user": user, PRINCIPAL_SCOPE_KEY: principal, SESSION_GOVERNED_KEY: opens}
    request = SharedRequest(shared, endpoint, served, principal.key.id, user)
    try:
        if opens:
            watched = send if ticket is None else _session_watch(send, ticket, endpoint.manager)
            replay = await request.open(receive, watched)
        else:
            session_id = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"mcp-session-id"), None)
            replay = await request.admit(session_id, receive, send)
    except PayloadTooLarge as exc:
        replay = None
        await jsonrpc_error(send, 413, exc.jsonrpc_code, exc.message)
    if replay is None and ticket is not None:
        ticket.release()  # nothing was opened (a no-op once the session is counted)
    return replay


def _user(principal: Principal) -> AuthenticatedUser:
    """The identity the SDK binds a session to (the virtual key)."""
    return AuthenticatedUser(AccessToken(token="", client_id=principal.key.id, scopes=[], subject=principal.key.id))


async def _run(host: McpHost, call: Call) -> Any:
    pipeline = host.pipeline
    if pipeline is None:
        raise Internal("the hub is not running")
    return await pipeline(call)


async def _peek(receive: Receive) -> tuple[str, Any, Any]:
    """`(method, params, id)` of a JSON-RPC request body (read up to `REFUSED_BODY_LIMIT`); empties when unreadable."""
    try:
        body = await read_body(receive, REFUSED_BODY_LIMIT)
    except PayloadTooLarge:
        return "", None, None
    if not body:
        return "", None, None
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "", None, None
    if not isinstance(message, dict):
        return "", None, None
    method = message.get("method")
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        request_id = None
    return (method if isinstance(method, str) else ""), message.get("params"), request_id


def _session_watch(send: Send, ticket: SessionTicket, manager: StreamableHTTPSessionManager) -> Send:
    """`send`, telling the ticket which session the `initialize` response opened."""

    async def watched(message: Message) -> None:
        if message["type"] == "http.response.start":
            for name, value in message.get("headers", ()):
                if name.lower() == b"mcp-session-id":
                    session_id = value.decode("latin-1")
                    ticket.opened(session_id, functools.partial(live_session, manager, session_id))
        await send(message)

    return watched


async def jsonrpc_error(
    send: Send,
    status: int,
    code: int,
    message: str,
    request_id: Any = None,
    headers: dict[str, str] | None = None,
) -> None:
    """A JSON-RPC error response with an HTTP status."""
    body = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}})
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})

"""Handshake-era MCP sessions that any process serves: the replicas of a PostgreSQL + Redis deployment, and the
workers of `agenthub serve --workers N` on one machine.

Behind a load balancer without sticky sessions, consecutive requests of one client land on different replicas;
on one machine the kernel hands each new connection to whichever worker accepts it. Three things make a session
served everywhere (the text says replica; a worker is one too):

- **Sealed ids** (`hub.doors.mcp_seal`): the id an `initialize` gets carries the session's facts. A replica that
  sees an id for the first time opens it, checks the key and endpoint it is bound to, and rebuilds the session
  locally: a transport under the same id, adopted by the endpoint's SDK session manager (so the SDK's
  same-credential check and the MCP fast path apply as to any session), and a server connection born initialized
  with the client's sealed capabilities, info and protocol version.
- **A relay over a pub/sub channel** (a `SessionBus`: Redis, or the supervisor's) for what cannot be sealed, on
  one channel every replica subscribes to at start: messages a session's server sends outside a request
  (list-changed, resource updates, requests on the GET stream) go to every replica, and the one holding the
  client's GET stream delivers them; the id of every server-to-client request is prefixed with the sending
  replica's instance id, so the client's answer, whichever replica it reaches, is handed to the one replica
  waiting for it.
- **Ended sessions**: `DELETE` records the session's digest on the bus for as long as the id could be used,
  checked on every request (one round trip), and tells every replica to drop its copy.

A single process without Redis uses none of this: the SDK's own session table serves its sessions.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import anyio
import anyio.abc
import orjson
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.connection import Connection
from mcp.server.runner import serve_connection
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.message import SessionMessage
from mcp.shared.transport_context import TransportContext
from mcp_types import (
    InitializeRequestParams,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

from hub.doors.mcp_relay import (
    ID_MARK,
    EndpointSessions,
    Relay,
    SessionBus,
    SessionsUnavailable,
    WriteStream,
    parse_message,
)
from hub.doors.mcp_seal import SessionFacts, SessionSeal
from hub.mcp_sdk import adopt_session, deliver_inbound, drop_session, lifespan_state_of

logger = logging.getLogger(__name__)

SESSION_LIFETIME_S = 24 * 3600.0
"""How long a sealed id opens its session (a client then initializes again, as after any expiry)."""
_RETRY_S = 1.0
"""Pause before resubscribing after the bus went away (not a synchronisation: a reconnection backoff)."""


@dataclass
class _Local:
    """A session this replica serves now: its transport, the write side its server's messages go to, and its
    facts (opened once, when the session started here)."""

    transport: StreamableHTTPServerTransport
    outbound: WriteStream
    facts: SessionFacts


def digest(session_id: str) -> str:
    """A short fixed-length name for a (long) session id on the bus."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:32]


class ClusterSessions:
    """This replica's part of the shared handshake-era sessions (see the module docstring)."""

    def __init__(
        self,
        seal: SessionSeal,
        bus: SessionBus,
        *,
        clock: Callable[[], float] = time.time,
        lifetime: float = SESSION_LIFETIME_S,
    ) -> None:
        self._seal = seal
        self._bus = bus
        self._clock = clock
        self._lifetime = lifetime
        self.instance = secrets.token_hex(6)
        """Names this process in the ids of the server-to-client requests it sends."""
        self._local: dict[str, _Local] = {}
        self._lock = anyio.Lock()

    # -- serving -----------------------------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen on the relay channel for the hub's lifetime (resubscribing after the bus comes back); reports
        started once subscribed, or once the first attempt failed (the hub serves; readiness reports Redis)."""
        try:
            await self._listen(task_status)
        finally:
            with anyio.CancelScope(shield=True):
                await self._bus.aclose()

    async def _listen(self, task_status: anyio.abc.TaskStatus[None]) -> None:
        started = False

        def subscribed() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        while True:
            try:
                await self._bus.listen(subscribed, self._received)
            except SessionsUnavailable as exc:
                logger.warning("MCP session relay: %s; retrying", exc)
            subscribed()
            await anyio.sleep(_RETRY_S)

    def facts_for(self, key_id: str, endpoint: str | None, params: dict[str, Any]) -> SessionFacts:
        """The facts a new session's id seals, from the `initialize` params its client sent."""
        requested = params.get("protocolVersion")
        version = requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
        now = self._clock()
        return SessionFacts(key_id, endpoint, str(version), params, now, now + self._lifetime)

    async def open(
        self,
        endpoint: EndpointSessions,
        facts: SessionFacts,
        owner: AuthorizationContext,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Serve an `initialize`: a new session under a sealed id; discarded again unless it is established."""
        session_id = self._seal.seal(facts)
        local = await self._start(endpoint, session_id, facts, owner, fresh=True)
        status: int | None = None

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await local.transport.handle_request(scope, receive, watched)
        finally:
            if status is None or status >= 400:
                await self._discard(endpoint.manager, session_id, local)

    async def admit(
        self, endpoint: EndpointSessions, session_id: str, key_id: str, owner: AuthorizationContext
    ) -> SessionFacts | None:
        """The facts of a session this key may use on this endpoint, served here from now on (rebuilt if this
        replica has not seen it); None when it opens nothing: unknown, altered, expired, another key's or
        another endpoint's, or deleted.

        Raises:
            SessionsUnavailable: the bus cannot say whether the session was deleted.
        """
        now = self._clock()
        local = self._local.get(session_id)
        facts = local.facts if local is not None else self._seal.open(session_id, now)
        if facts is None or facts.key_id != key_id or facts.endpoint != endpoint.name or facts.expires <= now:
            return None
        if await self._bus.ended(digest(session_id)):
            if local is not None:
                await self._discard(endpoint.manager, session_id, local)
            return None
        if session_id not in self._local:
            async with self._lock:
                if session_id not in self._local:
                    await self._start(endpoint, session_id, facts, owner, fresh=False)
        return facts

    async def answer(self, session_id: str, message: dict[str, Any]) -> None:
        """A client's answer to a server-to-client request: to the replica that sent the request."""
        request_id = message.get("id")
        if isinstance(request_id, str) and request_id.startswith(self.instance + ID_MARK):
            await self._deliver_up(session_id, message)
            return
        await self._publish("up", session_id, message)

    async def end(self, session_id: str, facts: SessionFacts) -> None:
        """The client deleted the session: refused everywhere from now on (every replica drops its copy).

        Raises:
            SessionsUnavailable: the bus cannot record it.
        """
        ttl_ms = max(1, int((facts.expires - self._clock()) * 1000))
        await self._bus.end(digest(session_id), ttl_ms)
        await self._publish("end", session_id, None)

    def serves(self, session_id: str) -> bool:
        return session_id in self._local

    # -- the session's server --------------------------------------------------------------------------------

    async def _start(
        self,
        endpoint: EndpointSessions,
        session_id: str,
        facts: SessionFacts,
        owner: AuthorizationContext,
        *,
        fresh: bool,
    ) -> _Local:
        transport = StreamableHTTPServerTransport(
            mcp_session_id=session_id,
            is_json_response_enabled=False,
            event_store=None,
            security_settings=endpoint.security,
            idle_timeout=endpoint.idle_timeout,
        )
        local: _Local = await endpoint.tasks.start(functools.partial(self._serve, endpoint, transport, facts, fresh))
        adopt_session(endpoint.manager, session_id, transport, owner)
        return local

    async def _serve(
        self,
        endpoint: EndpointSessions,
        transport: StreamableHTTPServerTransport,
        facts: SessionFacts,
        fresh: bool,
        *,
        task_status: anyio.abc.TaskStatus[_Local],
    ) -> None:
        """Run one session's server until the session ends (DELETE, idle timeout, the hub stopping)."""
        session_id = cast(str, transport.mcp_session_id)
        local: _Local | None = None
        try:
            async with transport.connect() as (read_stream, write_stream):
                relay = Relay(write_stream, functools.partial(self._publish, "down", session_id), self.instance)
                dispatcher: JSONRPCDispatcher[TransportContext] = JSONRPCDispatcher(
                    read_stream, relay, inline_methods=frozenset({"initialize"})
                )
                connection = Connection.for_loop(dispatcher, session_id=session_id)
                if not fresh:
                    connection.client_params = _client_params(facts)
                    connection.protocol_version = facts.protocol_version
                    connection.initialized.set()
                local = _Local(transport, write_stream, facts)
                self._local[session_id] = local
                task_status.started(local)
                idle_scope = transport.idle_scope or anyio.CancelScope()
                with idle_scope:
                    await serve_connection(
                        endpoint.server,
                        dispatcher,
                        connection=connection,
                        lifespan_state=lifespan_state_of(endpoint.manager),
                    )
        except Exception:
            logger.exception("MCP session %s crashed", session_id[:16])
        finally:
            if local is not None:
                await self._discard(endpoint.manager, session_id, local)

    async def _discard(self, manager: StreamableHTTPSessionManager, session_id: str, local: _Local) -> None:
        if self._local.get(session_id) is local:
            del self._local[session_id]
        drop_session(manager, session_id, local.transport)
        if not local.transport.is_terminated:
            with anyio.CancelScope(shield=True):
                await local.transport.terminate()

    # -- the relay -----------------------------------------------------------------------------------------------

    async def _publish(self, kind: str, session_id: str, message: dict[str, Any] | None) -> None:
        payload = orjson.dumps({"o": self.instance, "k": kind, "s": session_id, "m": message})
        try:
            await self._bus.publish(payload)
        except SessionsUnavailable as exc:
            logger.warning("MCP session relay: could not publish a %s message (%s)", kind, exc)

    async def _received(self, data: Any) -> None:
        try:
            envelope = orjson.loads(data)
        except (orjson.JSONDecodeError, TypeError):
            return
        if not isinstance(envelope, dict) or envelope.get("o") == self.instance:
            return
        envelope = cast(dict[str, Any], envelope)
        kind, session_id, message = envelope.get("k"), envelope.get("s"), envelope.get("m")
        if not isinstance(session_id, str):
            return
        local = self._local.get(session_id)
        if local is None:
            return
        if kind == "end":
            with anyio.CancelScope(shield=True):
                await local.transport.terminate()
        elif kind == "down" and isinstance(message, dict):
            parsed = parse_message(cast(dict[str, Any], message))
            if parsed is not None:
                try:
                    await local.outbound.send(SessionMessage(parsed))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
        elif kind == "up" and isinstance(message, dict):
            request_id = message.get("id")
            if isinstance(request_id, str) and request_id.startswith(self.instance + ID_MARK):
                await self._deliver_up(session_id, cast(dict[str, Any], message))

    async def _deliver_up(self, session_id: str, message: dict[str, Any]) -> None:
        """Hand an answer to the server that sent the request, under the request's original id."""
        local = self._local.get(session_id)
        if local is None:
            return
        original = orjson.loads(str(message["id"])[len(self.instance) + len(ID_MARK) :])
        parsed = parse_message({**message, "id": original})
        if parsed is not None:
            await deliver_inbound(local.transport, SessionMessage(parsed))


def _client_params(facts: SessionFacts) -> InitializeRequestParams | None:
    try:
        return InitializeRequestParams.model_validate(facts.client, by_name=False)
    except ValidationError:
        return None

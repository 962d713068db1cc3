"""How the MCP transport serves handshake-era sessions that several processes share (`hub.doors.mcp_cluster`).

- With `AGENTHUB_REDIS_URL` set the hub is one of several replicas, and a session opened on one must be served by
  all: its id is sealed with a key derived from `AGENTHUB_MASTER_KEY`, the same on every replica, and the replicas
  relay through Redis (`hub.doors.mcp_bus_redis`). Without that key the replicas cannot trust each other's ids:
  the hub says so in its log when the first MCP request arrives and answers a request for a session it does not
  hold with a 404 that names the missing setting, instead of the anonymous "session not found" a client would
  otherwise get from every replica but one. (The workers of one supervisor still share their sessions then, under
  the supervisor's key.)
- A worker of `agenthub serve --workers N` without Redis relays through its supervisor
  (`hub.doors.mcp_bus_socket`, the socket named by `AGENTHUB_SESSIONS_SOCKET`), and seals ids with
  `AGENTHUB_MASTER_KEY` or, without it, with the key its supervisor made for its run (the file named by
  `AGENTHUB_SESSION_KEY_FILE`): sessions survive a worker's restart and a reload, and end with the supervisor.
- A single process without Redis runs nothing here: the SDK's session table serves its sessions.

`AGENTHUB_REPLICA_NAME`, when set, is sent back on every MCP response as `x-agenthub-replica` (which replica
served a request, for an operator behind a load balancer and for the scale-out tests).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import anyio.abc
import orjson
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from starlette.types import Message, Receive, Scope, Send

from connectors.auth.crypto import MASTER_KEY_ENV
from hub.doors.mcp_fast import read_body, replay_body
from hub.doors.mcp_relay import EndpointSessions, SessionBus, SessionsUnavailable
from hub.mcp_sdk import live_session
from hub.settings import Settings
from hub.store.session_bus import KEY_ENV, SOCKET_ENV

if TYPE_CHECKING:
    from hub.doors.mcp_cluster import ClusterSessions

logger = logging.getLogger(__name__)

REPLICA_ENV = "AGENTHUB_REPLICA_NAME"
REPLICA_HEADER = b"x-agenthub-replica"
NOT_SHARED = (
    f"Session not found: sessions are shared between replicas only when every replica has the same {MASTER_KEY_ENV}"
)
SESSION_NOT_FOUND = "Session not found"
UNAVAILABLE = "MCP sessions are unavailable: the shared session store cannot be reached"


class SharedEndpoint(EndpointSessions, Protocol):
    """An MCP endpoint as the shared sessions see it (with its body limit)."""

    @property
    def max_body(self) -> int: ...


@dataclass
class SharedSessions:
    """Sessions are shared: `cluster` serves them from every process, or is None when Redis is configured but no
    key can seal ids (sessions stay in the process that opened them)."""

    cluster: ClusterSessions | None


async def start_shared(settings: Settings, task_group: anyio.abc.TaskGroup) -> SharedSessions | None:
    """The shared sessions of this hub, listening on their bus in `task_group`; None for a single process
    without Redis."""
    url = settings.redis_url()
    supervised = os.environ.get(SOCKET_ENV)
    if url is None and not supervised:
        return None
    master = os.environ.get(MASTER_KEY_ENV) or _supervisor_key()
    if not master:
        logger.error(
            "AGENTHUB_REDIS_URL is set but %s is not: handshake-era MCP sessions are served only by the replica "
            "that opened them; set %s (the same value on every replica) to serve them from any replica",
            MASTER_KEY_ENV,
            MASTER_KEY_ENV,
        )
        return SharedSessions(None)
    if url is not None and not os.environ.get(MASTER_KEY_ENV):
        logger.error(
            "AGENTHUB_REDIS_URL is set but %s is not: handshake-era MCP sessions are served by the workers of this "
            "machine only; set %s (the same value on every replica) to serve them from any replica",
            MASTER_KEY_ENV,
            MASTER_KEY_ENV,
        )
    from hub.doors.mcp_cluster import ClusterSessions
    from hub.doors.mcp_seal import SessionSeal

    bus: SessionBus
    if url is not None:
        from hub.doors.mcp_bus_redis import RedisBus  # with Redis only: a hub without it never loads its client

        bus = RedisBus.from_url(url)
    else:
        from hub.doors.mcp_bus_socket import SocketBus

        bus = SocketBus(str(supervised))
    cluster = ClusterSessions(SessionSeal(master), bus)
    await task_group.start(cluster.run)
    return SharedSessions(cluster)


def _supervisor_key() -> str | None:
    """The key the supervisor made for its run, when this is one of its workers."""
    path = os.environ.get(KEY_ENV)
    if not path:
        return None
    try:
        with open(path, encoding="ascii") as key:
            return key.read().strip() or None
    except OSError as exc:
        logger.error("cannot read the supervisor's session key: %s", exc)
        return None


class SharedRequest:
    """One handshake-era request on a hub with shared sessions."""

    def __init__(
        self, shared: SharedSessions, endpoint: SharedEndpoint, scope: Scope, key_id: str, user: AuthenticatedUser
    ) -> None:
        self._cluster = shared.cluster
        self._endpoint = endpoint
        self._scope = scope
        self._key_id = key_id
        self._owner = authorization_context(user)

    async def open(self, receive: Receive, send: Send) -> Receive | None:
        """Serve an `initialize` under a sealed id; a `receive` (the body replayed) when the SDK is to answer
        instead (no cluster, or not a well-formed `initialize`), None when answered.

        Raises:
            PayloadTooLarge: the body is larger than the endpoint's limit.
        """
        if self._cluster is None:
            return receive
        body = await read_body(receive, self._endpoint.max_body)
        if body is None:
            return None
        params = _initialize_params(body)
        if params is None:
            return replay_body(body, receive)
        facts = self._cluster.facts_for(self._key_id, self._endpoint.name, params)
        await self._cluster.open(self._endpoint, facts, self._owner, self._scope, replay_body(body, receive), send)
        return None

    async def admit(self, session_id: str | None, receive: Receive, send: Send) -> Receive | None:
        """Make the session served here (or refuse it); a `receive` for the rest of the transport, None when
        answered (a refusal, or a client's answer to a server-to-client request, relayed).

        Raises:
            PayloadTooLarge: the body is larger than the endpoint's limit.
        """
        if session_id is None:
            return receive
        if self._cluster is None:
            if live_session(self._endpoint.manager, session_id):
                return receive
            await _error(send, 404, -32600, NOT_SHARED)
            return None
        try:
            facts = await self._cluster.admit(self._endpoint, session_id, self._key_id, self._owner)
            if facts is not None and self._scope["method"] == "DELETE":
                await self._cluster.end(session_id, facts)
        except SessionsUnavailable as exc:
            logger.warning("MCP sessions: %s", exc)
            await _error(send, 503, -32603, UNAVAILABLE)
            return None
        if facts is None:
            await _error(send, 404, -32600, SESSION_NOT_FOUND)
            return None
        if self._scope["method"] != "POST":
            return receive
        body = await read_body(receive, self._endpoint.max_body)
        if body is None:
            return None
        answer = _client_answer(body)
        if answer is None:
            return replay_body(body, receive)
        await self._cluster.answer(session_id, answer)
        await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return None


def _initialize_params(body: bytes) -> dict[str, Any] | None:
    """The params of an `initialize` request body, or None when the body is something else."""
    message = _json_object(body)
    if message is None or message.get("method") != "initialize" or "id" not in message:
        return None
    params = message.get("params")
    return cast(dict[str, Any], params) if isinstance(params, dict) else None


def _client_answer(body: bytes) -> dict[str, Any] | None:
    """A client's JSON-RPC response (to a server-to-client request), or None when the body is something else."""
    if b'"method"' in body:
        return None
    message = _json_object(body)
    if message is None or "method" in message or "id" not in message:
        return None
    return message if ("result" in message) != ("error" in message) else None


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return cast(dict[str, Any], message) if isinstance(message, dict) else None


async def _error(send: Send, status: int, code: int, message: str) -> None:
    body = orjson.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def replica_header() -> tuple[bytes, bytes] | None:
    """The response header naming this replica, when `AGENTHUB_REPLICA_NAME` is set."""
    name = os.environ.get(REPLICA_ENV)
    return (REPLICA_HEADER, name.encode("latin-1")) if name else None


def with_header(send: Send, header: tuple[bytes, bytes]) -> Send:
    """`send`, adding `header` to the response's start."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), header]}
        await send(message)

    return sending

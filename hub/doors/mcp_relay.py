"""The write side of a shared MCP session's server (`hub.doors.mcp_cluster`): what goes to this replica's
transport, what also goes to the other replicas, and how server-to-client request ids name their replica; and what
the shared sessions need of an endpoint (kept here, apart from the Redis client, so a hub without Redis never
loads it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types import JSONRPCError, JSONRPCMessage, JSONRPCRequest, JSONRPCResponse, jsonrpc_message_adapter
from pydantic import ValidationError

if TYPE_CHECKING:
    import anyio.abc
    from mcp.server import Server
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings

ID_MARK = "~"
"""Separates the instance id from the original id of a server-to-client request on the wire."""


class WriteStream(Protocol):
    """The send side of a session's message stream (the SDK's transport yields one)."""

    async def send(self, item: SessionMessage, /) -> None: ...

    async def aclose(self) -> None: ...


class Relay:
    """A session server's write stream: what answers or relates to a request goes to the local transport (the
    request's stream is here); what does not also goes to every other replica, for the one holding the client's
    GET stream. Each server-to-client request's id gets this replica's prefix (see `ClusterSessions.answer`)."""

    def __init__(
        self,
        inner: WriteStream,
        publish: Callable[[dict[str, Any] | None], Awaitable[None]],
        instance: str,
    ) -> None:
        self._inner = inner
        self._publish = publish
        self._prefix = instance + ID_MARK

    async def send(self, item: SessionMessage, /) -> None:
        message = item.message
        if isinstance(message, JSONRPCRequest):
            wire_id = self._prefix + orjson.dumps(message.id).decode()
            message = message.model_copy(update={"id": wire_id})
            item = SessionMessage(message, item.metadata)
        await self._inner.send(item)
        if not related(item):
            await self._publish(message.model_dump(by_alias=True, mode="json", exclude_unset=True))

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> Relay:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> bool | None:
        await self.aclose()
        return None


def related(item: SessionMessage) -> bool:
    """Whether a server message goes on a request's own stream (a response, or tied to the request it serves)."""
    if isinstance(item.message, JSONRPCResponse | JSONRPCError) and item.message.id is not None:
        return True
    metadata = item.metadata
    return isinstance(metadata, ServerMessageMetadata) and metadata.related_request_id is not None


def parse_message(raw: dict[str, Any]) -> JSONRPCMessage | None:
    """A relayed JSON-RPC message, or None when it is not one (what comes over Redis is checked like any input)."""
    try:
        return jsonrpc_message_adapter.validate_python(raw, by_name=False)
    except ValidationError:
        return None


class SessionsUnavailable(Exception):
    """The session bus (Redis, or the supervisor's) cannot be reached, so whether a session was deleted cannot be
    known (the request is refused)."""


class SessionBus(Protocol):
    """What the shared sessions need between the processes that serve them: one pub/sub channel and the set of
    ended sessions. Redis provides it between replicas (`hub.doors.mcp_bus_redis`), the supervisor between the
    workers of one machine (`hub.doors.mcp_bus_socket`); the sessions' code is the same on both."""

    async def listen(self, subscribed: Callable[[], None], deliver: Callable[[bytes], Awaitable[None]]) -> None:
        """Subscribe to the channel, call `subscribed` once it is, then `deliver` each message published from then
        on (this process's own included) until the subscription breaks.

        Raises:
            SessionsUnavailable: the subscription could not be made, or broke.
        """
        ...

    async def publish(self, payload: bytes) -> None:
        """Send `payload` to every subscriber.

        Raises:
            SessionsUnavailable: it could not be sent.
        """
        ...

    async def ended(self, name: str) -> bool:
        """Whether the session named `name` (a digest of its id) was ended.

        Raises:
            SessionsUnavailable: nobody can say.
        """
        ...

    async def end(self, name: str, ttl_ms: int) -> None:
        """Record that the session named `name` ended, for `ttl_ms` (as long as its id could be used).

        Raises:
            SessionsUnavailable: it could not be recorded.
        """
        ...

    async def aclose(self) -> None: ...


class EndpointSessions(Protocol):
    """What the relay needs of one MCP endpoint (`/mcp` or `/mcp/{server}`)."""

    @property
    def name(self) -> str | None:
        """The server of `/mcp/{server}`, None for `/mcp`."""
        ...

    @property
    def manager(self) -> StreamableHTTPSessionManager: ...

    @property
    def server(self) -> Server[Any]: ...

    @property
    def security(self) -> TransportSecuritySettings: ...

    @property
    def idle_timeout(self) -> float | None: ...

    @property
    def tasks(self) -> anyio.abc.TaskGroup: ...

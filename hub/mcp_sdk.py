"""The one place that reads private internals of the `mcp` SDK (pinned in pyproject.toml).

Each function below names what it relies on; `tests/hub/test_mcp_sdk_adapter.py` checks every one against the
installed SDK, so an upgrade that moves them fails loudly there instead of misbehaving at run time.

- `connection_of(session)`: the SDK's per-client `Connection` behind a `ServerSession` (`session._connection`):
  its `state` dict, `exit_stack` and `outbound` notifier, which the door uses for per-connection log levels,
  resource subscriptions and list-changed notifications.
- `live_session` and `live_owner`: the session manager's table of
  handshake-era sessions (`_server_instances`) and of the identity each was opened by (`_session_owners`), which
  the MCP fast path and the per-key session cap read.
- `served_methods(server)`: the JSON-RPC methods a low-level `Server` answers (`_request_handlers`).
- `request_id_of(session)`: the JSON-RPC id of the request a `ServerSession` serves (`_request_outbound`), which a
  per-client upstream's requests and log messages to the client are related to.
- `adopt_session` and `drop_session`: the same two tables, written, so that a session the hub opened (or rebuilt
  from a sealed id, `hub.doors.mcp_cluster`) is served by the manager like one it opened itself;
  `lifespan_state_of(manager)`: the server lifespan's state the manager entered once (`_lifespan_state`), which such
  a session is served with.
- `deliver_inbound(transport, message)`: hands a client message to a session's server as if it had arrived on the
  transport (`_read_stream_writer`): a client's answer to a server-to-client request that reached another replica.

Nothing else in the tree reads a private name of the SDK; docs/performance.md says what these reads are for.
"""

from __future__ import annotations

from typing import Any

import anyio
from mcp.server import Server
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.session import ServerSession
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.message import SessionMessage


def connection_of(session: ServerSession) -> Any:
    """The `Connection` of a server session (per client, lives as long as its session)."""
    return session._connection


def live_owner(manager: StreamableHTTPSessionManager, session_id: str) -> str | None:
    """The client id (virtual key id) a live handshake-era session was opened by, or None (no such session)."""
    transport = manager._server_instances.get(session_id)
    if transport is None or transport.is_terminated:
        return None
    owner = manager._session_owners.get(session_id)
    return None if owner is None else owner.get("client_id")


def live_session(manager: StreamableHTTPSessionManager, session_id: str) -> bool:
    """Whether the manager still serves this handshake-era session."""
    transport = manager._server_instances.get(session_id)
    return transport is not None and not transport.is_terminated


def request_id_of(session: ServerSession) -> Any:
    """The id of the client request `session` serves, or None when its channel carries none."""
    return getattr(session._request_outbound, "request_id", None)


def served_methods(server: Server[Any]) -> set[str]:
    """The request methods `server` has a handler for (the SDK's own and the ones registered on it)."""
    return set(server._request_handlers)


def adopt_session(
    manager: StreamableHTTPSessionManager,
    session_id: str,
    transport: StreamableHTTPServerTransport,
    owner: AuthorizationContext,
) -> None:
    """Make the manager serve `session_id` with `transport`, to `owner` only (as if it had opened it)."""
    manager._session_owners[session_id] = owner
    manager._server_instances[session_id] = transport


def drop_session(
    manager: StreamableHTTPSessionManager, session_id: str, transport: StreamableHTTPServerTransport
) -> None:
    """Forget `session_id` if `transport` still serves it (a later session under the same id stays)."""
    if manager._server_instances.get(session_id) is transport:
        del manager._server_instances[session_id]
        manager._session_owners.pop(session_id, None)


def lifespan_state_of(manager: StreamableHTTPSessionManager) -> Any:
    """The state of the server lifespan the running manager entered."""
    return manager._lifespan_state


async def deliver_inbound(transport: StreamableHTTPServerTransport, message: SessionMessage) -> bool:
    """Hand `message` to the session's server as if the client had sent it on this transport; False when the
    transport is not connected (any more)."""
    writer = transport._read_stream_writer
    if writer is None or transport.is_terminated:
        return False
    try:
        await writer.send(message)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        return False
    return True

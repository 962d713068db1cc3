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

Nothing else in the tree reads a private name of the SDK; docs/performance.md says what these reads are for.
"""

from __future__ import annotations

from typing import Any

from mcp.server import Server
from mcp.server.session import ServerSession
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager


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

"""Upstream sessions per downstream client, for servers configured with `session = "per_client"`.

Such a server keeps per-client state or asks the client for sampling, elicitation or roots, so each downstream
MCP session gets its own upstream session, declared with exactly the capabilities that client declared and in
the client's protocol era (a handshake-era client gets a handshake-era upstream session, where the upstream
may send server-to-client requests and log messages). Server-to-client requests and log messages from the
upstream go to the downstream client on the stream of the call in flight; a client without the capability
gets the spec's `method not found` answer; log messages below the level the client set with
`logging/setLevel` are dropped. The upstream session closes with the downstream session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import httpx2
import mcp_types as types
from mcp.client.session import ClientRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from connectors.registry import Registry
from connectors.upstream import ClientCallbacks, Upstream
from hub.call import Call
from hub.errors import UpstreamFailed
from hub.mcp_sdk import connection_of, request_id_of

logger = logging.getLogger(__name__)
STATE_KEY = "agenthub.upstreams"
LOG_LEVEL_KEY = "agenthub.log_level"
"""Where the door keeps the level a handshake-era client set with `logging/setLevel` (connection state)."""
LOG_LEVELS: tuple[types.LoggingLevel, ...] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)


class _Downstream:
    """The downstream session a per-client upstream talks back to, updated on every call."""

    def __init__(self, session: ServerSession) -> None:
        self.session = session

    def supports(self, caps: types.ClientCapabilities) -> bool:
        return self.session.check_client_capability(caps)

    def request_id(self) -> Any:
        return request_id_of(self.session)

    async def forward(self, request: Any, result_type: type[Any]) -> Any:
        meta = None
        request_id = self.request_id()
        if request_id is not None:
            meta = ServerMessageMetadata(related_request_id=request_id)
        return await self.session.send_request(request, result_type, metadata=meta)

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        """Pass an upstream log message on, unless it is below the level the client asked for."""
        wanted = connection_of(self.session).state.get(LOG_LEVEL_KEY, "debug")
        if LOG_LEVELS.index(params.level) < LOG_LEVELS.index(wanted):
            return
        notification = types.LoggingMessageNotification(params=params)
        try:
            await self.session.send_notification(notification, related_request_id=self.request_id())
        except Exception as exc:
            logger.info("passing a log message to the client failed: %s", exc)


class PerClientUpstreams:
    """Creates, reuses and closes per-client upstream sessions."""

    def __init__(
        self,
        registry: Registry,
        task_group: anyio.abc.TaskGroup,
        http_auth: Callable[[Call, str], httpx2.Auth | None] | None = None,
    ) -> None:
        """`http_auth(call, server)` gives a new session its credentials (the caller's own on per-user upstreams)."""
        self._registry = registry
        self._tg = task_group
        self._http_auth = http_auth

    async def upstream_for(self, call: Call, server: str) -> Upstream:
        shared = self._registry.upstreams.get(server)
        if shared is None:
            raise UpstreamFailed(f"server '{server}' is not configured")
        downstream_session: ServerSession | None = call.context.get("downstream")
        if shared.config.session != "per_client" or downstream_session is None:
            return shared
        connection = connection_of(downstream_session)
        state: dict[str, tuple[Upstream, _Downstream]] = connection.state.setdefault(STATE_KEY, {})
        found = state.get(server)
        if found is not None:
            found[1].session = downstream_session
            upstream = found[0]
        else:
            downstream = _Downstream(downstream_session)
            modern = downstream_session.protocol_version in MODERN_PROTOCOL_VERSIONS
            mode = "auto" if modern else "legacy"
            auth = self._http_auth(call, server) if self._http_auth is not None else shared.http_auth
            upstream = Upstream(shared.config, callbacks=_callbacks(downstream), mode=mode, http_auth=auth)
            state[server] = (upstream, downstream)
            self._tg.start_soon(upstream.run, name=f"upstream:{server}:client")
            connection.exit_stack.callback(upstream.stop)
        if not await upstream.wait_ready(shared.config.connect_timeout_s):
            raise UpstreamFailed(f"upstream '{server}' is not available: {upstream.health.error or 'connecting'}")
        return upstream


def _callbacks(downstream: _Downstream) -> ClientCallbacks:
    caps = connection_of(downstream.session).client_capabilities or types.ClientCapabilities()

    async def sampling(context: ClientRequestContext, params: types.CreateMessageRequestParams) -> Any:
        if not downstream.supports(types.ClientCapabilities(sampling=types.SamplingCapability())):
            return types.ErrorData(code=types.METHOD_NOT_FOUND, message="the client does not support sampling")
        return await _relay(downstream, types.CreateMessageRequest(params=params), types.CreateMessageResult)

    async def elicitation(context: ClientRequestContext, params: types.ElicitRequestParams) -> Any:
        if not downstream.supports(types.ClientCapabilities(elicitation=types.ElicitationCapability())):
            return types.ErrorData(code=types.METHOD_NOT_FOUND, message="the client does not support elicitation")
        return await _relay(downstream, types.ElicitRequest(params=params), types.ElicitResult)

    async def roots(context: ClientRequestContext) -> Any:
        if not downstream.supports(types.ClientCapabilities(roots=types.RootsCapability())):
            return types.ErrorData(code=types.METHOD_NOT_FOUND, message="the client does not support roots")
        return await _relay(downstream, types.ListRootsRequest(), types.ListRootsResult)

    return ClientCallbacks(
        sampling=sampling if caps.sampling is not None else None,
        elicitation=elicitation if caps.elicitation is not None else None,
        roots=roots if caps.roots is not None else None,
        logging=downstream.log,
    )


async def _relay(downstream: _Downstream, request: Any, result_type: type[Any]) -> Any:
    try:
        return await downstream.forward(request, result_type)
    except MCPError as exc:
        return exc.error
    except Exception as exc:
        logger.warning("relaying %s to the client failed: %s", request.method, exc)
        return types.ErrorData(code=types.INTERNAL_ERROR, message="the client did not answer")

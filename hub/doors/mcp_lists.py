"""List-changed notifications, per key: a client hears that a list changed only when what its key sees changed.

Every MCP session is tracked in a group: one endpoint (a door: `/mcp`, `/mcp/{server}`, any other that can say what
a principal sees) and one caller (a key, or the credential of the embedded stdio door). A group keeps a fingerprint
of each list its caller sees there (`tools`, `prompts`, and `resources` with the resource templates, which MCP
announces as resources). `ListChanges.recheck` runs after anything that can change a visible catalog (an
upstream's list change, a run-time server added or removed, a pin approved: all of which change the registry; a
key's grants changed: a new key ring), here or in another process (the change log's followers end in the same two
places). It rebuilds each group's fingerprints and tells the group's sessions of exactly the kinds whose
fingerprint moved: a change a key cannot see sends nothing to that key's sessions, and a session on
`/mcp/{server}` only hears of that server's entries.

Two kinds of session listen:

- handshake-era sessions (and the stdio door's) get `notifications/{kind}/list_changed` on their connection's
  standalone stream; they join their group on their first request the SDK serves (`initialize`);
- 2026-07-28 clients open `subscriptions/listen` (`ListenHandler`), whose response stream carries the
  notifications they asked for, stamped with the subscription id; the stream is one session of the group while it
  is open. Resource-update subscriptions are not offered on that stream (the ack leaves them out, and the
  capability says so).

`send_list_changed(sessions, kinds)` is the one entry point that notifies: other endpoints call it for their own
sessions; `recheck` is built on it.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import anyio
import mcp_types as types
import orjson
from anyio.streams.memory import MemoryObjectSendStream
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import (
    SUBSCRIPTION_ID_META_KEY,
    PromptsListChanged,
    ResourcesListChanged,
    ServerEvent,
    ToolsListChanged,
    event_to_notification,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from hub.call import Principal
from hub.governance.keys import VirtualKey

logger = logging.getLogger(__name__)

Kind = Literal["tools", "prompts", "resources"]
LIST_KINDS: tuple[Kind, ...] = ("tools", "prompts", "resources")
CHANGED_METHODS: dict[Kind, str] = {
    "tools": "notifications/tools/list_changed",
    "prompts": "notifications/prompts/list_changed",
    "resources": "notifications/resources/list_changed",
}
_EVENTS: dict[Kind, ServerEvent] = {
    "tools": ToolsListChanged(),
    "prompts": PromptsListChanged(),
    "resources": ResourcesListChanged(),
}
Source = Literal["tools", "prompts", "resources", "templates"]
SOURCES: dict[Kind, tuple[Source, ...]] = {
    "tools": ("tools",),
    "prompts": ("prompts",),
    "resources": ("resources", "templates"),
}
"""The lists behind each notification: MCP has none for resource templates, whose changes `resources` announces."""
_FIELDS: dict[Source, str] = {
    "tools": "tools",
    "prompts": "prompts",
    "resources": "resources",
    "templates": "resourceTemplates",
}
ALL_CHANGES = NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)
SESSION_STATE_KEY = "agenthub.list_session"
"""Where a handshake-era connection keeps its `ConnectionSession` (it lives exactly as long as the connection)."""
LISTEN_BUFFER = 8
"""Notifications one listen stream may have queued; a client that stops reading loses its stream (it re-listens
and refetches, as the spec's no-replay rule has it). Each kind is queued at most once, so 3 is the real need."""


class ListSession(Protocol):
    """One client that can be told that lists changed."""

    async def list_changed(self, kinds: frozenset[Kind]) -> None:
        """Tell the client that these lists changed. Never raises; returns without waiting for the client."""
        ...


class ListEndpoint(Protocol):
    """An MCP endpoint: what a principal sees of each list there (anything comparable, None for nothing)."""

    def visible(self, kind: Source, principal: Principal) -> Any: ...


async def send_list_changed(sessions: Iterable[ListSession], kinds: Iterable[Kind]) -> None:
    """Tell each of `sessions` that the lists of `kinds` changed. The sessions are told side by side: a handshake-era
    notification is written to the client's stream before `notify` returns, and one slow client must not hold up
    the others."""
    changed = frozenset(kinds)
    if not changed:
        return
    async with anyio.create_task_group() as tg:
        for session in list(sessions):
            tg.start_soon(session.list_changed, changed)


def fingerprint(listing: Any, kind: Source) -> int | None:
    """A fingerprint of one list result (None: nothing visible)."""
    if listing is None:
        return None
    entries = listing.get(_FIELDS[kind]) if isinstance(listing, dict) else listing
    return hash(orjson.dumps(entries))


# -- sessions ----------------------------------------------------------------------------------------------------


class ConnectionSession:
    """A handshake-era client connection (or the stdio door's): notified on its standalone stream."""

    __slots__ = ("__weakref__", "_connection")

    def __init__(self, connection: Any) -> None:
        self._connection = weakref.ref(connection)  # the connection holds this object: no cycle through it

    async def list_changed(self, kinds: frozenset[Kind]) -> None:
        connection = self._connection()
        if connection is None:
            return
        for kind in LIST_KINDS:
            if kind in kinds:
                try:
                    await connection.outbound.notify(CHANGED_METHODS[kind], None)
                except Exception:  # noqa: S112 - a gone client must not stop the others' notifications
                    continue


class ListenSession:
    """One open `subscriptions/listen` stream: queues the kinds it asked for; `ListenHandler` writes them out."""

    __slots__ = ("__weakref__", "_pending", "_send", "wanted")

    def __init__(self, wanted: frozenset[Kind], send: MemoryObjectSendStream[Kind]) -> None:
        self.wanted = wanted
        self._send = send
        self._pending: set[Kind] = set()

    async def list_changed(self, kinds: frozenset[Kind]) -> None:
        for kind in LIST_KINDS:
            if kind in kinds and kind in self.wanted and kind not in self._pending:
                try:
                    self._send.send_nowait(kind)
                except anyio.WouldBlock:
                    logger.warning("a subscriptions/listen stream stopped reading; ending it")
                    self._send.close()
                    return
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return
                self._pending.add(kind)

    def sent(self, kind: Kind) -> None:
        self._pending.discard(kind)


# -- the groups --------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Group:
    endpoint: ListEndpoint
    principal: Principal | None
    credential: str | None
    sessions: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet[Any])
    prints: dict[Kind, int | None] = field(default_factory=dict[Kind, "int | None"])
    seen: dict[Source, tuple[Any, int | None]] = field(default_factory=dict[Source, "tuple[Any, int | None]"])
    """The list results the prints were taken of: the hub's list cache hands out the same object while a list is
    unchanged, so a recheck after a change that touched nothing of this caller's hashes nothing."""


class ListChanges:
    """The hub's sessions by endpoint and caller, and what each caller saw last of each list."""

    def __init__(
        self,
        key_now: Callable[[str], VirtualKey | None] | None = None,
        verify: Callable[[str], Principal | None] | None = None,
    ) -> None:
        """`key_now(key_id)` is a key as it is now (None once revoked; without it keys never change);
        `verify(credential)` the principal of a credential (the stdio door's callers come with one, not with a
        verified principal)."""
        self._key_now = key_now
        self._verify = verify
        self._groups: dict[tuple[int, str, Any], _Group] = {}
        self._by_session: weakref.WeakKeyDictionary[Any, tuple[int, str, Any]] = weakref.WeakKeyDictionary()

    def __len__(self) -> int:
        return sum(len(g.sessions) for g in self._groups.values())

    def join(
        self, session: ListSession, endpoint: ListEndpoint, principal: Principal | None, credential: str | None
    ) -> None:
        """Track `session`, a client of `endpoint` calling as `principal` (or with `credential`)."""
        if session in self._by_session:
            return
        if principal is not None:
            caller: Any = (principal.key.id, id(principal.narrowing) if principal.narrowing is not None else None)
            group_key = (id(endpoint), "key", caller)
        elif credential is not None:
            group_key = (id(endpoint), "credential", credential)
        else:
            return
        group = self._groups.get(group_key)
        if group is None:
            group = self._groups[group_key] = _Group(endpoint, principal, credential)
            group.prints = self._prints(group)
        group.sessions.add(session)
        self._by_session[session] = group_key

    def join_connection(
        self, connection: Any, endpoint: ListEndpoint, principal: Principal | None, credential: str | None
    ) -> None:
        """Track a handshake-era connection (idempotent: called on every request the SDK serves)."""
        state: dict[str, Any] = connection.state
        if SESSION_STATE_KEY in state:
            return
        session = state[SESSION_STATE_KEY] = ConnectionSession(connection)
        self.join(session, endpoint, principal, credential)

    def leave(self, session: ListSession) -> None:
        group_key = self._by_session.pop(session, None)
        group = self._groups.get(group_key) if group_key is not None else None
        if group is not None:
            group.sessions.discard(session)

    async def recheck(self, endpoint: ListEndpoint | None = None) -> int:
        """Compare what every caller sees now (of `endpoint` only, if given) with what it saw, and tell the sessions
        of each caller whose lists changed; returns how many sessions were told."""
        told = 0
        for group_key, group in list(self._groups.items()):
            if endpoint is not None and group.endpoint is not endpoint:
                continue
            if not group.sessions:
                del self._groups[group_key]
                continue
            prints = self._prints(group)
            changed: list[Kind] = [kind for kind in LIST_KINDS if prints[kind] != group.prints.get(kind)]
            group.prints = prints
            if changed:
                sessions = list(group.sessions)
                told += len(sessions)
                await send_list_changed(sessions, changed)
        return told

    def forget(self, endpoint: ListEndpoint) -> None:
        """An endpoint went away (its server was removed): its sessions are no longer tracked."""
        for group_key in [k for k, g in self._groups.items() if g.endpoint is endpoint]:
            del self._groups[group_key]

    def _prints(self, group: _Group) -> dict[Kind, int | None]:
        principal = self._caller(group)
        if principal is None:
            return dict.fromkeys(LIST_KINDS, None)
        try:
            prints: dict[Kind, int | None] = {}
            for kind in LIST_KINDS:
                parts: list[int | None] = []
                for source in SOURCES[kind]:
                    listing = group.endpoint.visible(source, principal)
                    seen = group.seen.get(source)
                    if seen is None or seen[0] is not listing or listing is None:
                        seen = group.seen[source] = (listing, fingerprint(listing, source))
                    parts.append(seen[1])
                prints[kind] = None if all(p is None for p in parts) else hash(tuple(parts))
            return prints
        except Exception:
            logger.exception("reading a caller's lists failed; its clients are told that they changed")
            return {kind: id(group) ^ hash(kind) for kind in LIST_KINDS}

    def _caller(self, group: _Group) -> Principal | None:
        if group.principal is not None:
            if self._key_now is None:
                return group.principal
            key = self._key_now(group.principal.key.id)
            return None if key is None else group.principal.with_key(key)
        if group.credential is None or self._verify is None:
            return None
        return self._verify(group.credential)


# -- the SDK side ------------------------------------------------------------------------------------------------


class ListingServer(Server[Any]):
    """The SDK's low-level server, advertising the list changes the hub sends.

    Handshake-era sessions opened by the Streamable HTTP session manager take the server's default initialization
    options, which say `listChanged: false`; here the default says true for tools, prompts and resources. On
    2026-07-28 the SDK derives `listChanged` (and `resources.subscribe`) from `subscriptions/listen` being served;
    the hub's listen streams carry list changes only, so `resources.subscribe` stays false there.
    """

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or ALL_CHANGES, experimental_capabilities, extensions
        )

    def get_capabilities(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
        *,
        protocol_version: str | None = None,
    ) -> types.ServerCapabilities:
        capabilities = super().get_capabilities(
            notification_options, experimental_capabilities, extensions, protocol_version=protocol_version
        )
        resources = capabilities.resources
        if protocol_version in MODERN_PROTOCOL_VERSIONS and resources is not None and resources.subscribe:
            resources = resources.model_copy(update={"subscribe": False})
            capabilities = capabilities.model_copy(update={"resources": resources})
        return capabilities


Identity = Callable[[ServerRequestContext[Any, Any]], tuple[Principal | None, str | None]]


class ListenHandler:
    """Serves 2026-07-28 `subscriptions/listen` for one endpoint: the acknowledgement first, then the list changes
    the client asked for, as long as it keeps the stream open."""

    def __init__(self, changes: ListChanges, endpoint: ListEndpoint, identity: Identity) -> None:
        self._changes = changes
        self._endpoint = endpoint
        self._identity = identity

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        subscription_id = ctx.request_id
        if subscription_id is None:
            raise MCPError(types.INVALID_REQUEST, "subscriptions/listen requires a request id")
        asked = params.notifications
        flags: tuple[tuple[Kind, bool | None], ...] = (
            ("tools", asked.tools_list_changed),
            ("prompts", asked.prompts_list_changed),
            ("resources", asked.resources_list_changed),
        )
        wanted: frozenset[Kind] = frozenset(kind for kind, flag in flags if flag)
        honored = types.SubscriptionFilter(
            tools_list_changed=True if "tools" in wanted else None,
            prompts_list_changed=True if "prompts" in wanted else None,
            resources_list_changed=True if "resources" in wanted else None,
        )
        meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: subscription_id}
        send, receive = anyio.create_memory_object_stream[Kind](LISTEN_BUFFER)
        session = ListenSession(wanted, send)
        principal, credential = self._identity(ctx)
        self._changes.join(session, self._endpoint, principal, credential)  # before the ack: nothing is missed
        try:
            await ctx.session.send_notification(
                types.SubscriptionsAcknowledgedNotification(
                    params=types.SubscriptionsAcknowledgedNotificationParams(notifications=honored, _meta=meta)
                ),
                related_request_id=subscription_id,
            )
            async with receive:
                async for kind in receive:
                    session.sent(kind)
                    notification = event_to_notification(_EVENTS[kind], meta)
                    await ctx.session.send_notification(notification, related_request_id=subscription_id)
        finally:
            self._changes.leave(session)
            send.close()
        return types.SubscriptionsListenResult(_meta=meta)

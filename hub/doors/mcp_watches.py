"""Handshake-era resource subscriptions of one MCP door's clients.

`ResourceWatches` keeps, per `(server, upstream URI)`, the client connections subscribed to it (weakly) and the URI
they know it by, and holds one upstream subscription for them all: the first subscriber makes it, the last one to
leave (unsubscribing or disconnecting) releases it. An upstream's update goes to every connection still subscribed.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from hub.errors import HubError

ResourceSubscriber = Callable[[str, str], Awaitable[None]]
"""`(server, upstream URI)`: hold (or release) one subscription to the upstream's updates of a resource."""
WatchKey = tuple[str, str]
"""`(server, upstream URI)`."""
_WATCHED_KEY = "agenthub.resource_watches"
"""Connection state: the watch sets that release this connection's subscriptions when it closes."""


@dataclass
class _Watch:
    """The clients subscribed to one upstream resource, and the URI they know it by."""

    shown: str
    connections: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet[Any])


class ResourceWatches:
    """One door's resource subscriptions (see the module docstring)."""

    def __init__(self, subscribe: ResourceSubscriber, unsubscribe: ResourceSubscriber) -> None:
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self._watches: dict[WatchKey, _Watch] = {}
        self._lock = anyio.Lock()

    async def add(self, key: WatchKey, shown: str, connection: Any) -> None:
        """Subscribe a client connection (an SDK `Connection`) to a resource; `shown` is the URI it used.

        Raises:
            HubError: the upstream subscription could not be made (nothing is held then).
        """
        async with self._lock:
            watch = self._watches.get(key)
            if watch is None:
                await self._subscribe(*key)
                watch = self._watches[key] = _Watch(shown)
            watch.connections.add(connection)
        owners: set[int] = connection.state.setdefault(_WATCHED_KEY, set())
        if id(self) not in owners:
            owners.add(id(self))
            connection.exit_stack.push_async_callback(self._connection_closed, connection)

    async def remove(self, key: WatchKey, connection: Any) -> None:
        """Unsubscribe a client connection (nothing happens if it was not subscribed)."""
        async with self._lock:
            watch = self._watches.get(key)
            if watch is not None:
                watch.connections.discard(connection)
                await self._release_if_idle(key, watch)

    async def _release_if_idle(self, key: WatchKey, watch: _Watch) -> None:
        """Drop the upstream subscription of a watch no client holds any more (call with the lock held)."""
        if len(watch.connections) or self._watches.get(key) is not watch:
            return
        del self._watches[key]
        try:
            await self._unsubscribe(*key)
        except HubError:
            return

    async def _connection_closed(self, connection: Any) -> None:
        """A client went away: release its subscriptions."""
        with anyio.CancelScope(shield=True):
            async with self._lock:
                for key, watch in list(self._watches.items()):
                    watch.connections.discard(connection)
                    await self._release_if_idle(key, watch)

    def counts(self) -> dict[WatchKey, int]:
        """`(server, upstream URI)` -> how many clients are subscribed."""
        return {key: len(watch.connections) for key, watch in self._watches.items()}

    async def updated(self, server: str, uri: str) -> None:
        """An upstream reported `notifications/resources/updated`: tell the subscribed clients."""
        key = (server, uri)
        watch = self._watches.get(key)
        if watch is None:
            return
        connections = list(watch.connections)
        if not connections:
            async with self._lock:
                await self._release_if_idle(key, watch)
            return
        for connection in connections:
            try:
                await connection.outbound.notify("notifications/resources/updated", {"uri": watch.shown})
            except Exception:  # noqa: S112 - a gone client must not stop the others' notifications
                continue

"""Virtual servers added at run time: the stored ones applied to the running hub, here and in every other process.

The config file's virtual servers are fixed for the process's life; the admin API's are stored
(`hub.store.virtual_tables`), applied at once by the process that made the change, and by every other process when
it sees the change in the change log (`follow`). A stored virtual server of a config file's name is shadowed (and
logged). After a change, the sessions of the virtual servers it touched are told that their lists changed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import anyio
import anyio.to_thread
import orjson
from pydantic import ValidationError

from hub.doors.mcp_virtual import VirtualServers
from hub.settings import VirtualServerConfig
from hub.store.virtual_tables import VirtualServerStore

logger = logging.getLogger(__name__)

Touched = Callable[[list[str]], Awaitable[None]]
"""What to do after the virtual servers of these names changed (tell their sessions)."""


class VirtualCatalog:
    """Keeps a hub's `VirtualServers` in step with the stored ones."""

    def __init__(
        self, servers: VirtualServers, configured: Mapping[str, VirtualServerConfig], store: VirtualServerStore
    ) -> None:
        self.servers = servers
        self.configured = dict(configured)
        self.store = store
        self.stored: dict[str, VirtualServerConfig] = {}
        self._lock = anyio.Lock()

    def read(self) -> dict[str, VirtualServerConfig]:
        """The stored virtual servers that are valid and not shadowed by the config file (blocking)."""
        out: dict[str, VirtualServerConfig] = {}
        for row in self.store.rows():
            if row.name in self.configured:
                logger.warning("stored virtual server %r is shadowed by the config file's of that name", row.name)
                continue
            try:
                out[row.name] = VirtualServerConfig.model_validate(orjson.loads(row.config))
            except (ValidationError, orjson.JSONDecodeError):
                logger.exception("stored virtual server %r is invalid; skipped", row.name)
        return out

    async def apply(self, touched: Touched | None = None) -> list[str]:
        """Make the running virtual servers match the stored ones; the names that changed."""
        async with self._lock:
            wanted = await anyio.to_thread.run_sync(self.read)
            changed: list[str] = []
            for name, config in wanted.items():
                if self.stored.get(name) != config:
                    self.servers.put(name, config)
                    changed.append(name)
            for name in [n for n in self.stored if n not in wanted]:
                self.servers.remove(name)
                changed.append(name)
            self.stored = wanted
        if changed and touched is not None:
            await touched(changed)
        return changed

    def source(self, name: str) -> str | None:
        """`config` or `api` for a known virtual server, None for an unknown one."""
        if name in self.configured:
            return "config"
        return "api" if name in self.stored else None

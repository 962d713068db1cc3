"""Tool pinning: the defence against an upstream that changes a tool after it was approved (a "rug pull").

When an admin approves a server (`POST /api/v1/servers/{name}/approve`, or `pin = true` on its `[servers.NAME]`
table, which approves the definitions first seen), the SHA-256 of each tool's whole definition in canonical JSON
(sorted keys, no whitespace) is stored in the database. From then on the registry exposes only the tools whose
current definition has the pinned hash: a changed description or schema, or a tool that was not there at approval,
is held back from every key (absent from `tools/list`, unknown to `tools/call`, on every door and both MCP paths)
until an admin approves the server again. Each definition held back is written to the audit log once per process.

`ToolPins` plugs into the registry as its `tool_filter`, so the hold-back happens where the view is built and
every lookup (door lists, authz, executor, Code Mode) sees the same thing.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import mcp_types as types
import orjson
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from connectors.registry import Registry, RegistryView
from hub.audit.chain import AuditEvent
from hub.audit.scrub import JSONValue
from hub.store.admin_tables import writing
from hub.store.sql import read_meta
from hub.store.tables import MetaRow, ToolPinRow

logger = logging.getLogger(__name__)

VERSION_KEY = "pins_version"
"""The meta value that moves on every change of the pins (other replicas poll it)."""

AuditAppend = Callable[[AuditEvent], Awaitable[object]]

PinCommit = Callable[[Callable[[Session], object], "ServerPins | None", "ServerPins | None"], Awaitable[None]]
"""Commits a pin change: runs the store write it is given in one transaction with the change's audit entry, which it
writes from the pins before and after (None: not pinned)."""


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no whitespace (UTF-8, non-ASCII kept as is)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def tool_definition(tool: types.Tool) -> dict[str, Any]:
    """The whole definition of a tool as the upstream gave it (wire field names, unset fields left out)."""
    return tool.model_dump(mode="json", by_alias=True, exclude_none=True)


def definition_hash(tool: types.Tool) -> str:
    """SHA-256 (hex) of the tool's canonical definition."""
    return hashlib.sha256(canonical_json(tool_definition(tool))).hexdigest()


@dataclass(frozen=True)
class ServerPins:
    """What an admin approved for one server."""

    server: str
    hashes: dict[str, str]
    definitions: dict[str, Any]
    approved_by: str
    approved_at: datetime

    @classmethod
    def of(cls, server: str, tools: tuple[types.Tool, ...] | list[types.Tool], approved_by: str) -> ServerPins:
        """Pins for these tools as they are now."""
        return cls(
            server,
            {t.name: definition_hash(t) for t in tools},
            {t.name: tool_definition(t) for t in tools},
            approved_by,
            datetime.now(UTC),
        )

    def row(self) -> ToolPinRow:
        return ToolPinRow(
            server=self.server,
            hashes=orjson.dumps(self.hashes).decode(),
            definitions=orjson.dumps(self.definitions).decode(),
            approved_by=self.approved_by,
            approved_at=self.approved_at,
        )

    @classmethod
    def from_row(cls, row: ToolPinRow) -> ServerPins:
        at = row.approved_at if row.approved_at.tzinfo else row.approved_at.replace(tzinfo=UTC)
        return cls(row.server, orjson.loads(row.hashes), orjson.loads(row.definitions), row.approved_by, at)


class PinStore:
    """The `tool_pins` table (blocking calls: run them off the event loop)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        SQLModel.metadata.create_all(engine, tables=[ToolPinRow.__table__, MetaRow.__table__])  # pyright: ignore[reportAttributeAccessIssue]

    def version(self) -> str:
        return read_meta(self.engine, VERSION_KEY)

    def all(self) -> dict[str, ServerPins]:
        with Session(self.engine) as s:
            return {r.server: ServerPins.from_row(r) for r in s.exec(select(ToolPinRow))}

    def save(self, pins: ServerPins, session: Session | None = None) -> None:
        """Store a server's pins; in `session` when given (its owner commits, e.g. with the audit entry)."""
        with writing(self.engine, session) as s:
            s.merge(pins.row())
            s.merge(MetaRow(key=VERSION_KEY, value=uuid.uuid4().hex))

    def save_if_absent(self, pins: ServerPins) -> ServerPins:
        """Store `pins` unless the server has pins already (another replica saw it first); the stored ones win."""
        with Session(self.engine) as s:
            existing = s.get(ToolPinRow, pins.server)
            if existing is not None:
                return ServerPins.from_row(existing)
            s.add(pins.row())
            s.merge(MetaRow(key=VERSION_KEY, value=uuid.uuid4().hex))
            s.commit()
            return pins

    def delete(self, server: str, session: Session | None = None) -> bool:
        """Stop pinning a server (False when it had no pins); in `session` when given (its owner commits)."""
        with writing(self.engine, session) as s:
            row = s.get(ToolPinRow, server)
            if row is None:
                return False
            s.delete(row)
            s.merge(MetaRow(key=VERSION_KEY, value=uuid.uuid4().hex))
            return True


class PinMismatchError(Exception):
    """The definitions an admin reviewed are not the current ones."""


@dataclass(frozen=True)
class Held:
    """A tool held back: its current definition and hash, and the pinned hash (None for a new tool)."""

    server: str
    tool: str
    sha256: str
    pinned: str | None
    definition: dict[str, Any]


class ToolPins:
    """The pins of every server, in memory, and the registry filter that enforces them."""

    def __init__(self, registry: Registry, engine: Engine, audit: AuditAppend | None = None) -> None:
        """Install as `registry`'s tool filter and listener (before the registry runs); call `load` first."""
        self._registry = registry
        self.store = PinStore(engine)
        self._audit = audit
        self._pins: dict[str, ServerPins] = {}
        self._held: dict[str, dict[str, Held]] = {}
        self._first_sight: dict[str, ServerPins] = {}
        self._reported: set[tuple[str, str, str]] = set()
        self._version = ""
        registry.tool_filter = self.filter
        registry.add_listener(self.registry_changed)

    def load(self) -> None:
        """Read the stored pins (blocking)."""
        self._version = self.store.version()
        self._pins = self.store.all()

    # -- the filter -------------------------------------------------------------------------------------------

    def pins(self, server: str) -> ServerPins | None:
        return self._pins.get(server)

    def held(self, server: str) -> list[Held]:
        """The tools of `server` held back in the current view."""
        return list(self._held.get(server, {}).values())

    def _pin_on_sight(self, server: str) -> bool:
        upstream = self._registry.upstreams.get(server)
        return upstream is not None and upstream.config.pin and bool(upstream.catalog.protocol_version)

    def filter(self, server: str, tools: tuple[types.Tool, ...]) -> list[types.Tool]:
        """The tools of `server` whose definitions are approved (all of them for a server without pins)."""
        pins = self._pins.get(server)
        if pins is None:
            if not self._pin_on_sight(server):
                self._held.pop(server, None)
                return list(tools)
            pins = self._pins[server] = self._first_sight[server] = ServerPins.of(server, tools, "config")
        kept: list[types.Tool] = []
        held: dict[str, Held] = {}
        for tool in tools:
            digest = definition_hash(tool)
            pinned = pins.hashes.get(tool.name)
            if pinned == digest:
                kept.append(tool)
            else:
                held[tool.name] = Held(server, tool.name, digest, pinned, tool_definition(tool))
        self._held[server] = held
        return kept

    async def registry_changed(self, view: RegistryView) -> None:
        """Store the pins taken at first sight, and audit every definition newly held back."""
        for server, pins in list(self._first_sight.items()):
            del self._first_sight[server]
            stored = await anyio.to_thread.run_sync(self.store.save_if_absent, pins)
            if stored is not pins:  # another replica pinned it first: its pins win
                self._pins[server] = stored
                continue
            await self._record(AuditEvent("config", "server.pin", "server", server, None, _summary(pins)))
        for server in [s for s in self._held if s not in self._registry.upstreams]:
            del self._held[server]
        for server, held in list(self._held.items()):
            for h in list(held.values()):
                if (h.server, h.tool, h.sha256) in self._reported:
                    continue
                self._reported.add((h.server, h.tool, h.sha256))
                logger.warning("server %s: tool %s changed since it was approved; held back", server, h.tool)
                before: JSONValue = None if h.pinned is None else {"sha256": h.pinned}
                after: JSONValue = {"sha256": h.sha256, "definition": h.definition}
                await self._record(AuditEvent("hub", "tool.held", "tool", f"{server}/{h.tool}", before, after))

    async def _record(self, event: AuditEvent) -> None:
        if self._audit is None:
            return
        try:
            await self._audit(event)
        except Exception:
            logger.exception("writing the audit entry for %s %s failed", event.action, event.resource_id)

    # -- admin ------------------------------------------------------------------------------------------------

    async def approve(
        self, server: str, tools: tuple[types.Tool, ...], actor: str, expected: dict[str, str] | None = None,
        *, commit: PinCommit | None = None,
    ) -> tuple[ServerPins | None, ServerPins]:  # fmt: skip
        """Pin the current definitions of `server`'s tools and expose them again; returns (before, after). With
        `commit`, the stored pins and the change's audit entry are one transaction; nothing changes if it fails.

        Raises:
            PinMismatchError: `expected` (tool name -> sha256, what the admin reviewed) differs from now.
        """
        pins = ServerPins.of(server, tools, actor)
        if expected is not None and expected != pins.hashes:
            raise PinMismatchError(f"the tool definitions of '{server}' are not the ones reviewed")
        before = self._pins.get(server)
        if commit is None:
            await anyio.to_thread.run_sync(self.store.save, pins)
        else:
            await commit(lambda s: self.store.save(pins, s), before, pins)
        self._pins[server] = pins
        self._reported = {r for r in self._reported if r[0] != server}
        await self._registry.refresh()
        return before, pins

    async def unpin(self, server: str, *, commit: PinCommit | None = None) -> ServerPins | None:
        """Stop pinning `server` (every current tool is exposed again); returns the pins removed. With `commit`, as
        in `approve`."""
        before = self._pins.get(server)
        if commit is None:
            await anyio.to_thread.run_sync(self.store.delete, server)
        else:
            await commit(lambda s: self.store.delete(server, s), before, None)
        self._pins.pop(server, None)
        await self._registry.refresh()
        return before

    def status(self, server: str, tools: tuple[types.Tool, ...]) -> dict[str, Any]:
        """A review of `server`: each current tool approved, changed or new, and pinned tools now gone."""
        pins = self._pins.get(server)
        upstream = self._registry.upstreams.get(server)
        by_config = upstream is not None and upstream.config.pin
        out: dict[str, Any] = {"server": server, "pinned": pins is not None, "pin_on_sight": by_config}
        if pins is None:
            out["tools"] = [{"name": t.name, "sha256": definition_hash(t)} for t in tools]
            return out
        out.update(approved_by=pins.approved_by, approved_at=pins.approved_at.isoformat())
        rows: list[dict[str, Any]] = []
        for tool in tools:
            digest = definition_hash(tool)
            pinned = pins.hashes.get(tool.name)
            row: dict[str, Any] = {"name": tool.name, "sha256": digest}
            if pinned == digest:
                row["status"] = "approved"
            else:
                row["status"] = "new" if pinned is None else "changed"
                row["definition"] = tool_definition(tool)
                if pinned is not None:
                    row.update(pinned_sha256=pinned, pinned_definition=pins.definitions.get(tool.name))
            rows.append(row)
        current = {t.name for t in tools}
        rows += [
            {"name": n, "status": "removed", "pinned_sha256": h} for n, h in pins.hashes.items() if n not in current
        ]
        out["tools"] = rows
        return out

    # -- other replicas ---------------------------------------------------------------------------------------

    async def follow(self, versions: Mapping[str, str]) -> None:
        """Follow pins changed by other replicas or the CLI: `versions` are the meta values read just now, and a
        moved `pins_version` reloads the pins."""
        try:
            version = versions.get(VERSION_KEY, "0")
            if version != self._version:
                self._version = version
                self._pins = await anyio.to_thread.run_sync(self.store.all)
                await self._registry.refresh()
        except Exception:
            logger.exception("following tool pin changes failed")


def _summary(pins: ServerPins) -> dict[str, Any]:
    return {"tools": dict(sorted(pins.hashes.items())), "approved_by": pins.approved_by}

"""The tools a program may call, grouped by server, with the Python names the guest gives them.

The hub hands in MCP tool definitions (``name``, ``description``, ``inputSchema``, ``outputSchema``) grouped by
server, plus the name its ``ToolCaller`` expects for each (by default ``server__tool``). The catalog derives valid,
unique Python identifiers: ``github.create_issue(...)`` in the program becomes a call of ``github__create_issue``.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SANDBOX_MODULES = frozenset(
    {"asyncio", "base64", "bisect", "collections", "collections.abc", "copy", "dataclasses", "datetime", "decimal"}
    | {"difflib", "enum", "fractions", "functools", "hashlib", "heapq", "html", "itertools", "json", "math"}
    | {"operator", "pprint", "random", "re", "statistics", "string", "textwrap", "time", "typing", "unicodedata"}
    | {"urllib", "urllib.parse", "uuid"}
)
"""The modules a program may import in the guest (its stdlib allowlist, with the ``time`` and ``asyncio`` shims)."""

NAMESPACE = {
    "tools": "the generic tool caller",
    "ToolError": "the exception a failed tool call raises",
    "result": "the program's result",
}
"""Names the guest binds in every program, with what they are."""

RESERVED = frozenset({*NAMESPACE, "__builtins__"} | set(dir(builtins)))
"""Names a server object must not take: the program relies on them (builtins, the names the guest binds).

A module name is not reserved: nothing binds ``time`` until the program imports it, so a server named ``time`` keeps
its name and a program that imports the module under that name is refused with the fix (``sandbox.naming``).
"""


def default_call_name(server: str, tool: str) -> str:
    """The hub's downstream naming, ``server__tool``."""
    return f"{server}__{tool}"


def identifier(name: str, taken: Iterable[str] = (), reserved: frozenset[str] = frozenset()) -> str:
    """A valid Python identifier for ``name``, not a keyword, not in ``reserved`` and not in ``taken``."""
    ident = re.sub(r"\W", "_", name) or "_"
    if ident[0].isdigit():
        ident = f"t_{ident}"
    if keyword.iskeyword(ident) or ident in reserved:
        ident = f"{ident}_"
    base, n = ident, 2
    taken = set(taken)
    while ident in taken:
        ident, n = f"{base}_{n}", n + 1
    return ident


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool: where it lives, what the ``ToolCaller`` calls it, and its MCP schema."""

    server: str
    name: str
    call_name: str
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=dict[str, Any])
    output_schema: Mapping[str, Any] | None = None

    @classmethod
    def from_mcp(cls, server: str, tool: Mapping[str, Any], call_name: str) -> ToolSpec:
        """From an MCP tool definition (the JSON shape of ``tools/list``)."""
        return cls(
            server=server,
            name=str(tool["name"]),
            call_name=call_name,
            description=str(tool.get("description") or ""),
            input_schema=tool.get("inputSchema") or {},
            output_schema=tool.get("outputSchema"),
        )


@dataclass(frozen=True, slots=True)
class ToolEntry:
    """A tool as the program sees it: ``<server_ident>.<method>(*params, **kwargs)``."""

    spec: ToolSpec
    server_ident: str
    method: str
    params: tuple[str, ...]

    @property
    def qualified(self) -> str:
        """``server.method`` as written in the program."""
        return f"{self.server_ident}.{self.method}"


def parameter_order(schema: Mapping[str, Any]) -> tuple[str, ...]:
    """Keyword parameters from a JSON Schema: required ones first, then the rest, identifiers only."""
    props = schema.get("properties")
    names = [str(n) for n in props] if isinstance(props, Mapping) else []
    required = [str(n) for n in schema.get("required") or () if str(n) in names]
    ordered = required + [n for n in names if n not in required]
    return tuple(n for n in ordered if n.isidentifier() and not keyword.iskeyword(n))


class ToolCatalog:
    """Tools grouped by server, with stable Python identifiers. Immutable once built."""

    def __init__(self, specs: Iterable[ToolSpec]) -> None:
        self.servers: dict[str, list[ToolEntry]] = {}
        self.server_names: dict[str, str] = {}
        """The server's own name, by its identifier."""
        idents: dict[str, str] = {}
        for spec in specs:
            ident = idents.get(spec.server)
            if ident is None:
                ident = identifier(spec.server, idents.values(), RESERVED)
                idents[spec.server] = ident
                self.servers[ident] = []
                self.server_names[ident] = spec.server
            entries = self.servers[ident]
            method = identifier(spec.name, (e.method for e in entries))
            entries.append(ToolEntry(spec, ident, method, parameter_order(spec.input_schema)))
        self._by_call = {e.spec.call_name: e for entries in self.servers.values() for e in entries}
        self.module_named = frozenset(ident for ident in self.servers if ident in SANDBOX_MODULES)
        """Servers named like a module the guest offers (``time``): an import of that module would hide them."""
        self.renamed = {
            name: ident
            for ident, name in self.server_names.items()
            if name != ident and name.isidentifier() and not keyword.iskeyword(name)
        }
        """Servers whose own name is a valid Python name the program cannot use for them (a builtin, a keyword, a
        name the guest binds), by that name: ``{"filter": "filter_"}``."""

    @classmethod
    def from_mcp(
        cls,
        servers: Mapping[str, Sequence[Mapping[str, Any]]],
        call_name: Callable[[str, str], str] = default_call_name,
    ) -> ToolCatalog:
        """From MCP tool definitions grouped by server name."""
        return cls(
            ToolSpec.from_mcp(server, tool, call_name(server, str(tool["name"])))
            for server, tools in servers.items()
            for tool in tools
        )

    def entries(self) -> list[ToolEntry]:
        """Every tool, server by server."""
        return [e for entries in self.servers.values() for e in entries]

    def find(self, server: str, tool: str) -> ToolEntry | None:
        """A tool by server (identifier or original name) and tool (method or original name)."""
        ident = (
            server if server in self.servers else next((i for i, n in self.server_names.items() if n == server), None)
        )
        if ident is None:
            return None
        return next((e for e in self.servers[ident] if tool in (e.method, e.spec.name)), None)

    def by_call_name(self, call_name: str) -> ToolEntry | None:
        """A tool by the name the ``ToolCaller`` receives."""
        return self._by_call.get(call_name)

    def resolve(self, name: str) -> str | None:
        """The call name for ``server.method`` or for a call name; None if unknown."""
        if name in self._by_call:
            return name
        server, _, method = name.partition(".")
        entry = self.find(server, method) if method else None
        return entry.spec.call_name if entry else None

    def guest_map(self) -> dict[str, dict[str, list[Any]]]:
        """What the guest needs to build its server objects: ``{server: {method: [call_name, params]}}``."""
        return {
            ident: {e.method: [e.spec.call_name, list(e.params)] for e in entries}
            for ident, entries in self.servers.items()
        }


EMPTY_CATALOG = ToolCatalog(())

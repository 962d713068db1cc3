"""Which tools can a program call? Static analysis with ``ast``, so the hub can auto-approve a run.

The answer is exact only for the plain forms: ``server.tool(...)`` (or the bound method ``server.tool``),
``tools.call("name", ...)`` and ``tools.call_many([("name", {...}), ...])`` with literal names. Anything that hides
the target (a computed name, a server object passed around or rebound, ``getattr``, dunder access) makes the
result undetermined, with the reasons; the hub then asks for approval instead of auto-executing.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from sandbox.catalog import ToolCatalog

DYNAMIC_NAMES = frozenset({"getattr", "globals", "locals", "vars", "eval", "exec", "compile", "__import__"})


@dataclass(frozen=True, slots=True)
class ToolUsage:
    """The tools a program may call (by the ``ToolCaller``'s names) and whether that set is certain."""

    tools: frozenset[str]
    unknown: frozenset[str] = frozenset()
    """Names the program uses that match no tool in the catalog."""
    reasons: tuple[str, ...] = ()
    """Why the set cannot be determined (empty when it can)."""

    @property
    def determined(self) -> bool:
        """True when ``tools`` is exactly what the program can call."""
        return not self.reasons and not self.unknown


class _Walker:
    def __init__(self, catalog: ToolCatalog) -> None:
        self.catalog = catalog
        self.watched = set(catalog.servers) | {"tools"}
        self.tools: set[str] = set()
        self.unknown: set[str] = set()
        self.reasons: list[str] = []
        self.parents: dict[ast.AST, ast.AST] = {}

    def literal_name(self, node: ast.AST | None) -> str | None:
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None

    def add_name(self, name: str) -> None:
        resolved = self.catalog.resolve(name)
        if resolved is None:
            self.unknown.add(name)
        else:
            self.tools.add(resolved)

    def tools_attribute(self, attr: ast.Attribute) -> None:
        call = self.parents.get(attr)
        line = attr.lineno
        if not (isinstance(call, ast.Call) and call.func is attr):
            self.reasons.append(f"line {line}: tools.{attr.attr} is used other than as a call")
        elif attr.attr == "call":
            name = self.literal_name(call.args[0] if call.args else None)
            if name is None:
                self.reasons.append(f"line {line}: tools.call with a computed tool name")
            else:
                self.add_name(name)
        elif attr.attr == "call_many":
            self.call_many(call, line)
        else:
            self.reasons.append(f"line {line}: tools.{attr.attr} is not a known form")

    def call_many(self, call: ast.Call, line: int) -> None:
        batch = call.args[0] if call.args else None
        if not isinstance(batch, (ast.List, ast.Tuple)):
            self.reasons.append(f"line {line}: tools.call_many with a computed list of calls")
            return
        for item in batch.elts:
            name: str | None = None
            if isinstance(item, (ast.Tuple, ast.List)) and item.elts:
                name = self.literal_name(item.elts[0])
            elif isinstance(item, ast.Dict):
                for key, value in zip(item.keys, item.values, strict=True):
                    if self.literal_name(key) == "name":
                        name = self.literal_name(value)
            if name is None:
                self.reasons.append(f"line {line}: tools.call_many with a computed tool name")
            else:
                self.add_name(name)

    def visit_name(self, node: ast.Name) -> None:
        if node.id in DYNAMIC_NAMES:
            self.reasons.append(f"line {node.lineno}: {node.id} can reach tools dynamically")
            return
        if node.id not in self.watched:
            return
        parent = self.parents.get(node)
        if not isinstance(node.ctx, ast.Load):
            self.reasons.append(f"line {node.lineno}: `{node.id}` is reassigned")
        elif isinstance(parent, ast.Attribute) and parent.value is node:
            if node.id == "tools":
                self.tools_attribute(parent)
            else:
                entry = self.catalog.find(node.id, parent.attr)
                if entry is None:
                    self.unknown.add(f"{node.id}.{parent.attr}")
                else:
                    self.tools.add(entry.spec.call_name)
        else:
            self.reasons.append(f"line {node.lineno}: `{node.id}` is used as a value, so its calls cannot be followed")

    def visit(self, tree: ast.AST) -> None:
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                self.parents[child] = parent
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                self.visit_name(node)
            elif isinstance(node, ast.Attribute) and node.attr.startswith("__"):
                self.reasons.append(f"line {node.lineno}: dunder attribute .{node.attr}")
            elif isinstance(node, ast.arg) and node.arg in self.watched:
                self.reasons.append(f"line {node.lineno}: a parameter shadows `{node.arg}`")
            elif isinstance(node, ast.alias) and (node.asname or node.name) in self.watched:
                self.reasons.append(f"line {node.lineno}: an import shadows `{node.asname or node.name}`")
            elif isinstance(node, (ast.Global, ast.Nonlocal)) and self.watched.intersection(node.names):
                self.reasons.append(f"line {node.lineno}: a global/nonlocal declaration of a server object")


def tools_used(code: str, catalog: ToolCatalog) -> ToolUsage:
    """The set of tools ``code`` can call, or the reasons it cannot be determined. Never raises for bad code."""
    try:
        tree = ast.parse(code, "<code>")
    except (SyntaxError, ValueError):
        return ToolUsage(frozenset(), reasons=("the program does not parse",))
    walker = _Walker(catalog)
    walker.visit(tree)
    return ToolUsage(frozenset(walker.tools), frozenset(walker.unknown), tuple(dict.fromkeys(walker.reasons)))

"""Programs that reach a server by a name it does not have: found before the run, with the fix in the message.

Two mistakes would otherwise end in an error that points the wrong way:

* A server named like a module the guest offers (``time``, ``json``) keeps that name, so ``import time`` in the
  program would replace the server object by the module, and ``time.get_current_time()`` would fail with "module
  'time' has no attribute ...". Such an import is refused, with the form that keeps both
  (``import time as time_module``).
* A server whose name the program needs for something else (a builtin such as ``filter``, or ``result``) is renamed
  (``filter_``). A program writing ``filter.apply()`` would get "type object 'filter' has no attribute 'apply'", and
  one writing ``result.x()`` Python's "did you forget to import" hint. Such a use is refused with the server's
  name in programs.

Only a program that mentions such a server's name pays for the check (one ``ast`` parse and walk, about twice a
parse). A program that binds the name itself (an assignment, a ``def``) is left alone, and one that does not parse
is left to the guest's syntax error.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass

from sandbox.catalog import NAMESPACE, SANDBOX_MODULES, ToolCatalog

_TOOLS_METHODS = frozenset({"call", "call_many"})
"""What the generic tool caller (``tools``) offers: a program calling them means it, not a server named ``tools``."""


@dataclass(frozen=True, slots=True)
class NamingMistake:
    """Why a program was refused, and the line where it happens."""

    message: str
    line: int


def naming_mistake(code: str, catalog: ToolCatalog) -> NamingMistake | None:
    """The first place where ``code`` reaches a server by a name it does not have in programs, or None."""
    hidden = catalog.module_named
    if not any(name in code for name in (*hidden, *catalog.renamed)):
        return None  # neither mistake can happen without the name in the text
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    mistakes: list[NamingMistake] = []
    reached: list[ast.Attribute] = []  # `name.attr` where `name` is a renamed server's own name
    bound: set[str] = set()
    for node in ast.walk(tree):  # one pass: a parse and a walk are the whole cost
        if isinstance(node, ast.Import | ast.ImportFrom):
            mistake = _import_mistake(node, hidden) if hidden else None
            if mistake is not None:
                mistakes.append(mistake)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in catalog.renamed:
            reached.append(node)
        _bind(node, bound)
    mistakes += [m for node in reached for m in (_renamed_mistake(node, catalog, bound),) if m is not None]
    return min(mistakes, key=lambda m: m.line, default=None)


def _import_mistake(node: ast.Import | ast.ImportFrom, hidden: frozenset[str]) -> NamingMistake | None:
    if isinstance(node, ast.Import):
        for alias in node.names:
            name = alias.asname or alias.name.split(".")[0]
            if alias.asname is None and name in hidden:
                fix = f"import {alias.name} as {name}_module"
                return _hides(name, f"import {alias.name}", fix, node.lineno)
    elif node.module is not None and node.module in SANDBOX_MODULES:
        for alias in node.names:
            name = alias.asname or alias.name
            if name in hidden:
                fix = f"from {node.module} import {alias.name} as {name}_module"
                return _hides(name, f"from {node.module} import {alias.name}", fix, node.lineno)
    return None


def _hides(name: str, statement: str, fix: str, line: int) -> NamingMistake:
    message = (
        f"ImportError: `{statement}` would hide the server {name!r}, which programs reach as `{name}`; "
        f"import it under another name: `{fix}`"
    )
    return NamingMistake(message, line)


def _renamed_mistake(node: ast.Attribute, catalog: ToolCatalog, bound: set[str]) -> NamingMistake | None:
    assert isinstance(node.value, ast.Name)
    name = node.value.id
    ident = catalog.renamed[name]
    if name in bound or not any(e.method == node.attr for e in catalog.servers[ident]):
        return None
    if name == "tools" and node.attr in _TOOLS_METHODS:
        return None
    if name not in NAMESPACE and hasattr(getattr(builtins, name, None), node.attr):
        return None  # `dict.keys`: the builtin has it, so the program means the builtin
    what = NAMESPACE.get(name, "Python's builtin" if hasattr(builtins, name) else "a name the program relies on")
    message = (
        f"NameError: no server named {name!r} in programs: the server {name!r} is `{ident}` (`{name}` is {what}); "
        f"write `{ident}.{node.attr}(...)`"
    )
    return NamingMistake(message, node.lineno)


def _bind(node: ast.AST, names: set[str]) -> None:
    """Add the name ``node`` binds in the program, if any: assigned, defined, imported or taken as a parameter."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
        names.add(node.id)
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        names.add(node.name)
    elif isinstance(node, ast.arg):
        names.add(node.arg)
    elif isinstance(node, ast.alias):
        names.add(node.asname or node.name.split(".")[0])

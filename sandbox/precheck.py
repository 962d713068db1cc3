"""Screen a program before it runs: syntax, then a RestrictedPython policy. Defence in depth, not the boundary.

The wasm sandbox is what confines a program. This screen catches the obvious hostile moves early, with a message
the model can act on: dunder access (``().__class__.__bases__``), ``eval``/``exec``/``compile``/``__import__``,
frame and code object attributes (``gi_frame``, ``f_globals``, ``tb_frame`` ...), dynamic ``getattr`` and imports
outside the guest's allowlist. RestrictedPython's stock policy also rejects ordinary model code (``acc[k] += 1``,
``obj.n += 1``, names starting with ``_``, ``async``/``await``); the policy below keeps its checks on names and
attributes and lets ordinary code through. Only the checks run; the transformed code is never executed.

RestrictedPython is untyped; it stays in this module.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, Literal

from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer

ALLOWED_MODULES = frozenset(
    {
        "asyncio", "base64", "bisect", "collections", "collections.abc", "copy", "dataclasses", "datetime", "decimal",
        "difflib", "enum", "fractions", "functools", "hashlib", "heapq", "html", "itertools", "json", "math",
        "operator", "pprint", "random", "re", "statistics", "string", "textwrap", "time", "typing", "unicodedata",
        "urllib", "urllib.parse", "uuid",
    }
)  # fmt: skip
"""Modules the guest can import (its build-time snapshot); keep in step with ``guest/guest_app.py``."""

FORBIDDEN_NAMES = {
    "eval": "eval() is not available; write the logic directly",
    "exec": "exec() is not available; write the logic directly",
    "compile": "compile() is not available",
    "__import__": "use an import statement",
    "globals": "globals() is not available; use variables directly",
    "locals": "locals() is not available; use variables directly",
    "vars": "vars() is not available; use attributes or dict keys directly",
    "breakpoint": "there is no debugger in the sandbox",
    "open": "there are no files in the sandbox; call a tool to read data",
    "input": "there is no standard input in the sandbox",
}
FRAME_ATTRIBUTES = frozenset(INSPECT_ATTRIBUTES) | {"f_globals", "f_locals", "func_globals", "mro"}
DYNAMIC_ATTRIBUTE_FUNCTIONS = frozenset({"getattr", "setattr", "delattr", "hasattr"})
SAFE_DUNDERS = frozenset({"__init__", "__name__", "__qualname__", "__doc__", "__main__"})
"""Dunder names ordinary code uses (``super().__init__()``, ``type(e).__name__``, ``if __name__ == ...``)."""


@dataclass(frozen=True, slots=True)
class PrecheckResult:
    """Outcome of the screen. ``kind`` is ``syntax`` or ``rejected`` when ``ok`` is false."""

    ok: bool
    kind: Literal["syntax", "rejected"] = "rejected"
    message: str = ""
    line: int | None = None
    is_async: bool = False
    """The program uses ``await`` or ``async`` (tool calls then return awaitables)."""


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name not in SAFE_DUNDERS


class _Policy(RestrictingNodeTransformer):
    """RestrictedPython's screen with the checks that hurt ordinary code removed; nothing is rewritten."""

    def check_name(self, node: Any, name: str | None, allow_magic_methods: bool = False) -> None:
        if name is None:
            return
        if _is_dunder(name):
            self.error(node, f'"{name}" is not allowed: names starting with "__" are blocked in the sandbox')
        elif name in FORBIDDEN_NAMES:
            self.error(node, f'"{name}" is not allowed: {FORBIDDEN_NAMES[name]}')

    def visit_Name(self, node: ast.Name) -> Any:
        self.check_name(node, node.id)
        return node

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        if _is_dunder(node.attr):
            self.error(node, f'".{node.attr}" is not allowed: dunder attributes are blocked in the sandbox')
        elif node.attr in FRAME_ATTRIBUTES:
            self.error(node, f'".{node.attr}" is not allowed: frame and code objects are blocked in the sandbox')
        self.node_contents_visit(node)
        return node

    def visit_Call(self, node: ast.Call) -> Any:
        func = node.func
        if isinstance(func, ast.Name) and func.id in DYNAMIC_ATTRIBUTE_FUNCTIONS:
            name = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                self.error(node, f"{func.id}() needs a literal attribute name in the sandbox")
            elif _is_dunder(name.value) or name.value in FRAME_ATTRIBUTES:
                self.error(node, f'{func.id}(..., "{name.value}") is not allowed: dunder attributes are blocked')
        self.node_contents_visit(node)
        return node

    def _check_module(self, node: ast.AST, module: str) -> None:
        if module not in ALLOWED_MODULES:
            available = ", ".join(sorted(ALLOWED_MODULES))
            self.error(node, f'module "{module}" is not available in the sandbox; available: {available}')

    def visit_Import(self, node: ast.Import) -> Any:
        for alias in node.names:
            self._check_module(node, alias.name)
            self.check_name(node, alias.asname)
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> Any:
        if node.level:
            self.error(node, "relative imports are not available in the sandbox")
        elif node.module is not None:
            self._check_module(node, node.module)
        for alias in node.names:
            self.check_name(node, alias.asname or alias.name)
        return node

    def _plain(self, node: ast.AST) -> Any:
        self.node_contents_visit(node)
        return node

    # Ordinary constructs the stock policy refuses or rewrites: check their children only.
    visit_AugAssign = visit_AsyncFunctionDef = visit_Await = visit_AsyncFor = visit_AsyncWith = _plain
    visit_Nonlocal = visit_TryStar = visit_Subscript = visit_Assign = visit_AnnAssign = visit_Expr = _plain
    visit_Match = visit_match_case = visit_MatchValue = visit_MatchSingleton = visit_MatchSequence = _plain
    visit_MatchMapping = visit_MatchClass = visit_MatchStar = visit_MatchAs = visit_MatchOr = _plain

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        # Defining a special method (``__eq__``, ``__repr__``) in a class is ordinary; reaching one is not.
        if not (node.name.startswith("__") and node.name.endswith("__")):
            self.check_name(node, node.name)
        return self._plain(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        self.check_name(node, node.name)
        return self._plain(node)

    def visit_arg(self, node: ast.arg) -> Any:
        self.check_name(node, node.arg)
        return self._plain(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> Any:
        self.check_name(node, node.name)
        return self._plain(node)


def _uses_async(tree: ast.AST) -> bool:
    return any(isinstance(n, (ast.Await, ast.AsyncFunctionDef, ast.AsyncFor, ast.AsyncWith)) for n in ast.walk(tree))


def precheck(code: str) -> PrecheckResult:
    """Parse and screen ``code``; never raises for bad input."""
    try:
        tree = ast.parse(code, "<code>")
    except SyntaxError as exc:
        return PrecheckResult(False, "syntax", f"SyntaxError: {exc.msg} (line {exc.lineno})", exc.lineno)
    except ValueError as exc:  # e.g. null bytes
        return PrecheckResult(False, "syntax", f"SyntaxError: {exc}")
    errors: list[str] = []
    _Policy(errors=errors, warnings=[], used_names={}).visit(tree)
    if errors:
        first_line = _line_of(errors[0])
        shown = "; ".join(errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
        return PrecheckResult(False, "rejected", f"the program was rejected before running: {shown}", first_line)
    return PrecheckResult(True, is_async=_uses_async(tree))


def _line_of(error: str) -> int | None:
    head = error.split(":", 1)[0]
    if head.startswith("Line "):
        try:
            return int(head[5:])
        except ValueError:
            return None
    return None

"""Each top-level package is imported from this tree: `hub`, `llm` and `connectors` are also names of unrelated
PyPI distributions."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["hub", "connectors", "llm", "sandbox", "http1"])
def test_each_package_is_imported_from_this_repository(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve().parent == ROOT / name


def test_http1_exports_exactly_its_public_api() -> None:
    import http1

    assert sorted(http1.__all__) == http1.__all__
    assert all(hasattr(http1, name) for name in http1.__all__)


def _imports(path: Path, package: str) -> set[str]:
    """The modules of `package` a module imports, anywhere in it (type-checking and function-level imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == package)
    return found


def test_the_hub_has_no_import_cycles() -> None:
    """No module of `hub` imports, directly or through others, a module that imports it back: the composition root
    builds the doors, the doors see the hub through narrow protocols, and nothing imports upwards."""
    modules: dict[str, Path] = {}
    for path in (ROOT / "hub").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph = {
        name: {target for target in _imports(path, "hub") if target in modules and target != name}
        for name, path in modules.items()
    }
    cycles: list[list[str]] = []
    for start in sorted(graph):
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, trail = stack.pop()
            for target in sorted(graph[node]):
                if target == start:
                    cycles.append(trail)
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, [*trail, target]))
    assert cycles == []

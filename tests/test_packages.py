"""Each top-level package is imported from this tree: `hub`, `llm` and `connectors` are also names of unrelated
PyPI distributions."""

from __future__ import annotations

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

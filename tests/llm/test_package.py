"""The public surface of `llm`, and that it is this tree's package (PyPI has an unrelated `llm`)."""

from __future__ import annotations

from pathlib import Path

import llm


def test_llm_is_imported_from_this_repository() -> None:
    assert Path(llm.__file__).resolve().parent == Path(__file__).resolve().parents[2] / "llm"


def test_exported_members_are_exactly_the_public_api() -> None:
    assert sorted(llm.__all__) == llm.__all__
    assert all(hasattr(llm, name) for name in llm.__all__)
    public = {name for name in vars(llm) if not name.startswith("_")}
    submodules = {
        "config",
        "errors",
        "messages",
        "messaging",
        "pricing",
        "rawjson",
        "result",
        "router",
        "schema",
        "providers",
        "transport",
        "health",
        "sse",
        "eventstream",
        "sigv4",
        "signatures",
        "gcp_auth",
        "testing",
    }
    assert public - submodules == set(llm.__all__)

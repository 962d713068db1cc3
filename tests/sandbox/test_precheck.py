"""The pre-check lets ordinary model code through and rejects hostile code with an actionable message."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import precheck
from sandbox.precheck import ALLOWED_MODULES

from .corpus import PROGRAMS


def test_corpus_is_large_enough() -> None:
    assert len(PROGRAMS) >= 50


@pytest.mark.parametrize("code", PROGRAMS)
def test_ordinary_programs_pass(code: str) -> None:
    checked = precheck(code)
    assert checked.ok, checked.message


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("().__class__.__bases__[0].__subclasses__()", "__class__"),
        ("x = eval('1 + 1')", "eval"),
        ("exec('import os')", "exec"),
        ("__import__('os')", "__import__"),
        ("compile('1', 'f', 'eval')", "compile"),
        ("def f():\n    yield\ng = f()\nprint(g.gi_frame.f_back)", "gi_frame"),
        ("try:\n    1/0\nexcept Exception as e:\n    e.__traceback__.tb_frame", "__traceback__"),
        ("f = lambda: 0\nf.__code__", "__code__"),
        ("f = lambda: 0\nf.__globals__['x']", "__globals__"),
        ("getattr(object, name)", "literal attribute name"),
        ("getattr(object, '__subclasses__')", "dunder"),
        ("globals()['tools']", "globals"),
        ("import os", 'module "os" is not available'),
        ("from subprocess import run", 'module "subprocess"'),
        ("from . import x", "relative imports"),
        ("open('/etc/passwd')", "no files"),
        ("__builtins__", "__builtins__"),
    ],
)
def test_hostile_programs_are_rejected(code: str, fragment: str) -> None:
    checked = precheck(code)
    assert not checked.ok
    assert checked.kind == "rejected"
    assert fragment in checked.message
    assert checked.message.startswith("the program was rejected before running")
    assert checked.line is not None


def test_syntax_error_has_line() -> None:
    checked = precheck("x = 1\nif x\n  pass")
    assert (checked.ok, checked.kind, checked.line) == (False, "syntax", 2)


def test_async_detection() -> None:
    assert precheck("x = await tools.call('a', {})").is_async
    assert precheck("async def f():\n    pass").is_async
    assert not precheck("x = 1").is_async


def test_allowlist_matches_the_guest() -> None:
    source = Path("sandbox/guest/guest_app.py").read_text(encoding="utf-8")
    for module in ALLOWED_MODULES - {"asyncio", "time", "datetime"}:
        assert f"{module}," in source or f"import {module}\n" in source, module

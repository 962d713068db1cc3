"""What a test does when a program it needs (redis-server, PostgreSQL, Prometheus, the Node tools) is not installed.

    binary = shutil.which("redis-server") or unavailable("redis-server", "apt-get install redis-server")

On a developer's machine the test is skipped, with the reason and the command that installs the program. Under
CI (`CI=true` in the environment, as `.ci/run` is run) the test fails instead: a CI machine that lacks a program
must not pass by skipping every test that needs it. Every test that may lack a program goes through
`unavailable`; `tests/test_suite_rules.py` checks that no other `pytest.skip` exists.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

CI_VALUES = frozenset({"1", "true", "yes"})
"""Values of `CI` that mean "this run is CI" (`true` is what CI services and `.ci/run` set)."""


def in_ci(environ: dict[str, str] | None = None) -> bool:
    """Whether this run is CI, where a missing program fails the test instead of skipping it."""
    value = (os.environ if environ is None else environ).get("CI", "")
    return value.strip().lower() in CI_VALUES


def unavailable(what: str, install: str) -> NoReturn:
    """End the calling test because `what` is not installed: a skip locally, a failure under CI.

    Args:
        what: the missing program, as a person would look for it ("redis-server", "PostgreSQL (initdb, postgres)").
        install: how to install it ("apt-get install redis-server", "run scripts/install-test-tools").
    """
    reason = f"{what} is not installed ({install})"
    if in_ci():
        pytest.fail(f"{reason}; under CI every test must run, none may be skipped", pytrace=False)
    pytest.skip(reason)

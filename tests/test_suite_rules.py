"""Rules the suite holds itself to, so that a green run means every test ran and nothing leaked.

- A test that needs a program the machine lacks (redis-server, PostgreSQL, the Node tools) is skipped locally
  and fails under CI (`CI=true`), through `tests.tools.requirements.unavailable`; no test skips any other way.
- A `ResourceWarning` (an unclosed socket, file or transport) or an exception nobody could catch (raised in a
  `__del__` or a callback) fails the test that caused it.

- A wait is bounded by `PATIENCE` and a whole test by pytest-timeout, far beyond it (`tests/tools/patience.py`).

The skip rule is checked on real tests of this suite, run by a nested pytest with the program hidden; the warning
rule on a sample file run by a nested pytest with this project's settings.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.tools import REPO_ROOT
from tests.tools.patience import PATIENCE, TEST_TIMEOUT
from tests.tools.requirements import in_ci

TESTS = REPO_ROOT / "tests"
HELPER = TESTS / "tools" / "requirements.py"
REDIS_TEST = "tests/governance/test_gov_redis.py::test_two_replicas_admit_exactly_the_limit_between_them"
NODE_TEST = "tests/admin/test_oidc_login.py::test_an_admin_group_logs_in_and_gets_a_session_that_manages_the_hub"


def _pytest(nodeid: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run one test of this suite in a nested pytest (no plugins that write shared state) and return the run."""
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "-rs", nodeid]
    return subprocess.run(
        argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=3 * PATIENCE, check=False
    )


def _environment(ci: bool, **changes: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != "CI"}
    if ci:
        env["CI"] = "true"
    env.update(changes)
    return env


@pytest.mark.parametrize("ci", [False, True], ids=["locally", "under-ci"])
def test_a_missing_redis_server_skips_its_tests_locally_and_fails_them_under_ci(tmp_path: Path, ci: bool) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    run = _pytest(REDIS_TEST, _environment(ci, PATH=str(empty)))
    output = run.stdout + run.stderr
    assert "redis-server is not installed (apt-get install redis-server)" in output, output
    if ci:  # the helper runs in a fixture: pytest reports an error at setup, which fails the run as a failure does
        assert run.returncode == 1 and "1 error" in output, output
    else:
        assert run.returncode == 0 and "1 skipped" in output, output


@pytest.mark.parametrize("ci", [False, True], ids=["locally", "under-ci"])
def test_missing_node_tools_skip_the_oidc_tests_locally_and_fail_them_under_ci(tmp_path: Path, ci: bool) -> None:
    run = _pytest(NODE_TEST, _environment(ci, AGENTHUB_NODE_TOOLS=str(tmp_path / "none")))
    output = run.stdout + run.stderr
    assert "is not installed (run scripts/install-test-tools)" in output, output
    if ci:  # the helper runs in a fixture: pytest reports an error at setup, which fails the run as a failure does
        assert run.returncode == 1 and "1 error" in output, output
    else:
        assert run.returncode == 0 and "1 skipped" in output, output


def test_ci_is_recognised_by_the_values_ci_services_set() -> None:
    assert in_ci({"CI": "true"}) and in_ci({"CI": "1"}) and in_ci({"CI": "True"})
    assert not in_ci({}) and not in_ci({"CI": ""}) and not in_ci({"CI": "false"}) and not in_ci({"CI": "0"})


def _skips(path: Path, root: Path = REPO_ROOT) -> list[str]:
    """Every way `path` could skip a test without `unavailable`: pytest.skip/skipif/importorskip, the skip marks."""
    found: list[str] = []
    where = path.relative_to(root)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in {"skip", "skipif", "importorskip"}:
            found.append(f"{where}:{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module in {"pytest", "_pytest.outcomes"}:
            found += [
                f"{where}:{node.lineno}: import {a.name}" for a in node.names if a.name in {"skip", "importorskip"}
            ]
    return found


def test_no_test_skips_except_through_the_helper_that_fails_under_ci() -> None:
    found = [hit for path in sorted(TESTS.rglob("*.py")) if path != HELPER for hit in _skips(path)]
    assert found == [], "skip through tests.tools.requirements.unavailable, which fails under CI"


def test_the_rule_finder_sees_each_way_of_skipping_and_not_a_formatter_comment(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import pytest\nfrom pytest import importorskip\n"
        "@pytest.mark.skipif(True, reason='x')\ndef test_a(): pytest.skip('y')\n"
        "@pytest.mark.skip\ndef test_b(): x = [1]  # fmt: skip\n"
    )
    found = sorted(hit.split(": ", 1)[1] for hit in _skips(sample, root=tmp_path))
    assert found == [".skip", ".skip", ".skipif", "import importorskip"]


LEAKS = """
import gc
import socket


def test_drops_an_open_socket():
    socket.socket()  # collected unclosed: a ResourceWarning from its finaliser


def test_warns_of_a_resource():
    import warnings

    warnings.warn("unclosed transport", ResourceWarning, stacklevel=1)


class Finalised:
    def __del__(self):
        raise RuntimeError("raised where nobody can catch it")


def test_raises_in_a_finaliser():
    Finalised()
    gc.collect()


def test_is_clean():
    with socket.socket():
        pass
"""


def test_a_resource_warning_or_an_unraisable_exception_fails_the_test_that_caused_it(tmp_path: Path) -> None:
    (tmp_path / "test_leaks.py").write_text(LEAKS, encoding="utf-8")
    argv = [sys.executable, "-m", "pytest", "-c", str(REPO_ROOT / "pyproject.toml"), "--rootdir", str(tmp_path)]
    argv += ["-p", "no:cacheprovider", "-p", "no:xdist", "-q", "-rf", str(tmp_path / "test_leaks.py")]
    run = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=3 * PATIENCE, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    failed = {line.split("::")[1].split(" ")[0] for line in output.splitlines() if line.startswith("FAILED ")}
    assert failed == {"test_drops_an_open_socket", "test_warns_of_a_resource", "test_raises_in_a_finaliser"}, output
    assert "3 failed, 1 passed" in output, output


def test_a_whole_test_may_take_far_longer_than_any_one_wait_in_it() -> None:
    """pytest-timeout only catches a hang that no `PATIENCE` bound catches first; both live in one place each."""
    settings = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert settings["timeout"] == TEST_TIMEOUT >= 4 * PATIENCE


def test_property_tests_never_fail_for_being_slow() -> None:
    """Hypothesis times each example (`deadline`) and how long it takes to draw them (`HealthCheck.too_slow`): on a
    busy machine both fail a correct test. The suite's profile turns both off for every property test."""
    from hypothesis import HealthCheck, settings

    assert settings.default.deadline is None
    assert HealthCheck.too_slow in settings.default.suppress_health_check

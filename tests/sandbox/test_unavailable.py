"""When the sandbox cannot start, the cause comes back in words a user can act on: wasmtime missing, no guest
component and no builder, a cache directory that cannot be written. Each case runs the real builder in a real
subprocess; a missing package is made missing the way Python itself allows (`sys.modules[name] = None` in a
`sitecustomize` on the subprocess's path)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox import SandboxPool, SandboxUnavailableError
from sandbox.build import CACHE_ENV, GuestBuildError, ensure_artifact

ROOT = Path(__file__).resolve().parents[2]


def _without(tmp_path: Path, *modules: str) -> dict[str, str]:
    """An environment whose Python cannot import `modules`."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    lines = ["import sys", *(f"sys.modules[{name!r}] = None" for name in modules)]
    (site / "sitecustomize.py").write_text("\n".join(lines) + "\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    env[CACHE_ENV] = str(tmp_path / "cache")
    return env


def _build(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "sandbox.build"]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_no_component_and_no_builder_is_named(tmp_path: Path) -> None:
    done = _build(_without(tmp_path, "componentize_py"))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        "this installation has no prebuilt guest component and componentize-py, which builds one, is not "
        "installed; install AgentHub from a wheel (pip install agenthub) or install componentize-py\n"
    )


def test_missing_wasmtime_is_named(tmp_path: Path) -> None:
    done = _build(_without(tmp_path, "wasmtime"))
    assert done.returncode == 1
    assert done.stderr == "wasmtime, which runs the guest, is not installed; install it (pip install wasmtime)\n"


def test_a_cache_directory_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache should be")
    env = {**os.environ, CACHE_ENV: str(blocker), "PYTHONPATH": str(ROOT)}
    done = _build(env)
    assert done.returncode == 1
    assert done.stderr == (
        f"the cache directory {blocker / 'sandbox'} is not writable (Not a directory); "
        f"set {CACHE_ENV} to a writable directory\n"
    )
    with pytest.raises(GuestBuildError, match="is not writable"):
        ensure_artifact(directory=blocker / "sandbox")


@pytest.mark.anyio
async def test_the_pool_reports_the_cause_and_that_it_was_building(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with caplog.at_level(logging.INFO, logger="sandbox.progress"), pytest.raises(SandboxUnavailableError) as failed:
        async with SandboxPool(size=1, cache_dir=blocker):
            pass
    assert str(failed.value) == (
        f"the cache directory {blocker / 'sandbox'} is not writable (Not a directory); "
        f"set {CACHE_ENV} to a writable directory"
    )
    assert [r.getMessage() for r in caplog.records if r.name == "sandbox.progress"] == [
        "building the Code Mode sandbox guest (first start only)…"
    ]


@pytest.mark.anyio
async def test_a_cached_guest_starts_without_a_build_step(caplog: pytest.LogCaptureFixture) -> None:
    ensure_artifact()
    with caplog.at_level(logging.INFO, logger="sandbox.progress"):
        async with SandboxPool(size=1) as pool:
            assert len(pool.worker_pids) == 1 and not pool.built
    assert not [r for r in caplog.records if r.name == "sandbox.progress"]

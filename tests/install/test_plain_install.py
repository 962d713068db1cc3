"""A plain `pip install` of this repository (no extras, not editable) in a clean virtual environment serves a Code
Mode program: the wheel carries the guest component, the hub compiles it at its first start (with progress on the
console) and a program sent through the MCP door runs.

The repository's files are copied first (what git tracks, and new files it does not ignore), so the build leaves
nothing in the working tree; pip's own cache keeps the dependencies' downloads for the next run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import mcp_types as types
import pytest

from tests.hub.harness import ALICE, mcp_client
from tests.tools import REPO_ROOT, SERVERS_DIR, served

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(1800)]

PROGRAM = "total = fixture.add(a=2, b=3)['result']\nprint('sum', total)\nresult = {'total': total}"


def _copy_of_the_repository(target: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
    return target


async def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    argv = [str(c) for c in command]
    environ = {**os.environ, **(env or {})}
    done = await anyio.run_process(argv, cwd=cwd, env=environ, check=False, stderr=subprocess.STDOUT)
    output = done.stdout.decode(errors="replace")
    assert done.returncode == 0, f"{' '.join(map(str, command))} exited with {done.returncode}:\n{output[-6000:]}"
    return output


def _config(path: Path, database: Path) -> Path:
    fixture = [str(SERVERS_DIR / "fixture_server.py"), "--name", "fixture"]
    path.write_text(
        f"""
[hub]
database = "sqlite:///{database}"
upstream_start_timeout_s = 60

[servers.fixture]
transport = "stdio"
command = "{sys.executable}"
args = [{", ".join(f'"{a}"' for a in fixture)}]

[[keys]]
name = "coder"
secret = "{ALICE}"
tools = ["fixture__*"]
code_mode = true
"""
    )
    return path


async def test_a_plain_install_serves_a_code_mode_program(tmp_path: Path) -> None:
    source = _copy_of_the_repository(tmp_path / "source")
    venv = tmp_path / "venv"
    await _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python, agenthub = venv / "bin" / "python", venv / "bin" / "agenthub"
    await _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", source, cwd=tmp_path)
    # no dev extra: nothing that builds a guest; the packages are the installed ones, not this checkout's
    env = {"AGENTHUB_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": ""}
    where = "import importlib.util as u, sandbox; print(u.find_spec('componentize_py'), sandbox.__file__)"
    builder, package = (await _run(python, "-c", where, cwd=tmp_path, env=env)).split()
    assert builder == "None" and package.startswith(str(venv))

    config = _config(tmp_path / "agenthub.toml", tmp_path / "hub.db")
    command = [str(agenthub), "serve", "--config", str(config), "--listen", "127.0.0.1:{port}"]
    async with served(command, env=env, cwd=tmp_path, ready_timeout=300, stop_timeout=20) as hub:
        with anyio.fail_after(900):  # a first start compiles the guest for this machine
            while "Code Mode sandbox ready" not in hub.output():
                assert hub.running(), hub.output()
                await anyio.sleep(0.5)
        async with mcp_client(hub.url(), ALICE) as client:
            run = await client.call_tool("execute_tool_code", {"code": PROGRAM})
        console = hub.output()
    text = "\n".join(b.text for b in run.content if isinstance(b, types.TextContent))
    assert not run.is_error, text
    assert "sum 5" in text and '"total": 5' in text
    assert "building the Code Mode sandbox guest (first start only)…" in console
    assert "built the Code Mode sandbox guest in " in console
    ahead = await _run(agenthub, "sandbox", "build", cwd=tmp_path, env=env)
    assert ahead.startswith("Code Mode sandbox guest already built: ") and str(tmp_path / "cache") in ahead

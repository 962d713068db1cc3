"""Run the Claude Code and Codex CLIs offline against a local fake: clean environments, bounded runs, no leftovers.

    tools = agent_clis()                                      # skips locally, fails under CI when not installed
    async with serve(fake.recorder()) as url, proxy_trap() as trap:
        env = claude_env(url, home, proxy=trap.url, api_key="sk-test")
        run = await run_cli(tools.claude("-p", "hi", "--output-format", "json"), env=env, cwd=workdir)

The environment is built from nothing (no variable of the developer's shell leaks in: no real API key, no proxy,
no config folder): PATH with Node 22 first, HOME and the XDG folders in the test's temporary folder, and every
proxy variable pointing at the trap with 127.0.0.1 exempt, so the fake is reached directly and anything else is
recorded and refused. Each CLI also gets the switches that stop its own background traffic (`CLAUDE_OFFLINE`,
`codex_config`'s `features.plugins` and `analytics.enabled` off); the tests assert that the trap saw nothing.

`run_cli` starts the CLI in a session of its own and, however the run ends (exit, timeout, cancellation), sends
SIGKILL to that whole process group by its PID, so helpers the CLI started (MCP stdio servers, shells) go too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import anyio
import orjson
from anyio.abc import ByteReceiveStream

from llm.schema import JSON
from tests.tools.node import INSTALL_HINT, NodeTools, NodeToolsMissing, coding_agents
from tests.tools.patience import PATIENCE
from tests.tools.requirements import unavailable

__all__ = [
    "CLAUDE_OFFLINE",
    "CliRun",
    "CliTimeout",
    "agent_clis",
    "base_env",
    "claude_env",
    "codex_config",
    "codex_env",
    "mcp_config",
    "run_cli",
]

LOOPBACK_HOSTS = "127.0.0.1,localhost,::1"

CLAUDE_OFFLINE: Mapping[str, str] = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
}
"""Claude Code's switches for background traffic. Without the first one it connects to api.anthropic.com (and
sends `HEAD /api/hello` to the base URL) even when `ANTHROPIC_BASE_URL` points elsewhere."""

CODEX_KEY_VARIABLE = "AGENTHUB_API_KEY"
"""The variable `codex_config`'s provider reads its key from (`env_key`)."""


class CliTimeout(AssertionError):
    """The CLI did not exit within its bound: a hang, reported with what it wrote so far."""


@dataclass(frozen=True)
class CliRun:
    """A finished CLI run."""

    argv: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    def ok(self) -> CliRun:
        """This run, after checking it exited 0 (the output is in the failure message otherwise)."""
        assert self.returncode == 0, f"{self.argv[:2]} exited {self.returncode}\n{self.stdout}\n{self.stderr}"
        return self

    def json(self) -> JSON:
        """stdout as one JSON object (`claude -p --output-format json`)."""
        data = json.loads(self.stdout)
        assert isinstance(data, dict), self.stdout
        return data


def agent_clis() -> NodeTools:
    """The installed Node tools with both CLIs; a skip locally and a failure under CI when they are missing."""
    try:
        return coding_agents()
    except NodeToolsMissing as missing:
        _missing(str(missing).split(";", 1)[0])


def _missing(detail: str) -> NoReturn:
    unavailable(f"Claude Code or Codex ({detail})", INSTALL_HINT)


def base_env(home: Path, tools: NodeTools, *, proxy: str) -> dict[str, str]:
    """A from-scratch environment: Node 22 on PATH, HOME in `home`, every proxy variable at `proxy`."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.pathsep.join([str(tools.node22.parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
    }
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = proxy
    env["NO_PROXY"] = env["no_proxy"] = LOOPBACK_HOSTS
    return env


def claude_env(
    base_url: str,
    home: Path,
    tools: NodeTools,
    *,
    proxy: str,
    api_key: str | None = None,
    auth_token: str | None = None,
    tool_search: bool = True,
    offline: bool = True,
) -> dict[str, str]:
    """Claude Code's environment: the fake as `ANTHROPIC_BASE_URL`, a key (`x-api-key`) or a token (Bearer).

    `tool_search=False` sets `ENABLE_TOOL_SEARCH=false`, which puts MCP tools in `tools` directly instead of
    behind `ToolSearch`; `offline=False` leaves out `CLAUDE_OFFLINE` (to show what it stops).
    """
    env = base_env(home, tools, proxy=proxy)
    env["ANTHROPIC_BASE_URL"] = base_url
    if api_key is not None:
        env["ANTHROPIC_API_KEY"] = api_key
    if auth_token is not None:
        env["ANTHROPIC_AUTH_TOKEN"] = auth_token
    if not tool_search:
        env["ENABLE_TOOL_SEARCH"] = "false"
    if offline:
        env.update(CLAUDE_OFFLINE)
    return env


def mcp_config(path: Path, servers: Mapping[str, str]) -> Path:
    """Write a `--mcp-config` file naming each Streamable HTTP server by its URL; return its path."""
    config = {"mcpServers": {name: {"type": "http", "url": url} for name, url in servers.items()}}
    path.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    return path


def _toml(value: str | bool | int) -> str:
    """A TOML scalar: JSON's string escapes are valid TOML basic-string escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else json.dumps(value)


def codex_config(
    codex_home: Path, base_url: str, *, model: str, mcp_servers: Mapping[str, str] | None = None, offline: bool = True
) -> Path:
    """Write `config.toml` in `codex_home`: one Responses provider at `base_url` (`.../v1`), MCP servers by URL.

    Retries are off (a failure shows at once instead of after five backed-off reconnects); every MCP server's
    tools are pre-approved (`codex exec` runs with `approval: never`, which refuses an MCP call that would ask).
    `offline=False` leaves out `features.plugins = false` and `analytics.enabled = false`, without which Codex
    reaches for its plugin catalogues (github.com, chatgpt.com) and posts analytics events (ab.chatgpt.com).
    """
    codex_home.mkdir(parents=True, exist_ok=True)
    lines = [f"model = {_toml(model)}", 'model_provider = "agenthub"', ""]
    if offline:
        lines += ["[features]", "plugins = false", "", "[analytics]", "enabled = false", ""]
    provider: dict[str, str | bool | int] = {
        "name": "AgentHub",
        "base_url": base_url,
        "env_key": CODEX_KEY_VARIABLE,
        "wire_api": "responses",
        "request_max_retries": 0,
        "stream_max_retries": 0,
    }
    lines += ["[model_providers.agenthub]", *(f"{k} = {_toml(v)}" for k, v in provider.items()), ""]
    for name, url in (mcp_servers or {}).items():
        lines += [f"[mcp_servers.{name}]", f"url = {_toml(url)}", 'default_tools_approval_mode = "approve"', ""]
    path = codex_home / "config.toml"
    path.write_text("\n".join(lines))
    return path


def codex_env(codex_home: Path, home: Path, tools: NodeTools, *, proxy: str, api_key: str) -> dict[str, str]:
    """Codex's environment: `CODEX_HOME` with the config, the provider's key in `CODEX_KEY_VARIABLE`."""
    env = base_env(home, tools, proxy=proxy)
    env["CODEX_HOME"] = str(codex_home)
    env[CODEX_KEY_VARIABLE] = api_key
    return env


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _drain(stream: ByteReceiveStream | None, into: bytearray) -> None:
    if stream is None:
        return
    async for chunk in stream:
        into.extend(chunk)


async def run_cli(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout: float = PATIENCE) -> CliRun:
    """Run `argv` to its end with no stdin; its process group is killed by PID whatever happens.

    Raises:
        CliTimeout: the CLI did not exit within `timeout` seconds (a hang, not a slow machine: see PATIENCE).
    """
    stdout, stderr = bytearray(), bytearray()
    returncode = -1
    process = await anyio.open_process(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    try:
        with anyio.fail_after(timeout):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_drain, process.stdout, stdout)
                tg.start_soon(_drain, process.stderr, stderr)
                returncode = await process.wait()
                _kill_group(process.pid)  # a child still holding stdout or stderr would keep the drains open
    except TimeoutError:
        raise CliTimeout(
            f"{argv[:2]} did not exit within {timeout}s\nstdout:\n{stdout.decode(errors='replace')[-4000:]}"
            f"\nstderr:\n{stderr.decode(errors='replace')[-4000:]}"
        ) from None
    finally:
        _kill_group(process.pid)
        with anyio.CancelScope(shield=True):
            await process.aclose()
    return CliRun(list(argv), returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))

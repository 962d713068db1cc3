"""`agenthub stdio`, driven by the `mcp` SDK client over stdio as Claude Desktop would launch it.

- `agenthub stdio --config FILE`: an embedded hub in the child process; the key comes from `AGENTHUB_KEY`.
- `agenthub stdio --url http://127.0.0.1:PORT/mcp`: a bridge to a real `agenthub serve` subprocess (its own
  temp config and SQLite database), sending `AGENTHUB_KEY` as bearer token. A key the hub refuses makes the
  bridge exit at once with a message, instead of serving an empty tool list.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from tests.hub.harness import ALICE, BOB
from tests.tools import ServedProcess, served
from tests.tools.node import REPO_ROOT
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

AGENTHUB = str(Path(sys.executable).with_name("agenthub"))
FIXTURE = REPO_ROOT / "tests" / "servers" / "fixture_server.py"


def write_config(folder: Path) -> Path:
    """A config file with the fixture upstream over stdio, keys alice (every tool) and bob (echo only)."""
    path = folder / "agenthub.toml"
    path.write_text(
        f"""
[hub]
listen = "127.0.0.1:1"
database = "sqlite:///{folder / "hub.db"}"
upstream_start_timeout_s = {PATIENCE}

[servers.fixture]
transport = "stdio"
command = "{sys.executable}"
args = ["{FIXTURE}"]

[[keys]]
name = "alice"
secret = "{ALICE}"
tools = ["*"]

[[keys]]
name = "bob"
secret = "{BOB}"
tools = ["fixture__echo"]
"""
    )
    return path


def stdio_params(args: list[str], key: str | None) -> StdioServerParameters:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    if key is not None:
        env["AGENTHUB_KEY"] = key
    return StdioServerParameters(command=AGENTHUB, args=args, env=env, cwd=REPO_ROOT)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def serving_hub(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServedProcess]:
    """A real `agenthub serve` on a free port, with its own config and database (one for this module)."""
    config = write_config(tmp_path_factory.mktemp("serve"))
    argv = [AGENTHUB, "serve", "--config", str(config), "--listen", "127.0.0.1:{port}"]
    async with served(argv) as hub:
        yield hub


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_embedded_hub_over_stdio_lists_and_calls_tools(tmp_path: Path, mode: str) -> None:
    params = stdio_params(["stdio", "--config", str(write_config(tmp_path))], ALICE)
    with anyio.fail_after(PATIENCE):
        async with Client(params, mode=mode) as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
            echoed = await client.call_tool("fixture__echo", {"message": "over stdio"})
            added = await client.call_tool("fixture__add", {"a": 40, "b": 2})
            with pytest.raises(MCPError) as unknown:
                await client.call_tool("fixture__nope", {})
    assert names == sorted(names) and {"fixture__echo", "fixture__add", "fixture__slow"} <= set(names)
    assert echoed.content == [types.TextContent(type="text", text="over stdio")]
    assert added.structured_content == {"result": 42}
    assert unknown.value.error.message == "unknown tool: fixture__nope"


async def test_embedded_hub_applies_the_keys_tool_globs(tmp_path: Path) -> None:
    params = stdio_params(["stdio", "--config", str(write_config(tmp_path))], BOB)
    with anyio.fail_after(PATIENCE):
        async with Client(params, mode="legacy") as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
            with pytest.raises(MCPError) as denied:
                await client.call_tool("fixture__add", {"a": 1, "b": 2})
    assert names == ["fixture__echo"]
    assert denied.value.error.message == "unknown tool: fixture__add"


async def test_embedded_hub_with_a_wrong_key_refuses_and_records_it(tmp_path: Path) -> None:
    """The embedded hub serves one key, `AGENTHUB_KEY`: without a valid one it records the refusal (one
    request-log row, like any refused request) and stops with a message the MCP client shows, instead of
    serving a session in which every request would be refused."""
    config = write_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "AGENTHUB_KEY"}
    with anyio.fail_after(PATIENCE):
        missing = await anyio.run_process([AGENTHUB, "stdio", "--config", str(config)], env=env, check=False)
        wrong = await anyio.run_process(
            [AGENTHUB, "stdio", "--config", str(config)], env=env | {"AGENTHUB_KEY": "ahk-not-a-key"}, check=False
        )
    import sqlite3

    with sqlite3.connect(tmp_path / "hub.db") as db:
        rows = db.execute("select door, operation, status, key_id from request_log order by id").fetchall()
    assert missing.returncode != 0 and wrong.returncode != 0
    for done in (missing, wrong):
        assert b"AGENTHUB_KEY holds no valid virtual key of this hub" in done.stderr
    assert rows == [("mcp", "mcp.session", 401, None), ("mcp", "mcp.session", 401, None)]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_bridge_to_a_running_hub_lists_and_calls_tools(serving_hub: ServedProcess, mode: str) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    params = stdio_params(["stdio", "--url", serving_hub.url("/mcp")], ALICE)
    with anyio.fail_after(PATIENCE):
        async with Client(params, mode=mode) as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
            echoed = await client.call_tool("fixture__echo", {"message": "bridged"})
            slow = await client.call_tool("fixture__slow", {"seconds": 0.1, "steps": 2}, progress_callback=on_progress)
            prompt = await client.get_prompt("fixture__greeting", {"name": "Ada"})
    assert names == sorted(names) and {"fixture__echo", "fixture__add"} <= set(names)
    assert echoed.content == [types.TextContent(type="text", text="bridged")]
    assert not slow.is_error and seen == [1, 2]
    assert prompt.messages[0].content == types.TextContent(type="text", text="Say hello to Ada.")


async def test_bridge_passes_on_the_keys_restrictions(serving_hub: ServedProcess) -> None:
    params = stdio_params(["stdio", "--url", serving_hub.url("/mcp")], BOB)
    with anyio.fail_after(PATIENCE):
        async with Client(params, mode="legacy") as client:
            names = [tool.name for tool in (await client.list_tools()).tools]
            with pytest.raises(MCPError) as denied:
                await client.call_tool("fixture__add", {"a": 1, "b": 2})
    assert names == ["fixture__echo"]
    assert "unknown tool: fixture__add" in denied.value.error.message


@pytest.mark.parametrize("key", ["ahk-not-a-key", None], ids=["bad-key", "no-key"])
async def test_bridge_with_a_refused_key_exits_at_once_with_a_message(
    serving_hub: ServedProcess, key: str | None
) -> None:
    # A connect timeout far beyond the wait for the bridge: a bridge that waited it out instead of stopping at the
    # hub's refusal fails on `timeout=PATIENCE`, however busy the machine is.
    params = stdio_params(["stdio", "--url", serving_hub.url("/mcp"), "--connect-timeout", str(10 * PATIENCE)], key)
    completed = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            [params.command, *params.args],
            input=b"",
            capture_output=True,
            env=params.env,
            cwd=params.cwd,
            timeout=PATIENCE,
            check=False,
        )
    )
    stderr = completed.stderr.decode(errors="replace")
    assert completed.returncode == 1, stderr
    assert completed.stdout == b""
    assert f"the hub at {serving_hub.url('/mcp')} requires a valid virtual key" in stderr
    assert ("no key in AGENTHUB_KEY" if key is None else "refused the key in AGENTHUB_KEY") in stderr
    if key is not None:
        # The SDK client sees the server go away instead of waiting on an empty bridge.
        with anyio.fail_after(PATIENCE), pytest.raises(BaseException) as raised:
            async with Client(params, mode="legacy") as client:
                await client.list_tools()
        assert isinstance(raised.value, MCPError | BaseExceptionGroup)

"""`agenthub serve` (uvicorn on uvloop) in front of a Streamable HTTP upstream: plain tool calls take the lean path.

The fixture's `whoami` tool returns the HTTP headers of the request that carried the call. The SDK client sends a
`user-agent`; the hub's lean HTTP/1.1 session (`http1`) sends none. So a call answered without a
user-agent went over the lean path, on the event loop the hub really serves on.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from tests.hub.harness import ALICE, mcp_client
from tests.tools import ServedProcess, served, server_argv
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

AGENTHUB = str(Path(sys.executable).with_name("agenthub"))


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def upstream() -> AsyncIterator[ServedProcess]:
    async with served(server_argv("fixture_server", "--transport", "streamable-http", "--port", "{port}")) as up:
        yield up


async def test_tool_calls_to_an_http_upstream_take_the_lean_session(upstream: ServedProcess, tmp_path: Path) -> None:
    config = tmp_path / "agenthub.toml"
    config.write_text(
        f"""
[hub]
listen = "127.0.0.1:1"
database = "sqlite:///{tmp_path / "hub.db"}"

[servers.fixture]
transport = "http"
url = "{upstream.url("/mcp")}"

[[keys]]
name = "alice"
secret = "{ALICE}"
tools = ["*"]
"""
    )
    argv = [AGENTHUB, "serve", "--config", str(config), "--listen", "127.0.0.1:{port}"]
    async with served(argv) as hub:
        with anyio.fail_after(PATIENCE):
            async with mcp_client(hub.url("/mcp"), ALICE) as client:
                answers = [await client.call_tool("fixture__whoami", {}) for _ in range(3)]
                echoed = await client.call_tool("fixture__echo", {"message": "lean"})
    for answer in answers:
        assert not answer.is_error
        text = answer.content[0].text  # pyright: ignore[reportAttributeAccessIssue]
        headers = json.loads(str(text))
        assert "user-agent" not in headers, f"the call went through the SDK client: {headers}"
        assert headers["mcp-session-id"] and headers["content-type"] == "application/json"
    assert echoed.structured_content == {"result": "lean"}


@pytest.mark.parametrize("optimize", [None, "0"])
async def test_serve_runs_without_docstrings_in_the_process_it_was_started_as(
    optimize: str | None, tmp_path: Path
) -> None:
    config = tmp_path / "agenthub.toml"
    config.write_text(
        f'[hub]\nlisten = "127.0.0.1:1"\ndatabase = "sqlite:///{tmp_path / "hub.db"}"\n'
        f'[[keys]]\nname = "alice"\nsecret = "{ALICE}"\ntools = ["*"]\n'
    )
    argv = [AGENTHUB, "serve", "--config", str(config), "--listen", "127.0.0.1:{port}"]
    env = {"AGENTHUB_OPTIMIZE": optimize} if optimize is not None else {}
    async with served(argv, env=env) as hub:
        cmdline = Path(f"/proc/{hub.pid}/cmdline").read_bytes().split(b"\0")  # the PID the test started
        with anyio.fail_after(PATIENCE):
            async with mcp_client(hub.url("/mcp"), ALICE) as client:
                listed = await client.list_tools()
    assert listed.tools == []
    assert cmdline[1:3] == ([b"-OO", AGENTHUB.encode()] if optimize is None else [AGENTHUB.encode(), b"serve"])

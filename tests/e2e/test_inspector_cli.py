"""The MCP Inspector CLI (2.12.0) lists and calls tools through the hub over Streamable HTTP.

The Inspector runs as a real subprocess (Node 22) with the virtual key in `--header`, `--stored-auth-only`
(never an interactive OAuth flow) and its own empty `MCP_STORAGE_DIR`, in both protocol eras, against the
aggregated `/mcp` and the single-server `/mcp/{server}`. Without a valid key it must stop with its
`auth_required` error (exit code 3), never reach a tool.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.hub.harness import ALICE, BOB, RunningHub, base_config, fixture_stdio, running_hub
from tests.tools import PATIENCE, node_tools

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ERAS = ["legacy", "modern"]
AUTH_REQUIRED_EXIT = 3
TOOL_NOT_FOUND_EXIT = 5


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def hub(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningHub]:
    config = base_config({"fixture": fixture_stdio()})
    async with running_hub(config, tmp_path_factory.mktemp("inspector")) as running:
        yield running


class InspectorResult:
    def __init__(self, completed: subprocess.CompletedProcess[bytes]) -> None:
        self.code = completed.returncode
        self.stdout = completed.stdout.decode(errors="replace")
        self.stderr = completed.stderr.decode(errors="replace")

    def json(self) -> dict[str, Any]:
        assert self.code == 0, f"exit {self.code}: {self.stderr}"
        data: dict[str, Any] = json.loads(self.stdout)
        return data

    def error(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stderr.strip().splitlines()[-1])["error"]
        return data


async def inspector(url: str, key: str | None, era: str, *args: str, storage: Path) -> InspectorResult:
    """Run `mcp-inspector --cli` against `url` with `key` as bearer token (none when `key` is None)."""
    tools = node_tools()
    env = tools.env()
    env["MCP_STORAGE_DIR"] = str(storage)
    env["MCP_INSPECTOR_OAUTH_STATE_PATH"] = str(storage / "oauth.json")
    header = ("--header", f"Authorization: Bearer {key}") if key is not None else ()
    argv = tools.inspector_cli(
        "--format", "json", "-q", "--stored-auth-only", "--connect-timeout", str(int(PATIENCE * 1000)),
        "--server-url", url, "--transport", "http", "--protocol-era", era, *header, *args,
    )  # fmt: skip
    completed = await anyio.to_thread.run_sync(
        lambda: subprocess.run(argv, capture_output=True, env=env, cwd=storage, timeout=2 * PATIENCE, check=False)
    )
    return InspectorResult(completed)


@pytest.mark.parametrize("era", ERAS)
async def test_lists_and_calls_tools_through_the_aggregated_endpoint(hub: RunningHub, era: str, tmp_path: Path) -> None:
    listing = await inspector(hub.url(), ALICE, era, "--method", "tools/list", storage=tmp_path)
    names = [tool["name"] for tool in listing.json()["result"]["tools"]]
    called = await inspector(
        hub.url(), ALICE, era, "--method", "tools/call", "--tool-name", "fixture__add",
        "--tool-args-json", '{"a": 20, "b": 22}', storage=tmp_path,
    )  # fmt: skip
    echoed = await inspector(
        hub.url(), ALICE, era, "--method", "tools/call", "--tool-name", "fixture__echo",
        "--tool-arg", "message=through the inspector", storage=tmp_path,
    )  # fmt: skip
    assert names == sorted(names)
    assert {"fixture__echo", "fixture__add", "fixture__rich_content"} <= set(names)
    result = called.json()["result"]
    assert result["structuredContent"] == {"result": 42}
    assert result["isError"] is False
    if era == "modern":
        # The hub answers as itself, not as the upstream it relayed the call to.
        assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "agenthub"
    assert echoed.json()["result"]["content"] == [{"type": "text", "text": "through the inspector"}]


@pytest.mark.parametrize("era", ERAS)
async def test_one_server_endpoint_shows_original_names_filtered_by_key(
    hub: RunningHub, era: str, tmp_path: Path
) -> None:
    url = hub.url("/mcp/fixture")
    alice = await inspector(url, ALICE, era, "--method", "tools/list", storage=tmp_path)
    bob = await inspector(url, BOB, era, "--method", "tools/list", storage=tmp_path)
    called = await inspector(
        url, BOB, era, "--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=alone", storage=tmp_path
    )
    denied = await inspector(
        url, BOB, era, "--method", "tools/call", "--tool-name", "add",
        "--tool-args-json", '{"a": 1, "b": 2}', storage=tmp_path,
    )  # fmt: skip
    alice_names = [tool["name"] for tool in alice.json()["result"]["tools"]]
    assert "echo" in alice_names and "add" in alice_names
    assert not any("__" in name for name in alice_names)
    assert [tool["name"] for tool in bob.json()["result"]["tools"]] == ["echo"]
    assert called.json()["result"]["content"] == [{"type": "text", "text": "alone"}]
    # A tool the key may not use looks exactly like one that does not exist.
    assert denied.code == TOOL_NOT_FOUND_EXIT
    assert denied.error()["code"] == "tool_not_found"


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("key", [None, "ahk-not-a-key"], ids=["no-key", "bad-key"])
async def test_without_a_valid_key_the_inspector_stops_with_auth_required(
    hub: RunningHub, era: str, key: str | None, tmp_path: Path
) -> None:
    result = await inspector(hub.url(), key, era, "--method", "tools/list", storage=tmp_path)
    assert result.code == AUTH_REQUIRED_EXIT, result.stderr
    assert result.stdout == ""
    error = result.error()
    assert error["code"] == "auth_required"
    assert "401" in error["message"] or "virtual key" in error["message"]
    assert not any(tmp_path.glob("**/*token*")), "no credentials may be stored for a refused key"

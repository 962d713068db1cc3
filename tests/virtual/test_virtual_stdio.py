"""`agenthub stdio --server v/NAME`: a virtual server for clients that launch a command, through the bridge to a
running hub and from a hub embedded in the command."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.hub.harness import ALICE, base_config, fixture_stdio, running_hub
from tests.tools import SERVERS_DIR

pytestmark = pytest.mark.anyio

AGENTHUB = str(Path(sys.executable).with_name("agenthub"))
OPS = {"tools": ["fixture__echo", "fixture__add"], "tools_override": {"fixture__add": {"name": "sum"}}}


def _env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AGENTHUB_")}
    return {**env, "AGENTHUB_KEY": ALICE}


async def _names_and_sum(params: StdioServerParameters) -> tuple[list[str], Any]:
    async with Client(params, mode="legacy") as client:
        names = sorted(t.name for t in (await client.list_tools()).tools)
        added = await client.call_tool("sum", {"a": 2, "b": 2})
    return names, added.structured_content


async def test_the_bridge_serves_a_virtual_server(tmp_path: Path) -> None:
    config = {**base_config({"fixture": fixture_stdio()}), "virtual_servers": {"ops": OPS}}
    async with running_hub(config, tmp_path) as hub:
        bridge = StdioServerParameters(
            command=AGENTHUB, args=["stdio", "--url", hub.url("/mcp"), "--server", "v/ops"], env=_env()
        )
        names, added = await _names_and_sum(bridge)
    assert names == ["fixture__echo", "sum"]
    assert added == {"result": 4}


async def test_an_embedded_hub_serves_a_virtual_server_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    fixture = [sys.executable, str(SERVERS_DIR / "fixture_server.py")]
    config = tmp_path / "agenthub.toml"
    database = json.dumps(f"sqlite:///{tmp_path / 'hub.db'}")
    lines = [
        "[hub]",
        f"database = {database}",
        "[servers.fixture]",
        'transport = "stdio"',
        f"command = {json.dumps(fixture[0])}",
        f"args = {json.dumps(fixture[1:])}",
        "[[keys]]",
        'name = "alice"',
        'secret = "env:ALICE_SECRET"',
        'tools = ["*"]',
        "[virtual_servers.ops]",
        f"tools = {json.dumps(OPS['tools'])}",
        "[virtual_servers.ops.tools_override.fixture__add]",
        'name = "sum"',
    ]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {**_env(), "ALICE_SECRET": ALICE}
    embedded = StdioServerParameters(
        command=AGENTHUB, args=["stdio", "--config", str(config), "--server", "v/ops"], env=env, cwd=str(tmp_path)
    )
    names, added = await _names_and_sum(embedded)
    assert names == ["fixture__echo", "sum"]
    assert added == {"result": 4}
    refused = await anyio.run_process(
        [AGENTHUB, "stdio", "--config", str(config), "--server", "v/nope"], env=env, cwd=str(tmp_path), check=False
    )
    assert refused.returncode == 1
    assert "no MCP server named 'v/nope'" in refused.stderr.decode()

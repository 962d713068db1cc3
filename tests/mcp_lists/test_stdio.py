"""The embedded stdio door (`agenthub stdio --config`) serves lists through the same code: it pages them, and
tells its client when what the key sees changed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.hub.harness import ALICE
from tests.mcp_lists.harness import Heard
from tests.tools import SERVERS_DIR
from tests.tools.node import REPO_ROOT
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

AGENTHUB = str(Path(sys.executable).with_name("agenthub"))


def _params(folder: Path) -> StdioServerParameters:
    config = folder / "agenthub.toml"
    config.write_text(
        f"""
[hub]
listen = "127.0.0.1:1"
database = "sqlite:///{folder / "hub.db"}"
upstream_start_timeout_s = {PATIENCE}
list_page_size = 2

[servers.fixture]
transport = "stdio"
command = "{sys.executable}"
args = ["{SERVERS_DIR / "fixture_server.py"}"]

[[keys]]
name = "alice"
secret = "{ALICE}"
tools = ["*"]
""",
        encoding="utf-8",
    )
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "AGENTHUB_KEY": ALICE}
    return StdioServerParameters(command=AGENTHUB, args=["stdio", "--config", str(config)], env=env, cwd=REPO_ROOT)


async def test_the_stdio_door_pages_lists_and_tells_of_changes(tmp_path: Path) -> None:
    heard = Heard()
    with anyio.fail_after(PATIENCE * 2):
        async with Client(_params(tmp_path), mode="legacy", message_handler=heard) as client:
            caps = client.server_capabilities
            pages: list[list[str]] = []
            cursor: str | None = None
            while True:
                listed = await client.list_tools(cursor=cursor, cache_mode="bypass")
                pages.append([t.name for t in listed.tools])
                cursor = listed.next_cursor
                if cursor is None:
                    break
            await client.call_tool("fixture__add_tool", {"name": "late"})
            first = await heard.until(1)
    names = [n for page in pages for n in page]
    assert caps.tools is not None and caps.tools.list_changed
    assert len(pages) > 2 and all(len(page) == 2 for page in pages[:-1])
    assert names == sorted(set(names))
    assert first == ["tools"]

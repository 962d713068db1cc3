"""Code Mode through the MCP door: meta-tools instead of the tool list, programs run in the wasm sandbox and
every tool call inside re-enters the pipeline under the caller's key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mcp_types as types
import pytest

from tests.hub.harness import ALICE, BOB, base_config, fixture_stdio, mcp_client, running_hub

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

META = ["execute_tool_code", "get_tool_docs", "list_tool_files", "read_tool_file"]


def _text(result: types.CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))


def _config() -> dict[str, Any]:
    config = base_config(
        {"fixture": fixture_stdio(), "other": fixture_stdio("other")},
        keys=[
            {"name": "coder", "secret": ALICE, "tools": ["fixture__*"], "code_mode": True},
            {"name": "mixed", "secret": BOB, "tools": ["fixture__echo", "other__echo"]},
        ],
    )
    config["servers"]["other"]["code_mode"] = True
    return config


async def test_a_code_mode_key_sees_the_meta_tools_and_reads_stubs_and_docs(tmp_path: Path) -> None:
    async with running_hub(_config(), tmp_path) as hub, mcp_client(hub.url(), ALICE) as client:
        names = sorted(t.name for t in (await client.list_tools()).tools)
        files = _text(await client.call_tool("list_tool_files", {}))
        stub = _text(await client.call_tool("read_tool_file", {"path": "servers/fixture.py"}))
        docs = _text(await client.call_tool("get_tool_docs", {"server": "fixture", "tool": "add"}))
        missing = await client.call_tool("get_tool_docs", {"server": "fixture", "tool": "nope"})
    assert names == META
    assert "servers/fixture.py" in files and "other" not in files
    assert "def add(" in stub and "def echo(" in stub
    assert "add" in docs and "a" in docs
    assert missing.is_error and "echo" in _text(missing)


async def test_a_program_calls_several_tools_and_only_its_output_comes_back(tmp_path: Path) -> None:
    program = (
        "total = 0\n"
        "for n in range(1, 4):\n"
        "    total = fixture.add(a=total, b=n)['result']\n"
        "echoed = fixture.echo(message=f'sum={total}')\n"
        "print(echoed)\n"
        "result = {'total': total}\n"
    )
    async with running_hub(_config(), tmp_path) as hub:
        async with mcp_client(hub.url(), ALICE) as client:
            run = await client.call_tool("execute_tool_code", {"code": program})
        assert hub.hub.request_log is not None
        await hub.hub.request_log.flush()
        rows = hub.hub.store.recent_log(50)
    text = _text(run)
    assert not run.is_error, text
    assert "sum=6" in text and '"total": 6' in text
    parent = next(r for r in rows if r.operation == "code.run")
    inner = [r for r in rows if r.parent_id == parent.call_id]
    assert parent.outcome == "ok" and parent.key_name == "coder"
    assert sorted(r.target for r in inner) == ["fixture__add"] * 3 + ["fixture__echo"]


async def test_a_tool_the_key_may_not_use_raises_a_catchable_error_inside_the_program(tmp_path: Path) -> None:
    program = (
        "try:\n"
        "    tools.call('other__echo', {'message': 'x'})\n"
        "except ToolError as exc:\n"
        "    print('refused:', exc)\n"
        "result = fixture.echo(message='still fine')\n"
    )
    async with running_hub(_config(), tmp_path) as hub, mcp_client(hub.url(), ALICE) as client:
        run = await client.call_tool("execute_tool_code", {"code": program})
        broken = await client.call_tool("execute_tool_code", {"code": "while True:\n    pass\n"})
        hostile = await client.call_tool("execute_tool_code", {"code": "open('/etc/passwd').read()"})
    assert not run.is_error
    assert "refused:" in _text(run) and "unknown tool: other__echo" in _text(run)
    assert "still fine" in _text(run)
    assert broken.is_error and "timeout" in _text(broken).lower()
    assert hostile.is_error


async def test_a_code_mode_server_leaves_the_plain_list_and_others_stay(tmp_path: Path) -> None:
    async with running_hub(_config(), tmp_path) as hub, mcp_client(hub.url(), BOB) as client:
        names = sorted(t.name for t in (await client.list_tools()).tools)
        run = await client.call_tool("execute_tool_code", {"code": "result = other.echo(message='via code')"})
    assert names == sorted([*META, "fixture__echo"])
    assert not run.is_error and "via code" in _text(run)

"""Virtual servers (`/mcp/v/NAME`) through a real hub with the `mcp` SDK client in both protocol eras: a bundle cut
to its globs per kind, renamed tools, the caller's grant always applied, and every call recorded under the real
tool's name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from hub.settings import ConfigError, settings_from_dict
from tests.hub.harness import ALICE, BOB, base_config, fixture_stdio, mcp_client, running_hub

pytestmark = pytest.mark.anyio

ERAS = ["legacy", "2026-07-28"]


def config(**virtual: Any) -> dict[str, Any]:
    ops = {
        "description": "Operations tools",
        "tools": ["fixture__echo", "fixture__add"],
        "prompts": ["fixture__greeting"],
        "resources": ["fixture__fixture://readme"],
        "tools_override": {"fixture__add": {"name": "sum", "description": "Adds two integers."}},
    }
    return {**base_config({"fixture": fixture_stdio()}), "virtual_servers": {"ops": ops, **virtual}}


@pytest.mark.parametrize("mode", ERAS)
async def test_a_virtual_server_shows_its_bundle_as_far_as_the_key_reaches(tmp_path: Path, mode: str) -> None:
    async with running_hub(config(), tmp_path) as hub:
        async with mcp_client(hub.url("/mcp/v/ops"), ALICE, mode=mode) as alice:
            tools = {t.name: t for t in (await alice.list_tools()).tools}
            prompts = [p.name for p in (await alice.list_prompts()).prompts]
            resources = [str(r.uri) for r in (await alice.list_resources()).resources]
        async with mcp_client(hub.url("/mcp/v/ops"), BOB, mode=mode) as bob:
            bob_tools = [t.name for t in (await bob.list_tools()).tools]
            bob_prompts = [p.name for p in (await bob.list_prompts()).prompts]
    assert sorted(tools) == ["fixture__echo", "sum"]
    assert tools["sum"].description == "Adds two integers."
    assert tools["sum"].input_schema["properties"].keys() == {"a", "b"}
    assert prompts == ["fixture__greeting"]
    assert resources == ["fixture://readme"]
    assert bob_tools == ["fixture__echo"]  # bob's key does not reach fixture__add, so not `sum` either
    assert bob_prompts == ["fixture__greeting"]


@pytest.mark.parametrize("mode", ERAS)
async def test_calls_run_under_the_real_tool_name_and_the_rest_is_unknown(tmp_path: Path, mode: str) -> None:
    async with running_hub(config(), tmp_path) as hub:
        async with mcp_client(hub.url("/mcp/v/ops"), ALICE, mode=mode) as alice:
            added = await alice.call_tool("sum", {"a": 2, "b": 3})
            greeting = await alice.get_prompt("fixture__greeting", {"name": "Ada"})
            readme = await alice.read_resource("fixture://readme")
            refused: dict[str, str] = {}
            for name in ("fixture__add", "fixture__rich_content", "nope"):
                with pytest.raises(MCPError) as exc:
                    await alice.call_tool(name, {})
                refused[name] = exc.value.error.message
        async with mcp_client(hub.url("/mcp/v/ops"), BOB, mode=mode) as bob:
            with pytest.raises(MCPError) as denied:
                await bob.call_tool("sum", {"a": 1, "b": 1})
        assert hub.hub.request_log is not None
        await hub.hub.request_log.flush()
        rows = hub.hub.store.recent_log(100)
    assert added.structured_content == {"result": 5}
    assert "Ada" in str(greeting.messages[0].content)
    assert isinstance(readme.contents[0], types.TextResourceContents)
    # the renamed tool's real name, a tool outside the bundle and an unknown name all fail alike
    assert refused == {name: f"unknown tool: {name}" for name in refused}
    assert denied.value.error.message == "unknown tool: sum"
    calls = [r for r in rows if r.operation == "mcp.tool" and r.key_name == "alice" and r.outcome == "ok"]
    assert [r.target for r in calls] == ["fixture__add"]
    bob_rows = [r for r in rows if r.operation == "mcp.tool" and r.key_name == "bob"]
    assert [(r.target, r.outcome) for r in bob_rows] == [("fixture__add", "not_found_error")]


@pytest.mark.parametrize("mode", ERAS)
async def test_each_kind_is_cut_to_its_own_globs(tmp_path: Path, mode: str) -> None:
    tools_only = {"tools": ["fixture__*"]}
    async with running_hub(config(tools_only=tools_only), tmp_path) as hub:
        async with mcp_client(hub.url("/mcp/v/tools_only"), ALICE, mode=mode) as alice:
            tools = [t.name for t in (await alice.list_tools()).tools]
            prompts = (await alice.list_prompts()).prompts
            resources = (await alice.list_resources()).resources
            templates = (await alice.list_resource_templates()).resource_templates
            with pytest.raises(MCPError) as prompt:
                await alice.get_prompt("fixture__greeting", {"name": "Ada"})
            with pytest.raises(MCPError) as resource:
                await alice.read_resource("fixture://readme")
    assert "fixture__echo" in tools and "fixture__rich_content" in tools
    assert prompts == [] and resources == [] and templates == []
    assert prompt.value.error.message == "unknown prompt: fixture__greeting"
    assert "fixture://readme" in resource.value.error.message


async def test_an_unknown_virtual_server_is_a_clear_404(tmp_path: Path) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {ALICE}"}
    async with running_hub(config(), tmp_path) as hub, httpx2.AsyncClient() as http:
        response = await http.post(hub.url("/mcp/v/nope"), json=body, headers=headers)
        known = await http.post(hub.url("/mcp/v/ops"), json=body, headers=headers)
    assert response.status_code == 404
    assert "v/nope" in response.json()["error"]["message"]
    assert known.status_code == 200


def test_config_check_refuses_an_override_the_globs_do_not_select(tmp_path: Path) -> None:
    bad = {"tools": ["fixture__echo"], "tools_override": {"fixture__add": {"name": "sum"}}}
    with pytest.raises(ConfigError) as exc:
        settings_from_dict({"virtual_servers": {"ops": bad}}, tmp_path / "agenthub.toml")
    assert "tools_override names 'fixture__add'" in str(exc.value)
    twice = {
        "tools": ["fixture__*"],
        "tools_override": {"fixture__add": {"name": "x"}, "fixture__echo": {"name": "x"}},
    }
    with pytest.raises(ConfigError) as exc:
        settings_from_dict({"virtual_servers": {"ops": twice}}, tmp_path / "agenthub.toml")
    assert "would both be shown as 'x'" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        settings_from_dict({"virtual_servers": {"a/b": {"tools": ["*"]}}}, tmp_path / "agenthub.toml")
    assert "virtual server name 'a/b'" in str(exc.value)

"""Tool search (`tool_search = true` on a virtual server) through a real hub with the `mcp` SDK client: two
meta-tools instead of the list, ranked matches with input schemas, and `call_tool` going through the pipeline under
the real tool name, refused exactly as a direct call is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from hub.executors.tool_search import ToolIndex, words
from tests.hub.harness import ALICE, BOB, base_config, fixture_stdio, mcp_client, running_hub

pytestmark = pytest.mark.anyio

ERAS = ["legacy", "2026-07-28"]


def config() -> dict[str, Any]:
    search = {"tools": ["fixture__*"], "tool_search": True, "tools_override": {"fixture__add": {"name": "plus"}}}
    return {**base_config({"fixture": fixture_stdio()}), "virtual_servers": {"search": search}}


def _found(result: types.CallToolResult) -> list[dict[str, Any]]:
    assert not result.is_error, result.content
    assert isinstance(result.content[0], types.TextContent)
    found: list[dict[str, Any]] = json.loads(result.content[0].text)["tools"]
    assert result.structured_content is None  # the text says it once
    return found


@pytest.mark.parametrize("mode", ERAS)
async def test_the_list_is_two_meta_tools_and_search_ranks_the_keys_tools(tmp_path: Path, mode: str) -> None:
    async with running_hub(config(), tmp_path) as hub:
        async with mcp_client(hub.url("/mcp/v/search"), ALICE, mode=mode) as alice:
            listed = [t.name for t in (await alice.list_tools()).tools]
            adding = _found(await alice.call_tool("search_tools", {"query": "add two numbers", "limit": 3}))
            weather = _found(await alice.call_tool("search_tools", {"query": "forecast for a city", "limit": 1}))
            nothing = _found(await alice.call_tool("search_tools", {"query": "zzzqqq"}))
        async with mcp_client(hub.url("/mcp/v/search"), BOB, mode=mode) as bob:
            bob_found = _found(await bob.call_tool("search_tools", {"query": "add two numbers echo message"}))
    assert listed == ["search_tools", "call_tool"]
    assert adding[0]["name"] == "plus"  # shown under its virtual name, with what a model needs to call it
    assert adding[0]["inputSchema"]["properties"].keys() == {"a", "b"}
    assert len(adding) <= 3
    assert [t["name"] for t in weather] == ["fixture__rich_content"]  # found by its argument `city`
    assert nothing == []
    assert [t["name"] for t in bob_found] == ["fixture__echo"]  # bob's key reaches only echo


@pytest.mark.parametrize("mode", ERAS)
async def test_call_tool_is_the_real_call_and_refused_like_a_direct_one(tmp_path: Path, mode: str) -> None:
    async with running_hub(config(), tmp_path) as hub:
        async with mcp_client(hub.url("/mcp/v/search"), ALICE, mode=mode) as alice:
            added = await alice.call_tool("call_tool", {"name": "plus", "arguments": {"a": 4, "b": 5}})
            # not listed, but still the bundle's tool: a client that calls a found tool directly may
            unlisted = await alice.call_tool("plus", {"a": 1, "b": 1})
            bad = await alice.call_tool("call_tool", {"arguments": {}})
        async with mcp_client(hub.url("/mcp/v/search"), BOB, mode=mode) as bob:
            with pytest.raises(MCPError) as through:
                await bob.call_tool("call_tool", {"name": "fixture__echo_nope", "arguments": {}})
            with pytest.raises(MCPError) as denied:
                await bob.call_tool("call_tool", {"name": "plus", "arguments": {"a": 1, "b": 1}})
        async with mcp_client(hub.url("/mcp"), BOB, mode=mode) as direct:
            with pytest.raises(MCPError) as direct_denied:
                await direct.call_tool("fixture__add", {"a": 1, "b": 1})
        assert hub.hub.request_log is not None
        await hub.hub.request_log.flush()
        rows = hub.hub.store.recent_log(100)
    assert added.structured_content == {"result": 9}
    assert unlisted.structured_content == {"result": 2}
    assert bad.is_error
    assert through.value.error.message == "unknown tool: fixture__echo_nope"
    assert denied.value.error.code == direct_denied.value.error.code
    assert denied.value.error.message == "unknown tool: plus"
    assert direct_denied.value.error.message == "unknown tool: fixture__add"
    tool_rows = [(r.key_name, r.target, r.outcome) for r in rows if r.operation == "mcp.tool"]
    assert tool_rows.count(("alice", "fixture__add", "ok")) == 2
    assert tool_rows.count(("bob", "fixture__add", "not_found_error")) == 2  # through call_tool and directly
    assert any(r.operation == "mcp.list" and r.key_name == "alice" for r in rows)  # searches are listings


def test_words_split_names_and_drop_plurals() -> None:
    assert words("github__createPullRequests") == ["github", "create", "pull", "request"]
    assert words("get_HTTPStatus v2") == ["get", "http", "status", "v", "2"]


def test_name_and_argument_words_outrank_a_description_mention() -> None:
    tools = [
        {"name": "mail__send", "description": "Send mail. Mentions calendar once.", "inputSchema": {}},
        {"name": "cal__create_event", "description": "Make an entry.", "inputSchema": {}},
        {
            "name": "cal__update",
            "description": "Change an entry.",
            "inputSchema": {"properties": {"calendar_id": {"type": "string"}}},
        },
    ]
    index = ToolIndex(tools)
    assert [t["name"] for t in index.search("create calendar event", 3)] == [
        "cal__create_event",
        "cal__update",
        "mail__send",
    ]
    assert index.search("", 5) == []


SEARCHER = "ahk-searcher-test-secret-".ljust(47, "0")


@pytest.mark.parametrize("mode", ERAS)
async def test_a_key_with_tool_search_gets_the_meta_tools_on_every_endpoint(tmp_path: Path, mode: str) -> None:
    keys = [
        {"name": "searcher", "secret": SEARCHER, "tools": ["fixture__echo", "fixture__add"], "tool_search": True},
        {"name": "alice", "secret": ALICE, "tools": ["*"]},
    ]
    config = base_config({"fixture": fixture_stdio()}, keys=keys)
    async with running_hub(config, tmp_path) as hub:
        async with mcp_client(hub.url(), SEARCHER, mode=mode) as searcher:
            listed = [t.name for t in (await searcher.list_tools()).tools]
            found = _found(await searcher.call_tool("search_tools", {"query": "add numbers"}))
            added = await searcher.call_tool("call_tool", {"name": "fixture__add", "arguments": {"a": 1, "b": 6}})
            with pytest.raises(MCPError) as denied:
                await searcher.call_tool("call_tool", {"name": "fixture__rich_content", "arguments": {}})
        async with mcp_client(hub.url("/mcp/fixture"), SEARCHER, mode=mode) as scoped:
            scoped_listed = [t.name for t in (await scoped.list_tools()).tools]
            scoped_found = _found(await scoped.call_tool("search_tools", {"query": "echo a message"}))
            echoed = await scoped.call_tool("call_tool", {"name": "echo", "arguments": {"message": "hi"}})
        async with mcp_client(hub.url(), ALICE, mode=mode) as alice:
            plain = [t.name for t in (await alice.list_tools()).tools]
    assert listed == scoped_listed == ["search_tools", "call_tool"]
    assert found[0]["name"] == "fixture__add"
    assert {t["name"] for t in found} <= {"fixture__add", "fixture__echo"}  # never beyond the key's grant
    assert added.structured_content == {"result": 7}
    assert denied.value.error.message == "unknown tool: fixture__rich_content"
    assert scoped_found[0]["name"] == "echo"  # a single server's endpoint shows its own names
    assert isinstance(echoed.content[0], types.TextContent) and echoed.content[0].text == "hi"
    assert "fixture__rich_content" in plain and "search_tools" not in plain

"""The MCP front door, driven by the real `mcp` SDK client over Streamable HTTP in both protocol eras."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import MCPError

from tests.hub.harness import ALICE, BOB, base_config, fixture_stdio, mcp_client, running_hub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

ERAS = ["legacy", "2026-07-28"]


@pytest.fixture
def config() -> dict[str, Any]:
    return base_config({"fixture": fixture_stdio()})


@pytest.mark.parametrize("mode", ERAS)
async def test_a_key_sees_only_the_tools_its_globs_allow(config: dict[str, Any], tmp_path: Path, mode: str) -> None:
    async with running_hub(config, tmp_path) as hub:
        async with mcp_client(hub.url(), ALICE, mode=mode) as alice:
            names = [t.name for t in (await alice.list_tools()).tools]
        async with mcp_client(hub.url(), BOB, mode=mode) as bob:
            bob_names = [t.name for t in (await bob.list_tools()).tools]
    assert "fixture__echo" in names and "fixture__add" in names and "fixture__rich_content" in names
    assert names == sorted(names)
    assert bob_names == ["fixture__echo"]


@pytest.mark.parametrize("mode", ERAS)
async def test_a_tool_call_reaches_the_upstream_and_comes_back_faithfully(
    config: dict[str, Any], tmp_path: Path, mode: str
) -> None:
    async with running_hub(config, tmp_path) as hub, mcp_client(hub.url(), ALICE, mode=mode) as client:
        echoed = await client.call_tool("fixture__echo", {"message": "hello"})
        added = await client.call_tool("fixture__add", {"a": 2, "b": 3})
        rich = await client.call_tool("fixture__rich_content", {"city": "Paris"})
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert isinstance(echoed.content[0], types.TextContent) and echoed.content[0].text == "hello"
    assert added.structured_content == {"result": 5}
    kinds = [block.type for block in rich.content]
    assert "image" in kinds and "resource" in kinds
    assert rich.structured_content is not None
    assert tools["fixture__rich_content"].output_schema is not None


@pytest.mark.parametrize("mode", ERAS)
async def test_a_denied_tool_fails_exactly_like_an_unknown_one(
    config: dict[str, Any], tmp_path: Path, mode: str
) -> None:
    async with running_hub(config, tmp_path) as hub, mcp_client(hub.url(), BOB, mode=mode) as bob:
        with pytest.raises(MCPError) as denied:
            await bob.call_tool("fixture__add", {"a": 1, "b": 2})
        with pytest.raises(MCPError) as unknown:
            await bob.call_tool("fixture__nope", {})
    assert denied.value.error.code == unknown.value.error.code == types.INVALID_PARAMS
    assert denied.value.error.message == "unknown tool: fixture__add"
    assert unknown.value.error.message == "unknown tool: fixture__nope"


async def test_a_missing_or_bad_key_gets_401_with_www_authenticate(config: dict[str, Any], tmp_path: Path) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Accept": "application/json, text/event-stream"}
    async with running_hub(config, tmp_path) as hub, httpx2.AsyncClient() as http:
        missing = await http.post(hub.url(), json=body, headers=headers)
        bad = await http.post(hub.url(), json=body, headers={**headers, "Authorization": "Bearer ahk-wrong"})
    for response in (missing, bad):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["error"]["code"] == -32001


async def test_one_server_alone_under_its_original_names(config: dict[str, Any], tmp_path: Path) -> None:
    async with running_hub(config, tmp_path) as hub:
        async with mcp_client(hub.url("/mcp/fixture"), ALICE) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool("echo", {"message": "alone"})
            prompt = await client.get_prompt("greeting", {"name": "Ada"})
        async with mcp_client(hub.url("/mcp/fixture"), BOB) as bob:
            bob_names = [t.name for t in (await bob.list_tools()).tools]
            with pytest.raises(MCPError) as denied:
                await bob.call_tool("add", {"a": 1, "b": 2})
        async with httpx2.AsyncClient() as http:
            missing = await http.post(
                hub.url("/mcp/nope"),
                json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                headers={"Authorization": f"Bearer {ALICE}"},
            )
    assert "echo" in names and "fixture__echo" not in names
    assert isinstance(result.content[0], types.TextContent) and result.content[0].text == "alone"
    assert prompt.messages
    assert bob_names == ["echo"]
    assert denied.value.error.message == "unknown tool: add"
    assert missing.status_code == 404


async def test_prompts_and_resources_are_aggregated_and_filtered(config: dict[str, Any], tmp_path: Path) -> None:
    async with running_hub(config, tmp_path) as hub:
        async with mcp_client(hub.url(), ALICE) as alice:
            prompts = [p.name for p in (await alice.list_prompts()).prompts]
            resources = [str(r.uri) for r in (await alice.list_resources()).resources]
            templates = [t.uri_template for t in (await alice.list_resource_templates()).resource_templates]
            readme = await alice.read_resource("fixture://readme")
            item = await alice.read_resource("fixture://items/42")
            greeting = await alice.get_prompt("fixture__greeting", {"name": "Ada"})
        async with mcp_client(hub.url(), BOB) as bob:
            bob_resources = [str(r.uri) for r in (await bob.list_resources()).resources]
            with pytest.raises(MCPError):
                await bob.read_resource("fixture://logo.png")
            bob_readme = await bob.read_resource("fixture://readme")
    assert "fixture__greeting" in prompts and "fixture__review_code" in prompts
    assert "fixture://readme" in resources and "fixture://logo.png" in resources
    assert "fixture://items/{item_id}" in templates
    assert readme.contents and item.contents
    assert greeting.messages
    assert bob_resources == ["fixture://readme"]
    assert bob_readme.contents


async def test_progress_from_the_upstream_reaches_the_caller(config: dict[str, Any], tmp_path: Path) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with running_hub(config, tmp_path) as hub, mcp_client(hub.url(), ALICE) as client:
        with anyio.fail_after(PATIENCE):
            result = await client.call_tool(
                "fixture__slow", {"seconds": 0.2, "steps": 3}, progress_callback=on_progress
            )
    assert not result.is_error
    assert len(seen) == 3 and seen == sorted(seen)


async def test_sampling_from_a_per_client_upstream_reaches_the_client_that_called(tmp_path: Path) -> None:
    config = base_config({"fixture": {**fixture_stdio(), "session": "per_client"}})
    asked: list[str] = []

    async def sampling(context: ClientRequestContext, params: types.CreateMessageRequestParams) -> Any:
        content = params.messages[0].content
        asked.append(content.text if isinstance(content, types.TextContent) else "?")
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="forty-two"), model="fake-model"
        )

    async with running_hub(config, tmp_path) as hub:
        async with mcp_client(hub.url(), ALICE, sampling_callback=sampling) as client:
            result = await client.call_tool("fixture__ask_llm", {"prompt": "the answer?"})
        async with mcp_client(hub.url(), ALICE) as plain:
            with pytest.raises(MCPError) as refused:
                await plain.call_tool("fixture__ask_llm", {"prompt": "the answer?"})
    assert asked == ["the answer?"]
    assert isinstance(result.content[0], types.TextContent) and "forty-two" in result.content[0].text
    assert "sampling" in refused.value.error.message


async def test_a_new_upstream_tool_appears_after_list_changed(config: dict[str, Any], tmp_path: Path) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with running_hub(config, tmp_path) as hub, mcp_client(hub.url(), ALICE, message_handler=on_message) as client:
        before = {t.name for t in (await client.list_tools()).tools}
        await client.call_tool("fixture__add_tool", {"name": "late"})
        with anyio.fail_after(PATIENCE):
            await changed.wait()
        after = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("fixture__late", {"message": "hi"})
    assert "fixture__late" not in before
    assert "fixture__late" in after
    assert not result.is_error


async def test_every_call_is_recorded_in_the_request_log(config: dict[str, Any], tmp_path: Path) -> None:
    async with running_hub(config, tmp_path) as hub:
        async with mcp_client(hub.url(), ALICE) as client:
            await client.call_tool("fixture__echo", {"message": "logged"})
            with pytest.raises(MCPError):
                await client.call_tool("fixture__missing", {})
        assert hub.hub.request_log is not None
        await hub.hub.request_log.flush()
        rows = hub.hub.store.recent_log()
    by_target = {r.target: r for r in rows}
    assert by_target["fixture__echo"].outcome == "ok" and by_target["fixture__echo"].key_name == "alice"
    assert by_target["fixture__missing"].outcome == "not_found_error"
    assert by_target["fixture__echo"].latency_ms > 0

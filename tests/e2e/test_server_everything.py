"""The reference `server-everything` behind the hub over all three upstream transports, plus `mcp-server-time`.

One hub (in this test's event loop, real HTTP on a free loopback port) aggregates four upstreams:
server-everything over stdio (`everything`), legacy SSE (`evsse`) and Streamable HTTP (`evhttp`), and the
PyPI `mcp-server-time` over stdio (`time`). The real `mcp` SDK client talks to the hub's `/mcp` with a key,
in both protocol eras, and what comes back is compared with what the upstreams answer directly.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from mcp.client.sse import sse_client

from tests.hub.harness import ALICE, RunningHub, base_config, mcp_client, running_hub
from tests.tools import ServedProcess, node_tools, served

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ERAS = ["legacy", "2026-07-28"]
EVERYTHING = {"everything": "stdio", "evsse": "sse", "evhttp": "streamableHttp"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Setup:
    hub: RunningHub
    sse: ServedProcess
    http: ServedProcess


@contextlib.asynccontextmanager
async def _everything_behind_a_hub(tmp_path: Path) -> AsyncIterator[Setup]:
    tools = node_tools()
    env = tools.env()
    stdio = tools.server_everything("stdio")
    async with (
        served(tools.server_everything("sse"), env={**env, "PORT": "{port}"}) as sse,
        served(tools.server_everything("streamableHttp"), env={**env, "PORT": "{port}"}) as http,
    ):
        servers = {
            "everything": {"transport": "stdio", "command": stdio[0], "args": stdio[1:], "env": {"PATH": env["PATH"]}},
            "evsse": {"transport": "sse", "url": sse.url("/sse")},
            "evhttp": {"transport": "http", "url": http.url("/mcp")},
            "time": {"transport": "stdio", "command": "mcp-server-time", "args": ["--local-timezone", "UTC"]},
        }
        async with running_hub(base_config(servers), tmp_path) as hub:
            yield Setup(hub, sse, http)


@pytest.fixture(scope="module")
async def setup(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Setup]:
    async with _everything_behind_a_hub(tmp_path_factory.mktemp("everything")) as running:
        yield running


def _direct(setup: Setup, server: str) -> Any:
    """A client target for talking to one server-everything upstream without the hub."""
    if server == "evsse":
        return sse_client(setup.sse.url("/sse"))
    return setup.http.url("/mcp")


def _unprefixed(tool: types.Tool, server: str) -> dict[str, Any]:
    dumped = tool.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert dumped["name"].startswith(f"{server}__")
    return {**dumped, "name": dumped["name"].removeprefix(f"{server}__")}


async def test_every_upstream_is_ready_and_names_are_namespaced_in_a_stable_order(setup: Setup) -> None:
    health = {name: up.health.state.value for name, up in setup.hub.hub.registry.upstreams.items()}
    assert health == {"everything": "ready", "evsse": "ready", "evhttp": "ready", "time": "ready"}
    async with mcp_client(setup.hub.url(), ALICE) as first, mcp_client(setup.hub.url(), ALICE) as second:
        names = [t.name for t in (await first.list_tools()).tools]
        again = [t.name for t in (await first.list_tools()).tools]
        other = [t.name for t in (await second.list_tools()).tools]
        prompts = [p.name for p in (await first.list_prompts()).prompts]
    assert names == again == other == sorted(names)
    assert prompts == sorted(prompts)
    for server in EVERYTHING:
        # Names with '-' survive namespacing unchanged.
        for tool in ("echo", "get-sum", "get-structured-content", "get-tiny-image"):
            assert f"{server}__{tool}" in names
        assert f"{server}__simple-prompt" in prompts and f"{server}__args-prompt" in prompts
    assert {"time__get_current_time", "time__convert_time"} <= set(names)
    assert all(name.split("__", 1)[0] in {*EVERYTHING, "time"} for name in names)


@pytest.mark.parametrize("server", ["evsse", "evhttp"])
async def test_tool_definitions_are_passed_on_faithfully(setup: Setup, server: str) -> None:
    async with Client(_direct(setup, server), mode="legacy") as direct:
        upstream = {
            t.name: t.model_dump(by_alias=True, mode="json", exclude_none=True)
            for t in (await direct.list_tools()).tools
        }
    async with mcp_client(setup.hub.url(), ALICE) as client:
        through = [t for t in (await client.list_tools()).tools if t.name.startswith(f"{server}__")]
    shown = {d["name"]: d for d in (_unprefixed(t, server) for t in through)}
    assert shown == upstream
    structured = shown["get-structured-content"]
    assert structured["outputSchema"]["required"] == ["temperature", "conditions", "humidity"]


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("server", list(EVERYTHING))
async def test_tools_prompts_and_resources_through_the_hub(setup: Setup, server: str, mode: str) -> None:
    async with mcp_client(setup.hub.url(), ALICE, mode=mode) as client:
        echo = await client.call_tool(f"{server}__echo", {"message": "hello through the hub"})
        added = await client.call_tool(f"{server}__get-sum", {"a": 19, "b": 23})
        weather = await client.call_tool(f"{server}__get-structured-content", {"location": "Chicago"})
        image = await client.call_tool(f"{server}__get-tiny-image", {})
        simple = await client.get_prompt(f"{server}__simple-prompt")
        with_args = await client.get_prompt(f"{server}__args-prompt", {"city": "Oslo", "state": "Viken"})
    assert echo.content == [types.TextContent(type="text", text="Echo: hello through the hub")]
    assert added.content == [types.TextContent(type="text", text="The sum of 19 and 23 is 42.")]
    assert not weather.is_error and weather.structured_content is not None
    assert set(weather.structured_content) == {"temperature", "conditions", "humidity"}
    assert isinstance(weather.structured_content["temperature"], int | float)
    images = [block for block in image.content if isinstance(block, types.ImageContent)]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    assert base64.b64decode(images[0].data).startswith(PNG_MAGIC)
    assert simple.messages and simple.messages[0].role == "user"
    assert with_args.messages[0].content == types.TextContent(type="text", text="What's weather in Oslo, Viken?")


@pytest.mark.parametrize("server", ["evsse", "evhttp"])
async def test_results_equal_what_the_upstream_answers_directly(setup: Setup, server: str) -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("echo", {"message": "same"}),
        ("get-sum", {"a": 1.5, "b": 2}),
        ("get-structured-content", {"location": "New York"}),
        ("get-tiny-image", {}),
    ]
    async with Client(_direct(setup, server), mode="legacy") as direct:
        expected = [(await direct.call_tool(name, args)).model_dump(exclude={"meta"}) for name, args in calls]
        doc = await direct.read_resource("demo://resource/static/document/architecture.md")
    async with mcp_client(setup.hub.url(), ALICE) as client:
        got = [(await client.call_tool(f"{server}__{name}", args)).model_dump(exclude={"meta"}) for name, args in calls]
        # The same static resource is offered by three upstreams; the later ones are exposed as `server+uri`.
        uri = "demo://resource/static/document/architecture.md"
        read = await client.read_resource(uri if server == "everything" else f"{server}+{uri}")
    assert got == expected
    assert isinstance(doc.contents[0], types.TextResourceContents)
    assert isinstance(read.contents[0], types.TextResourceContents)
    assert read.contents[0].text == doc.contents[0].text and read.contents[0].text.startswith("# Everything Server")


async def test_resources_and_templates_are_listed_and_read(setup: Setup) -> None:
    async with mcp_client(setup.hub.url(), ALICE) as client:
        resources = [str(r.uri) for r in (await client.list_resources()).resources]
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        static = await client.read_resource("demo://resource/static/document/features.md")
        dynamic = await client.read_resource("demo://resource/dynamic/text/7")
    assert "demo://resource/static/document/features.md" in resources
    assert "evsse+demo://resource/static/document/features.md" in resources
    assert "evhttp+demo://resource/static/document/features.md" in resources
    assert "demo://resource/dynamic/text/{resourceId}" in templates
    assert (
        isinstance(static.contents[0], types.TextResourceContents) and static.contents[0].mime_type == "text/markdown"
    )
    assert isinstance(dynamic.contents[0], types.TextResourceContents)
    assert str(dynamic.contents[0].uri) == "demo://resource/dynamic/text/7"
    assert dynamic.contents[0].text.startswith("Resource 7:")


@pytest.mark.parametrize("mode", ERAS)
async def test_mcp_server_time_over_stdio(setup: Setup, mode: str) -> None:
    async with mcp_client(setup.hub.url(), ALICE, mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        now = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
        converted = await client.call_tool(
            "time__convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}
        )
    assert tools["time__get_current_time"].output_schema is not None
    assert not now.is_error and now.structured_content is not None
    assert now.structured_content["timezone"] == "UTC"
    reported = datetime.fromisoformat(now.structured_content["datetime"])
    assert abs((reported - datetime.now(UTC)).total_seconds()) < 120
    assert not converted.is_error and converted.structured_content is not None
    assert converted.structured_content["target"]["datetime"].endswith("21:00:00+09:00")

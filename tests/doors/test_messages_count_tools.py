"""`POST /v1/messages/count_tokens` counts the request as the model will be sent it: with the MCP tools a key offers in
chat (`chat_tools`) merged in, as `/v1/messages` merges them. Passed through, Anthropic is asked to count the body
with those tools; translated, the documented estimate counts them. The hub's tools come from a real MCP server (the
`mcp` SDK over Streamable HTTP on 127.0.0.1); the Anthropic upstream is the `llm.testing` fake, which records the
`count_tokens` bodies it is sent and answers with `llm.messages.estimate_input_tokens` of them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam, ToolParam
from mcp.server.mcpserver import MCPServer

from llm.messages import estimate_input_tokens
from llm.testing import FakeRequest, FakeScript, anthropic_app, serve
from tests.auth.servers import bound_socket, serve as serve_apps
from tests.doors.harness import ANTHROPIC_SECRET, hub_with_fakes, running_fakes
from tests.hub.harness import ALICE, BOB, RunningHub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

PASSED = "claude-sonnet-4-5"
TRANSLATED = "gpt-messages"
MODELS = {
    PASSED: {"deployments": [{"provider": "anthropic", "model": "claude-3-5-haiku"}]},
    TRANSLATED: {"deployments": [{"provider": "openai", "model": "gpt-4o-mini"}]},
}
KEYS = [
    {"name": "offered", "secret": ALICE, "models": ["*"], "tools": ["tools__*"], "chat_tools": ["tools__*"]},
    {"name": "plain", "secret": BOB, "models": ["*"], "tools": ["tools__*"]},
]
USER: list[MessageParam] = [{"role": "user", "content": "add 2 and 3"}]
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "The client's own tool.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@dataclass
class Setup:
    hub: RunningHub
    received: list[FakeRequest]

    @property
    def counted(self) -> list[FakeRequest]:
        """The `count_tokens` requests the Anthropic upstream received."""
        return [r for r in self.received if r.operation == "count_tokens"]

    def client(self, key: str) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=self.hub.base, api_key=key, max_retries=0, timeout=PATIENCE)


@asynccontextmanager
async def tools_server() -> AsyncGenerator[str]:
    server = MCPServer("tools")

    @server.tool()
    def add(a: int, b: int) -> str:
        """Add two integers."""
        return str(a + b)

    @server.tool()
    def lookup(query: str) -> str:
        """Look something up."""
        return f"found {query}"

    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    async with serve_apps([(server.streamable_http_app(stateless_http=True, json_response=True), sock)]):
        yield url


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncGenerator[Setup]:
    received: list[FakeRequest] = []
    app = anthropic_app(FakeScript(), keys=[ANTHROPIC_SECRET], received=received)
    async with tools_server() as url, running_fakes() as fakes, serve(app) as anthropic_url:
        fakes.providers["anthropic"]["base_url"] = anthropic_url
        servers = {"tools": {"transport": "http", "url": url}}
        async with hub_with_fakes(tmp_path, fakes, KEYS, models=MODELS, servers=servers) as hub:
            yield Setup(hub, received)


def tool_names(tools: Any) -> list[str]:
    return [t["name"] for t in tools]


async def test_a_passed_through_count_asks_anthropic_with_the_offered_mcp_tools(setup: Setup) -> None:
    async with setup.client(ALICE) as client:
        counted = await client.messages.count_tokens(model=PASSED, messages=USER, tools=[WEATHER])
    (sent,) = setup.counted
    assert tool_names(sent.body["tools"]) == ["get_weather", "tools__add", "tools__lookup"]
    assert sent.body["tools"][1]["input_schema"]["properties"].keys() == {"a", "b"}
    assert counted.input_tokens == estimate_input_tokens(sent.body)


async def test_a_passed_through_count_without_chat_tools_sends_the_clients_body(setup: Setup) -> None:
    async with setup.client(BOB) as client:
        counted = await client.messages.count_tokens(model=PASSED, messages=USER, tools=[WEATHER])
    (sent,) = setup.counted
    assert tool_names(sent.body["tools"]) == ["get_weather"]
    assert counted.input_tokens == estimate_input_tokens(sent.body)


async def test_a_translated_count_estimates_the_request_with_the_offered_mcp_tools(setup: Setup) -> None:
    async with setup.client(ALICE) as offered, setup.client(BOB) as plain:
        counted = await offered.messages.count_tokens(model=TRANSLATED, messages=USER, tools=[WEATHER])
        bare = await plain.messages.count_tokens(model=TRANSLATED, messages=USER, tools=[WEATHER])
    assert bare.input_tokens == estimate_input_tokens({"messages": USER, "tools": [WEATHER]})
    async with setup.client(ALICE) as client:
        await client.messages.count_tokens(model=PASSED, messages=USER, tools=[WEATHER])
    (sent,) = setup.counted  # the same tools, as the passed-through count was sent them
    assert counted.input_tokens == estimate_input_tokens({"messages": USER, "tools": sent.body["tools"]})
    assert counted.input_tokens > bare.input_tokens
    assert setup.counted == [sent]  # the translated counts asked no provider


async def test_the_requests_agenthub_options_narrow_the_counted_tools_and_are_not_sent(setup: Setup) -> None:
    async with setup.client(ALICE) as client:
        await client.messages.count_tokens(
            model=PASSED, messages=USER, extra_body={"agenthub": {"chat_tools": ["tools__add"]}}
        )
    (sent,) = setup.counted
    assert tool_names(sent.body["tools"]) == ["tools__add"]
    assert "agenthub" not in sent.body

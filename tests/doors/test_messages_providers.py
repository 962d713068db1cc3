"""The Anthropic Messages door translated to every other provider kind, end to end with the official `anthropic`
SDK: Gemini (`generateContent` / `streamGenerateContent`), Bedrock (`Converse` / `ConverseStream`), Azure OpenAI
(deployment URLs) and an OpenAI-compatible server, each in front of its `llm.testing` fake. Each test checks what
the client got and what the provider was sent, in the provider's own wire format."""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx2
import orjson
import pytest
from anthropic.types import MessageParam

from llm.messages import estimate_input_tokens
from llm.testing import Reply, ToolCall
from tests.doors.harness import AZURE_SECRET, Fakes, hub_with_fakes, running_fakes
from tests.hub.harness import ALICE, RunningHub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

CLAUDE_ON_BEDROCK = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA_ON_BEDROCK = "amazon.nova-lite-v1:0"
MODELS: dict[str, Any] = {
    "gemini": {"deployments": [{"provider": "gemini", "model": "gemini-2.5-flash"}]},
    "bedrock": {"deployments": [{"provider": "bedrock", "model": CLAUDE_ON_BEDROCK}]},
    "nova": {"deployments": [{"provider": "bedrock", "model": NOVA_ON_BEDROCK}]},
    "azure": {"deployments": [{"provider": "azure", "model": "gpt-4o"}]},
    "azure-o": {"deployments": [{"provider": "azure", "model": "o4-mini"}]},
    "compatible": {"deployments": [{"provider": "compatible", "model": "qwen3-32b"}]},
}
KINDS = ("gemini", "bedrock", "azure", "compatible")
SCRIPT = {"gemini": "gemini", "bedrock": "bedrock", "nova": "bedrock", "azure": "azure", "azure-o": "azure",
          "compatible": "openai"}  # fmt: skip
"""The fake that answers each alias (the OpenAI-compatible provider is served by the OpenAI fake)."""
USER: list[MessageParam] = [{"role": "user", "content": "hello"}]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake-image-bytes").decode()
WEATHER: list[Any] = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


@dataclass
class Setup:
    hub: RunningHub
    fakes: Fakes

    def client(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(base_url=self.hub.base, api_key=ALICE, max_retries=0, timeout=PATIENCE)

    def seen(self, alias: str) -> list[Any]:
        return self.fakes.scripts[SCRIPT[alias]].requests

    def push(self, alias: str, *replies: Reply) -> None:
        self.fakes.scripts[SCRIPT[alias]].push(*replies)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncGenerator[Setup]:
    async with running_fakes() as fakes:
        fakes.providers["compatible"] = {
            "kind": "openai-compatible",
            "base_url": fakes.providers["openai"]["base_url"],
            "keys": [{"name": "main", "secret": "env:T_OPENAI"}],
        }
        fakes.providers["azure"]["deployments"] = {"gpt-4o": "prod-4o", "o4-mini": "prod-o4"}
        async with hub_with_fakes(tmp_path, fakes, models=MODELS) as hub:
            yield Setup(hub, fakes)


def system_sent(alias: str, body: dict[str, Any]) -> str:
    """The system prompt as the provider's wire carries it."""
    if alias == "gemini":
        return "".join(p["text"] for p in body["systemInstruction"]["parts"])
    if alias == "bedrock":
        return "".join(b["text"] for b in body["system"])
    assert body["messages"][0]["role"] == "system"
    return str(body["messages"][0]["content"])


def tool_result_sent(alias: str, body: dict[str, Any]) -> Any:
    """The tool result of the last turn as the provider's wire carries it."""
    if alias == "gemini":
        (part,) = body["contents"][-1]["parts"]
        return part["functionResponse"]
    if alias == "bedrock":
        (block,) = body["messages"][-1]["content"]
        return block["toolResult"]
    return body["messages"][-1]


async def raw_events(setup: Setup, body: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The event names and data of a streamed request read off the wire (the SDK hides `ping`)."""
    async with (
        httpx2.AsyncClient(timeout=PATIENCE) as http,
        http.stream("POST", setup.hub.url("/v1/messages"), json=body, headers={"x-api-key": ALICE}) as response,
    ):
        assert response.status_code == 200
        wire = b"".join([chunk async for chunk in response.aiter_bytes()])
    names: list[str] = []
    events: list[dict[str, Any]] = []
    for frame in wire.split(b"\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(b": ", 1) for line in frame.split(b"\n"))
        names.append(lines[b"event"].decode())
        events.append(orjson.loads(lines[b"data"]))
        assert events[-1]["type"] == names[-1]
    return names, events


# -- every kind ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alias", KINDS)
async def test_a_whole_answer_with_its_system_prompt_usage_and_stop_reason(setup: Setup, alias: str) -> None:
    setup.push(alias, Reply("Hello there.", prompt_tokens=21, completion_tokens=4))
    async with setup.client() as client:
        response = await client.messages.with_raw_response.create(
            model=alias, max_tokens=64, system="Be brief.", messages=USER
        )
        message = await response.parse()
    assert message.model == alias and message.role == "assistant" and message.stop_reason == "end_turn"
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", "Hello there.")]
    assert message.usage.input_tokens == 21 and message.usage.output_tokens == 4
    assert response.headers["x-agenthub-provider"] == alias
    assert "x-agenthub-dropped" not in response.headers
    (seen,) = setup.seen(alias)
    assert system_sent(alias, seen.body) == "Be brief."
    assert not seen.stream


@pytest.mark.parametrize("alias", KINDS)
async def test_a_stream_follows_anthropics_event_order(setup: Setup, alias: str) -> None:
    setup.push(alias, Reply("Streamed in pieces.", prompt_tokens=9, completion_tokens=5))
    body = {"model": alias, "max_tokens": 64, "stream": True, "messages": USER}
    names, events = await raw_events(setup, body)
    deltas = len(names) - 6
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert deltas >= 2  # the answer arrived in pieces, not whole at the end
    assert "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta") == "Streamed in pieces."
    final = events[-2]
    assert final["delta"]["stop_reason"] == "end_turn"
    assert final["usage"]["input_tokens"] == 9 and final["usage"]["output_tokens"] == 5
    (seen,) = setup.seen(alias)
    assert seen.stream


@pytest.mark.parametrize("alias", KINDS)
async def test_a_tool_use_round_trip_with_streamed_input(setup: Setup, alias: str) -> None:
    call = ToolCall("get_weather", {"city": "Oslo", "days": [1, 2]}, id="call_oslo")
    setup.push(alias, Reply(tool_calls=[call]), Reply("Sunny in Oslo."))
    async with setup.client() as client:
        async with client.messages.stream(model=alias, max_tokens=64, messages=USER, tools=WEATHER) as stream:
            kinds = [event.type async for event in stream]
            first = await stream.get_final_message()
        (use,) = [b for b in first.content if b.type == "tool_use"]
        history: list[MessageParam] = [
            *USER,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21 C"}]},
        ]
        second = await client.messages.create(model=alias, max_tokens=64, messages=history, tools=WEATHER)
    assert "input_json" in kinds
    assert first.stop_reason == "tool_use" and use.name == "get_weather"
    assert use.input == {"city": "Oslo", "days": [1, 2]}
    assert second.stop_reason == "end_turn" and second.content[0].type == "text"
    assert second.content[0].text == "Sunny in Oslo."
    offered, answered = setup.seen(alias)
    result = tool_result_sent(alias, answered.body)
    if alias == "gemini":
        assert offered.body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
        assert result == {"name": "get_weather", "response": {"content": "sunny, 21 C"}}
        assert answered.body["contents"][1]["parts"] == [
            {"functionCall": {"name": "get_weather", "args": {"city": "Oslo", "days": [1, 2]}}}
        ]
    elif alias == "bedrock":
        assert offered.body["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"
        assert result == {"toolUseId": use.id, "content": [{"text": "sunny, 21 C"}]}
    else:
        assert offered.body["tools"][0]["function"]["name"] == "get_weather"
        assert result == {"role": "tool", "tool_call_id": use.id, "content": "sunny, 21 C"}


@pytest.mark.parametrize("alias", KINDS)
async def test_an_image_reaches_the_provider_in_its_own_format(setup: Setup, alias: str) -> None:
    setup.push(alias, Reply("A tiny picture."))
    content: Any = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "What is this?"},
    ]
    async with setup.client() as client:
        message = await client.messages.create(
            model=alias, max_tokens=64, messages=[{"role": "user", "content": content}]
        )
    assert message.content[0].type == "text" and message.content[0].text == "A tiny picture."
    (seen,) = setup.seen(alias)
    if alias == "gemini":
        assert seen.body["contents"][0]["parts"] == [
            {"inlineData": {"mimeType": "image/png", "data": PNG}},
            {"text": "What is this?"},
        ]
    elif alias == "bedrock":
        assert seen.body["messages"][0]["content"] == [
            {"image": {"format": "png", "source": {"bytes": PNG}}},
            {"text": "What is this?"},
        ]
    else:
        assert seen.body["messages"][0]["content"] == [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "text", "text": "What is this?"},
        ]


@pytest.mark.parametrize("alias", KINDS)
async def test_count_tokens_is_estimated_without_asking_the_provider(setup: Setup, alias: str) -> None:
    async with setup.client() as client:
        counted = await client.messages.count_tokens(model=alias, messages=USER, system="Be brief.")
    assert counted.input_tokens == estimate_input_tokens({"messages": USER, "system": "Be brief."})
    assert setup.seen(alias) == []


@pytest.mark.parametrize("alias", KINDS)
async def test_the_length_limit_is_max_tokens(setup: Setup, alias: str) -> None:
    setup.push(alias, Reply("Cut sh", finish="length"), Reply("Cut sh", finish="length"))
    async with setup.client() as client:
        whole = await client.messages.create(model=alias, max_tokens=2, messages=USER)
        async with client.messages.stream(model=alias, max_tokens=2, messages=USER) as stream:
            streamed = await stream.get_final_message()
    assert whole.stop_reason == "max_tokens" and streamed.stop_reason == "max_tokens"


# -- Azure's URL shape -----------------------------------------------------------------------------------------------


async def test_azure_is_asked_at_its_deployment_url_with_its_key(setup: Setup) -> None:
    setup.push("azure", Reply("From Azure."))
    async with setup.client() as client:
        await client.messages.create(model="azure", max_tokens=64, messages=USER)
    (seen,) = setup.seen("azure")
    assert seen.path == "/openai/deployments/prod-4o/chat/completions"
    assert seen.headers["api-key"] == AZURE_SECRET and "authorization" not in seen.headers
    assert seen.body["model"] == "prod-4o"


# -- usage the providers report --------------------------------------------------------------------------------------


@pytest.mark.parametrize("alias", ("gemini", "bedrock", "azure"))
async def test_cache_reads_are_reported_apart_from_the_input(setup: Setup, alias: str) -> None:
    setup.push(alias, Reply("Cached.", prompt_tokens=10, cache_read_tokens=30, completion_tokens=2))
    setup.push(alias, Reply("Cached.", prompt_tokens=10, cache_read_tokens=30, completion_tokens=2))
    async with setup.client() as client:
        whole = await client.messages.create(model=alias, max_tokens=64, messages=USER)
        async with client.messages.stream(model=alias, max_tokens=64, messages=USER) as stream:
            streamed = await stream.get_final_message()
    for message in (whole, streamed):
        assert message.usage.input_tokens == 10 and message.usage.cache_read_input_tokens == 30
        assert message.usage.output_tokens == 2


async def test_bedrock_cache_writes_are_reported(setup: Setup) -> None:
    setup.push("bedrock", Reply("Written.", prompt_tokens=10, cache_write_tokens=50, completion_tokens=2))
    async with setup.client() as client:
        message = await client.messages.create(model="bedrock", max_tokens=64, messages=USER)
    assert message.usage.input_tokens == 10 and message.usage.cache_creation_input_tokens == 50


# -- thinking --------------------------------------------------------------------------------------------------------


THINK: Any = {"type": "enabled", "budget_tokens": 2048}


async def test_gemini_thinking_maps_to_its_thinking_config_and_thought_parts(setup: Setup) -> None:
    reply = Reply("The answer.", thinking="Let me think.", reasoning_tokens=7, completion_tokens=9)
    setup.push("gemini", reply, reply)
    async with setup.client() as client:
        response = await client.messages.with_raw_response.create(
            model="gemini", max_tokens=4096, messages=USER, thinking=THINK
        )
        whole = await response.parse()
        async with client.messages.stream(model="gemini", max_tokens=4096, messages=USER, thinking=THINK) as stream:
            kinds = [event.type async for event in stream]
            streamed = await stream.get_final_message()
    assert "x-agenthub-dropped" not in response.headers
    for message in (whole, streamed):
        thinking, text = message.content
        assert thinking.type == "thinking" and thinking.thinking == "Let me think."
        assert text.type == "text" and text.text == "The answer."
        assert message.usage.output_tokens == 9
    assert "thinking" in kinds
    for seen in setup.seen("gemini"):
        assert seen.body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 2048, "includeThoughts": True}


async def test_claude_on_bedrock_thinking_maps_to_reasoning_content(setup: Setup) -> None:
    reply = Reply("The answer.", thinking="Let me think.")
    setup.push("bedrock", reply, reply)
    async with setup.client() as client:
        response = await client.messages.with_raw_response.create(
            model="bedrock", max_tokens=4096, messages=USER, thinking=THINK
        )
        whole = await response.parse()
        async with client.messages.stream(model="bedrock", max_tokens=4096, messages=USER, thinking=THINK) as stream:
            streamed = await stream.get_final_message()
    assert "x-agenthub-dropped" not in response.headers
    for message in (whole, streamed):
        thinking, text = message.content
        assert thinking.type == "thinking" and thinking.thinking == "Let me think."
        assert text.type == "text" and text.text == "The answer."
    for seen in setup.seen("bedrock"):
        assert seen.body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}


async def test_azure_reasoning_models_take_reasoning_effort(setup: Setup) -> None:
    setup.push("azure-o", Reply("Reasoned.", reasoning_tokens=30, completion_tokens=34))
    async with setup.client() as client:
        response = await client.messages.with_raw_response.create(
            model="azure-o", max_tokens=4096, messages=USER, thinking=THINK
        )
        message = await response.parse()
    assert "x-agenthub-dropped" not in response.headers
    (seen,) = setup.seen("azure-o")
    assert seen.body["reasoning_effort"] == "low" and "thinking" not in seen.body
    assert message.usage.output_tokens == 34


@pytest.mark.parametrize("alias", ("nova", "azure"))
async def test_thinking_is_dropped_and_said_so_where_the_target_has_no_equivalent(setup: Setup, alias: str) -> None:
    setup.push(alias, Reply("Plain."), Reply("Plain."))
    async with setup.client() as client:
        response = await client.messages.with_raw_response.create(
            model=alias, max_tokens=4096, messages=USER, thinking=THINK
        )
        async with client.messages.with_streaming_response.create(
            model=alias, max_tokens=4096, messages=USER, thinking=THINK, stream=True
        ) as streamed:
            dropped = streamed.headers["x-agenthub-dropped"]
            async for _ in await streamed.parse():
                pass
    assert response.headers["x-agenthub-dropped"] == "thinking" and dropped == "thinking"
    for seen in setup.seen(alias):
        assert "additionalModelRequestFields" not in seen.body and "reasoning_effort" not in seen.body


async def test_the_sync_client_works_against_every_kind(setup: Setup) -> None:
    for alias in KINDS:
        setup.push(alias, Reply(f"Hi from {alias}."))

    def run() -> list[str]:
        with anthropic.Anthropic(base_url=setup.hub.base, api_key=ALICE, max_retries=0, timeout=PATIENCE) as client:
            answers: list[str] = []
            for alias in KINDS:
                message = client.messages.create(model=alias, max_tokens=16, messages=USER)
                answers.append("".join(b.text for b in message.content if b.type == "text"))
            return answers

    assert await anyio.to_thread.run_sync(run) == [f"Hi from {alias}." for alias in KINDS]


async def test_a_tool_loop_with_thinking_on_claude_on_bedrock_continues_without_thinking(setup: Setup) -> None:
    """Claude refuses thinking in a tool-use turn whose assistant message does not start with its signed thinking:
    when the client does not send that thinking back, the turn that answers tools goes without thinking, and says
    so (with the thinking sent back, thinking stays on: `tests/doors/test_messages_signatures.py`)."""
    call = ToolCall("get_weather", {"city": "Oslo"}, id="tooluse_1")
    setup.push("bedrock", Reply(thinking="Look it up.", tool_calls=[call]), Reply("Sunny."))
    async with setup.client() as client:
        first = await client.messages.create(
            model="bedrock", max_tokens=4096, messages=USER, tools=WEATHER, thinking=THINK
        )
        history: list[MessageParam] = [
            *USER,
            {"role": "assistant", "content": [b for b in first.content if b.type != "thinking"]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tooluse_1", "content": "sunny"}]},
        ]
        response = await client.messages.with_raw_response.create(
            model="bedrock", max_tokens=4096, messages=history, tools=WEATHER, thinking=THINK
        )
        second = await response.parse()
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    assert second.content[0].type == "text" and second.content[0].text == "Sunny."
    assert response.headers["x-agenthub-dropped"] == "thinking"
    asked, answered = setup.seen("bedrock")
    assert asked.body["additionalModelRequestFields"] == {"thinking": THINK}
    assert "additionalModelRequestFields" not in answered.body

"""Thinking signatures carried through the Messages translation, so that multi-turn tool use works where the
provider demands its signatures back: Claude on Bedrock (`reasoningContent` with its `signature`, and
`redactedContent`) and Gemini 3 (`thoughtSignature` on function-call parts, and on thought parts).

The fakes demand what the real APIs demand: the Bedrock fake refuses (400 `ValidationException`) a tool-result turn
with thinking on whose assistant message does not start with the signed reasoning it sent; the Gemini fake signs
the first function call of every Gemini 3 response and refuses (400 `INVALID_ARGUMENT`) a request whose current turn
holds a function call without the signature it issued for it. The client is the official `anthropic` SDK.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest
from anthropic.types import MessageParam

from llm.messaging import MessagesRequest, outbound
from llm.testing import Raw, Reply, ToolCall
from llm.testing.fake_gemini import thought_signature
from tests.doors.harness import Fakes, hub_with_fakes, running_fakes
from tests.hub.harness import ALICE, RunningHub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

CLAUDE_ON_BEDROCK = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
MODELS: dict[str, Any] = {
    "bedrock": {"deployments": [{"provider": "bedrock", "model": CLAUDE_ON_BEDROCK}]},
    "gemini-3": {"deployments": [{"provider": "gemini", "model": "gemini-3-pro-preview"}]},
    "gemini": {"deployments": [{"provider": "gemini", "model": "gemini-2.5-flash"}]},
}
THINK: Any = {"type": "enabled", "budget_tokens": 2048}
USER: list[MessageParam] = [{"role": "user", "content": "weather in Oslo?"}]
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


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncGenerator[Setup]:
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes, models=MODELS) as hub:
        yield Setup(hub, fakes)


def answered(history: list[MessageParam], content: Any, tool_id: str, result: str) -> list[MessageParam]:
    return [
        *history,
        {"role": "assistant", "content": content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": result}]},
    ]


# -- Claude on Bedrock -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True])
async def test_bedrock_signed_thinking_goes_back_and_thinking_stays_on_in_a_tool_loop(
    setup: Setup, streamed: bool
) -> None:
    call = ToolCall("get_weather", {"city": "Oslo"}, id="tooluse_1")
    first_reply = Reply(thinking="Look it up.", signature="sig-bedrock-1", tool_calls=[call])
    setup.fakes.scripts["bedrock"].push(first_reply, Reply("Sunny."))
    async with setup.client() as client:
        if streamed:
            async with client.messages.stream(
                model="bedrock", max_tokens=4096, messages=USER, tools=WEATHER, thinking=THINK
            ) as stream:
                kinds = [event.type async for event in stream]
                first = await stream.get_final_message()
            assert "signature" in kinds
        else:
            first = await client.messages.create(
                model="bedrock", max_tokens=4096, messages=USER, tools=WEATHER, thinking=THINK
            )
        thinking, use = first.content
        assert thinking.type == "thinking" and thinking.thinking == "Look it up."
        assert thinking.signature == "sig-bedrock-1"
        assert use.type == "tool_use"
        response = await client.messages.with_raw_response.create(
            model="bedrock",
            max_tokens=4096,
            messages=answered(USER, first.content, use.id, "sunny"),
            tools=WEATHER,
            thinking=THINK,
        )
        second = await response.parse()
    assert second.content[0].type == "text" and second.content[0].text == "Sunny."
    assert "x-agenthub-dropped" not in response.headers
    _, sent = setup.fakes.scripts["bedrock"].requests
    assert sent.body["additionalModelRequestFields"] == {"thinking": THINK}
    assistant = sent.body["messages"][1]
    assert assistant["role"] == "assistant"
    assert assistant["content"][0] == {
        "reasoningContent": {"reasoningText": {"text": "Look it up.", "signature": "sig-bedrock-1"}}
    }
    assert assistant["content"][1]["toolUse"]["toolUseId"] == "tooluse_1"


@pytest.mark.parametrize("streamed", [False, True])
async def test_bedrock_redacted_reasoning_comes_back_as_redacted_thinking_and_goes_back(
    setup: Setup, streamed: bool
) -> None:
    call = ToolCall("get_weather", {"city": "Oslo"}, id="tooluse_2")
    first_reply = Reply(thinking="Hmm.", redacted_thinking=("b3BhcXVlLXJlYXNvbmluZw==",), tool_calls=[call])
    setup.fakes.scripts["bedrock"].push(first_reply, Reply("Sunny."))
    async with setup.client() as client:
        if streamed:
            async with client.messages.stream(
                model="bedrock", max_tokens=4096, messages=USER, tools=WEATHER, thinking=THINK
            ) as stream:
                first = await stream.get_final_message()
        else:
            first = await client.messages.create(
                model="bedrock", max_tokens=4096, messages=USER, tools=WEATHER, thinking=THINK
            )
        assert [b.type for b in first.content] == ["thinking", "redacted_thinking", "tool_use"]
        redacted = first.content[1]
        assert redacted.type == "redacted_thinking" and redacted.data == "b3BhcXVlLXJlYXNvbmluZw=="
        second = await client.messages.create(
            model="bedrock",
            max_tokens=4096,
            messages=answered(USER, first.content, "tooluse_2", "sunny"),
            tools=WEATHER,
            thinking=THINK,
        )
    assert second.content[0].type == "text"
    _, sent = setup.fakes.scripts["bedrock"].requests
    blocks = sent.body["messages"][1]["content"]
    assert blocks[0]["reasoningContent"]["reasoningText"]["signature"] == "fake-thinking-signature"
    assert blocks[1] == {"reasoningContent": {"redactedContent": "b3BhcXVlLXJlYXNvbmluZw=="}}


# -- Gemini 3 --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_gemini_3_tool_loop_gives_the_function_call_its_signature_back(setup: Setup, streamed: bool) -> None:
    """The signature travels in the `tool_use` id, which every client sends back unchanged, and returns to the
    function-call part it came on."""
    calls = [ToolCall("get_weather", {"city": "Oslo"}), ToolCall("get_weather", {"city": "Bergen"})]
    script = setup.fakes.scripts["gemini"]
    script.push(Reply(tool_calls=calls), Reply("Sunny in both."))
    async with setup.client() as client:
        if streamed:
            async with client.messages.stream(
                model="gemini-3", max_tokens=1024, messages=USER, tools=WEATHER
            ) as stream:
                first = await stream.get_final_message()
        else:
            first = await client.messages.create(model="gemini-3", max_tokens=1024, messages=USER, tools=WEATHER)
        uses = [b for b in first.content if b.type == "tool_use"]
        assert [u.input for u in uses] == [{"city": "Oslo"}, {"city": "Bergen"}]
        history: list[MessageParam] = [
            *USER,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": u.id, "content": "sunny"} for u in uses],
            },
        ]
        second = await client.messages.create(model="gemini-3", max_tokens=1024, messages=history, tools=WEATHER)
    assert second.content[0].type == "text" and second.content[0].text == "Sunny in both."
    asked, sent = script.requests
    assert asked.model == "gemini-3-pro-preview"
    signed, unsigned = sent.body["contents"][1]["parts"]
    assert signed["functionCall"] == {"name": "get_weather", "args": {"city": "Oslo"}}
    assert signed["thoughtSignature"] == thought_signature("get_weather", {"city": "Oslo"})
    assert "thoughtSignature" not in unsigned  # only the first call of a parallel step is signed, as Gemini does


async def test_the_gemini_fake_refuses_a_function_call_without_its_signature(setup: Setup) -> None:
    """The check the loop above passes is real: a client that renames the call loses the signature, and Gemini 3
    refuses the turn."""
    script = setup.fakes.scripts["gemini"]
    script.push(Reply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"})]), Reply("never sent"))
    async with setup.client() as client:
        first = await client.messages.create(model="gemini-3", max_tokens=1024, messages=USER, tools=WEATHER)
        (use,) = [b for b in first.content if b.type == "tool_use"]
        renamed = [{"type": "tool_use", "id": "toolu_renamed", "name": use.name, "input": use.input}]
        with pytest.raises(anthropic.BadRequestError):
            await client.messages.create(
                model="gemini-3",
                max_tokens=1024,
                messages=answered(USER, renamed, "toolu_renamed", "sunny"),
                tools=WEATHER,
            )


SIGNATURE = "Cq8BAb4+9vu/signed+thought=="
THOUGHT = "Check the weather tool."
CALL = {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}
USAGE = {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8}


def candidate(parts: list[Any], *, final: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if final:
        entry["finishReason"] = "STOP"
    return {"candidates": [entry], "usageMetadata": USAGE, "modelVersion": "gemini-2.5-flash"}


def signed_thought(streamed: bool) -> Raw:
    """Gemini's answer with a signed thought before a function call: whole, the signature on the thought part; streamed,
    the thought text first and the signature on an empty thought part after it, as some Gemini endpoints send it."""
    if not streamed:
        parts = [{"text": THOUGHT, "thought": True, "thoughtSignature": SIGNATURE}, CALL]
        return Raw(orjson.dumps(candidate(parts, final=True)))
    chunks = [
        candidate([{"text": THOUGHT, "thought": True}]),
        candidate([{"text": "", "thought": True, "thoughtSignature": SIGNATURE}]),
        candidate([CALL], final=True),
    ]
    body = b"".join(b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks)
    return Raw(body, content_type="text/event-stream")


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_signed_gemini_thought_becomes_a_signed_thinking_block_and_goes_back(
    setup: Setup, streamed: bool
) -> None:
    script = setup.fakes.scripts["gemini"]
    script.push(signed_thought(streamed), Reply("Sunny."))
    async with setup.client() as client:
        if streamed:
            async with client.messages.stream(
                model="gemini", max_tokens=4096, messages=USER, tools=WEATHER, thinking=THINK
            ) as stream:
                first = await stream.get_final_message()
        else:
            first = await client.messages.create(
                model="gemini", max_tokens=4096, messages=USER, tools=WEATHER, thinking=THINK
            )
        thinking, use = first.content
        assert thinking.type == "thinking" and thinking.thinking == THOUGHT
        assert thinking.signature and thinking.signature != SIGNATURE  # marked as Gemini's
        assert use.type == "tool_use"
        await client.messages.create(
            model="gemini",
            max_tokens=4096,
            messages=answered(USER, first.content, use.id, "sunny"),
            tools=WEATHER,
            thinking=THINK,
        )
    _, sent = script.requests
    assert sent.body["contents"][1]["parts"] == [
        {"text": THOUGHT, "thought": True, "thoughtSignature": SIGNATURE},
        CALL,
    ]
    # A thinking block signed by Gemini means nothing to Anthropic: the pass-through leaves it out.
    history = answered(USER, [b.model_dump() for b in first.content], use.id, "sunny")
    request = {"model": "claude", "max_tokens": 64, "messages": history}
    passed = orjson.loads(outbound(MessagesRequest(request, orjson.dumps(request)), "claude"))
    assert [b["type"] for b in passed["messages"][1]["content"]] == ["tool_use"]

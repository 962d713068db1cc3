"""The fakes speak the wire formats as the official SDKs read them, and the recorder and the trap record what came.

These run without the CLIs: they prove the fakes before the CLI tests lean on them (a CLI that failed to parse a
fake's stream would otherwise look like a CLI quirk).
"""

from __future__ import annotations

from typing import cast

import anthropic
import anyio
import openai
import pytest

from llm.schema import JSON
from llm.testing.server import serve
from tests.agents.messages_fake import MessagesFake, Text, Thinking, ToolUse, sse_events
from tests.agents.recorder import proxy_trap
from tests.agents.responses_fake import FunctionCall, OutputText, ResponsesFake, ToolSearchCall
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-key"
TOOL_TURN = (Thinking("I should call the tool.", "sig-abc=="), Text("Calling it."), ToolUse("lookup", {"q": "x" * 20}))
RESULT = {"type": "tool_result", "tool_use_id": "toolu_00_2", "content": "found"}


def _tool_round(first_reply: list[JSON]) -> list[anthropic.types.MessageParam]:
    """A conversation after one tool call: the question, the assistant's blocks, the tool's result."""
    messages: list[JSON] = [
        {"role": "user", "content": "look up x"},
        {"role": "assistant", "content": first_reply},
        {"role": "user", "content": [RESULT]},
    ]
    return cast("list[anthropic.types.MessageParam]", messages)


async def test_the_anthropic_sdk_assembles_a_streamed_turn_of_thinking_text_and_tool_use() -> None:
    fake = MessagesFake([TOOL_TURN, (Text("It is found."),)])
    recorder = fake.recorder()
    async with serve(recorder) as url:
        client = anthropic.AsyncAnthropic(base_url=url, api_key=KEY, max_retries=0)
        with anyio.fail_after(PATIENCE):
            messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": "look up x"}]
            async with client.messages.stream(model="claude-test", max_tokens=100, messages=messages) as stream:
                first = await stream.get_final_message()
            second = await client.messages.create(
                model="claude-test", max_tokens=100, messages=_tool_round([b.to_dict() for b in first.content])
            )
        await client.close()
    thinking, text, tool = first.content
    assert thinking.type == "thinking" and thinking.thinking == "I should call the tool."
    assert thinking.signature == "sig-abc=="
    assert text.type == "text" and text.text == "Calling it."
    assert tool.type == "tool_use" and tool.name == "lookup" and tool.input == {"q": "x" * 20}
    assert tool.id == "toolu_00_2" and first.stop_reason == "tool_use"
    assert [b.type for b in second.content] == ["text"] and second.stop_reason == "end_turn"
    assert [r.target for r in recorder.requests] == ["/v1/messages", "/v1/messages"]
    sent = recorder.requests[0].headers  # SDK 2.x sends the key as a Bearer token, older ones as x-api-key
    assert sent.get("x-api-key") == KEY or sent.get("authorization") == f"Bearer {KEY}"
    assert sent["anthropic-version"]
    assert recorder.requests[0].body["stream"] is True and "stream" not in recorder.requests[1].body


def test_a_stream_follows_the_apis_event_order() -> None:
    kinds = [event["type"] for event in sse_events(TOOL_TURN, 0, "m")]
    assert kinds[:3] == ["message_start", "content_block_start", "ping"]
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 3
    starts = [i for i, kind in enumerate(kinds) if kind == "content_block_start"]
    stops = [i for i, kind in enumerate(kinds) if kind == "content_block_stop"]
    assert all(start < stop for start, stop in zip(starts, stops, strict=True))
    assert all(stop < start for stop, start in zip(stops, starts[1:], strict=False))


async def test_count_tokens_and_a_turn_past_the_script_are_answered_as_the_api_would() -> None:
    recorder = MessagesFake([(Text("only turn"),)]).recorder()
    async with serve(recorder) as url:
        client = anthropic.AsyncAnthropic(base_url=url, api_key=KEY, max_retries=0)
        with anyio.fail_after(PATIENCE):
            counted = await client.messages.count_tokens(
                model="claude-test", messages=[{"role": "user", "content": "hi"}]
            )
            with pytest.raises(anthropic.BadRequestError, match="the script has no turn 1"):
                reply = [{"type": "tool_use", "id": "toolu_00_2", "name": "lookup", "input": {}}]
                await client.messages.create(model="claude-test", max_tokens=10, messages=_tool_round(reply))
            with pytest.raises(anthropic.NotFoundError):
                await client.models.list()
        await client.close()
    assert counted.input_tokens == 1234
    assert [(r.method, r.path) for r in recorder.requests] == [
        ("POST", "/v1/messages/count_tokens"),
        ("POST", "/v1/messages"),
        ("GET", "/v1/models"),
    ]


async def test_the_openai_sdk_reads_a_streamed_function_call_and_a_whole_text_response() -> None:
    fake = ResponsesFake([(FunctionCall("echo", {"message": "hi"}, namespace="mcp__fixture"),), (OutputText("Done."),)])
    recorder = fake.recorder()
    async with serve(recorder) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        with anyio.fail_after(PATIENCE):
            async with client.responses.stream(model="gpt-test", input="call echo") as stream:
                deltas = [e.delta async for e in stream if e.type == "response.function_call_arguments.delta"]
                first = await stream.get_final_response()
            call = first.output[0]
            assert call.type == "function_call"
            output = {"type": "function_call_output", "call_id": call.call_id, "output": "hi"}
            second = await client.responses.create(model="gpt-test", input=[output], store=False)  # pyright: ignore[reportArgumentType]
        await client.close()
    assert call.name == "echo" and call.arguments == '{"message":"hi"}' and len(deltas) > 1
    assert call.namespace == "mcp__fixture"
    assert first.status == "completed" and first.usage is not None and first.usage.total_tokens == 30
    assert second.output_text == "Done." and recorder.requests[1].body["store"] is False
    assert [r.target for r in recorder.requests] == ["/v1/responses", "/v1/responses"]
    assert recorder.requests[0].headers["authorization"] == f"Bearer {KEY}"


async def test_a_client_side_tool_search_call_is_an_output_item_of_its_own() -> None:
    recorder = ResponsesFake([(ToolSearchCall("echo"),)]).recorder()
    async with serve(recorder) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        with anyio.fail_after(PATIENCE):
            response = await client.responses.create(model="gpt-test", input="find echo")
        await client.close()
    (item,) = response.output
    seen = item.to_dict()
    assert seen["type"] == "tool_search_call" and seen["execution"] == "client"
    assert seen["arguments"] == {"query": "echo", "limit": 8}


async def test_the_proxy_trap_records_a_connect_and_refuses_it() -> None:
    async with proxy_trap() as trap:
        port = int(trap.url.rsplit(":", 1)[1])
        with anyio.fail_after(PATIENCE):
            async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                await stream.send(b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n")
                answer = await stream.receive()
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert trap.attempts == ["CONNECT api.example.com:443 HTTP/1.1"]

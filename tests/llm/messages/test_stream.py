"""OpenAI chunks as Anthropic stream events: the exact order, and the official SDK reading the encoded bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import anthropic
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from llm.messages import ChatStreamTranslator, encode_event, error_event
from llm.testing import serve

pytestmark = pytest.mark.anyio


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choices = [] if delta is None and finish is None else [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": choices,
        **extra,
    }


def _call(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return {"tool_calls": [call]}


USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 80,
    "total_tokens": 1280,
    "prompt_tokens_details": {"cached_tokens": 1000},
}

THINK_TALK_AND_TWO_CALLS = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"reasoning_content": "Let me "}),
    _chunk({"reasoning": "think."}),
    _chunk({"content": "Sure"}),
    _chunk({"content": ", checking."}),
    _chunk(_call(0, "", "call_a", "get_weather")),
    _chunk(_call(0, '{"loc')),
    _chunk(_call(0, 'ation":"SF"}')),
    _chunk(_call(1, '{"tz":', "call_b", "get_time")),
    _chunk(_call(1, '"PST"}')),
    _chunk({}, "tool_calls"),
    _chunk(None, usage=USAGE),
]


def _shape(events: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for e in events:
        if e["type"] == "content_block_start":
            out.append((e["type"], e["index"], e["content_block"]["type"]))
        elif e["type"] == "content_block_delta":
            out.append((e["type"], e["index"], e["delta"]["type"]))
        elif e["type"] == "content_block_stop":
            out.append((e["type"], e["index"]))
        else:
            out.append((e["type"],))
    return out


def test_thinking_text_and_parallel_tool_calls_stream_as_blocks_in_anthropics_exact_order() -> None:
    translator = ChatStreamTranslator("claude-sonnet-4-5")
    per_chunk = [translator.feed(c) for c in THINK_TALK_AND_TWO_CALLS]
    events = [e for batch in per_chunk for e in batch]
    assert _shape(events) == [
        ("message_start",),
        ("content_block_start", 0, "thinking"),
        ("ping",),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_stop", 0),
        ("content_block_start", 1, "text"),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_stop", 1),
        ("content_block_start", 2, "tool_use"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_stop", 2),
        ("content_block_start", 3, "tool_use"),
        ("content_block_delta", 3, "input_json_delta"),
        ("content_block_delta", 3, "input_json_delta"),
        ("content_block_stop", 3),
        ("message_delta",),
        ("message_stop",),
    ]
    # The message ends only when the usage (which follows the finish reason) has arrived.
    assert _shape(per_chunk[-2]) == [("content_block_stop", 3)]
    assert _shape(per_chunk[-1]) == [("message_delta",), ("message_stop",)]
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert starts[2] == {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}
    assert starts[3]["id"] == "call_b" and starts[3]["name"] == "get_time"
    pieces = [e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta" and e["index"] == 2]
    assert "".join(pieces) == '{"location":"SF"}'
    final = events[-2]
    assert final["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert final["usage"] == {
        "input_tokens": 200,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1000,
        "output_tokens": 80,
    }
    assert translator.done and translator.feed(_chunk({"content": "late"})) == [] and translator.close() == []


def test_close_finishes_a_stream_that_never_sent_usage_or_a_finish_reason() -> None:
    translator = ChatStreamTranslator("m", input_tokens=42)
    first = translator.feed(_chunk({"content": "partial"}))
    assert first[0]["message"]["usage"] == {"input_tokens": 42, "output_tokens": 0}
    closing = translator.close()
    assert _shape(closing) == [("content_block_stop", 0), ("message_delta",), ("message_stop",)]
    assert closing[1]["delta"]["stop_reason"] == "end_turn" and closing[1]["usage"] == {"output_tokens": 0}
    assert _shape(ChatStreamTranslator("m").close()) == [("message_start",), ("message_delta",), ("message_stop",)]


def test_usage_on_the_finishing_chunk_ends_the_message_at_once_and_a_named_stop_string_is_reported() -> None:
    translator = ChatStreamTranslator("m", stop_sequences=["END"])
    translator.feed(_chunk({"content": "1, 2, "}))
    finishing = _chunk({}, "stop", usage={"prompt_tokens": 10, "completion_tokens": 3})
    finishing["choices"][0]["stop_reason"] = "END"
    events = translator.feed(finishing)
    assert _shape(events) == [("content_block_stop", 0), ("message_delta",), ("message_stop",)]
    assert events[1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}


def test_calls_numbered_alike_but_with_their_own_ids_get_their_own_blocks_and_a_late_fragment_keeps_its_index() -> None:
    translator = ChatStreamTranslator("m")
    chunks = [
        _chunk(_call(0, '{"a":1}', "call_1", "f")),
        _chunk(_call(0, '{"b":', "call_2", "g")),
        _chunk(_call(1, '{"c":3}', "call_3", "h")),
        _chunk(_call(0, "2}")),  # call_2's last fragment, after call_3 began
        _chunk({}, "tool_calls", usage={"prompt_tokens": 1, "completion_tokens": 1}),
    ]
    events = [e for c in chunks for e in translator.feed(c)]
    starts = [(e["index"], e["content_block"]["id"]) for e in events if e["type"] == "content_block_start"]
    assert starts == [(0, "call_1"), (1, "call_2"), (2, "call_3")]
    args: dict[int, str] = {}
    for e in events:
        if e["type"] == "content_block_delta":
            args[e["index"]] = args.get(e["index"], "") + e["delta"]["partial_json"]
    assert args == {0: '{"a":1}', 1: '{"b":2}', 2: '{"c":3}'}
    assert events[-2]["delta"]["stop_reason"] == "tool_use"


def test_encode_event_writes_the_event_name_and_one_json_data_line() -> None:
    assert encode_event({"type": "message_stop"}) == b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    assert error_event(529, "Overloaded") == (
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )


def _events_app(body: bytes) -> Starlette:
    """A tiny server that answers every Messages request with the given event-stream bytes."""

    async def messages(request: Request) -> Response:
        await request.body()

        async def chunks() -> AsyncIterator[bytes]:
            yield body

        return StreamingResponse(chunks(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])


async def test_the_sdk_streams_the_encoded_events_into_the_message_they_describe() -> None:
    translator = ChatStreamTranslator("claude-sonnet-4-5", input_tokens=5)
    wire = b"".join(encode_event(e) for c in THINK_TALK_AND_TWO_CALLS for e in translator.feed(c))
    async with serve(_events_app(wire)) as url:
        async with anthropic.AsyncAnthropic(api_key="k", base_url=url, max_retries=0) as client:
            async with client.messages.stream(
                model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "x"}]
            ) as stream:
                texts = [e.text async for e in stream if e.type == "text"]
                message = await stream.get_final_message()
    assert texts == ["Sure", ", checking."]
    thinking, text, weather, time = message.content
    assert thinking.type == "thinking" and thinking.thinking == "Let me think."
    assert text.type == "text" and text.text == "Sure, checking."
    assert weather.type == "tool_use" and weather.input == {"location": "SF"} and weather.id == "call_a"
    assert time.type == "tool_use" and time.input == {"tz": "PST"}
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (
        200,
        1000,
        80,
    )


async def test_the_sdk_raises_the_error_event_that_ends_a_failed_stream() -> None:
    translator = ChatStreamTranslator("m")
    wire = b"".join(encode_event(e) for e in translator.feed(_chunk({"content": "Hel"}))) + error_event(
        529, "upstream overloaded", request_id="req_1"
    )
    async with serve(_events_app(wire)) as url:
        async with anthropic.AsyncAnthropic(api_key="k", base_url=url, max_retries=0) as client:
            with pytest.raises(anthropic.APIStatusError) as info:
                async with client.messages.stream(
                    model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
                ) as stream:
                    await stream.get_final_message()
    body = info.value.body
    assert isinstance(body, dict) and body["error"] == {"type": "overloaded_error", "message": "upstream overloaded"}
    assert body["request_id"] == "req_1"

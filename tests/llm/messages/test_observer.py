"""Reading pass-through Anthropic responses: usage with the cache split, stop reason, text and tool input."""

from __future__ import annotations

from typing import Any

import httpx2
import orjson
import pytest

from llm.errors import ProviderResponseError
from llm.messages import MessagesStreamObserver, MessagesUsage, ToolUse, encode_event, read_message
from llm.messages.observer import SplitEvents
from llm.schema import Usage
from llm.testing import FakeScript, Raw, Reply, ToolCall, anthropic_app, serve

from ..fixtures import load

pytestmark = pytest.mark.anyio

# A thinking + tool-use turn as Anthropic streams it, with a 1-hour cache write and usage totals in message_delta.
RECORDED: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_01ThinkTool",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 12,
                "cache_creation_input_tokens": 1500,
                "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1000},
                "output_tokens": 1,
                "service_tier": "standard",
            },
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "I need the weather."}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Okay"}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": ", let's check."}},
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {
            "type": "tool_use",
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "name": "get_weather",
            "input": {},
        },
    },
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"location":'}},
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": ' "San Francisco, CA"}'},
    },
    {"type": "content_block_stop", "index": 2},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 12,
            "cache_read_input_tokens": 0,
            "output_tokens": 89,
            "output_tokens_details": {"thinking_tokens": 40},
        },
    },
    {"type": "message_stop"},
]


def test_the_observer_reads_a_recorded_stream_fed_in_arbitrary_byte_pieces() -> None:
    wire = b"".join(encode_event(e) for e in RECORDED)
    observer = MessagesStreamObserver()
    seen: list[dict[str, Any]] = []
    for start in range(0, len(wire), 7):
        seen += observer.feed(wire[start : start + 7])
    assert seen == RECORDED
    assert (observer.id, observer.model) == ("msg_01ThinkTool", "claude-sonnet-4-5-20250929")
    assert observer.usage == MessagesUsage(
        input_tokens=12,
        output_tokens=89,
        cache_read_input_tokens=0,
        cache_creation_input_tokens=1500,
        ephemeral_5m_input_tokens=500,
        ephemeral_1h_input_tokens=1000,
        thinking_tokens=40,
    )
    assert observer.stop_reason == "tool_use" and observer.stop_sequence is None and observer.complete
    assert observer.text == "Okay, let's check."
    assert observer.tool_uses == (
        ToolUse(
            "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "get_weather",
            {"location": "San Francisco, CA"},
            '{"location": "San Francisco, CA"}',
        ),
    )
    summary = observer.summary()
    assert summary.usage.prompt_tokens == 1512 and summary.usage.to_usage() == Usage(
        1512, 89, 0, 500, 1000, reasoning_tokens=40
    )


def test_a_half_streamed_tool_input_is_kept_raw_and_an_error_event_is_recorded() -> None:
    events = [
        RECORDED[0],
        RECORDED[10],
        RECORDED[12],
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]
    observer = MessagesStreamObserver()
    observer.feed(b"".join(encode_event(e) for e in events) + b"event: x\ndata: {not json\n\n")
    (tool,) = observer.tool_uses
    assert tool.input is None and tool.partial_json == '{"location":'
    assert observer.error == {"type": "overloaded_error", "message": "Overloaded"}
    assert not observer.complete and observer.malformed == 1 and observer.stop_reason is None


async def _observed(url: str, http: httpx2.AsyncClient) -> tuple[MessagesStreamObserver, bytes]:
    """Stream one Messages response as a pass-through does: each chunk read by the observer, then forwarded."""
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    observer = MessagesStreamObserver()
    forwarded: list[bytes] = []
    async with http.stream(
        "POST", f"{url}/v1/messages", headers={"anthropic-version": "2023-06-01"}, json=body
    ) as resp:
        async for chunk in resp.aiter_raw():
            observer.feed(chunk)
            forwarded.append(chunk)
    return observer, b"".join(forwarded)


async def test_a_recorded_stream_passes_through_the_observer_byte_for_byte() -> None:
    wire = b"".join(encode_event(e) for e in RECORDED)
    async with serve(anthropic_app(FakeScript(Raw(wire, content_type="text/event-stream")))) as url:
        async with httpx2.AsyncClient() as http:
            observer, forwarded = await _observed(url, http)
    assert forwarded == wire
    assert observer.complete and observer.usage.ephemeral_1h_input_tokens == 1000


async def test_the_fakes_stream_is_read_as_it_goes_by() -> None:
    reply = Reply(
        "Sunny in Paris.",
        tool_calls=[ToolCall("get_weather", {"location": "Paris", "unit": "celsius"}, id="toolu_9")],
        thinking="Check the weather tool.",
        prompt_tokens=20,
        cache_read_tokens=4000,
        cache_write_1h_tokens=300,
        completion_tokens=55,
    )
    async with serve(anthropic_app(FakeScript(reply))) as url, httpx2.AsyncClient() as http:
        observer, forwarded = await _observed(url, http)
    assert b"signature_delta" in forwarded
    assert observer.text == "Sunny in Paris." and observer.stop_reason == "tool_use"
    assert [(t.id, t.input) for t in observer.tool_uses] == [("toolu_9", {"location": "Paris", "unit": "celsius"})]
    usage = observer.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (20, 55, 4000)
    assert (usage.cache_creation_input_tokens, usage.ephemeral_5m_input_tokens, usage.ephemeral_1h_input_tokens) == (
        300,
        0,
        300,
    )


def test_read_message_summarises_a_recorded_body_and_defaults_an_unsplit_cache_write_to_five_minutes() -> None:
    recorded = load("anthropic_message.json")
    summary = read_message(orjson.dumps(recorded))
    assert summary.text == "I'll check the weather." and summary.stop_reason == "tool_use"
    assert summary.tool_uses[0].input == {"location": "San Francisco, CA", "unit": "celsius"}
    assert summary.usage.to_usage() == Usage(2195, 503, 100)
    written = read_message(
        {**recorded, "usage": {"input_tokens": 3, "output_tokens": 4, "cache_creation_input_tokens": 70}}
    )
    assert (written.usage.ephemeral_5m_input_tokens, written.usage.ephemeral_1h_input_tokens) == (70, 0)
    with_search = MessagesUsage.read(
        {"input_tokens": 1, "output_tokens": 1, "server_tool_use": {"web_search_requests": 2}}
    )
    assert with_search.web_search_requests == 2


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", {"type": "error"}])
def test_read_message_of_something_else_is_an_empty_summary(body: bytes | dict[str, Any]) -> None:
    summary = read_message(body)
    assert summary.usage == MessagesUsage() and summary.text == "" and summary.tool_uses == ()


def test_later_usage_replaces_earlier_values_field_by_field() -> None:
    start = MessagesUsage.read(
        {
            "input_tokens": 10,
            "cache_creation_input_tokens": 900,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 900},
            "output_tokens": 1,
        }
    )
    later = start.updated({"output_tokens": 30})
    assert later == MessagesUsage(10, 30, 0, 900, 0, 900)
    assert start.updated(None) is start


def _split_in_pieces(wire: bytes, size: int) -> tuple[MessagesStreamObserver, list[SplitEvents]]:
    observer = MessagesStreamObserver()
    return observer, [observer.split(wire[start : start + size]) for start in range(0, len(wire), size)]


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
def test_split_reads_usage_and_stop_as_feed_does_and_parses_only_those_events(size: int) -> None:
    wire = b"".join(encode_event(e) for e in RECORDED)
    fed = MessagesStreamObserver()
    fed.feed(wire)
    observer, pieces = _split_in_pieces(wire, size)
    assert [kind for piece in pieces for kind in piece.types()] == [e["type"] for e in RECORDED]
    assert [event for piece in pieces for event in piece.events()] == RECORDED
    parsed = [piece.types()[at] for piece in pieces for at in piece.parsed]
    assert parsed == ["message_start", "message_delta", "message_stop"]
    assert (observer.id, observer.model, observer.usage) == (fed.id, fed.model, fed.usage)
    assert (observer.stop_reason, observer.stop_sequence, observer.complete) == ("tool_use", None, True)
    assert observer.text == "" and observer.tool_uses == ()  # content is assembled by `feed` only


def test_split_reads_events_of_other_shapes_by_the_sse_rules() -> None:
    start, delta, stop = RECORDED[0], RECORDED[7], RECORDED[-2]
    wire = (
        b": a comment\n\n"
        + b"event: message_start\r\ndata: "
        + orjson.dumps(start)
        + b"\r\n\r\n"
        + b"data: "
        + orjson.dumps(delta)
        + b"\n\n\n"
        + b"event: message_delta\ndata: "
        + orjson.dumps(stop)[:20]
        + b"\ndata: "
        + orjson.dumps(stop)[20:]
        + b"\n\n"
        + b"event: error\ndata: {not json\n\n"
    )
    observer, pieces = _split_in_pieces(wire, 5)
    assert [kind for piece in pieces for kind in piece.types()] == [
        "message_start",
        "content_block_delta",
        "message_delta",
        "error",
    ]
    assert [event for piece in pieces for event in piece.events()] == [start, delta]
    assert observer.usage.input_tokens == 12 and observer.malformed == 2  # the split data line, the error's data
    assert observer.error is None


def test_split_records_an_error_event_and_refuses_an_event_that_never_ends() -> None:
    observer = MessagesStreamObserver()
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    split = observer.split(encode_event(error) + b"event: ping\ndata: {}\n\nevent: ping")
    assert split.types() == ["error", "ping"] and split.parsed == {0: error}
    assert observer.error == {"type": "overloaded_error", "message": "Overloaded"}
    with pytest.raises(ProviderResponseError):
        observer.split(b"\ndata: " + b"x" * (8 * 1024 * 1024 + 1))

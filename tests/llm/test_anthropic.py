"""Anthropic Messages: translation both ways, streaming, over real HTTP against the fake."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from llm.errors import NoDeploymentAvailable, ProviderHTTPError, UnsupportedParameter
from llm.providers.anthropic import from_anthropic, to_anthropic
from llm.sse import encode_sse
from llm.testing import FakeScript, Fault, Raw, Reply, ToolCall, anthropic_app, serve

from .conftest import SECRET, chat, open_router, provider
from .fixtures import load

pytestmark = pytest.mark.anyio

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": "Use tools."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this image, and the weather?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ],
    },
    {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": '{"c":"P"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
    {"role": "user", "content": "Thanks"},
]


def _config(url: str) -> dict[str, object]:
    return {"providers": {"an": provider("anthropic", url, ("main", "env:T_KEY", 1))}}


def test_request_translation_covers_system_images_tools_and_tool_results() -> None:
    request = {
        "messages": CONVERSATION,
        "max_completion_tokens": 300,
        "stop": "END",
        "temperature": 0.2,
        "tools": [
            {"type": "function", "function": {"name": "weather", "description": "d", "parameters": {"type": "object"}}}
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "user": "u-1",
    }
    body = to_anthropic(request, "claude-3-5-haiku-20241022", "an")
    assert body["system"] == "Be brief.\n\nUse tools."
    assert body["max_tokens"] == 300 and body["stop_sequences"] == ["END"] and body["temperature"] == 0.2
    user, assistant, tool_and_user = body["messages"]
    assert user["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    assert user["content"][2]["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}
    assert assistant["content"][1] == {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"c": "P"}}
    assert tool_and_user["role"] == "user"
    assert tool_and_user["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}
    assert tool_and_user["content"][1] == {"type": "text", "text": "Thanks"}
    assert body["tools"][0]["input_schema"] == {"type": "object"}
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["metadata"] == {"user_id": "u-1"}


@pytest.mark.parametrize(
    "extra", [{"n": 2}, {"logprobs": True}, {"seed": 1}, {"response_format": {"type": "json_object"}}]
)
def test_unsupported_parameters_are_refused_by_name(extra: dict[str, object]) -> None:
    with pytest.raises(UnsupportedParameter) as info:
        to_anthropic({"messages": [{"role": "user", "content": "x"}], **extra}, "m", "an")
    assert info.value.parameter == next(iter(extra))


def test_recorded_response_translates_with_cache_usage() -> None:
    out = from_anthropic(load("anthropic_message.json"))
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll check the weather."
    call = choice["message"]["tool_calls"][0]
    assert call["id"] == "toolu_01A09q90qw90lq917835lq9"
    assert orjson.loads(call["function"]["arguments"]) == {"location": "San Francisco, CA", "unit": "celsius"}
    assert out["usage"]["prompt_tokens"] == 2195 and out["usage"]["prompt_tokens_details"] == {"cached_tokens": 100}


async def test_recorded_stream_replays_into_openai_chunks_with_usage() -> None:
    raw = b"".join(encode_sse(orjson.dumps(e), event=e["type"]) for e in load("anthropic_stream_events.json"))
    script = FakeScript(Raw(raw, content_type="text/event-stream"))
    async with serve(anthropic_app(script)) as url, open_router(_config(url)) as router:
        async with await router.stream_chat(chat("an/claude-3-5-sonnet-20241022")) as stream:
            chunks = [c async for c in stream]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content") or "" for d in deltas) == "Okay, let's check."
    calls = [tc for d in deltas for tc in d.get("tool_calls") or []]
    assert calls[0]["id"] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6" and all(tc["index"] == 0 for tc in calls)
    assert orjson.loads("".join(tc["function"]["arguments"] for tc in calls)) == {"location": "San Francisco, CA"}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert stream.usage is not None and (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (472, 89)
    assert stream.cost == pytest.approx((472 * 3 + 89 * 15) / 1e6)


async def test_chat_and_stream_round_trip_through_the_fake() -> None:
    script = FakeScript(
        Reply("Hi!", prompt_tokens=20, completion_tokens=4),
        Reply("streamed", tool_calls=[ToolCall("weather", {"c": "P"})], prompt_tokens=9, completion_tokens=6),
    )
    async with serve(anthropic_app(script, keys=[SECRET])) as url, open_router(_config(url)) as router:
        result = await router.chat(chat("an/claude-3-5-haiku-20241022"))
        async with await router.stream_chat({"model": "an/claude-3-5-haiku-20241022", "messages": CONVERSATION}) as s:
            chunks = [c async for c in s]
    assert script.requests[0].headers["x-api-key"] == SECRET
    assert script.requests[0].body["max_tokens"] == 4096
    assert result.response["choices"][0]["message"] == {"role": "assistant", "content": "Hi!"}
    assert result.usage is not None and result.usage.total_tokens == 24
    assert script.requests[1].body["stream"] is True and script.requests[1].body["system"] == "Be brief.\n\nUse tools."
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "streamed"
    assert s.usage is not None and (s.usage.prompt_tokens, s.usage.completion_tokens) == (9, 6)


async def test_an_overloaded_error_event_before_content_is_a_retryable_failure() -> None:
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "m", "model": "c", "usage": {"input_tokens": 1}}},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ]
    raw = b"".join(encode_sse(orjson.dumps(e), event=e["type"]) for e in events)
    script = FakeScript(Raw(raw, content_type="text/event-stream"), Fault.http(400))
    async with serve(anthropic_app(script)) as url:
        config = _config(url)
        config["routing"] = {"max_retries": 1, "backoff_initial": 0}
        async with open_router(config) as router:
            with pytest.raises(ProviderHTTPError) as info:
                await router.stream_chat(chat("an/claude-3-5-haiku-20241022"))
    first = info.value.attempts[0].error
    assert isinstance(first, ProviderHTTPError) and first.status == 529 and first.code == "overloaded_error"
    assert info.value.status == 400  # the retry hit a caller error, which is raised as is


async def test_embeddings_are_refused_as_an_unsupported_operation() -> None:
    async with serve(anthropic_app(FakeScript())) as url, open_router(_config(url)) as router:
        with pytest.raises(NoDeploymentAvailable, match="embeddings is not supported"):
            await router.embeddings({"model": "an/claude", "input": "x"})

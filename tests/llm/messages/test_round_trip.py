"""The whole translation path: the `anthropic` SDK -> a minimal Messages door built on `llm.messages` -> the router
-> an OpenAI-wire provider (the fake) and back, through a tool-use loop, streamed and not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic
import orjson
import pytest
from anthropic.types import MessageParam, ToolParam, ToolResultBlockParam
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llm.errors import LLMError
from llm.messages import ChatStreamTranslator, encode_event, error_body, estimate_input_tokens, from_chat, to_chat
from llm.router import Router
from llm.testing import FakeScript, Reply, ToolCall, openai_app, serve

from ..conftest import open_router, provider

pytestmark = pytest.mark.anyio

MODEL = "claude-sonnet-4-5"
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}


def _door(router: Router) -> Starlette:
    """What a Messages door does for a non-Anthropic deployment, reduced to the translation."""

    async def messages(request: Request) -> Response:
        body = orjson.loads(await request.body())
        try:
            translation = to_chat(body)
        except LLMError as exc:
            return JSONResponse(error_body(400, exc.message), status_code=400)
        headers = {"x-agenthub-dropped": translation.dropped_header} if translation.dropped_header else {}
        stops = body.get("stop_sequences") or []
        if not body.get("stream"):
            result = await router.chat(translation.request)
            return JSONResponse(from_chat(result.response, body["model"], stop_sequences=stops), headers=headers)
        stream = await router.stream_chat(translation.request)
        translator = ChatStreamTranslator(body["model"], stop_sequences=stops, input_tokens=estimate_input_tokens(body))

        async def events() -> AsyncIterator[bytes]:
            async with stream:
                async for chunk in stream:
                    for event in translator.feed(chunk):
                        yield encode_event(event)
            for event in translator.close():
                yield encode_event(event)

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    return Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])


def _config(url: str) -> dict[str, object]:
    return {
        "providers": {"oa": provider("openai", f"{url}/v1", ("main", "env:T_KEY", 1))},
        "models": {MODEL: {"deployments": [{"provider": "oa", "model": "gpt-4o", "weight": 1}]}},
    }


async def test_a_tool_use_loop_through_an_openai_deployment_reads_as_anthropic_to_the_sdk() -> None:
    script = FakeScript(
        Reply(tool_calls=[ToolCall("get_weather", {"location": "Paris"}, id="call_1")], prompt_tokens=300),
        Reply("It is 18°C in Paris.", prompt_tokens=340, completion_tokens=9),
    )
    async with serve(openai_app(script)) as upstream, open_router(_config(upstream)) as router:
        async with serve(_door(router)) as door:
            async with anthropic.AsyncAnthropic(api_key="k", base_url=door, max_retries=0) as client:
                question: MessageParam = {"role": "user", "content": "What's the weather in Paris?"}
                raw = await client.messages.with_raw_response.create(
                    model=MODEL,
                    max_tokens=1024,
                    system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
                    tools=[WEATHER],
                    thinking={"type": "enabled", "budget_tokens": 2048},
                    messages=[question],
                )
                first = await raw.parse()
                (call,) = [b for b in first.content if b.type == "tool_use"]
                result: ToolResultBlockParam = {"type": "tool_result", "tool_use_id": call.id, "content": "18°C, clear"}
                async with client.messages.stream(
                    model=MODEL,
                    max_tokens=1024,
                    tools=[WEATHER],
                    messages=[question, first.to_param(), {"role": "user", "content": [result]}],
                ) as stream:
                    text = "".join([e.text async for e in stream if e.type == "text"])
                    second = await stream.get_final_message()
    assert raw.headers["x-agenthub-dropped"] == "cache_control,thinking"
    assert first.stop_reason == "tool_use" and (call.id, call.name, call.input) == (
        "call_1",
        "get_weather",
        {"location": "Paris"},
    )
    assert first.usage.input_tokens == 300
    sent_first, sent_second = (r.body for r in script.requests)
    assert sent_first["model"] == "gpt-4o" and sent_first["max_completion_tokens"] == 1024
    assert sent_first["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent_first["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    assert sent_second["stream"] is True and sent_second["stream_options"] == {"include_usage": True}
    assert sent_second["messages"][1]["tool_calls"][0]["id"] == "call_1"
    assert sent_second["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "18°C, clear"}
    assert text == "It is 18°C in Paris." and second.stop_reason == "end_turn"
    assert (second.usage.input_tokens, second.usage.output_tokens) == (340, 9)


async def test_a_server_tool_is_refused_with_an_anthropic_error_the_sdk_raises() -> None:
    async with serve(openai_app(FakeScript())) as upstream, open_router(_config(upstream)) as router:
        async with serve(_door(router)) as door:
            async with anthropic.AsyncAnthropic(api_key="k", base_url=door, max_retries=0) as client:
                with pytest.raises(anthropic.BadRequestError) as info:
                    await client.messages.create(
                        model=MODEL,
                        max_tokens=10,
                        tools=[{"type": "web_search_20250305", "name": "web_search"}],
                        messages=[{"role": "user", "content": "news?"}],
                    )
    assert isinstance(info.value.body, dict) and info.value.body["error"]["type"] == "invalid_request_error"
    assert "web_search_20250305" in info.value.body["error"]["message"]

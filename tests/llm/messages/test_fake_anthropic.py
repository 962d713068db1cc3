"""The fake Anthropic upstream speaks the exact wire format: proven with the official `anthropic` SDK."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2
import orjson
import pytest

from llm.messages import estimate_input_tokens
from llm.testing import FakeRequest, FakeScript, Fault, Reply, ToolCall, anthropic_app, serve

from ..conftest import SECRET

pytestmark = pytest.mark.anyio

MODEL = "claude-sonnet-4-5-20250929"
HEADERS = {"x-api-key": SECRET, "anthropic-version": "2023-06-01", "content-type": "application/json"}


def _client(url: str, key: str = SECRET) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=key, base_url=url, max_retries=0)


async def test_a_thinking_turn_with_redacted_thinking_and_a_tool_call_streams_in_anthropics_order() -> None:
    reply = Reply(
        "Let me look.",
        tool_calls=[ToolCall("get_weather", {"location": "San Francisco, CA", "unit": "celsius"}, id="toolu_1")],
        thinking="The user wants the weather.",
        signature="EqQBCgIYAhIM1gbcDa9GJwZA",
        redacted_thinking=("EmwKAhgBEgy3va3pzix/LafPsn4a",),
        prompt_tokens=30,
        cache_read_tokens=2000,
        cache_write_tokens=100,
        cache_write_1h_tokens=50,
        completion_tokens=40,
    )
    script = FakeScript(reply)
    async with serve(anthropic_app(script, keys=[SECRET])) as url, _client(url) as client:
        async with client.messages.stream(
            model=MODEL,
            max_tokens=2048,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=[{"role": "user", "content": "Weather in SF?"}],
        ) as stream:
            events = [event async for event in stream]
            message = await stream.get_final_message()
    raw = [
        e
        for e in events
        if e.type
        in {
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        }
    ]
    kinds = [(e.type, getattr(e, "index", None)) for e in raw]
    assert kinds[0] == ("message_start", None) and kinds[-2:] == [("message_delta", None), ("message_stop", None)]
    starts = [(e.index, e.content_block.type) for e in raw if e.type == "content_block_start"]
    assert starts == [(0, "thinking"), (1, "redacted_thinking"), (2, "text"), (3, "tool_use")]
    deltas = {e.delta.type for e in raw if e.type == "content_block_delta"}
    assert deltas == {"thinking_delta", "signature_delta", "text_delta", "input_json_delta"}
    json_deltas = [e for e in raw if e.type == "content_block_delta" and e.delta.type == "input_json_delta"]
    assert len(json_deltas) > 2  # the tool input arrives in several pieces
    thinking, redacted, text, tool = message.content
    assert thinking.type == "thinking" and thinking.thinking == "The user wants the weather."
    assert thinking.signature == "EqQBCgIYAhIM1gbcDa9GJwZA"
    assert redacted.type == "redacted_thinking" and redacted.data == "EmwKAhgBEgy3va3pzix/LafPsn4a"
    assert text.type == "text" and text.text == "Let me look."
    assert tool.type == "tool_use" and tool.input == {"location": "San Francisco, CA", "unit": "celsius"}
    assert message.stop_reason == "tool_use"
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens) == (30, 40, 2000)
    assert usage.cache_creation_input_tokens == 150 and usage.cache_creation is not None
    assert (usage.cache_creation.ephemeral_5m_input_tokens, usage.cache_creation.ephemeral_1h_input_tokens) == (100, 50)
    assert usage.service_tier == "standard"


async def test_the_stream_carries_ping_events_on_the_wire() -> None:
    async with serve(anthropic_app(FakeScript(Reply("hi")))) as url, httpx2.AsyncClient() as http:
        body = {"model": MODEL, "max_tokens": 10, "stream": True, "messages": [{"role": "user", "content": "x"}]}
        resp = await http.post(f"{url}/v1/messages", headers=HEADERS, content=orjson.dumps(body))
    names = [line[7:] for line in resp.text.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert resp.headers["content-type"].startswith("text/event-stream") and resp.headers["request-id"]


async def test_a_non_streamed_message_has_every_usage_field_a_stop_sequence_and_the_service_tier() -> None:
    reply = Reply("Counting: 1, 2, ", stop_sequence="3", cache_read_tokens=7, service_tier="priority")
    async with serve(anthropic_app(FakeScript(reply))) as url, _client(url) as client:
        message = await client.messages.create(
            model=MODEL, max_tokens=50, stop_sequences=["3"], messages=[{"role": "user", "content": "count"}]
        )
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "3"
    assert message.usage.cache_read_input_tokens == 7 and message.usage.cache_creation_input_tokens == 0
    assert message.usage.service_tier == "priority"
    assert message.id.startswith("msg_") and message.model == MODEL


async def test_the_beta_query_is_accepted_and_the_request_is_recorded_byte_for_byte() -> None:
    script = FakeScript(Reply("ok"))
    # Odd spacing, key order and a cache_control ttl: a pass-through must deliver exactly these bytes.
    sent = (
        b'{ "max_tokens":16, "model": "claude-x",\n "messages": [{"role":"user","content":[{"type":"text",'
        b'"text":"hi","cache_control":{"type":"ephemeral","ttl":"1h"}}]}] }'
    )
    headers = {**HEADERS, "anthropic-beta": "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"}
    async with serve(anthropic_app(script)) as url, httpx2.AsyncClient() as http:
        resp = await http.post(f"{url}/v1/messages?beta=true", headers=headers, content=sent)
    assert resp.status_code == 200
    seen = script.requests[0]
    assert seen.raw == sent and seen.query == "beta=true"
    assert seen.headers["anthropic-beta"] == headers["anthropic-beta"]
    assert seen.body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}


async def test_the_sdks_beta_client_reaches_the_fake_with_its_beta_header() -> None:
    script = FakeScript(Reply("beta ok"))
    async with serve(anthropic_app(script)) as url, _client(url) as client:
        message = await client.beta.messages.create(
            model=MODEL,
            max_tokens=16,
            betas=["interleaved-thinking-2025-05-14"],
            messages=[{"role": "user", "content": "x"}],
        )
    assert message.content[0].type == "text" and message.content[0].text == "beta ok"
    assert script.requests[0].headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"


async def test_a_missing_anthropic_version_header_is_a_400_as_anthropic_answers() -> None:
    script = FakeScript()
    async with serve(anthropic_app(script)) as url, httpx2.AsyncClient() as http:
        body = orjson.dumps({"model": MODEL, "max_tokens": 1, "messages": []})
        resp = await http.post(f"{url}/v1/messages", headers={"x-api-key": "k"}, content=body)
    assert resp.status_code == 400
    error = resp.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert "anthropic-version" in error["error"]["message"] and error["request_id"].startswith("req_")
    assert script.requests == []


async def test_the_sdks_bearer_key_is_accepted_and_raw_x_api_key_too() -> None:
    script = FakeScript(Reply("one"), Reply("two"))
    async with serve(anthropic_app(script, keys=[SECRET])) as url, _client(url) as client:
        await client.messages.create(model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "x"}])
        async with httpx2.AsyncClient() as http:
            body = orjson.dumps({"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]})
            resp = await http.post(f"{url}/v1/messages", headers=HEADERS, content=body)
    assert script.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert resp.status_code == 200 and script.requests[1].headers["x-api-key"] == SECRET


async def test_a_wrong_key_is_an_authentication_error_the_sdk_recognises() -> None:
    async with serve(anthropic_app(FakeScript(), keys=[SECRET])) as url, _client(url, "wrong") as client:
        with pytest.raises(anthropic.AuthenticationError) as info:
            await client.messages.create(model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 401 and info.value.request_id is not None


async def test_overloaded_before_the_stream_is_a_529_the_sdk_raises_as_overloaded() -> None:
    script = FakeScript(Fault.http(529))
    async with serve(anthropic_app(script)) as url, _client(url) as client:
        with pytest.raises(anthropic.OverloadedError) as info:
            async with client.messages.stream(
                model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}]
            ) as stream:
                await stream.get_final_message()
    assert info.value.status_code == 529
    assert isinstance(info.value.body, dict) and info.value.body["error"]["type"] == "overloaded_error"


async def test_overloaded_inside_the_stream_is_an_error_event_after_the_content_sent_so_far() -> None:
    script = FakeScript(Fault.error_event("overloaded_error", after=4, reply=Reply("partial answer here")))
    async with serve(anthropic_app(script)) as url, _client(url) as client:
        seen: list[str] = []
        with pytest.raises(anthropic.APIStatusError) as info:
            async with client.messages.stream(
                model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x"}]
            ) as stream:
                async for event in stream:
                    seen.append(event.type)  # noqa: PERF401 (keep what arrived before the error)
    assert seen[0] == "message_start" and "message_stop" not in seen
    assert isinstance(info.value.body, dict)
    assert info.value.body["type"] == "error" and info.value.body["error"]["type"] == "overloaded_error"


async def test_an_error_event_fault_on_a_non_streamed_request_is_the_status_it_names() -> None:
    script = FakeScript(Fault.error_event("overloaded_error"))
    async with serve(anthropic_app(script)) as url, _client(url) as client:
        with pytest.raises(anthropic.OverloadedError):
            await client.messages.create(model=MODEL, max_tokens=1, messages=[{"role": "user", "content": "x"}])


async def test_count_tokens_answers_the_documented_estimate_without_consuming_the_script() -> None:
    script = FakeScript(Reply("still queued"))
    received: list[FakeRequest] = []
    body: dict[str, Any] = {
        "model": MODEL,
        "system": "You are a scientist.",
        "messages": [{"role": "user", "content": "Hello, Claude"}],
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}],
    }
    async with serve(anthropic_app(script, received=received)) as url, _client(url) as client:
        count = await client.messages.count_tokens(**body)
        message = await client.messages.create(max_tokens=5, **body)
    assert count.input_tokens == estimate_input_tokens(body) > 0
    assert message.content[0].type == "text" and message.content[0].text == "still queued"
    assert [r.path for r in received] == ["/v1/messages/count_tokens", "/v1/messages"]
    assert received[0].operation == "count_tokens" and orjson.loads(received[0].raw)["system"] == body["system"]


async def test_a_body_without_max_tokens_is_refused_like_anthropic_does() -> None:
    async with serve(anthropic_app(FakeScript())) as url, httpx2.AsyncClient() as http:
        body = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
        resp = await http.post(f"{url}/v1/messages", headers=HEADERS, content=body)
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"


async def test_bad_versions_bodies_and_keys_are_refused_on_both_endpoints() -> None:
    script = FakeScript()
    async with serve(anthropic_app(script, keys=[SECRET], version="2023-06-01")) as url, httpx2.AsyncClient() as http:
        other_version = await http.post(
            f"{url}/v1/messages", headers={**HEADERS, "anthropic-version": "2023-01-01"}, content=b"{}"
        )
        not_json = await http.post(f"{url}/v1/messages", headers=HEADERS, content=b"{not json")
        count_bad = await http.post(f"{url}/v1/messages/count_tokens", headers=HEADERS, content=b'{"model": "m"}')
        count_key = await http.post(
            f"{url}/v1/messages/count_tokens", headers={**HEADERS, "x-api-key": "wrong"}, content=b"{}"
        )
    assert other_version.status_code == 400 and "invalid version" in other_version.json()["error"]["message"]
    assert not_json.status_code == 400 and count_bad.status_code == 400
    assert count_key.status_code == 401 and count_key.json()["error"]["type"] == "authentication_error"
    assert script.requests == []


async def test_an_empty_turn_without_usage_still_pings_and_ends_in_order() -> None:
    async with serve(anthropic_app(FakeScript(Reply(usage=False)))) as url, httpx2.AsyncClient() as http:
        body = {"model": MODEL, "max_tokens": 10, "stream": True, "messages": [{"role": "user", "content": "x"}]}
        resp = await http.post(f"{url}/v1/messages", headers=HEADERS, content=orjson.dumps(body))
    names = [line[7:] for line in resp.text.splitlines() if line.startswith("event: ")]
    assert names == ["message_start", "ping", "message_delta", "message_stop"]
    assert "usage" not in resp.text

"""The Anthropic Messages door with the official `anthropic` SDK (sync, async, streaming helpers, count_tokens, a
tool-use loop): a byte-faithful pass-through in front of the fake Anthropic upstream, a translation in front of the
fake OpenAI upstream, fallbacks between them, and the same governance as the OpenAI door."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx2
import orjson
import pytest
from anthropic.types import MessageParam

from hub.governance.usage import EntityKind, EntityRef, UsageSnapshot
from llm.messages import estimate_input_tokens
from llm.testing import FakeRequest, FakeScript, Fault, Raw, Reply, ToolCall, anthropic_app, serve
from tests.doors.harness import ANTHROPIC_SECRET, Fakes, hub_with_fakes, running_fakes
from tests.hub.harness import ALICE, BOB, RunningHub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

PASSED = "claude-sonnet-4-5"
"""An alias with one Anthropic deployment (`claude-3-5-haiku`): a pass-through."""
TRANSLATED = "gpt-messages"
"""An alias with one OpenAI deployment: a translation."""
FALLING = "claude-or-gpt"
"""An Anthropic deployment with an OpenAI fallback."""
DEPLOYED = "claude-3-5-haiku"
MODELS = {
    PASSED: {"deployments": [{"provider": "anthropic", "model": DEPLOYED}]},
    TRANSLATED: {"deployments": [{"provider": "openai", "model": "gpt-4o-mini"}]},
    FALLING: {"deployments": [{"provider": "anthropic", "model": DEPLOYED}], "fallbacks": ["openai/gpt-4o-mini"]},
}
KEYS = [
    {
        "name": "alice",
        "secret": ALICE,
        "models": ["*"],
        "budget": {"max_usd": 100, "reset": "1d"},
        "rate_limit": {"tokens": 10_000_000, "period": "1h"},
    },
    {"name": "bob", "secret": BOB, "models": [TRANSLATED]},
]
USER: list[MessageParam] = [{"role": "user", "content": "hello"}]
GUARDS = [
    {"name": "no-blockme", "kind": "regex", "pattern": "BLOCK-ME-[0-9]+", "apply_to": "input"},
    {"name": "codename", "kind": "regex", "pattern": "falcon", "apply_to": "output", "action": "redact"},
    {"name": "stop-word", "kind": "regex", "pattern": "detonate", "apply_to": "output", "stream_window": 16},
]


def hub_of(
    tmp_path: Path, fakes: Fakes, keys: list[dict[str, Any]] | None = None, guardrails: list[Any] | None = None
) -> Any:
    return hub_with_fakes(
        tmp_path, fakes, keys or KEYS, models=MODELS, guardrails=GUARDS if guardrails is None else guardrails
    )


def sync_client(hub: RunningHub, key: str = ALICE) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=hub.base, api_key=key, max_retries=0, timeout=PATIENCE)


def async_client(hub: RunningHub, key: str = ALICE) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=hub.base, api_key=key, max_retries=0, timeout=PATIENCE)


async def post(hub: RunningHub, path: str, raw: bytes, headers: dict[str, str]) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=PATIENCE) as http:
        return await http.post(hub.url(path), content=raw, headers={"content-type": "application/json", **headers})


async def usage_of(hub: RunningHub, secret: str = ALICE) -> dict[str, UsageSnapshot]:
    key = hub.hub.keyring.verify(secret)
    assert key is not None and hub.hub.limiter is not None
    return {s.metric: s for s in await hub.hub.limiter.usage(EntityRef(EntityKind.KEY, key.id))}


async def rows(hub: RunningHub) -> list[Any]:
    log = hub.hub.request_log
    assert log is not None
    await log.flush()
    return hub.hub.store.recent_log(1000)


# -- pass-through ----------------------------------------------------------------------------------------------------


async def test_a_request_reaches_anthropic_as_its_own_bytes_with_only_the_model_replaced(tmp_path: Path) -> None:
    """Odd spacing, escapes, `cache_control` with a ttl, a signed thinking block and a tool schema property named
    `model` all arrive exactly as sent; the client's `anthropic-version` and `anthropic-beta` are passed on."""
    raw = (
        b'{ "max_tokens" : 64,\n "system": [{"type": "text", "text": "caf\\u00e9", '
        b'"cache_control": {"type": "ephemeral", "ttl": "1h"}}],\n'
        b' "tools": [{"name": "pick", "input_schema": {"type": "object", '
        b'"properties": {"model": {"type": "string"}}}}],'
        b' "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "thinking", '
        b'"thinking": "hm", "signature": "sig+/=="}, {"type": "text", "text": "yes"}]}, '
        b'{"role": "user", "content": "again"}],\n "model": "claude-sonnet-4-5", "top_k": 3 }'
    )
    headers = {"x-api-key": ALICE, "anthropic-version": "2023-06-01", "anthropic-beta": "context-1m,fine-grained"}
    async with running_fakes() as fakes, hub_of(tmp_path, fakes) as hub:
        fakes.scripts["anthropic"].push(Reply("hello", thinking="I think", signature="sig-abc"))
        response = await post(hub, "/v1/messages?beta=true", raw, headers)
    assert response.status_code == 200, response.text
    (seen,) = fakes.scripts["anthropic"].requests
    assert seen.raw == raw.replace(b'"claude-sonnet-4-5"', b'"claude-3-5-haiku"')
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.headers["anthropic-beta"] == "context-1m,fine-grained"
    assert seen.headers["x-api-key"] == ANTHROPIC_SECRET and seen.query == "beta=true"
    body = response.json()
    assert body["model"] == DEPLOYED and body["content"][0] == {
        "type": "thinking",
        "thinking": "I think",
        "signature": "sig-abc",
    }
    assert response.headers["x-agenthub-provider"] == "anthropic" and "x-agenthub-dropped" not in response.headers


async def test_the_sync_sdk_gets_the_answer_with_its_cache_usage_and_signed_thinking(tmp_path: Path) -> None:
    reply = Reply("It is noon.", thinking="Check the clock.", signature="sig-1", cache_read_tokens=40,
                  cache_write_1h_tokens=8, prompt_tokens=10, completion_tokens=6)  # fmt: skip
    async with running_fakes() as fakes, hub_of(tmp_path, fakes) as hub:
        fakes.scripts["anthropic"].push(reply)

        def run() -> anthropic.types.Message:
            with sync_client(hub) as client:
                return client.messages.create(
                    model=PASSED,
                    max_tokens=1024,
                    thinking={"type": "enabled", "budget_tokens": 512},
                    system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
                    messages=USER,
                )

        message = await anyio.to_thread.run_sync(run)
        used = await usage_of(hub)
    sent = fakes.scripts["anthropic"].requests[0].body
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 512}
    thinking, text = message.content
    assert thinking.type == "thinking" and thinking.signature == "sig-1"
    assert text.type == "text" and text.text == "It is noon."
    assert message.usage.cache_read_input_tokens == 40 and message.usage.cache_creation_input_tokens == 8
    assert used["tokens"].used == 10 + 40 + 8 + 6 and used["tokens"].in_flight == 0


async def test_a_stream_is_relayed_byte_for_byte(tmp_path: Path) -> None:
    """Without output guardrails (which may hold text back and so re-encode the events they change)."""
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": DEPLOYED,
         "content": [], "stop_reason": None, "stop_sequence": None,
         "usage": {"input_tokens": 7, "cache_read_input_tokens": 3, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi \u00e9"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 4}},
        {"type": "message_stop"},
    ]  # fmt: skip
    wire = b"".join(b"event: %s\r\ndata:  %s\r\n\r\n" % (str(e["type"]).encode(), orjson.dumps(e)) for e in events)
    body = orjson.dumps({"model": PASSED, "max_tokens": 8, "stream": True, "messages": USER})
    async with running_fakes() as fakes, hub_of(tmp_path, fakes, guardrails=[]) as hub:
        fakes.scripts["anthropic"].push(Raw(wire, content_type="text/event-stream"))
        async with (
            httpx2.AsyncClient(timeout=PATIENCE) as http,
            http.stream("POST", hub.url("/v1/messages"), content=body, headers={"x-api-key": ALICE}) as response,
        ):
            received = b"".join([chunk async for chunk in response.aiter_bytes()])
        used = await usage_of(hub)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert received == wire
    assert used["tokens"].used == 7 + 3 + 4


async def test_the_async_stream_helper_assembles_streamed_tool_input(tmp_path: Path) -> None:
    reply = Reply("Let me look.", tool_calls=[ToolCall("get_weather", {"city": "Paris", "days": [1, 2]}, id="toolu_1")])
    async with running_fakes() as fakes, hub_of(tmp_path, fakes) as hub, async_client(hub) as client:
        fakes.scripts["anthropic"].push(reply)
        tools: list[Any] = [{"name": "get_weather", "input_schema": {"type": "object"}}]
        async with client.messages.stream(model=PASSED, max_tokens=64, messages=USER, tools=tools) as stream:
            kinds = [event.type async for event in stream]
            final = await stream.get_final_message()
    assert "input_json" in kinds
    assert final.stop_reason == "tool_use"
    (text, call) = final.content
    assert text.type == "text" and text.text == "Let me look."
    assert call.type == "tool_use" and call.id == "toolu_1" and call.input == {"city": "Paris", "days": [1, 2]}


async def test_unsigned_thinking_from_a_translated_turn_is_stripped_before_anthropic(tmp_path: Path) -> None:
    history: list[MessageParam] = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "from gpt", "signature": ""},
                                          {"type": "text", "text": "hello"}]},
        {"role": "user", "content": "and now?"},
    ]  # fmt: skip
    async with running_fakes() as fakes, hub_of(tmp_path, fakes) as hub, async_client(hub) as client:
        await client.messages.create(model=PASSED, max_tokens=16, messages=history)
    sent = fakes.scripts["anthropic"].requests[0].body
    assert sent["messages"][1]["content"] == [{"type": "text", "text": "hello"}]
    assert sent["model"] == DEPLOYED


async def test_count_tokens_is_asked_of_anthropic_and_estimated_elsewhere(tmp_path: Path) -> None:
    received: list[FakeRequest] = []
    async with running_fakes() as fakes, serve(anthropic_app(FakeScript(), received=received)) as own:
        fakes.providers["anthropic"]["base_url"] = own
        async with hub_of(tmp_path, fakes) as hub, async_client(hub) as client:
            passed = await client.messages.count_tokens(model=PASSED, messages=USER, system="Be brief.")
            estimated = await client.messages.count_tokens(model=TRANSLATED, messages=USER)
            log = await rows(hub)
    (asked,) = received
    assert asked.path == "/v1/messages/count_tokens" and asked.body["model"] == DEPLOYED
    assert passed.input_tokens == estimate_input_tokens(asked.body)
    assert estimated.input_tokens == estimate_input_tokens({"messages": USER})
    assert fakes.requests("openai") == 0
    counted = [r for r in log if r.operation == "llm.count_tokens"]
    assert [(r.door, r.status) for r in counted] == [("anthropic", 200), ("anthropic", 200)]


# -- translation -----------------------------------------------------------------------------------------------------


async def test_a_tool_use_loop_through_a_translation(tmp_path: Path) -> None:
    tools: list[Any] = [
        {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {}}}
    ]
    async with running_fakes() as fakes, hub_of(tmp_path, fakes) as hub, async_client(hub) as client:
        fakes.scripts["openai"].push(
            Reply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"}, id="call_1")]), Reply("Sunny in Oslo.")
        )
        first = await client.messages.create(model=TRANSLATED, max_tokens=64, messages=USER, tools=tools)
        (call,) = [b for b in first.content if b.type == "tool_use"]
        result: list[MessageParam] = [
            *USER,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
        ]
        second = await client.messages.create(model=TRANSLATED, max_tokens=64, messages=result, tools=tools)
    assert first.stop_reason == "tool_use" and call.id == "call_1" and call.input == {"city": "Oslo"}
    assert first.model == TRANSLATED
    assert second.stop_reason == "end_turn" and second.content[0].type == "text"
    assert second.content[0].text == "Sunny in Oslo."
    sent = fakes.scripts["openai"].requests[1].body
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
    assert sent["tools"][0]["function"]["name"] == "get_weather"


async def test_a_translated_stream_keeps_anthropics_event_order_and_names_what_was_dropped(tmp_path: Path) -> None:
    async with running_fakes() as fakes, hub_of(tmp_path, fakes) as hub, async_client(hub) as client:
        fakes.scripts["openai"].push(Reply("Translated words.", prompt_tokens=9, completion_tokens=3))
        async with client.messages.with_streaming_response.create(
            model=TRANSLATED,
            max_tokens=64,
            messages=USER,
            stream=True,
            thinking={"type": "enabled", "budget_tokens": 2048},
            extra_body={"top_k": 5},
        ) as response:
            dropped = response.headers["x-agenthub-dropped"]
            kinds: list[str] = []
            text = ""
            async for event in await response.parse():
                kinds.append(event.type)
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    text += event.delta.text
                if event.type == "message_delta":
                    assert event.usage.output_tokens == 3 and event.usage.input_tokens == 9
        used = await usage_of(hub)
    assert set(dropped.split(",")) == {"thinking", "top_k"}
    assert text == "Translated words."
    assert kinds[:3] == ["message_start", "content_block_start", "content_block_delta"]  # the SDK skips `ping`
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert "thinking" not in fakes.scripts["openai"].requests[0].body
    assert used["tokens"].used == 12


async def test_an_overloaded_anthropic_falls_back_to_openai(tmp_path: Path) -> None:
    async with running_fakes() as fakes, hub_of(tmp_path, fakes) as hub, async_client(hub) as client:
        fakes.scripts["anthropic"].push(
            Fault.http(529, code="overloaded_error"), Fault.http(529, code="overloaded_error")
        )
        fakes.scripts["openai"].push(Reply("from openai"))
        response = await client.messages.with_raw_response.create(model=FALLING, max_tokens=16, messages=USER)
        fakes.scripts["anthropic"].push(Fault.error_event(), Fault.error_event())
        fakes.scripts["openai"].push(Reply("streamed from openai"))
        async with client.messages.stream(model=FALLING, max_tokens=16, messages=USER) as stream:
            streamed = await stream.get_final_text()
        message = await response.parse()
    assert response.headers["x-agenthub-provider"] == "openai"
    assert message.content[0].type == "text" and message.content[0].text == "from openai"
    assert streamed == "streamed from openai"
    assert fakes.requests("anthropic") == 4


async def test_an_overloaded_anthropic_without_fallback_is_passed_on_as_529(tmp_path: Path) -> None:
    async with running_fakes() as fakes, hub_of(tmp_path, fakes) as hub, async_client(hub) as client:
        fakes.scripts["anthropic"].default = Fault.http(529, code="overloaded_error")
        with pytest.raises(anthropic.APIStatusError) as overloaded:
            await client.messages.create(model=PASSED, max_tokens=16, messages=USER)
    assert overloaded.value.status_code == 529
    assert _error(overloaded.value)["type"] == "overloaded_error"


# -- governance ------------------------------------------------------------------------------------------------------


def _error(exc: anthropic.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict) and body.get("type") == "error"
    error = body["error"]
    assert isinstance(error, dict)
    return error


async def test_no_key_other_keys_model_and_bad_input_are_refused_in_anthropics_envelope(tmp_path: Path) -> None:
    async with running_fakes() as fakes, hub_of(tmp_path, fakes) as hub:
        async with async_client(hub, "ahk-" + "x" * 43) as stranger:
            with pytest.raises(anthropic.AuthenticationError) as unknown_key:
                await stranger.messages.create(model=PASSED, max_tokens=16, messages=USER)
        async with async_client(hub, BOB) as bob:
            with pytest.raises(anthropic.NotFoundError) as not_his:
                await bob.messages.create(model=PASSED, max_tokens=16, messages=USER)
            with pytest.raises(anthropic.NotFoundError) as unknown:
                await bob.messages.create(model="no-such-model", max_tokens=16, messages=USER)
            with pytest.raises(anthropic.NotFoundError):
                await bob.messages.count_tokens(model=PASSED, messages=USER)
        missing = await post(hub, "/v1/messages", orjson.dumps({"model": PASSED, "messages": USER}), {})
        no_max = await post(
            hub, "/v1/messages", orjson.dumps({"model": PASSED, "messages": USER}), {"x-api-key": ALICE}
        )
        version = orjson.dumps({"model": PASSED, "max_tokens": 5, "messages": USER})
        bad_version = await post(hub, "/v1/messages", version, {"x-api-key": ALICE, "anthropic-version": "latest"})
        log = await rows(hub)
    assert _error(unknown_key.value)["type"] == "authentication_error"
    assert _error(not_his.value) == {"type": "not_found_error", "message": f"unknown model: {PASSED}"}
    assert _error(unknown.value)["message"] == "unknown model: no-such-model"
    assert missing.status_code == 401 and "www-authenticate" in missing.headers
    assert missing.json()["error"]["type"] == "authentication_error"
    assert no_max.status_code == 400 and no_max.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: must be a positive integer",
    }
    assert bad_version.status_code == 400 and "anthropic-version" in bad_version.json()["error"]["message"]
    assert fakes.requests("anthropic") == 0
    statuses = sorted(r.status for r in log if r.door == "anthropic")
    assert statuses == [400, 400, 401, 401, 404, 404, 404]


async def test_the_rate_limit_is_429_with_retry_after(tmp_path: Path) -> None:
    keys = [{"name": "alice", "secret": ALICE, "models": ["*"], "rate_limit": {"requests": 1, "period": "1h"}}]
    async with running_fakes() as fakes, hub_of(tmp_path, fakes, keys) as hub, async_client(hub) as client:
        await client.messages.create(model=TRANSLATED, max_tokens=16, messages=USER)
        with pytest.raises(anthropic.RateLimitError) as limited:
            await client.messages.create(model=TRANSLATED, max_tokens=16, messages=USER)
    assert _error(limited.value)["type"] == "rate_limit_error"
    assert int(limited.value.response.headers["retry-after"]) >= 1


async def test_guardrails_block_the_prompt_and_redact_the_answer(tmp_path: Path) -> None:
    blocked: list[MessageParam] = [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "BLOCK-ME-1"}]}
    ]
    async with running_fakes() as fakes, hub_of(tmp_path, fakes) as hub, async_client(hub) as client:
        with pytest.raises(anthropic.PermissionDeniedError) as refused:
            await client.messages.create(model=PASSED, max_tokens=16, messages=blocked)
        with pytest.raises(anthropic.PermissionDeniedError):
            await client.messages.create(model=PASSED, max_tokens=16, messages=USER, system="say BLOCK-ME-22")
        fakes.scripts["anthropic"].push(
            Reply("Project falcon ships.", tool_calls=[ToolCall("note", {"text": "falcon rises"})]),
            Reply("The falcon has landed, falcon.", piece=3, tool_calls=[ToolCall("note", {"text": "a falcon"})]),
        )
        plain = await client.messages.create(model=PASSED, max_tokens=16, messages=USER)
        async with client.messages.stream(model=PASSED, max_tokens=16, messages=USER) as stream:
            streamed = await stream.get_final_message()
    assert _error(refused.value)["type"] == "permission_error" and "BLOCK-ME" not in str(refused.value.body)
    assert fakes.requests("anthropic") == 2
    for message in (plain, streamed):
        dumped = message.model_dump_json()
        assert "falcon" not in dumped and "[REDACTED:" in dumped, dumped
    text, call = streamed.content
    assert (
        text.type == "text" and text.text.startswith("The ") and text.text.endswith(" has landed, [REDACTED:codename].")
    )
    assert call.type == "tool_use" and call.input == {"text": "a [REDACTED:codename]"}


async def test_a_guardrail_ends_a_stream_with_an_anthropic_error_event(tmp_path: Path) -> None:
    async with running_fakes() as fakes, hub_of(tmp_path, fakes) as hub, async_client(hub) as client:
        fakes.scripts["anthropic"].push(Reply("All fine until we detonate the thing, then more text.", piece=3))
        texts: list[str] = []
        with pytest.raises(anthropic.APIStatusError) as ended:
            async with client.messages.stream(model=PASSED, max_tokens=16, messages=USER) as stream:
                texts.extend([text async for text in stream.text_stream])
        used = await usage_of(hub)
    assert "detonate" not in "".join(texts)
    assert _error(ended.value)["type"] == "permission_error" and "stop-word" in ended.value.message
    assert used["tokens"].in_flight == 0 and used["usd"].in_flight == 0 and used["usd"].used > 0


async def test_a_streamed_answer_settles_the_budget_with_its_cache_usage(tmp_path: Path) -> None:
    reply = Reply("cached", prompt_tokens=100, cache_read_tokens=1000, cache_write_tokens=50, completion_tokens=7)
    async with running_fakes() as fakes, hub_of(tmp_path, fakes) as hub, async_client(hub) as client:
        fakes.scripts["anthropic"].push(reply)
        async with client.messages.stream(model=PASSED, max_tokens=4096, messages=USER) as stream:
            final = await stream.get_final_message()
        used = await usage_of(hub)
        log = await rows(hub)
    assert final.usage.cache_read_input_tokens == 1000 and final.usage.output_tokens == 7
    assert used["tokens"].used == 100 + 1000 + 50 + 7 and used["tokens"].in_flight == 0
    assert used["usd"].used > 0 and used["usd"].in_flight == 0
    (row,) = [r for r in log if r.operation == "llm.messages"]
    assert (row.door, row.status, row.key_id) == ("anthropic", 200, hub.hub.keyring.verify(ALICE).id)

"""The official `openai` SDK (sync, async, streaming) against the hub, in front of fakes of every wire format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import openai
import pytest

from llm.testing import Reply, ToolCall
from tests.doors.harness import MODELS, USER, async_client, hub_with_fakes, running_fakes, sync_client

pytestmark = pytest.mark.anyio
PROVIDERS = list(MODELS)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_chat_through_each_wire_format_with_routing_and_cost_headers(tmp_path: Path, provider: str) -> None:
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes) as hub:
        fakes.scripts[provider].push(Reply("It is noon.", prompt_tokens=20, completion_tokens=5))
        async with async_client(hub) as client:
            raw = await client.chat.completions.with_raw_response.create(
                model=f"{provider}/{MODELS[provider]}", messages=USER
            )
    completion = raw.parse()
    assert completion.choices[0].message.content == "It is noon."
    assert completion.usage is not None and completion.usage.total_tokens == 25
    assert raw.headers["x-agenthub-provider"] == provider
    assert raw.headers["x-agenthub-model"] == MODELS[provider]
    assert float(raw.headers["x-agenthub-cost-usd"]) == pytest.approx((20 * 1000 + 5 * 2000) / 1e6)
    assert 0 <= float(raw.headers["x-agenthub-overhead-ms"]) < 1000
    assert fakes.requests(provider) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_async_streaming_through_each_wire_format(tmp_path: Path, provider: str) -> None:
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes) as hub:
        fakes.scripts[provider].push(Reply("The time is exactly noon.", prompt_tokens=9))
        async with async_client(hub) as client:
            stream = await client.chat.completions.create(
                model=f"{provider}/{MODELS[provider]}",
                messages=USER,
                stream=True,
                stream_options={"include_usage": True},
            )
            texts: list[str] = []
            usages: list[int] = []
            async for chunk in stream:
                texts += [c.delta.content or "" for c in chunk.choices]
                if chunk.usage is not None:
                    usages.append(chunk.usage.prompt_tokens)
    assert "".join(texts) == "The time is exactly noon."
    assert usages == [9]


async def test_sync_client_plain_and_streaming(tmp_path: Path) -> None:
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes) as hub:
        fakes.scripts["anthropic"].push(Reply("plain answer"), Reply("streamed answer"))

        def run() -> tuple[str | None, str]:
            with sync_client(hub) as client:
                plain = client.chat.completions.create(model="anthropic/claude-3-5-haiku", messages=USER)
                stream = client.chat.completions.create(model="anthropic/claude-3-5-haiku", messages=USER, stream=True)
                text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            return plain.choices[0].message.content, text

        plain, streamed = await anyio.to_thread.run_sync(run)
    assert plain == "plain answer"
    assert streamed == "streamed answer"


async def test_request_parameters_are_passed_on_unchanged(tmp_path: Path) -> None:
    tools = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}]
    schema = {"type": "json_schema", "json_schema": {"name": "t", "schema": {"type": "object"}}}
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes) as hub:
        fakes.scripts["openai"].push(Reply(tool_calls=[ToolCall("now", {"tz": "UTC"})]))
        async with async_client(hub) as client:
            completion = await client.chat.completions.create(
                model="fast",
                messages=USER,
                tools=tools,  # pyright: ignore[reportArgumentType]
                tool_choice="required",
                response_format=schema,  # pyright: ignore[reportArgumentType]
                n=2,
                stop=["\n\n"],
                seed=7,
                logprobs=True,
                top_logprobs=2,
                max_tokens=50,
                user="u-1",
            )
        sent = fakes.scripts["openai"].requests[-1].body
    call = completion.choices[0].message.tool_calls
    assert call is not None and call[0].function.name == "now"  # pyright: ignore[reportAttributeAccessIssue]
    assert sent["model"] == MODELS["openai"]
    assert sent["tools"] == tools and sent["tool_choice"] == "required" and sent["response_format"] == schema
    assert (sent["n"], sent["stop"], sent["seed"], sent["logprobs"], sent["top_logprobs"]) == (2, ["\n\n"], 7, True, 2)
    assert sent["max_tokens"] == 50 and sent["user"] == "u-1"


async def test_embeddings_and_responses(tmp_path: Path) -> None:
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes) as hub:
        fakes.scripts["openai"].push(Reply(), Reply("responses plain"), Reply("responses streamed"))
        async with async_client(hub) as client:
            raw = await client.embeddings.with_raw_response.create(
                model="openai/text-embedding-3-small", input=["one two", "three"]
            )
            embedded = raw.parse()
            answer = await client.responses.create(model="openai/gpt-4o-mini", input="hello")
            deltas: list[str] = []
            kinds: list[str] = []
            async with await client.responses.create(model="openai/gpt-4o-mini", input="hi", stream=True) as events:
                async for event in events:
                    kinds.append(event.type)
                    if event.type == "response.output_text.delta":
                        deltas.append(event.delta)
            with pytest.raises(openai.BadRequestError) as refused:
                await client.responses.create(model="anthropic/claude-3-5-haiku", input="hi")
    assert [len(d.embedding) for d in embedded.data] == [4, 4]
    assert embedded.usage.prompt_tokens == 3 and raw.headers["x-agenthub-provider"] == "openai"
    assert answer.output_text == "responses plain"
    assert "".join(deltas) == "responses streamed" and kinds[-1] == "response.completed"
    assert "not supported" in refused.value.message


async def test_models_lists_only_what_the_key_may_use(tmp_path: Path) -> None:
    alice, bob = "ahk-alice-models-00000000000000000000000000", "ahk-bob-models-0000000000000000000000000000"
    keys: list[dict[str, Any]] = [
        {"name": "alice", "secret": alice, "models": ["*"]},
        {"name": "bob", "secret": bob, "models": ["anthropic/*"]},
    ]
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes, keys) as hub:
        async with async_client(hub, alice) as alice_client, async_client(hub, bob) as bob_client:
            everything = [m.id async for m in alice_client.models.list()]
            bobs = [m.id async for m in bob_client.models.list()]
            one = await alice_client.models.retrieve("fast")
            with pytest.raises(openai.NotFoundError):
                await bob_client.models.retrieve("fast")
    assert "fast" in everything and "openai/gpt-4o-mini" in everything
    assert bobs == ["anthropic/claude-3-5-haiku"]  # "fast" routes to openai only
    assert one.id == "fast"

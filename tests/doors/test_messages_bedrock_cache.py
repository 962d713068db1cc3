"""Prompt caching through the translation to Bedrock: each Anthropic `cache_control` marker (on a tool, a system
block or a message block, with its `ttl`) becomes a Converse `cachePoint` right after the block it marks, so Claude
on Bedrock writes the marked prefix once and reads it on the next request, billed at the cache prices. More than
four markers, or a longer TTL after a shorter one, are refused with a 400 as Anthropic refuses them, before
anything is sent. A Bedrock model without prompt caching gets no cache points (the markers are named dropped).

Bedrock is its `llm.testing` fake (SigV4-verified, validating cache points as Converse does and keeping the
prefixes written to its cache), the client the official `anthropic` SDK or, for the OpenAI door, `openai`."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import MessageParam, TextBlockParam, ToolParam
from anthropic.types.message import Message

from hub.governance import EntityKind, EntityRef
from llm.testing import Reply
from tests.doors.harness import async_client, hub_with_fakes, running_fakes
from tests.hub.harness import ALICE, RunningHub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

CLAUDE_ON_BEDROCK = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
NO_CACHE_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
"""Claude 3 Haiku: Bedrock offers no prompt caching for it."""
MODELS: dict[str, Any] = {
    "bedrock": {"deployments": [{"provider": "bedrock", "model": CLAUDE_ON_BEDROCK}]},
    "old": {"deployments": [{"provider": "bedrock", "model": NO_CACHE_MODEL}]},
}
KEYS = [{"name": "alice", "secret": ALICE, "models": ["*"], "budget": {"max_usd": 100, "reset": "1d"}}]
HOUR: Any = {"type": "ephemeral", "ttl": "1h"}
FIVE: Any = {"type": "ephemeral"}
TOOLS: list[ToolParam] = [
    {"name": "lookup", "description": "Look a word up.", "input_schema": {"type": "object"}},
    {"name": "define", "description": "Define a word.", "input_schema": {"type": "object"}, "cache_control": HOUR},
]
SYSTEM: list[TextBlockParam] = [
    {"type": "text", "text": "You are a careful lexicographer. " * 20, "cache_control": HOUR},
    {"type": "text", "text": "Today is a Monday."},
]
MESSAGES: list[MessageParam] = [
    {"role": "user", "content": [{"type": "text", "text": "Define 'cache'. " * 10, "cache_control": FIVE}]},
    {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "define", "input": {"w": "cache"}}],
    },
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a hiding place", "cache_control": FIVE},
            {"type": "text", "text": "Thanks."},
        ],
    },
]
PRICE = {"input": 3.0, "cache_read": 0.3, "cache_write_5m": 3.75, "cache_write_1h": 6.0, "output": 15.0}
"""The shipped price of Claude Sonnet 4.5 on Bedrock, USD per million tokens."""


def cost(message: Message) -> float:
    """What `message` costs by its usage. A streamed message's `cache_creation` split rides in `message_delta`,
    which the SDK does not read: without the split, there must be no writes."""
    usage = message.usage
    split = usage.cache_creation
    five, hour = (split.ephemeral_5m_input_tokens, split.ephemeral_1h_input_tokens) if split else (0, 0)
    assert (usage.cache_creation_input_tokens or 0) == five + hour
    return (
        usage.input_tokens * PRICE["input"]
        + (usage.cache_read_input_tokens or 0) * PRICE["cache_read"]
        + five * PRICE["cache_write_5m"]
        + hour * PRICE["cache_write_1h"]
        + usage.output_tokens * PRICE["output"]
    ) / 1e6


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncGenerator[tuple[RunningHub, Any]]:
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes, KEYS, models=MODELS) as hub:
        yield hub, fakes


def client(hub: RunningHub) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=hub.base, api_key=ALICE, max_retries=0, timeout=PATIENCE)


async def test_each_cache_control_becomes_a_cache_point_after_the_block_it_marks(hub: tuple[RunningHub, Any]) -> None:
    running, fakes = hub
    fakes.scripts["bedrock"].push(Reply("Noted."))
    async with client(running) as anthropic_client:
        response = await anthropic_client.messages.with_raw_response.create(
            model="bedrock", max_tokens=64, tools=TOOLS, system=SYSTEM, messages=MESSAGES
        )
    assert "cache_control" not in response.headers.get("x-agenthub-dropped", "")
    body = fakes.scripts["bedrock"].requests[0].body
    hour, five = {"cachePoint": {"type": "default", "ttl": "1h"}}, {"cachePoint": {"type": "default"}}
    tools = body["toolConfig"]["tools"]
    assert [next(iter(t)) for t in tools] == ["toolSpec", "toolSpec", "cachePoint"] and tools[2] == hour
    assert body["system"] == [{"text": SYSTEM[0]["text"]}, hour, {"text": "Today is a Monday."}]
    first, called, answered = body["messages"]
    assert first["content"] == [{"text": "Define 'cache'. " * 10}, five]
    assert [next(iter(b)) for b in called["content"]] == ["toolUse"]
    assert [next(iter(b)) for b in answered["content"]] == ["toolResult", "cachePoint", "text"]
    assert answered["content"][1] == five


async def test_a_repeated_prefix_is_written_once_then_read_and_billed_at_the_cache_prices(
    hub: tuple[RunningHub, Any],
) -> None:
    running, fakes = hub
    fakes.scripts["bedrock"].push(Reply("Noted."), Reply("Noted again."))
    async with client(running) as anthropic_client:
        response = await anthropic_client.messages.with_raw_response.create(
            model="bedrock", max_tokens=64, tools=TOOLS, system=SYSTEM, messages=MESSAGES
        )
        written = await response.parse()
        async with anthropic_client.messages.stream(
            model="bedrock", max_tokens=64, tools=TOOLS, system=SYSTEM, messages=MESSAGES
        ) as stream:
            read = await stream.get_final_message()
    split = written.usage.cache_creation
    assert split is not None and split.ephemeral_1h_input_tokens > 0 and split.ephemeral_5m_input_tokens > 0
    assert not written.usage.cache_read_input_tokens
    assert (
        written.usage.cache_creation_input_tokens == split.ephemeral_1h_input_tokens + split.ephemeral_5m_input_tokens
    )
    assert read.usage.cache_read_input_tokens == written.usage.cache_creation_input_tokens
    assert not read.usage.cache_creation_input_tokens
    assert written.usage.input_tokens == read.usage.input_tokens == 12  # the scripted part after the last cache point
    assert float(response.headers["x-agenthub-cost-usd"]) == pytest.approx(cost(written), abs=1e-6)  # 6 decimals
    assert cost(read) < cost(written) / 5

    assert running.hub.request_log is not None
    await running.hub.request_log.flush()
    rows = sorted(
        (r for r in running.hub.store.recent_log(100) if r.operation == "llm.messages"),
        key=lambda r: r.cache_read_tokens or 0,
    )
    assert len(rows) == 2
    assert (rows[0].cache_read_tokens, rows[0].cache_write_5m_tokens, rows[0].cache_write_1h_tokens) == (
        0,
        split.ephemeral_5m_input_tokens,
        split.ephemeral_1h_input_tokens,
    )
    assert (rows[1].cache_read_tokens, rows[1].cache_write_5m_tokens, rows[1].cache_write_1h_tokens) == (
        read.usage.cache_read_input_tokens,
        0,
        0,
    )
    assert rows[0].cost_usd == pytest.approx(cost(written)) and rows[1].cost_usd == pytest.approx(cost(read))
    key = running.hub.keyring.verify(ALICE)
    assert key is not None and running.hub.limiter is not None
    usage = {s.metric: s for s in await running.hub.limiter.usage(EntityRef(EntityKind.KEY, key.id))}
    assert usage["usd"].used == pytest.approx(cost(written) + cost(read), abs=2e-6)  # settled in micro-dollars


async def test_a_top_level_cache_control_marks_the_last_block(hub: tuple[RunningHub, Any]) -> None:
    running, fakes = hub
    fakes.scripts["bedrock"].push(Reply("Noted."))
    async with client(running) as anthropic_client:
        await anthropic_client.messages.create(
            model="bedrock", max_tokens=64, cache_control=HOUR, messages=[{"role": "user", "content": "hello"}]
        )
    body = fakes.scripts["bedrock"].requests[0].body
    assert body["messages"][-1]["content"] == [{"text": "hello"}, {"cachePoint": {"type": "default", "ttl": "1h"}}]


async def test_more_than_four_cache_control_blocks_are_refused_as_anthropic_refuses_them(
    hub: tuple[RunningHub, Any],
) -> None:
    running, fakes = hub
    five: list[TextBlockParam] = [{"type": "text", "text": f"part {i}", "cache_control": FIVE} for i in range(5)]
    async with client(running) as anthropic_client:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await anthropic_client.messages.create(
                model="bedrock", max_tokens=64, system=five, messages=[{"role": "user", "content": "hello"}]
            )
    assert caught.value.status_code == 400
    error: Any = caught.value.body
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"] == "A maximum of 4 blocks with cache_control may be provided. Found 5."
    assert fakes.requests("bedrock") == 0


async def test_a_longer_ttl_after_a_shorter_one_is_refused(hub: tuple[RunningHub, Any]) -> None:
    running, fakes = hub
    async with client(running) as anthropic_client:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await anthropic_client.messages.create(
                model="bedrock",
                max_tokens=64,
                tools=[{**TOOLS[0], "cache_control": FIVE}],
                system=[{"type": "text", "text": "Be brief.", "cache_control": HOUR}],
                messages=[{"role": "user", "content": "hello"}],
            )
    error: Any = caught.value.body
    assert error["error"]["type"] == "invalid_request_error" and "ttl" in error["error"]["message"]
    assert fakes.requests("bedrock") == 0


async def test_an_invalid_ttl_is_refused_naming_where(hub: tuple[RunningHub, Any]) -> None:
    running, fakes = hub
    bad: Any = {"type": "ephemeral", "ttl": "2h"}
    async with client(running) as anthropic_client:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await anthropic_client.messages.create(
                model="bedrock",
                max_tokens=64,
                messages=[{"role": "user", "content": [{"type": "text", "text": "hello", "cache_control": bad}]}],
            )
    error: Any = caught.value.body
    assert "messages[0].content[0].cache_control" in error["error"]["message"]
    assert fakes.requests("bedrock") == 0


async def test_a_bedrock_model_without_prompt_caching_gets_no_cache_points(hub: tuple[RunningHub, Any]) -> None:
    running, fakes = hub
    fakes.scripts["bedrock"].push(Reply("Noted."))
    async with client(running) as anthropic_client:
        response = await anthropic_client.messages.with_raw_response.create(
            model="old", max_tokens=64, tools=TOOLS, system=SYSTEM, messages=MESSAGES
        )
    assert "cache_control" in response.headers["x-agenthub-dropped"].split(",")
    body = fakes.scripts["bedrock"].requests[0].body
    assert "cachePoint" not in str(body)


async def test_the_openai_door_places_cache_points_from_cache_control_on_content_parts(
    hub: tuple[RunningHub, Any],
) -> None:
    """Chat Completions clients mark a content part (or a tool) with `cache_control`, as Anthropic-style gateways
    accept; a Bedrock deployment gets the cache point after it, and a repeated prefix is read."""
    running, fakes = hub
    fakes.scripts["bedrock"].push(Reply("One."), Reply("Two."))
    system: Any = {
        "role": "system",
        "content": [{"type": "text", "text": "You are terse. " * 30, "cache_control": HOUR}],
    }
    user: Any = {"role": "user", "content": [{"type": "text", "text": "hello", "cache_control": FIVE}]}
    async with async_client(running) as openai_client:
        first = await openai_client.chat.completions.create(model="bedrock", messages=[system, user])
        second = await openai_client.chat.completions.create(model="bedrock", messages=[system, user])
    body = fakes.scripts["bedrock"].requests[0].body
    assert body["system"] == [{"text": system["content"][0]["text"]}, {"cachePoint": {"type": "default", "ttl": "1h"}}]
    assert body["messages"][0]["content"] == [{"text": "hello"}, {"cachePoint": {"type": "default"}}]
    assert first.usage is not None and second.usage is not None
    first_details, second_details = first.usage.prompt_tokens_details, second.usage.prompt_tokens_details
    assert first_details is not None and second_details is not None
    assert not first_details.cached_tokens and second_details.cached_tokens


async def test_the_fake_refuses_cache_points_as_bedrock_does(hub: tuple[RunningHub, Any]) -> None:
    """The OpenAI door passes markers on as they are, so a fifth one reaches Bedrock, which refuses it (400)."""
    running, _ = hub
    parts: Any = [{"type": "text", "text": f"part {i}", "cache_control": FIVE} for i in range(5)]
    async with async_client(running) as openai_client:
        with pytest.raises(openai.BadRequestError) as caught:
            await openai_client.chat.completions.create(model="bedrock", messages=[{"role": "user", "content": parts}])
    assert caught.value.status_code == 400 and "ValidationException" in caught.value.message

"""Cache writes split by TTL in translated Messages responses: Claude on Bedrock reports its cache writes as
`cacheWriteInputTokens` with a `cacheDetails` breakdown per TTL (`5m`, `1h`), and the Messages door gives the
client Anthropic's `cache_creation` split, bills each part at its own price (Claude: 1.25 times the input price for
5 minutes, twice it for an hour) and records both in the request log and the key's budget. Bedrock in front of its
`llm.testing` fake (SigV4-verified `Converse` / `ConverseStream`), the client the official `anthropic` SDK."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
from anthropic.types import MessageParam

from hub.governance import EntityKind, EntityRef
from llm.testing import Raw, Reply
from tests.doors.harness import hub_with_fakes, running_fakes
from tests.hub.harness import ALICE, RunningHub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

CLAUDE_ON_BEDROCK = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
MODELS: dict[str, Any] = {"bedrock": {"deployments": [{"provider": "bedrock", "model": CLAUDE_ON_BEDROCK}]}}
KEYS = [{"name": "alice", "secret": ALICE, "models": ["*"], "budget": {"max_usd": 100, "reset": "1d"}}]
USER: list[MessageParam] = [{"role": "user", "content": "hello"}]
WRITTEN = Reply("Written.", prompt_tokens=10, cache_read_tokens=40, cache_write_tokens=500, cache_write_1h_tokens=1000,
                completion_tokens=2)  # fmt: skip
"""10 uncached input tokens, 40 read from the cache, 500 written for 5 minutes and 1000 for an hour, 2 output."""
COST = (10 * 3.0 + 40 * 0.3 + 500 * 3.75 + 1000 * 6.0 + 2 * 15.0) / 1e6
"""At the shipped price of Claude Sonnet 4.5 on Bedrock: input 3, cache read 0.30, 5-minute write 3.75, 1-hour write
6, output 15 (USD per million tokens)."""


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncGenerator[tuple[RunningHub, Any]]:
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes, KEYS, models=MODELS) as hub:
        yield hub, fakes


def client(hub: RunningHub) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=hub.base, api_key=ALICE, max_retries=0, timeout=PATIENCE)


async def test_bedrock_cache_writes_come_back_split_by_ttl(hub: tuple[RunningHub, Any]) -> None:
    running, fakes = hub
    fakes.scripts["bedrock"].push(WRITTEN, WRITTEN)
    async with client(running) as anthropic_client:
        response = await anthropic_client.messages.with_raw_response.create(
            model="bedrock", max_tokens=64, messages=USER
        )
        whole = await response.parse()
        async with anthropic_client.messages.stream(model="bedrock", max_tokens=64, messages=USER) as stream:
            streamed = await stream.get_final_message()
    for message in (whole, streamed):
        usage = message.usage
        assert usage.input_tokens == 10 and usage.cache_read_input_tokens == 40 and usage.output_tokens == 2
        assert usage.cache_creation_input_tokens == 1500
    assert whole.usage.cache_creation is not None
    assert whole.usage.cache_creation.ephemeral_5m_input_tokens == 500
    assert whole.usage.cache_creation.ephemeral_1h_input_tokens == 1000
    assert float(response.headers["x-agenthub-cost-usd"]) == pytest.approx(COST)


async def test_a_streams_final_usage_carries_the_split(hub: tuple[RunningHub, Any]) -> None:
    """A translated stream learns the usage at its end, so the split rides in `message_delta`'s usage (the SDKs
    read only the totals there; the request log has the split, see below)."""
    running, fakes = hub
    fakes.scripts["bedrock"].push(WRITTEN)
    body = {"model": "bedrock", "max_tokens": 64, "messages": USER, "stream": True}
    async with (
        httpx2.AsyncClient(timeout=PATIENCE) as http,
        http.stream("POST", running.url("/v1/messages"), json=body, headers={"x-api-key": ALICE}) as response,
    ):
        assert response.status_code == 200
        lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    events = [orjson.loads(line[6:]) for line in lines]
    (final,) = [e for e in events if e["type"] == "message_delta"]
    assert final["usage"]["cache_creation_input_tokens"] == 1500
    assert final["usage"]["cache_creation"] == {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1000}


async def test_bedrock_cache_writes_are_billed_at_their_ttls_price_in_the_log_and_the_budget(
    hub: tuple[RunningHub, Any],
) -> None:
    running, fakes = hub
    fakes.scripts["bedrock"].push(WRITTEN, WRITTEN)
    async with client(running) as anthropic_client:
        await anthropic_client.messages.create(model="bedrock", max_tokens=64, messages=USER)
        async with anthropic_client.messages.stream(model="bedrock", max_tokens=64, messages=USER) as stream:
            await stream.get_final_message()
    assert running.hub.request_log is not None
    await running.hub.request_log.flush()
    rows = [r for r in running.hub.store.recent_log(100) if r.operation == "llm.messages"]
    assert len(rows) == 2
    for row in rows:
        assert (row.cache_write_5m_tokens, row.cache_write_1h_tokens) == (500, 1000)
        assert row.cost_usd == pytest.approx(COST)
    key = running.hub.keyring.verify(ALICE)
    assert key is not None and running.hub.limiter is not None
    usage = {s.metric: s for s in await running.hub.limiter.usage(EntityRef(EntityKind.KEY, key.id))}
    assert usage["usd"].used == pytest.approx(2 * COST)


async def test_bedrock_writes_without_a_breakdown_are_5_minute_writes(hub: tuple[RunningHub, Any]) -> None:
    """A usage without `cacheDetails` (Bedrock's answer before it reported the breakdown per TTL) wrote to the default
    5-minute cache."""
    running, fakes = hub
    usage = {"inputTokens": 10, "outputTokens": 2, "totalTokens": 62, "cacheWriteInputTokens": 50}
    body = {
        "output": {"message": {"role": "assistant", "content": [{"text": "Written."}]}},
        "stopReason": "end_turn",
        "usage": usage,
        "metrics": {"latencyMs": 42},
    }
    fakes.scripts["bedrock"].push(Raw(orjson.dumps(body)))
    async with client(running) as anthropic_client:
        message = await anthropic_client.messages.create(model="bedrock", max_tokens=64, messages=USER)
    assert message.usage.cache_creation_input_tokens == 50
    assert message.usage.cache_creation is not None
    assert message.usage.cache_creation.ephemeral_5m_input_tokens == 50
    assert message.usage.cache_creation.ephemeral_1h_input_tokens == 0

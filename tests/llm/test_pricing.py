"""Pricing: every kind of token at its own rate (cache reads, cache writes of both TTLs, reasoning), each counted
once whatever the provider's wire calls "input"; the shipped table's undated names; defaults and unpriced models."""

from __future__ import annotations

from typing import Any

import pytest

from llm.config import PriceConfig, load_config
from llm.messages.usage import MessagesUsage
from llm.pricing import Price, PriceTable, cache_rates, unpriced_deployments
from llm.providers.bedrock import from_converse
from llm.providers.gemini import from_gemini
from llm.schema import Usage
from llm.testing import FakeScript, Reply, anthropic_app, serve

from .conftest import chat, open_router, provider

pytestmark = pytest.mark.anyio

SHIPPED = PriceTable()


def test_a_cache_read_is_billed_at_the_cache_read_price_not_the_input_price() -> None:
    usage = Usage.from_openai(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 200,
            "prompt_tokens_details": {"cached_tokens": 600},
            "completion_tokens_details": {"reasoning_tokens": 50},
        }
    )
    assert usage == Usage(1000, 200, cached_tokens=600, reasoning_tokens=50)
    price = SHIPPED.price("openai", "gpt-4o")
    assert price is not None and usage is not None
    # 400 uncached at 2.50, 600 cached at 1.25, 200 output (reasoning included) at 10.
    assert price.cost(usage) == pytest.approx((400 * 2.5 + 600 * 1.25 + 200 * 10) / 1e6)


def test_anthropic_cache_writes_are_billed_by_ttl_and_reads_at_a_tenth() -> None:
    wire = {
        "input_tokens": 100,
        "output_tokens": 300,
        "cache_read_input_tokens": 2000,
        "cache_creation_input_tokens": 1500,
        "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 1000},
        "output_tokens_details": {"thinking_tokens": 120},
    }
    usage = MessagesUsage.read(wire).to_usage()
    assert usage == Usage(3600, 300, 2000, 500, 1000, 120)
    assert usage.uncached_tokens == 100 and usage.cache_write_tokens == 1500
    price = SHIPPED.price("anthropic", "claude-sonnet-4-5")
    assert price == Price(3.0, 15.0, 0.3, 3.75, 6.0) and price is not None
    expected = (100 * 3 + 2000 * 0.3 + 500 * 3.75 + 1000 * 6 + 300 * 15) / 1e6
    assert price.cost(usage) == pytest.approx(expected)


def test_reasoning_is_billed_at_the_output_price_unless_listed() -> None:
    usage = Usage(0, 100, reasoning_tokens=40)
    assert Price.of("any", 1.0, 4.0).cost(usage) == pytest.approx(100 * 4 / 1e6)
    assert Price.of("any", 1.0, 4.0, reasoning=8.0).cost(usage) == pytest.approx((60 * 4 + 40 * 8) / 1e6)


def test_usage_survives_the_openai_shape_both_ways_with_its_cache_and_reasoning_parts() -> None:
    usage = Usage(
        5000, 700, cached_tokens=1000, cache_write_5m_tokens=300, cache_write_1h_tokens=200, reasoning_tokens=90
    )
    wire = usage.to_openai()
    assert wire == {
        "prompt_tokens": 5000,
        "completion_tokens": 700,
        "total_tokens": 5700,
        "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 500, "cache_write_1h_tokens": 200},
        "completion_tokens_details": {"reasoning_tokens": 90},
    }
    assert Usage.from_openai(wire) == usage
    responses = {
        "input_tokens": 5000,
        "output_tokens": 700,
        "input_tokens_details": {"cached_tokens": 1000},
        "output_tokens_details": {"reasoning_tokens": 90},
    }
    assert Usage.from_openai(responses) == Usage(5000, 700, cached_tokens=1000, reasoning_tokens=90)
    assert Usage(10, 2).to_openai() == {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}


def test_parts_larger_than_their_totals_are_cut_so_nothing_is_billed_below_zero() -> None:
    wire = {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 9, "cache_write_1h_tokens": 99},
        "completion_tokens_details": {"reasoning_tokens": 50},
    }
    assert Usage.from_openai(wire) == Usage(10, 5, cached_tokens=8, cache_write_1h_tokens=2, reasoning_tokens=5)
    assert Usage.from_openai({"prompt_tokens": True, "completion_tokens": 1}) is None


def test_gemini_counts_thoughts_as_output_and_cached_content_inside_the_prompt() -> None:
    body: dict[str, Any] = {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP"}],
        "usageMetadata": {
            "promptTokenCount": 1000,
            "cachedContentTokenCount": 800,
            "candidatesTokenCount": 50,
            "thoughtsTokenCount": 150,
            "totalTokenCount": 1200,
        },
    }
    usage = Usage.from_openai(from_gemini(body, "gemini-2.5-flash")["usage"])
    assert usage == Usage(1000, 200, cached_tokens=800, reasoning_tokens=150)
    price = SHIPPED.price("gemini", "gemini-2.5-flash")
    assert price is not None and usage is not None
    assert price.cost(usage) == pytest.approx((200 * 0.3 + 800 * 0.03 + 200 * 2.5) / 1e6)


def test_bedrock_adds_cache_reads_and_writes_to_its_input_tokens() -> None:
    body: dict[str, Any] = {
        "output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 10, "outputTokens": 20, "cacheReadInputTokens": 300, "cacheWriteInputTokens": 200},
    }
    model = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    usage = Usage.from_openai(from_converse(body, model)["usage"])
    assert usage == Usage(510, 20, cached_tokens=300, cache_write_5m_tokens=200)
    price = SHIPPED.price("bedrock", model)
    assert price == Price(3.0, 15.0, 0.3, 3.75, 6.0) and price is not None and usage is not None
    assert price.cost(usage) == pytest.approx((10 * 3 + 300 * 0.3 + 200 * 3.75 + 20 * 15) / 1e6)


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("claude-sonnet-4-5", Price(3.0, 15.0, 0.3, 3.75, 6.0)),
        ("claude-opus-4-1", Price(15.0, 75.0, 1.5, 18.75, 30.0)),
        ("claude-haiku-4-5", Price(1.0, 5.0, 0.1, 1.25, 2.0)),
        ("claude-opus-4-5", Price(5.0, 25.0, 0.5, 6.25, 10.0)),
        ("claude-sonnet-4-5-20250929", Price(3.0, 15.0, 0.3, 3.75, 6.0)),
        ("gpt-5", Price(1.25, 10.0, 0.125, 1.25, 1.25)),
        ("gpt-5-mini", Price(0.25, 2.0, 0.025, 0.25, 0.25)),
        ("gpt-4.1", Price(2.0, 8.0, 0.5, 2.0, 2.0)),
        ("o4-mini", Price(1.1, 4.4, 0.275, 1.1, 1.1)),
        ("gemini-2.5-pro", Price(1.25, 10.0, 0.125, 1.25, 1.25)),
        ("gemini-2.5-flash-lite", Price(0.1, 0.4, 0.01, 0.1, 0.1)),
    ],
)
def test_the_shipped_table_knows_undated_names_and_their_cache_prices(model: str, price: Price) -> None:
    assert SHIPPED.price("any", model) == price


def test_configured_prices_take_cache_and_reasoning_rates_and_follow_the_family_convention_otherwise() -> None:
    table = PriceTable(
        {
            "anthropic/claude-sonnet-4-5": PriceConfig(input=2, output=10),
            "openai/gpt-4o": PriceConfig(input=2, output=8, cache_read=0.2, reasoning=12),
            "gemini-exp": PriceConfig(input=1, output=2),
        }
    )
    assert table.price("anthropic", "claude-sonnet-4-5") == Price(2, 10, 0.2, 2.5, 4.0)
    assert table.price("openai", "gpt-4o") == Price(2, 8, 0.2, 2, 2, 12)
    assert table.price("gemini", "gemini-exp") == Price(1, 2, 0.25, 1, 1)
    assert table.price("azure", "gpt-4o") == SHIPPED.price("azure", "gpt-4o")
    assert cache_rates("eu.anthropic.claude-new", 4.0) == (0.4, 5.0, 8.0)
    assert cache_rates("llama-3", 4.0) == (4.0, 4.0, 4.0)


def test_a_model_without_a_price_has_no_cost_unless_a_default_is_configured() -> None:
    assert PriceTable().price("local", "my-finetune") is None
    table = PriceTable({"default": PriceConfig(input=2, output=6)})
    assert table.price("local", "my-finetune") == Price(2, 6, 2, 2, 2)
    assert not table.known("local", "my-finetune") and table.known("openai", "gpt-4o")
    assert table.price("openai", "gpt-4o") == SHIPPED.price("openai", "gpt-4o")  # the default fills gaps only


def test_unpriced_deployments_lists_every_routable_model_without_a_price() -> None:
    config: dict[str, Any] = {
        "providers": {
            "local": {"kind": "openai-compatible", "base_url": "http://127.0.0.1:9", "models": ["listed-only"]},
            "openai": provider("openai", "http://127.0.0.1:9", ("main", "env:T_KEY", 1)),
        },
        "models": {
            "fast": {"deployments": [{"provider": "openai", "model": "gpt-4o-mini"}], "fallbacks": ["local/mystery"]},
            "own": {
                "deployments": [{"provider": "local", "model": "mystery"}, {"provider": "local", "model": "gpt-5"}]
            },
        },
    }
    assert unpriced_deployments(load_config(config)) == ["local/mystery", "local/listed-only"]
    config["prices"] = {"default": {"input": 1, "output": 1}}
    assert unpriced_deployments(load_config(config)) == []


async def test_an_anthropic_chat_is_billed_for_its_cache_reads_and_writes_streamed_or_not() -> None:
    reply = Reply(
        "cached answer",
        prompt_tokens=100,
        completion_tokens=300,
        cache_read_tokens=2000,
        cache_write_tokens=500,
        cache_write_1h_tokens=1000,
    )
    script = FakeScript(reply, reply)
    config = {"providers": {"an": provider("anthropic", "", ("main", "env:T_KEY", 1))}}
    async with serve(anthropic_app(script)) as url:
        config["providers"]["an"]["base_url"] = url
        async with open_router(config) as router:
            result = await router.chat(chat("an/claude-sonnet-4-5"))
            async with await router.stream_chat(chat("an/claude-sonnet-4-5")) as stream:
                chunks = [c async for c in stream]
    expected = Usage(3600, 300, 2000, 500, 1000)
    cost = (100 * 3 + 2000 * 0.3 + 500 * 3.75 + 1000 * 6 + 300 * 15) / 1e6
    assert result.usage == expected and result.cost == pytest.approx(cost)
    assert result.response["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 2000,
        "cache_write_tokens": 1500,
        "cache_write_1h_tokens": 1000,
    }
    assert chunks and stream.usage == expected and stream.cost == pytest.approx(cost)

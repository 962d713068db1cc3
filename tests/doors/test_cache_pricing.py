"""Cost through the hub: cache reads, cache writes (5 minutes, 1 hour) and reasoning are priced exactly, budgets and
token limits see them, the request log records them; a model without a price is never served for free."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import openai
import orjson
import pytest

from hub.cli.main import main
from hub.governance import EntityKind, EntityRef, UsageSnapshot
from llm.testing import Reply
from tests.doors.harness import USER, async_client, error_of, hub_with_fakes, running_fakes
from tests.hub.harness import RunningHub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio

SECRET = "ahk-erin-test-secret-00000000000000000000000"
BUDGET = {"max_usd": 5.0, "reset": "1d"}
MODELS: dict[str, Any] = {
    "claude-sonnet-4-5": {"deployments": [{"provider": "anthropic", "model": "claude-sonnet-4-5"}]},
    "mini": {"deployments": [{"provider": "openai", "model": "gpt-5-mini"}]},
    "mystery": {"deployments": [{"provider": "openai", "model": "mystery-model"}]},
}
CACHED = Reply(
    "from the cache",
    prompt_tokens=100,
    completion_tokens=300,
    cache_read_tokens=2000,
    cache_write_tokens=500,
    cache_write_1h_tokens=1000,
)
"""Anthropic's usage: 100 uncached input tokens, 2000 read from the cache, 500 written for 5 minutes and 1000 for an
hour; 300 output tokens."""
CACHED_COST = (100 * 3.0 + 2000 * 0.3 + 500 * 3.75 + 1000 * 6.0 + 300 * 15.0) / 1e6
"""At claude-sonnet-4-5's list prices: input 3, cache read 0.30, 5-minute write 3.75, 1-hour write 6, output 15."""


def _key(**policy: object) -> list[dict[str, object]]:
    return [{"name": "erin", "secret": SECRET, "models": ["*"], **policy}]


async def _usage(hub: RunningHub) -> dict[str, UsageSnapshot]:
    key = hub.hub.keyring.verify(SECRET)
    assert key is not None and hub.hub.limiter is not None
    return {s.metric: s for s in await hub.hub.limiter.usage(EntityRef(EntityKind.KEY, key.id))}


async def _rows(hub: RunningHub) -> list[Any]:
    assert hub.hub.request_log is not None
    await hub.hub.request_log.flush()
    return [r for r in hub.hub.store.recent_log(100) if r.operation == "llm.chat"]


async def _post(hub: RunningHub, body: dict[str, Any]) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=PATIENCE) as http:
        headers = {"Authorization": f"Bearer {SECRET}"}
        return await http.post(hub.url("/v1/chat/completions"), json=body, headers=headers)


async def _stream(hub: RunningHub, body: dict[str, Any]) -> list[dict[str, Any]]:
    async with httpx2.AsyncClient(timeout=PATIENCE) as http:
        headers = {"Authorization": f"Bearer {SECRET}"}
        async with http.stream("POST", hub.url("/v1/chat/completions"), json=body, headers=headers) as response:
            assert response.status_code == 200
            return [orjson.loads(line[6:]) async for line in response.aiter_lines() if line.startswith("data: {")]


async def test_openai_cached_and_reasoning_tokens_are_priced_exactly_and_recorded(tmp_path: Path) -> None:
    async with running_fakes() as fakes:
        async with hub_with_fakes(tmp_path, fakes, _key(budget=BUDGET), models=MODELS) as hub:
            fakes.scripts["openai"].push(
                Reply(
                    "thought it over",
                    prompt_tokens=4000,
                    cache_read_tokens=6000,
                    completion_tokens=1000,
                    reasoning_tokens=600,
                )
            )
            async with async_client(hub, SECRET) as client:
                raw = await client.chat.completions.with_raw_response.create(model="mini", messages=USER)
            completion = raw.parse()
            used = await _usage(hub)
            rows = await _rows(hub)
    # gpt-5-mini: 4000 uncached at 0.25, 6000 cached at 0.025, 1000 output (600 of them reasoning) at 2.
    cost = (4000 * 0.25 + 6000 * 0.025 + 1000 * 2.0) / 1e6
    assert raw.headers["x-agenthub-cost-usd"] == f"{cost:.8f}" == "0.00315000"
    assert completion.usage is not None and completion.usage.prompt_tokens == 10000
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 6000
    assert used["usd"].used == pytest.approx(cost) and used["usd"].in_flight == 0
    (row,) = rows
    assert (row.deployment, row.tokens, row.cost_usd) == ("openai/gpt-5-mini", 11000, pytest.approx(cost))
    assert (row.cache_read_tokens, row.cache_write_5m_tokens, row.cache_write_1h_tokens) == (6000, 0, 0)
    assert row.reasoning_tokens == 600


async def test_anthropic_cache_reads_and_writes_of_both_ttls_are_priced_for_claude_sonnet_4_5(tmp_path: Path) -> None:
    key = _key(budget=BUDGET, rate_limit={"tokens": 1_000_000, "period": "1h"})
    async with running_fakes() as fakes:
        async with hub_with_fakes(tmp_path, fakes, key, models=MODELS) as hub:
            fakes.scripts["anthropic"].push(CACHED, CACHED)
            body = {"model": "claude-sonnet-4-5", "messages": USER}
            response = await _post(hub, body)
            chunks = await _stream(hub, {**body, "stream": True, "stream_options": {"include_usage": True}})
            used = await _usage(hub)
            rows = await _rows(hub)
            sent = [r.model for r in fakes.scripts["anthropic"].requests]
    assert response.status_code == 200, response.text
    assert response.headers["x-agenthub-cost-usd"] == f"{CACHED_COST:.8f}" == "0.01327500"
    details = {"cached_tokens": 2000, "cache_write_tokens": 1500, "cache_write_1h_tokens": 1000}
    assert response.json()["usage"]["prompt_tokens_details"] == details
    assert chunks[-1]["usage"]["prompt_tokens_details"] == details
    assert sent == ["claude-sonnet-4-5", "claude-sonnet-4-5"]
    # Two chats to the undated name: the budget sees both, at the cache-aware price; token limits count every token.
    assert used["usd"].used == pytest.approx(2 * CACHED_COST) and used["usd"].in_flight == 0
    assert used["tokens"].used == 2 * (3600 + 300)
    assert len(rows) == 2
    for row in rows:
        assert (row.deployment, row.tokens, row.cost_usd) == (
            "anthropic/claude-sonnet-4-5",
            3900,
            pytest.approx(CACHED_COST),
        )
        assert (row.cache_read_tokens, row.cache_write_5m_tokens, row.cache_write_1h_tokens) == (2000, 500, 1000)
        assert row.reasoning_tokens == 0


async def test_a_model_without_a_price_is_refused_before_it_is_sent_where_a_budget_applies(tmp_path: Path) -> None:
    async with running_fakes() as fakes:
        async with hub_with_fakes(tmp_path, fakes, _key(budget=BUDGET), models=MODELS) as hub:
            async with async_client(hub, SECRET) as client:
                with pytest.raises(openai.BadRequestError) as refused:
                    await client.chat.completions.create(model="mystery", messages=USER)
                with pytest.raises(openai.BadRequestError) as streamed:
                    await client.chat.completions.create(model="mystery", messages=USER, stream=True)
            used = await _usage(hub)
            rows = await _rows(hub)
    error = error_of(refused.value)
    assert refused.value.status_code == 400 and error["type"] == error["code"] == "price_missing"
    assert "no price for openai/mystery-model" in error["message"] and "[prices]" in error["message"]
    assert error_of(streamed.value)["code"] == "price_missing"
    assert fakes.requests("openai") == 0
    assert used["usd"].used == 0 and used["usd"].in_flight == 0
    assert [(r.status, r.outcome) for r in rows] == [(400, "price_missing")] * 2


async def test_without_a_budget_an_unpriced_model_is_served_and_its_cost_logged_as_unknown(tmp_path: Path) -> None:
    async with running_fakes() as fakes:
        async with hub_with_fakes(tmp_path, fakes, _key(), models=MODELS) as hub:
            fakes.scripts["openai"].push(Reply("free?", prompt_tokens=12, completion_tokens=3))
            response = await _post(hub, {"model": "mystery", "messages": USER})
            rows = await _rows(hub)
    assert response.status_code == 200 and "x-agenthub-cost-usd" not in response.headers
    (row,) = rows
    assert (row.deployment, row.tokens, row.cost_usd) == ("openai/mystery-model", 15, None)


async def test_a_configured_default_price_charges_a_model_the_table_does_not_know(tmp_path: Path) -> None:
    prices = {"default": {"input": 1000.0, "output": 2000.0}}
    async with running_fakes() as fakes:
        async with hub_with_fakes(tmp_path, fakes, _key(budget=BUDGET), models=MODELS, prices=prices) as hub:
            fakes.scripts["openai"].push(Reply("priced", prompt_tokens=12, completion_tokens=1))
            response = await _post(hub, {"model": "mystery", "messages": USER})
            used = await _usage(hub)
    assert response.status_code == 200, response.text
    assert response.headers["x-agenthub-cost-usd"] == "0.01400000"
    assert used["usd"].used == pytest.approx(0.014)


def test_config_check_lists_the_deployments_without_a_price(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agenthub.toml"
    path.write_text(
        """
[providers.openai]
kind = "openai"
keys = [{ secret = "env:T_OPENAI" }]
models = ["gpt-4o", "my-finetune"]

[providers.local]
kind = "openai-compatible"
base_url = "http://127.0.0.1:9/v1"

[models.fast]
deployments = [{ provider = "openai", model = "gpt-4o-mini" }]
fallbacks = ["local/llama-local"]

[models.sonnet]
deployments = [{ provider = "openai", model = "claude-sonnet-4-5" }]
""",
        encoding="utf-8",
    )
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}: OK (0 servers, 0 keys")
    assert out[1:] == [
        "2 deployments without a price (refused where a USD budget applies; add [prices] entries):",
        "  local/llama-local",
        "  openai/my-finetune",
    ]
    with path.open("a", encoding="utf-8") as config:
        config.write("\n[prices.default]\ninput = 1.0\noutput = 2.0\n")
    assert main(["config", "check", str(path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1

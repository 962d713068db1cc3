"""Key filters on every hop, token rate limits, budgets, stream settlement and stream guardrails on the OpenAI
door."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import openai
import pytest

from hub.governance.usage import EntityKind, EntityRef, UsageSnapshot
from llm.testing import Fault, Reply
from tests.doors.harness import OPENAI_SPARE, USER, async_client, error_of, hub_with_fakes, running_fakes
from tests.hub.harness import RunningHub
from tests.tools.patience import PATIENCE

pytestmark = pytest.mark.anyio
SECRET = "ahk-dave-policy-0000000000000000000000000000"
ROUTED = {
    "fast": {
        "deployments": [{"provider": "openai", "model": "gpt-4o-mini"}],
        "fallbacks": ["anthropic/claude-3-5-haiku", "gemini/gemini-2.0-flash"],
    }
}


def _key(**policy: object) -> list[dict[str, object]]:
    return [{"name": "dave", "secret": SECRET, "models": ["*"], **policy}]


async def _usage(hub: RunningHub) -> dict[str, UsageSnapshot]:
    key = hub.hub.keyring.verify(SECRET)
    assert key is not None and hub.hub.limiter is not None
    return {s.metric: s for s in await hub.hub.limiter.usage(EntityRef(EntityKind.KEY, key.id))}


async def test_the_provider_filter_applies_to_every_hop_fallbacks_included(tmp_path: Path) -> None:
    async with running_fakes() as fakes:
        async with hub_with_fakes(tmp_path, fakes, _key(providers=["gemini"]), models=ROUTED) as hub:
            fakes.scripts["gemini"].push(Reply("from gemini"))
            async with async_client(hub, SECRET) as client:
                raw = await client.chat.completions.with_raw_response.create(model="fast", messages=USER)
                with pytest.raises(openai.NotFoundError) as denied:
                    await client.chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
                with pytest.raises(openai.NotFoundError) as unknown:
                    await client.chat.completions.create(model="openai/no-such-model-here", messages=USER)
    assert raw.headers["x-agenthub-provider"] == "gemini"  # openai and anthropic skipped, never asked
    assert fakes.requests("openai") == fakes.requests("anthropic") == 0
    assert error_of(denied.value) == {**error_of(unknown.value), "message": "unknown model: openai/gpt-4o-mini"}


async def test_a_fallback_the_key_may_not_use_is_not_tried(tmp_path: Path) -> None:
    async with running_fakes() as fakes:
        key = _key(models=["fast", "openai/*", "gemini/*"])
        async with hub_with_fakes(tmp_path, fakes, key, models=ROUTED) as hub:
            fakes.scripts["openai"].default = Fault.http(503)
            fakes.scripts["gemini"].push(Reply("second fallback"))
            async with async_client(hub, SECRET) as client:
                raw = await client.chat.completions.with_raw_response.create(model="fast", messages=USER)
                models = [m.id async for m in client.models.list()]
    assert raw.headers["x-agenthub-provider"] == "gemini"
    assert fakes.requests("anthropic") == 0
    assert "anthropic/claude-3-5-haiku" not in models and "fast" in models


async def test_the_provider_key_filter_picks_the_allowed_upstream_key(tmp_path: Path) -> None:
    async with running_fakes() as fakes:
        async with hub_with_fakes(tmp_path, fakes, _key(provider_keys=["openai:spare"])) as hub:
            async with async_client(hub, SECRET) as client:
                for _ in range(6):
                    await client.chat.completions.create(model="fast", messages=USER)
                stream = await client.chat.completions.create(model="fast", messages=USER, stream=True)
                async for _ in stream:
                    pass
    sent = {r.headers["authorization"] for r in fakes.scripts["openai"].requests}
    assert sent == {f"Bearer {OPENAI_SPARE}"}


async def test_a_token_rate_limit_is_429_with_retry_after(tmp_path: Path) -> None:
    async with running_fakes() as fakes:
        async with hub_with_fakes(tmp_path, fakes, _key(rate_limit={"tokens": 120, "period": "1m"})) as hub:
            async with async_client(hub, SECRET) as client:
                raw = await client.chat.completions.with_raw_response.create(model="fast", messages=USER, max_tokens=20)
                with pytest.raises(openai.RateLimitError) as over_estimate:  # estimate: prompt + 200 > 120
                    await client.chat.completions.create(model="fast", messages=USER, max_tokens=200)
                for _ in range(10):  # 13 tokens each (the fake's usage) until the window is spent
                    try:
                        await client.chat.completions.create(model="fast", messages=USER)
                    except openai.RateLimitError as exc:
                        limited = exc
                        break
                else:
                    pytest.fail("the token limit never applied")
            used = await _usage(hub)
    assert raw.headers["x-ratelimit-limit-tokens"] == "120"
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) < 120
    assert int(over_estimate.value.response.headers["retry-after"]) >= 1
    assert int(limited.response.headers["retry-after"]) >= 1
    assert used["tokens"].in_flight == 0 and used["tokens"].used % 13 == 0  # settled with actual usage


async def test_a_small_budget_is_spent_then_402(tmp_path: Path) -> None:
    async with running_fakes() as fakes:
        async with hub_with_fakes(tmp_path, fakes, _key(budget={"max_usd": 0.03, "reset": "1d"})) as hub:
            async with async_client(hub, SECRET) as client:
                first = await client.chat.completions.with_raw_response.create(model="fast", messages=USER)
                stream = await client.chat.completions.create(model="fast", messages=USER, stream=True)
                async for _ in stream:
                    pass
                await client.chat.completions.create(model="fast", messages=USER)
                with pytest.raises(openai.APIStatusError) as spent:
                    await client.chat.completions.create(model="fast", messages=USER)
            used = await _usage(hub)
    assert float(first.headers["x-budget-remaining-usd"]) == pytest.approx(0.03)
    assert spent.value.status_code == 402 and error_of(spent.value)["type"] == "insufficient_quota"
    assert used["usd"].used == pytest.approx(3 * 0.014) and used["usd"].in_flight == 0


async def test_a_client_that_disconnects_mid_stream_is_billed_once(tmp_path: Path) -> None:
    key = _key(budget={"max_usd": 10, "reset": "1d"}, rate_limit={"requests": 100, "period": "1m"})
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes, key) as hub:
        fakes.scripts["openai"].push(Fault.stall(after=3, reply=Reply("abcdefghijklmnop" * 4)))
        body = {"model": "fast", "messages": USER, "stream": True}
        async with httpx2.AsyncClient(timeout=10) as http:
            headers = {"Authorization": f"Bearer {SECRET}"}
            async with http.stream("POST", hub.url("/v1/chat/completions"), json=body, headers=headers) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if "abcd" in line:
                        break  # leave while the upstream stalls
        with anyio.fail_after(PATIENCE):
            while (await _usage(hub))["requests"].in_flight:  # noqa: ASYNC110 - the hub settles on its own
                await anyio.sleep(0.02)
        await anyio.sleep(0.2)  # nothing more may arrive
        used = await _usage(hub)
    assert used["requests"].used == 1 and used["requests"].in_flight == 0
    assert used["usd"].in_flight == 0
    assert 0 < used["usd"].used < 0.1  # the estimate: prompt plus the two pieces sent, charged once


GUARD = {"name": "codename", "kind": "regex", "pattern": r"falcon", "apply_to": "both", "stream_window": 16}


async def test_a_guardrail_blocks_a_stream_midway_with_an_error_event(tmp_path: Path) -> None:
    async with running_fakes() as fakes:
        async with hub_with_fakes(tmp_path, fakes, guardrails=[GUARD]) as hub, async_client(hub) as client:
            fakes.scripts["openai"].push(Reply("The secret project is called falcon, do not tell.", piece=3))
            stream = await client.chat.completions.create(model="fast", messages=USER, stream=True)
            texts: list[str] = []
            with pytest.raises(openai.APIError) as blocked:
                async for chunk in stream:
                    texts += [c.delta.content or "" for c in chunk.choices]
            with pytest.raises(openai.PermissionDeniedError):
                await client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "falcon?"}])
    assert "falcon" not in "".join(texts)
    assert error_of(blocked.value)["type"] == "permission_error"
    assert "codename" in blocked.value.message


async def test_a_guardrail_redacts_a_stream_split_across_chunks(tmp_path: Path) -> None:
    guard = {**GUARD, "action": "redact", "apply_to": "output"}
    async with running_fakes() as fakes:
        async with hub_with_fakes(tmp_path, fakes, guardrails=[guard]) as hub, async_client(hub) as client:
            fakes.scripts["openai"].push(
                Reply("Project falcon ships soon.", piece=2), Reply("Tell falcon hi.", piece=2)
            )
            stream = await client.chat.completions.create(model="fast", messages=USER, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            plain = await client.chat.completions.create(model="fast", messages=USER)
            deltas: list[str] = []
            final = ""
            async with await client.responses.create(model="openai/gpt-4o-mini", input="x", stream=True) as events:
                async for event in events:
                    if event.type == "response.output_text.delta":
                        deltas.append(event.delta)
                    if event.type == "response.completed":
                        final = event.response.output_text
    assert "falcon" not in text and text.startswith("Project ") and text.endswith(" ships soon.")
    assert plain.choices[0].message.content is not None and "falcon" not in plain.choices[0].message.content
    assert "falcon" not in "".join(deltas) and final == "".join(deltas)

"""Upstream and client faults through the OpenAI door: every failure comes back in the OpenAI error envelope
with the hub's status, never as a provider's raw body."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from llm.testing import Fault, Reply
from tests.doors.harness import OPENAI_SECRET, USER, async_client, error_of, hub_with_fakes, running_fakes
from tests.hub.harness import ALICE

pytestmark = pytest.mark.anyio
WITH_FALLBACK = {
    "fast": {
        "deployments": [{"provider": "openai", "model": "gpt-4o-mini"}],
        "fallbacks": ["anthropic/claude-3-5-haiku"],
    }
}
AUTH = {"Authorization": f"Bearer {ALICE}"}


async def test_a_5xx_falls_back_to_the_next_provider(tmp_path: Path) -> None:
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes, models=WITH_FALLBACK) as hub:
        fakes.scripts["openai"].push(Fault.http(503), Fault.http(500))
        fakes.scripts["anthropic"].push(Reply("from the fallback"))
        async with async_client(hub) as client:
            raw = await client.chat.completions.with_raw_response.create(model="fast", messages=USER)
    assert raw.parse().choices[0].message.content == "from the fallback"
    assert raw.headers["x-agenthub-provider"] == "anthropic"
    assert fakes.requests("openai") == 2  # one try and one retry (max_retries = 1), then the fallback


async def test_a_stream_that_dies_before_its_first_content_falls_back(tmp_path: Path) -> None:
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes, models=WITH_FALLBACK) as hub:
        fakes.scripts["openai"].push(Fault.reset(after=0), Fault.reset(after=0))
        fakes.scripts["anthropic"].push(Reply("streamed by the fallback"))
        async with async_client(hub) as client:
            stream = await client.chat.completions.create(model="fast", messages=USER, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "streamed by the fallback"


async def test_an_upstream_429_comes_back_as_429_with_retry_after(tmp_path: Path) -> None:
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes) as hub:
        fakes.scripts["openai"].default = Fault.http(429, retry_after=7)
        async with async_client(hub) as client:
            with pytest.raises(openai.RateLimitError) as limited:
                await client.chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.body == {
        "message": "the provider is rate limiting requests for openai/gpt-4o-mini",
        "type": "rate_limit_error",
        "code": "rate_limit_error",
        "param": None,
    }
    assert fakes.requests("openai") == 1  # a Retry-After over max_retry_after (1 s) moves on at once


async def test_a_stall_mid_stream_ends_the_stream_with_an_error_event(tmp_path: Path) -> None:
    slow = {"stream_idle_timeout": 0.5}
    async with running_fakes(openai=slow) as fakes, hub_with_fakes(tmp_path, fakes) as hub:
        fakes.scripts["openai"].push(Fault.stall(after=3, reply=Reply("one two three four five six")))
        async with async_client(hub) as client:
            stream = await client.chat.completions.create(model="fast", messages=USER, stream=True)
            texts: list[str] = []
            with pytest.raises(openai.APIError) as failed:
                async for chunk in stream:
                    texts += [c.delta.content or "" for c in chunk.choices]
    assert "".join(texts) == "one two "  # role chunk + two pieces were sent before the stall
    assert "stalled" in failed.value.message
    assert failed.value.body == {"message": failed.value.message, "type": "timeout_error", "code": "timeout_error",
                                 "param": None}  # fmt: skip


async def test_a_connection_reset_mid_stream_and_before_the_answer(tmp_path: Path) -> None:
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes) as hub:
        fakes.scripts["openai"].push(Fault.reset(after=3, reply=Reply("one two three four")))
        fakes.scripts["openai"].push(Fault.reset(), Fault.reset())
        async with async_client(hub) as client:
            stream = await client.chat.completions.create(model="fast", messages=USER, stream=True)
            with pytest.raises(openai.APIError) as cut:
                async for _ in stream:
                    pass
            with pytest.raises(openai.InternalServerError) as failed:
                await client.chat.completions.create(model="fast", messages=USER)
    assert error_of(cut.value)["type"] == "upstream_error"
    assert failed.value.status_code == 502
    assert error_of(failed.value)["type"] == "upstream_error"


async def test_a_silent_upstream_is_504(tmp_path: Path) -> None:
    async with running_fakes(openai={"timeout": 0.3}) as fakes, hub_with_fakes(tmp_path, fakes) as hub:
        fakes.scripts["openai"].default = Fault.stall()
        async with async_client(hub) as client:
            with pytest.raises(openai.APIStatusError) as timed_out:
                await client.chat.completions.create(model="fast", messages=USER)
    assert timed_out.value.status_code == 504


async def test_malformed_and_huge_upstream_bodies_are_502(tmp_path: Path) -> None:
    async with running_fakes(openai={"max_response_bytes": 20_000}) as fakes, hub_with_fakes(tmp_path, fakes) as hub:
        fakes.scripts["openai"].push(Fault.malformed(), Fault.malformed(), Fault.huge(200_000), Fault.huge(200_000))
        async with async_client(hub) as client:
            statuses: list[int] = []
            for _ in range(2):
                with pytest.raises(openai.APIStatusError) as failed:
                    await client.chat.completions.create(model="fast", messages=USER)
                statuses.append(failed.value.status_code)
                assert "fake failure" not in failed.value.message
    assert statuses == [502, 502]


async def test_provider_error_bodies_are_never_passed_through(tmp_path: Path) -> None:
    async with running_fakes(openai={"keys": [{"name": "main", "secret": "env:T_AZURE"}]}) as fakes:
        async with hub_with_fakes(tmp_path, fakes) as hub, async_client(hub) as client:
            with pytest.raises(openai.APIStatusError) as rejected:
                await client.chat.completions.create(model="fast", messages=USER)
    # The fake's 401 body echoes the key it was sent ("Incorrect API key provided: ..."): none of it comes back.
    assert rejected.value.status_code == 502
    text = rejected.value.response.text
    assert "Incorrect API key" not in text and "az-key" not in text and OPENAI_SECRET not in text


async def test_missing_usage_is_billed_by_estimate(tmp_path: Path) -> None:
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes) as hub:
        fakes.scripts["openai"].push(Reply("forty characters of answer text, exactly", usage=False))
        async with async_client(hub) as client:
            raw = await client.chat.completions.with_raw_response.create(model="fast", messages=USER)
    assert raw.parse().usage is None
    # prompt estimate (body bytes / 4) at 1000 USD/M plus 10 completion tokens (40 chars / 4) at 2000 USD/M
    cost = float(raw.headers["x-agenthub-cost-usd"])
    assert cost > 10 * 2000 / 1e6


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{oops", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "'model'"),
        (b'{"model": "fast", "messages": []}', 400, "'messages'"),
        (b'{"model": "fast", "messages": ["hi"]}', 400, "'role'"),
        (b'{"model": "fast", "messages": [{"role": "user"}], "stream": "yes"}', 400, "'stream'"),
        (b'{"model": "nope/x", "messages": [{"role": "user", "content": "x"}]}', 404, "unknown model"),
    ],
)
async def test_bad_requests_get_the_envelope(tmp_path: Path, body: bytes, status: int, fragment: str) -> None:
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes) as hub, httpx2.AsyncClient() as http:
        response = await http.post(hub.url("/v1/chat/completions"), content=body, headers=AUTH)
    assert response.status_code == status
    error: dict[str, Any] = response.json()["error"]
    assert fragment in error["message"] and set(error) == {"message", "type", "code", "param"}


async def test_an_oversized_request_body_is_413(tmp_path: Path) -> None:
    big = b'{"model": "fast", "messages": [{"role": "user", "content": "' + b"x" * 5000 + b'"}]}'
    async with running_fakes() as fakes, hub_with_fakes(tmp_path, fakes, hub={"max_body_bytes": 2048}) as hub:
        async with httpx2.AsyncClient() as http:
            declared = await http.post(hub.url("/v1/chat/completions"), content=big, headers=AUTH)

            async def chunks() -> AsyncGenerator[bytes]:
                for i in range(0, len(big), 1000):
                    yield big[i : i + 1000]

            chunked = await http.post(hub.url("/v1/chat/completions"), content=chunks(), headers=AUTH)
    assert declared.status_code == chunked.status_code == 413
    assert fakes.requests("openai") == 0

"""Routing: weights, fallbacks (streams included), retries, cooldown, the hop predicate, errors."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from llm.errors import (
    NoDeploymentAvailable,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeout,
    ProviderUnavailable,
    UnknownModel,
    UnsupportedParameter,
)
from llm.result import Hop
from llm.testing import FakeScript, Fault, Reply, anthropic_app, closed_port_url, openai_app, serve

from .conftest import SECRET, SECRET2, FakeClock, chat, open_router, provider

pytestmark = pytest.mark.anyio


def _two(url_a: str, url_b: str, **routing: Any) -> dict[str, Any]:
    return {
        "providers": {
            "a": provider("openai", f"{url_a}/v1", ("main", "env:T_KEY", 1), first_chunk_timeout=1.0, timeout=5.0),
            "b": provider("openai-compatible", f"{url_b}/v1", first_chunk_timeout=1.0, timeout=5.0),
        },
        "models": {
            "fast": {
                "deployments": [{"provider": "a", "model": "gpt-4o-mini"}],
                "fallbacks": ["b/llama3"],
            }
        },
        "routing": {"backoff_initial": 0.1, **routing},
    }


async def test_deployment_and_key_weights_balance_statistically_with_a_fixed_seed() -> None:
    script = FakeScript()
    async with serve(openai_app(script)) as url:
        config = {
            "providers": {
                "p": provider("openai", f"{url}/v1", ("heavy", "env:T_KEY", 3), ("light", "env:T_KEY2", 1)),
            },
            "models": {
                "m": {
                    "deployments": [
                        {"provider": "p", "model": "x", "weight": 3},
                        {"provider": "p", "model": "y", "weight": 1},
                    ]
                }
            },
        }
        async with open_router(config, rng=random.Random(7)) as router:
            for _ in range(400):
                await router.chat(chat("m"))
    models = Counter(r.body["model"] for r in script.requests)
    keys = Counter(r.headers["authorization"] for r in script.requests)
    assert 0.68 < models["x"] / 400 < 0.82
    assert 0.68 < keys[f"Bearer {SECRET}"] / 400 < 0.82 and keys[f"Bearer {SECRET2}"] > 0


async def test_5xx_is_retried_with_backoff_then_falls_back() -> None:
    a, b = FakeScript(default=Fault.http(503)), FakeScript(Reply("from b"))
    clock = FakeClock()
    async with serve(openai_app(a)) as ua, serve(openai_app(b)) as ub:
        async with open_router(_two(ua, ub, max_retries=2), clock=clock, sleep=clock.sleep) as router:
            result = await router.chat(chat("fast"))
    assert result.response["choices"][0]["message"]["content"] == "from b"
    assert result.hop == Hop("b", "llama3", "default")
    assert [(x.provider, x.error is None) for x in result.attempts] == [("a", False)] * 3 + [("b", True)]
    assert len(a.requests) == 3 and len(clock.sleeps) == 2
    assert 0.08 <= clock.sleeps[0] <= 0.12 and 0.16 <= clock.sleeps[1] <= 0.24  # exponential, with jitter


async def test_retry_after_is_honoured_on_the_same_key() -> None:
    a = FakeScript(Fault.http(429, retry_after=2), Reply("later"))
    clock = FakeClock()
    async with serve(openai_app(a)) as ua, serve(openai_app(FakeScript())) as ub:
        async with open_router(_two(ua, ub), clock=clock, sleep=clock.sleep) as router:
            result = await router.chat(chat("fast"))
    assert result.hop.provider == "a" and len(result.attempts) == 2
    assert clock.sleeps and clock.sleeps[0] >= 2


async def test_a_retry_after_beyond_the_limit_falls_back_at_once() -> None:
    a, b = FakeScript(Fault.http(429, retry_after=120)), FakeScript(Reply("b"))
    clock = FakeClock()
    async with serve(openai_app(a)) as ua, serve(openai_app(b)) as ub:
        async with open_router(_two(ua, ub), clock=clock, sleep=clock.sleep) as router:
            result = await router.chat(chat("fast"))
            assert Hop("a", "gpt-4o-mini", "main") in router.cooling_down()
    assert result.hop.provider == "b" and clock.sleeps == []


async def test_429_rotates_to_another_key_without_waiting() -> None:
    script = FakeScript(Fault.http(429), Reply("second key"))
    clock = FakeClock()
    async with serve(openai_app(script)) as url:
        config = {"providers": {"p": provider("openai", f"{url}/v1", ("k1", "env:T_KEY", 1), ("k2", "env:T_KEY2", 1))}}
        async with open_router(config, clock=clock, sleep=clock.sleep) as router:
            result = await router.chat(chat("p/gpt-4o"))
    used = [r.headers["authorization"] for r in script.requests]
    assert len(set(used)) == 2 and clock.sleeps == []
    assert result.response["choices"][0]["message"]["content"] == "second key"


async def test_a_rejected_key_is_dropped_and_the_next_key_used() -> None:
    script = FakeScript()
    async with serve(openai_app(script, keys=[SECRET2])) as url:
        config = {
            "providers": {"p": provider("openai", f"{url}/v1", ("bad", "env:T_KEY", 100), ("good", "env:T_KEY2", 1))}
        }
        async with open_router(config, rng=random.Random(1)) as router:
            first = await router.chat(chat("p/gpt-4o"))
            second = await router.chat(chat("p/gpt-4o"))
    assert first.hop.key == "good" and second.hop.key == "good"
    assert [a.key for a in first.attempts] == ["bad", "good"]
    assert [a.key for a in second.attempts] == ["good"]  # the rejected key is cooling down


async def test_a_stream_that_fails_before_its_first_chunk_falls_back() -> None:
    # The primary sends only the role chunk, then drops the connection.
    a, b = FakeScript(Fault.reset(after=1)), FakeScript(Reply("fallback text"))
    async with serve(openai_app(a)) as ua, serve(openai_app(b)) as ub:
        async with open_router(_two(ua, ub, max_retries=0)) as router:
            async with await router.stream_chat(chat("fast", stream=True)) as stream:
                text = "".join([c["choices"][0]["delta"].get("content") or "" async for c in stream if c["choices"]])
    assert text == "fallback text" and stream.hop.provider == "b"
    assert isinstance(stream.attempts[0].error, ProviderUnavailable)


async def test_a_stream_that_stalls_before_its_first_chunk_times_out_and_falls_back() -> None:
    a, b = FakeScript(Fault.stall(after=1)), FakeScript(Reply("after stall"))
    async with serve(openai_app(a)) as ua, serve(openai_app(b)) as ub:
        config = _two(ua, ub, max_retries=0)
        config["providers"]["a"]["first_chunk_timeout"] = 0.3
        async with open_router(config) as router:
            async with await router.stream_chat(chat("fast")) as stream:
                chunks = [c async for c in stream]
    assert stream.hop.provider == "b" and chunks
    assert isinstance(stream.attempts[0].error, ProviderTimeout)


async def test_a_stream_failing_after_content_raises_from_iteration_without_fallback() -> None:
    a, b = FakeScript(Fault.reset(after=4, reply=Reply("0123456789abcdef", piece=2))), FakeScript()
    async with serve(openai_app(a)) as ua, serve(openai_app(b)) as ub:
        async with open_router(_two(ua, ub)) as router:
            stream = await router.stream_chat(chat("fast"))
            received: list[dict[str, Any]] = []
            with pytest.raises(ProviderUnavailable):
                async with stream:
                    async for chunk in stream:
                        received.append(chunk)  # noqa: PERF401 (keep what arrived before the error)
    # The first content chunk committed the stream; what follows is cut (the last events may be lost with it).
    assert stream.hop.provider == "a" and 2 <= len(received) <= 4 and isinstance(stream.error, ProviderUnavailable)
    assert received[1]["choices"][0]["delta"]["content"] == "01"
    assert not stream.finished and b.requests == []


async def test_a_stall_mid_stream_is_a_timeout() -> None:
    a = FakeScript(Fault.stall(after=2))
    async with serve(openai_app(a)) as ua, serve(openai_app(FakeScript())) as ub:
        config = _two(ua, ub)
        config["providers"]["a"]["stream_idle_timeout"] = 0.3
        async with open_router(config) as router:
            async with await router.stream_chat(chat("fast")) as stream:
                with pytest.raises(ProviderTimeout):
                    async for _ in stream:
                        pass


async def test_the_circuit_opens_skips_the_deployment_and_recovers_after_cooldown() -> None:
    a, b = FakeScript(Fault.http(500), Reply("a is back")), FakeScript(default=Reply("b"))
    clock = FakeClock()
    async with serve(openai_app(a)) as ua, serve(openai_app(b)) as ub:
        config = _two(ua, ub, max_retries=0, cooldown_failures=1, cooldown_seconds=30)
        async with open_router(config, clock=clock, sleep=clock.sleep) as router:
            first = await router.chat(chat("fast"))
            assert first.hop.provider == "b"
            skipped = await router.chat(chat("fast"))
            assert skipped.hop.provider == "b" and [x.provider for x in skipped.attempts] == ["b"]
            assert len(a.requests) == 1
            clock.now += 31
            recovered = await router.chat(chat("fast"))
            assert recovered.hop.provider == "a" and router.cooling_down() == []


async def test_everything_cooling_down_is_reported() -> None:
    a = FakeScript(default=Fault.http(502))
    clock = FakeClock()
    async with serve(openai_app(a)) as ua:
        config: dict[str, Any] = {"providers": {"a": provider("openai", f"{ua}/v1", ("main", "env:T_KEY", 1))}}
        config["routing"] = {"max_retries": 0, "cooldown_failures": 1}
        async with open_router(config, clock=clock, sleep=clock.sleep) as router:
            with pytest.raises(NoDeploymentAvailable, match="HTTP 502"):
                await router.chat(chat("a/gpt-4o"))
            with pytest.raises(NoDeploymentAvailable, match="cooling down") as info:
                await router.chat(chat("a/gpt-4o"))
    assert info.value.attempts == () and len(a.requests) == 1


async def test_the_hop_predicate_restricts_providers_models_and_keys() -> None:
    script = FakeScript()
    async with serve(openai_app(script)) as url:
        config = _two(url, url)
        config["providers"]["a"]["keys"].append({"name": "spare", "secret": "env:T_KEY2"})
        async with open_router(config) as router:
            seen: list[Hop] = []

            def only_spare(hop: Hop) -> bool:
                seen.append(hop)
                return hop.key == "spare"

            result = await router.chat(chat("fast"), allow=only_spare)
            assert result.hop == Hop("a", "gpt-4o-mini", "spare")
            assert script.requests[-1].headers["authorization"] == f"Bearer {SECRET2}"

            only_b = await router.chat(chat("fast"), allow=lambda h: h.provider == "b")
            assert only_b.hop.provider == "b"

            with pytest.raises(NoDeploymentAvailable, match="not allowed"):
                await router.chat(chat("fast"), allow=lambda h: False)
            # `fast` is served through its fallback b/llama3 (above), so it is listed too
            assert [m.id for m in router.list_models(allow=lambda h: h.provider == "b")] == ["fast", "b/llama3"]
            assert [m.id for m in router.list_models(allow=lambda h: h.provider == "c")] == []
            assert [m.id for m in router.list_models()] == ["fast", "a/gpt-4o-mini", "b/llama3"]


async def test_per_request_fallbacks_replace_the_configured_ones_and_are_not_sent_upstream() -> None:
    a, b = FakeScript(default=Fault.http(500)), FakeScript()
    clock = FakeClock()
    async with serve(openai_app(a)) as ua, serve(openai_app(b)) as ub:
        async with open_router(_two(ua, ub, max_retries=0), clock=clock, sleep=clock.sleep) as router:
            result = await router.chat(chat("a/gpt-4o", fallbacks=["b/qwen"]))
            with pytest.raises(NoDeploymentAvailable):
                await router.chat(chat("fast"), fallbacks=[])
            with pytest.raises(UnknownModel):
                await router.chat(chat("fast", fallbacks=["nowhere/x"]))
            with pytest.raises(UnknownModel):
                await router.chat(chat("no-such-alias"))
    assert result.hop == Hop("b", "qwen", "default")
    assert all("fallbacks" not in r.body for r in a.requests + b.requests)


async def test_caller_errors_are_raised_at_once_without_retry_or_fallback() -> None:
    a, b = FakeScript(Fault.http(400, code="context_length_exceeded")), FakeScript()
    async with serve(openai_app(a)) as ua, serve(openai_app(b)) as ub, open_router(_two(ua, ub)) as router:
        with pytest.raises(ProviderHTTPError) as info:
            await router.chat(chat("fast"))
    assert info.value.status == 400 and info.value.code == "context_length_exceeded"
    assert len(info.value.attempts) == 1 and b.requests == []


async def test_an_unsupported_parameter_moves_to_a_deployment_that_supports_it() -> None:
    an, oa = FakeScript(), FakeScript(Reply("two choices please"))
    async with serve(anthropic_app(an)) as u1, serve(openai_app(oa)) as u2:
        config = {
            "providers": {
                "an": provider("anthropic", u1, ("k", "env:T_KEY", 1)),
                "oa": provider("openai", f"{u2}/v1", ("k", "env:T_KEY", 1)),
            },
            "models": {
                "m": {"deployments": [{"provider": "an", "model": "claude-3-5-haiku-20241022", "weight": 1000}]}
            },
        }
        async with open_router(config) as router:
            result = await router.chat(chat("m", n=2, fallbacks=["oa/gpt-4o"]))
    assert an.requests == [] and result.hop.provider == "oa"
    assert isinstance(result.attempts[0].error, UnsupportedParameter)


async def test_connection_refused_falls_back() -> None:
    async with serve(openai_app(FakeScript(Reply("alive")))) as ub:
        async with open_router(_two(closed_port_url(), ub, max_retries=0)) as router:
            result = await router.chat(chat("fast"))
    assert result.hop.provider == "b" and isinstance(result.attempts[0].error, ProviderUnavailable)


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        (Fault.malformed(), ProviderResponseError, "malformed JSON"),
        (Fault.huge(200_000), ProviderResponseError, "too large"),
        (Fault.stall(), ProviderTimeout, "timed out"),
        (Fault.reset(), ProviderUnavailable, "connection failed"),
    ],
)
async def test_body_faults_map_to_typed_errors(fault: Fault, error: type[Exception], message: str) -> None:
    async with serve(openai_app(FakeScript(fault))) as url:
        config = {
            "providers": {
                "p": provider("openai", f"{url}/v1", ("k", "env:T_KEY", 1), timeout=0.5, max_response_bytes=100_000)
            },
            "routing": {"max_retries": 0},
        }
        async with open_router(config) as router:
            with pytest.raises(NoDeploymentAvailable, match=message) as info:
                await router.chat(chat("p/gpt-4o"))
    assert isinstance(info.value.last_error, error)


async def test_a_malformed_stream_event_before_content_is_a_failure() -> None:
    async with serve(openai_app(FakeScript(Fault.malformed(after=1)))) as url:
        config = {
            "providers": {"p": provider("openai", f"{url}/v1", ("k", "env:T_KEY", 1))},
            "routing": {"max_retries": 0},
        }
        async with open_router(config) as router:
            with pytest.raises(NoDeploymentAvailable, match="malformed JSON"):
                await router.stream_chat(chat("p/gpt-4o"))


async def test_missing_usage_leaves_usage_and_cost_unknown() -> None:
    script = FakeScript(Reply("no usage", usage=False), Reply("no usage either", usage=False))
    async with serve(openai_app(script)) as url:
        config = {"providers": {"local": provider("openai-compatible", f"{url}/v1")}}
        async with open_router(config) as router:
            result = await router.chat(chat("local/gpt-4o"))
            async with await router.stream_chat(chat("local/gpt-4o")) as stream:
                chunks = [c async for c in stream]
    assert result.usage is None and result.cost is None
    assert chunks and stream.usage is None and stream.cost is None
    assert "authorization" not in script.requests[0].headers


async def test_no_secret_appears_in_any_error() -> None:
    a = FakeScript(default=Fault.http(500))
    clock = FakeClock()
    async with serve(openai_app(a, keys=["sk-other"])) as ua, serve(openai_app(a)) as ub:
        config = _two(ua, ub, max_retries=1)
        async with open_router(config, clock=clock, sleep=clock.sleep) as router:
            with pytest.raises(NoDeploymentAvailable) as info:
                await router.chat(chat("fast"))
    err = info.value
    everything = " ".join([str(err), repr(err), *(repr(a) + str(a.error) for a in err.attempts)])
    assert SECRET not in everything and "Incorrect API key" not in everything
    assert "a/gpt-4o-mini[main]: HTTP 401" in str(err) and "b/llama3[default]: HTTP 500" in str(err)


async def test_the_router_must_be_open() -> None:
    from llm.config import load_config
    from llm.router import Router

    router = Router(load_config({"providers": {"p": provider("openai-compatible", "http://127.0.0.1:1/v1")}}))
    with pytest.raises(RuntimeError, match="not open"):
        await router.chat(chat("p/x"))

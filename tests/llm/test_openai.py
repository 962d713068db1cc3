"""OpenAI, OpenAI-compatible and Azure OpenAI against the fake over real HTTP."""

from __future__ import annotations

import orjson
import pytest

from llm.errors import NoDeploymentAvailable, ProviderHTTPError
from llm.testing import FakeScript, Reply, ToolCall, openai_app, serve

from .conftest import SECRET, chat, open_router, provider

pytestmark = pytest.mark.anyio


def _config(url: str) -> dict[str, object]:
    return {"providers": {"oa": provider("openai", f"{url}/v1", ("main", "env:T_KEY", 1))}}


async def test_chat_passes_the_request_through_and_reads_usage_and_cost() -> None:
    script = FakeScript(Reply("hello there", prompt_tokens=1000, completion_tokens=500))
    async with serve(openai_app(script, keys=[SECRET])) as url, open_router(_config(url)) as router:
        body = chat("oa/gpt-4o-mini", tools=[{"type": "function", "function": {"name": "f"}}], seed=7, fallbacks=[])
        result = await router.chat(body)
    sent = script.requests[0]
    assert sent.body["model"] == "gpt-4o-mini"
    assert sent.body["seed"] == 7 and sent.body["tools"][0]["function"]["name"] == "f"
    assert "fallbacks" not in sent.body and "stream" not in sent.body
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert result.response["choices"][0]["message"]["content"] == "hello there"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (1000, 500)  # type: ignore[union-attr]
    assert result.cost == pytest.approx((1000 * 0.15 + 500 * 0.6) / 1e6)
    assert (result.hop.provider, result.hop.model, result.hop.key) == ("oa", "gpt-4o-mini", "main")
    assert [a.error for a in result.attempts] == [None]


async def test_stream_asks_for_usage_and_hides_it_unless_the_caller_asked() -> None:
    script = FakeScript(Reply("abcdefgh", prompt_tokens=10, completion_tokens=2), Reply("abcd"))
    async with serve(openai_app(script)) as url, open_router(_config(url)) as router:
        async with await router.stream_chat(chat("oa/gpt-4o", stream=True)) as stream:
            chunks = [c async for c in stream]
        assert script.requests[0].body["stream_options"] == {"include_usage": True}
        assert all("usage" not in c for c in chunks)
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "abcdefgh"
        assert stream.usage is not None and stream.usage.total_tokens == 12
        assert stream.cost == pytest.approx((10 * 2.5 + 2 * 10) / 1e6)
        assert stream.finished

        async with await router.stream_chat(chat("oa/gpt-4o", stream_options={"include_usage": True})) as stream:
            chunks = [c async for c in stream]
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 12


async def test_streamed_tool_calls_arrive_as_openai_deltas() -> None:
    script = FakeScript(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_1")]))
    async with serve(openai_app(script)) as url, open_router(_config(url)) as router:
        async with await router.stream_chat(chat("oa/gpt-4o")) as stream:
            chunks = [c async for c in stream]
    calls = [tc for c in chunks for ch in c["choices"] for tc in ch["delta"].get("tool_calls") or []]
    assert calls[0]["id"] == "call_1" and calls[0]["function"]["name"] == "get_weather"
    assert orjson.loads("".join(tc["function"]["arguments"] for tc in calls)) == {"city": "Paris"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_embeddings_and_responses_pass_through_with_usage() -> None:
    script = FakeScript(Reply(), Reply("resp text", prompt_tokens=5, completion_tokens=3), Reply("streamed resp"))
    async with serve(openai_app(script)) as url, open_router(_config(url)) as router:
        emb = await router.embeddings({"model": "oa/text-embedding-3-small", "input": ["one two", "three"]})
        assert [d["index"] for d in emb.response["data"]] == [0, 1]
        assert emb.usage is not None and emb.usage.prompt_tokens == 3
        assert emb.cost == pytest.approx(3 * 0.02 / 1e6)

        resp = await router.responses({"model": "oa/gpt-4o", "input": "hi"})
        assert resp.response["output"][0]["content"][0]["text"] == "resp text"
        assert resp.usage is not None and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (5, 3)

        async with await router.stream_responses({"model": "oa/gpt-4o", "input": "hi", "stream": True}) as events:
            types = [e["type"] async for e in events]
        assert types[0] == "response.created" and types[-1] == "response.completed"
        assert events.usage is not None and events.usage.prompt_tokens == 12


async def test_azure_uses_deployment_urls_api_key_and_api_version() -> None:
    script = FakeScript(Reply("from azure"), Reply("azure stream"), Reply("resp"))
    app = openai_app(script, keys=[SECRET], api_version="2024-10-21")
    async with serve(app) as url:
        config = {
            "providers": {
                "az": provider(
                    "azure", url, ("k", "env:T_KEY", 1), api_version="2024-10-21", deployments={"gpt-4o": "prod-4o"}
                )
            }
        }
        async with open_router(config) as router:
            result = await router.chat(chat("az/gpt-4o"))
            async with await router.stream_chat(chat("az/gpt-4o")) as stream:
                text = "".join([c["choices"][0]["delta"].get("content") or "" async for c in stream if c["choices"]])
            resp = await router.responses({"model": "az/gpt-4o", "input": "x"})
    assert script.requests[0].path == "/openai/deployments/prod-4o/chat/completions"
    assert script.requests[0].headers["api-key"] == SECRET
    assert result.response["choices"][0]["message"]["content"] == "from azure"
    assert text == "azure stream"
    assert script.requests[2].path == "/openai/responses" and script.requests[2].body["model"] == "prod-4o"
    assert resp.hop.provider == "az"
    assert result.cost is not None  # priced by the model name, not the deployment name


async def test_a_wrong_key_maps_to_401_without_the_secret_or_the_body(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_KEY", "sk-wrong-but-secret-999")
    async with serve(openai_app(FakeScript(), keys=[SECRET])) as url, open_router(_config(url)) as router:
        with pytest.raises(Exception) as info:
            await router.chat(chat("oa/gpt-4o"))
    err = info.value
    text = str(err) + repr(err) + repr(err.attempts) + "".join(str(a.error) for a in err.attempts)  # type: ignore[attr-defined]
    assert "sk-wrong-but-secret-999" not in text and "Incorrect API key" not in text
    first = err.attempts[0].error  # type: ignore[attr-defined]
    assert isinstance(first, ProviderHTTPError) and first.status == 401 and first.code == "invalid_api_key"
    assert isinstance(err, NoDeploymentAvailable) and "HTTP 401" in str(err)


async def test_the_official_sdk_reads_the_fakes_wire_format() -> None:
    import openai

    script = FakeScript(
        Reply("sdk text", prompt_tokens=3, completion_tokens=2),
        Reply(tool_calls=[ToolCall("lookup", {"q": 1}, id="call_9")]),
    )
    async with serve(openai_app(script, keys=[SECRET])) as url:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=SECRET, max_retries=0) as client:
            completion = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
            stream = await client.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [c async for c in stream]
    assert completion.choices[0].message.content == "sdk text" and completion.usage is not None
    assert completion.usage.total_tokens == 5
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert calls[0].id == "call_9" and calls[0].function is not None and calls[0].function.name == "lookup"
    assert chunks[-1].usage is not None and chunks[-1].choices == []

"""Bedrock Converse and ConverseStream: SigV4 verified by the fake, event-stream frames, usage."""

from __future__ import annotations

import orjson
import pytest

from llm.errors import NoDeploymentAvailable, ProviderHTTPError, UnsupportedParameter
from llm.eventstream import encode_event
from llm.providers.bedrock import from_converse, to_converse
from llm.testing import FakeScript, Raw, Reply, ToolCall, bedrock_app, serve
from llm.testing.fake_bedrock import exception_frame

from .conftest import SECRET, SECRET2, chat, open_router
from .fixtures import load

pytestmark = pytest.mark.anyio
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


def _app(script: FakeScript) -> object:
    return bedrock_app(script, access_key_id=SECRET2, secret_access_key=SECRET, region="us-west-2", session_token="tok")


def _config(url: str, secret_env: str = "T_KEY") -> dict[str, object]:
    key = {"name": "aws", "access_key_id": "env:T_KEY2", "secret": f"env:{secret_env}", "session_token": "env:T_TOKEN"}
    return {"providers": {"br": {"kind": "bedrock", "region": "us-west-2", "base_url": url, "keys": [key]}}}


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_TOKEN", "tok")


def test_request_translation_and_refusals() -> None:
    body = to_converse(
        {
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/jpg;base64,AA"}}]},
                {"role": "assistant", "tool_calls": [{"id": "t1", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "r"},
            ],
            "max_tokens": 9,
            "top_p": 0.5,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "required",
        },
        "br",
        MODEL,
    )
    assert body["system"] == [{"text": "sys"}]
    assert body["messages"][0]["content"][0] == {"image": {"format": "jpeg", "source": {"bytes": "AA"}}}
    assert body["messages"][1]["content"][0] == {"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}
    assert body["messages"][2]["content"][0] == {"toolResult": {"toolUseId": "t1", "content": [{"text": "r"}]}}
    assert body["inferenceConfig"] == {"maxTokens": 9, "topP": 0.5}
    assert body["toolConfig"]["toolChoice"] == {"any": {}}
    assert body["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": {"type": "object"}}
    for extra in ({"n": 3}, {"seed": 1}, {"tools": [{"function": {"name": "f"}}], "tool_choice": "none"}):
        with pytest.raises(UnsupportedParameter):
            to_converse({"messages": [{"role": "user", "content": "x"}], **extra}, "br", MODEL)
    remote = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    with pytest.raises(UnsupportedParameter, match="remote"):
        to_converse({"messages": [{"role": "user", "content": [remote]}]}, "br", MODEL)


def test_recorded_response_translates() -> None:
    out = from_converse(load("bedrock_converse.json"), MODEL)
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["choices"][0]["message"]["tool_calls"][0]["id"] == "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q"
    assert out["usage"] == {"prompt_tokens": 375, "completion_tokens": 36, "total_tokens": 411}


async def test_converse_and_stream_are_signed_and_translated() -> None:
    script = FakeScript(
        Reply("hi there", prompt_tokens=30, completion_tokens=3),
        Reply("tool time", tool_calls=[ToolCall("f", {"a": [1, 2]})], prompt_tokens=5, completion_tokens=7),
    )
    async with serve(_app(script)) as url, open_router(_config(url)) as router:  # type: ignore[arg-type]
        result = await router.chat(chat(f"br/{MODEL}"))
        async with await router.stream_chat(chat(f"br/{MODEL}")) as stream:
            chunks = [c async for c in stream]
    assert script.requests[0].path == f"/model/{MODEL}/converse"
    assert result.response["choices"][0]["message"]["content"] == "hi there"
    assert result.cost == pytest.approx((30 * 0.25 + 3 * 1.25) / 1e6)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "tool time"
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert orjson.loads("".join(tc["function"]["arguments"] for tc in calls)) == {"a": [1, 2]}
    assert stream.usage is not None and (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (5, 7)


async def test_recorded_stream_frames_replay() -> None:
    frames = b"".join(
        encode_event(
            {":event-type": name, ":content-type": "application/json", ":message-type": "event"}, orjson.dumps(p)
        )
        for name, p in load("bedrock_stream_events.json")
    )
    script = FakeScript(Raw(frames, content_type="application/vnd.amazon.eventstream"))
    async with serve(_app(script)) as url, open_router(_config(url)) as router:  # type: ignore[arg-type]
        async with await router.stream_chat(chat(f"br/{MODEL}")) as stream:
            chunks = [c async for c in stream]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "Hello there"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert stream.usage is not None and stream.usage.total_tokens == 31


async def test_a_throttling_exception_frame_before_content_is_a_429() -> None:
    script = FakeScript(Raw(exception_frame("throttlingException"), content_type="application/vnd.amazon.eventstream"))
    async with serve(_app(script)) as url:  # type: ignore[arg-type]
        config = _config(url)
        config["routing"] = {"max_retries": 0}
        async with open_router(config) as router:
            with pytest.raises(NoDeploymentAvailable) as info:
                await router.stream_chat(chat(f"br/{MODEL}"))
    error = info.value.last_error
    assert isinstance(error, ProviderHTTPError) and error.status == 429 and error.code == "throttlingException"


async def test_a_wrong_secret_fails_the_signature_check_without_leaking_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_WRONG", "wrong-aws-secret-value")
    async with serve(_app(FakeScript())) as url, open_router(_config(url, "T_WRONG")) as router:  # type: ignore[arg-type]
        with pytest.raises(NoDeploymentAvailable) as info:
            await router.chat(chat(f"br/{MODEL}"))
    assert "HTTP 403 (InvalidSignatureException)" in str(info.value)
    assert "wrong-aws-secret-value" not in str(info.value) and SECRET2 not in str(info.value)

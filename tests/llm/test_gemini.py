"""Gemini generateContent / streamGenerateContent (alt=sse), the Gemini API and Vertex AI."""

from __future__ import annotations

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from llm.errors import NoDeploymentAvailable, UnsupportedParameter
from llm.providers.gemini import from_gemini, to_gemini
from llm.sse import encode_sse
from llm.testing import FakeScript, Fault, Raw, Reply, ToolCall, gemini_app, serve

from .conftest import SECRET, chat, open_router, provider
from .fixtures import load

pytestmark = pytest.mark.anyio


def _config(url: str) -> dict[str, object]:
    return {"providers": {"g": provider("gemini", f"{url}/v1beta", ("main", "env:T_KEY", 1))}}


def test_request_translation_maps_roles_tools_and_generation_config() -> None:
    request = {
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAA"}}]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": '{"a":1}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": '{"ok": true}'},
            {"role": "tool", "tool_call_id": "c1", "content": "plain"},
        ],
        "n": 2,
        "seed": 3,
        "max_tokens": 50,
        "stop": ["x"],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
    }
    body = to_gemini(request, "g", "gemini-2.0-flash")
    assert body["systemInstruction"] == {"parts": [{"text": "sys"}]}
    user, model, tool = body["contents"]
    assert user["parts"] == [{"inlineData": {"mimeType": "image/jpeg", "data": "AAA"}}]
    assert model == {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]}
    assert tool["parts"][0]["functionResponse"] == {"name": "f", "response": {"ok": True}}
    assert tool["parts"][1]["functionResponse"] == {"name": "f", "response": {"content": "plain"}}
    config = body["generationConfig"]
    assert (config["candidateCount"], config["seed"], config["maxOutputTokens"]) == (2, 3, 50)
    assert config["stopSequences"] == ["x"] and config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == {"type": "object"}
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "f"
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}
    with pytest.raises(UnsupportedParameter):
        to_gemini({"messages": [], "logprobs": True}, "g", "m")


def test_recorded_response_translates() -> None:
    out = from_gemini(load("gemini_generate_content.json"), "gemini-2.0-flash")
    message = out["choices"][0]["message"]
    assert message["content"] == "Let me look that up."
    assert orjson.loads(message["tool_calls"][0]["function"]["arguments"])["movie"] == "Barbie"
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"]["prompt_tokens"] == 44 and out["usage"]["completion_tokens"] == 19


async def test_recorded_stream_replays_with_the_last_usage_metadata() -> None:
    raw = b"".join(encode_sse(orjson.dumps(e)) for e in load("gemini_stream.json"))
    script = FakeScript(Raw(raw, content_type="text/event-stream"))
    async with serve(gemini_app(script)) as url, open_router(_config(url)) as router:
        async with await router.stream_chat(chat("g/gemini-2.0-flash")) as stream:
            chunks = [c async for c in stream]
    assert script.requests[0].path.endswith("/models/gemini-2.0-flash:streamGenerateContent")
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "The sky is blue."
    assert stream.usage is not None and (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (8, 5)
    assert stream.cost == pytest.approx((8 * 0.1 + 5 * 0.4) / 1e6)


async def test_gemini_api_chat_stream_tools_and_embeddings_through_the_fake() -> None:
    script = FakeScript(
        Reply("hello", prompt_tokens=7, completion_tokens=2),
        Reply("stream it", tool_calls=[ToolCall("lookup", {"q": "x"})]),
        Reply(),
    )
    async with serve(gemini_app(script, keys=[SECRET])) as url, open_router(_config(url)) as router:
        result = await router.chat(chat("g/gemini-2.5-flash"))
        async with await router.stream_chat(chat("g/gemini-2.5-flash")) as stream:
            chunks = [c async for c in stream]
        emb = await router.embeddings({"model": "g/text-embedding-004", "input": ["ab", "abcd"]})
    assert script.requests[0].headers["x-goog-api-key"] == SECRET
    assert result.response["choices"][0]["message"]["content"] == "hello"
    assert result.usage is not None and result.usage.total_tokens == 9
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []]
    assert calls[0]["function"]["name"] == "lookup" and calls[0]["index"] == 0
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert [d["embedding"][0] for d in emb.response["data"]] == [2.0, 4.0]


async def test_vertex_signs_a_jwt_exchanges_it_once_and_uses_the_bearer_token() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    script = FakeScript(Reply("one"), Reply("two"))
    app = gemini_app(script, service_account_public_key=public)
    async with serve(app) as url:
        import os

        os.environ["T_SA"] = orjson.dumps({"client_email": "sa@p.iam", "private_key": private}).decode()
        try:
            config = {
                "providers": {
                    "vx": {
                        "kind": "gemini",
                        "base_url": f"{url}/v1",
                        "vertex": {"project": "p1", "location": "europe-west4", "token_url": f"{url}/token"},
                        "keys": [{"name": "sa", "secret": "env:T_SA"}],
                    }
                }
            }
            async with open_router(config) as router:
                first = await router.chat(chat("vx/gemini-2.0-flash"))
                second = await router.chat(chat("vx/gemini-2.0-flash"))
                with pytest.raises(NoDeploymentAvailable, match="Vertex"):
                    await router.embeddings({"model": "vx/text-embedding-004", "input": "x"})
        finally:
            del os.environ["T_SA"]
    assert (
        script.requests[0].path
        == "/v1/projects/p1/locations/europe-west4/publishers/google/models/gemini-2.0-flash:generateContent"
    )
    assert app.state.tokens_issued == ["sa@p.iam"]
    assert first.response["choices"][0]["message"]["content"] == "one"
    assert second.response["choices"][0]["message"]["content"] == "two"


async def test_a_resource_exhausted_error_maps_to_429_with_its_status_code() -> None:
    script = FakeScript(Fault.http(429, retry_after=0))
    async with serve(gemini_app(script)) as url:
        config = _config(url)
        config["routing"] = {"max_retries": 0}
        async with open_router(config) as router:
            with pytest.raises(NoDeploymentAvailable, match=r"HTTP 429 \(RESOURCE_EXHAUSTED\)"):
                await router.chat(chat("g/gemini-2.0-flash"))

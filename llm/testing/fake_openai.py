"""A fake OpenAI (and Azure OpenAI) server: chat completions, embeddings, responses, models."""

from __future__ import annotations

import array
import functools
import math
import time
from collections.abc import Iterable

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llm.schema import JSON
from llm.sse import encode_sse
from llm.testing._common import answer, fake_request, json_body, new_id, status_headers, stream
from llm.testing.fake_responses import ResponseArchive
from llm.testing.script import Fault, Reply, Script

__all__ = ["openai_app"]


def _error(fault: Fault) -> Response:
    kind = {429: "rate_limit_exceeded", 401: "invalid_api_key"}.get(fault.status, "server_error")
    body = {"error": {"message": "fake failure", "type": fault.code or kind, "param": None, "code": fault.code}}
    return JSONResponse(body, status_code=fault.status, headers=status_headers(fault))


def _calls(reply: Reply) -> list[JSON]:
    return [
        {
            "id": c.id or new_id("call_"),
            "type": "function",
            "function": {"name": c.name, "arguments": orjson.dumps(c.arguments).decode()},
        }
        for c in reply.tool_calls
    ]


def _usage(reply: Reply) -> JSON:
    """OpenAI's usage: the prompt counts the cached tokens too, the completion the reasoning tokens."""
    prompt = reply.prompt_tokens + reply.cache_read_tokens
    out = reply.output_tokens()
    usage: JSON = {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out}
    if reply.cache_read_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": reply.cache_read_tokens, "audio_tokens": 0}
    if reply.reasoning_tokens:
        usage["completion_tokens_details"] = {"reasoning_tokens": reply.reasoning_tokens, "audio_tokens": 0}
    return usage


def _vector(text: str, index: int, dimensions: object) -> list[float]:
    """An input's embedding: `[len(text), 0.5, -0.5, index]`, or with `dimensions` (an int) that many float32 values
    printed as OpenAI prints them (about 20 characters each), the same for the same text and position."""
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        return [float(len(text)), 0.5, -0.5, float(index)]
    return list(_float32_vector(len(text) + 31 * index, min(dimensions, _MAX_DIMENSIONS)))


_MAX_DIMENSIONS = 8192


@functools.lru_cache(maxsize=64)
def _float32_vector(seed: int, dimensions: int) -> tuple[float, ...]:
    values = array.array("f", (math.sin(seed + 0.7 * k) * 0.06 for k in range(dimensions)))  # rounded to float32
    return tuple(values)


def _completion(reply: Reply, model: str) -> JSON:
    message: JSON = {"role": "assistant", "content": reply.text or None, "refusal": None}
    calls = _calls(reply)
    if calls:
        message["tool_calls"] = calls
    body: JSON = {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason()}],
        "system_fingerprint": "fp_fake",
    }
    if reply.usage:
        body["usage"] = _usage(reply)
    return body


def _chunks(reply: Reply, model: str, include_usage: bool) -> Iterable[bytes]:
    rid, created = new_id("chatcmpl-"), int(time.time())

    def chunk(delta: JSON | None, finish: str | None = None, usage: JSON | None = None) -> bytes:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        data: JSON = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
        data["choices"] = choices
        if include_usage:
            data["usage"] = usage
        return encode_sse(orjson.dumps(data))

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for piece in reply.pieces():
        yield chunk({"content": piece})
    for index, call in enumerate(_calls(reply)):
        args = call["function"]["arguments"]
        head = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
        yield chunk({"tool_calls": [{"index": index, **head}]})
        for i in range(0, len(args), 8):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": args[i : i + 8]}}]})
    yield chunk({}, reply.finish_reason())
    if include_usage and reply.usage:
        yield chunk(None, usage=_usage(reply))
    yield b"data: [DONE]\n\n"


def _response_events(reply: Reply, model: str, echo: JSON | None = None) -> Iterable[bytes]:
    rid, mid = new_id("resp_"), new_id("msg_")
    prompt = reply.prompt_tokens + reply.cache_read_tokens
    usage: JSON = {"input_tokens": prompt, "output_tokens": reply.output_tokens()}
    usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
    usage["input_tokens_details"] = {"cached_tokens": reply.cache_read_tokens}
    usage["output_tokens_details"] = {"reasoning_tokens": reply.reasoning_tokens}
    part = {"type": "output_text", "text": reply.text, "annotations": []}
    item = {"type": "message", "id": mid, "status": "completed", "role": "assistant", "content": [part]}
    base = {"id": rid, "object": "response", "model": model, "output": [], "usage": None, **(echo or {})}
    at = {"item_id": mid, "output_index": 0, "content_index": 0}
    events: list[JSON] = [
        {"type": "response.created", "response": {**base, "status": "in_progress"}},
        {"type": "response.in_progress", "response": {**base, "status": "in_progress"}},
        {"type": "response.output_item.added", "output_index": 0, "item": {**item, "content": []}},
        {"type": "response.content_part.added", **at, "part": {**part, "text": ""}},
    ]
    events.extend({"type": "response.output_text.delta", **at, "delta": piece} for piece in reply.pieces())
    events.append({"type": "response.output_text.done", **at, "text": reply.text})
    events.append({"type": "response.content_part.done", **at, "part": part})
    events.append({"type": "response.output_item.done", "output_index": 0, "item": item})
    done = {**base, "status": "completed", "output": [item], "usage": usage if reply.usage else None}
    events.append({"type": "response.completed", "response": done})
    for number, event in enumerate(events):
        yield encode_sse(orjson.dumps({**event, "sequence_number": number}), event=event["type"])


def _response(reply: Reply, model: str, echo: JSON | None = None) -> JSON:
    return _final(list(_response_events(reply, model, echo)))


def _final(events: list[bytes]) -> JSON:
    """The whole response an event stream ends with."""
    return orjson.loads(events[-1].split(b"data: ", 1)[1])["response"]


def _responses_answer(
    stored: ResponseArchive, request: Request, body: JSON, reply: Reply, fault: Fault | None
) -> Response:
    """A Responses API reply (streamed or not), stored unless the request says `store: false`."""
    model = str(body.get("model", ""))
    echo = stored.echo(body)
    if body.get("stream"):
        events = list(_response_events(reply, model, echo))
        if fault is None:
            stored.keep(request, body, _final(events))
        return stream(events, fault, "text/event-stream")
    response = stored.started(body, _response(reply, model, echo))
    stored.keep(request, body, response)
    return JSONResponse(response)


def _check_auth(request: Request, allowed: set[str], api_version: str | None) -> Response | None:
    auth = request.headers.get("authorization", "")
    key = auth.removeprefix("Bearer ") if auth else request.headers.get("api-key", "")
    if allowed and key not in allowed:
        message = f"Incorrect API key provided: {key}"
        body = {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}}
        return JSONResponse(body, status_code=401)
    if api_version and "/openai/" in request.url.path and request.query_params.get("api-version") != api_version:
        return JSONResponse({"error": {"code": "404", "message": "Resource not found"}}, status_code=404)
    return None


def openai_app(
    script: Script,
    *,
    keys: Iterable[str] = (),
    api_version: str | None = None,
    archive: ResponseArchive | None = None,
) -> Starlette:
    """The fake. With `keys`, requests must carry one (Bearer or `api-key`); a wrong key gets a 401 whose
    body echoes it, as the real service partially does. Azure paths require `api_version` when given.
    Responses are stored in `archive` (a fresh one unless given), see `llm.testing.fake_responses`.
    """
    allowed = set(keys)
    stored = archive if archive is not None else ResponseArchive()

    def unauthorized(request: Request) -> Response | None:
        return _check_auth(request, allowed, api_version)

    async def chat(request: Request) -> Response:
        denied = unauthorized(request)
        if denied:
            return denied
        body = await json_body(request)
        model = request.path_params.get("deployment") or str(body.get("model", ""))
        is_stream = bool(body.get("stream"))
        options = body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage")) if isinstance(options, dict) else False
        described = fake_request(request, "openai", body, model, is_stream, "chat")

        def ok(reply: Reply, fault: Fault | None) -> Response:
            if is_stream:
                return stream(list(_chunks(reply, model, include_usage)), fault, "text/event-stream")
            return JSONResponse(_completion(reply, model))

        return answer(script, described, error=_error, ok=ok)

    async def embeddings(request: Request) -> Response:
        denied = unauthorized(request)
        if denied:
            return denied
        body = await json_body(request)
        model = request.path_params.get("deployment") or str(body.get("model", ""))
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        described = fake_request(request, "openai", body, model, False, "embeddings")

        dimensions = body.get("dimensions")

        def ok(reply: Reply, fault: Fault | None) -> Response:
            tokens = sum(len(str(t).split()) for t in texts)
            data = [
                {"object": "embedding", "index": i, "embedding": _vector(str(t), i, dimensions)}
                for i, t in enumerate(texts)
            ]
            usage = {"prompt_tokens": tokens, "total_tokens": tokens}
            body = {"object": "list", "data": data, "model": model, "usage": usage}
            return Response(orjson.dumps(body), media_type="application/json")

        return answer(script, described, error=_error, ok=ok)

    async def responses(request: Request) -> Response:
        denied = unauthorized(request)
        if denied:
            return denied
        body = await json_body(request)
        refused = stored.refusal(request, body)
        if refused is not None:
            return refused
        model = str(body.get("model", ""))
        is_stream = bool(body.get("stream"))
        described = fake_request(request, "openai", body, model, is_stream, "responses")

        def ok(reply: Reply, fault: Fault | None) -> Response:
            return _responses_answer(stored, request, body, reply, fault)

        return answer(script, described, error=_error, ok=ok)

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": []})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/openai/deployments/{deployment}/chat/completions", chat, methods=["POST"]),
            Route("/openai/deployments/{deployment}/embeddings", embeddings, methods=["POST"]),
            Route("/openai/responses", responses, methods=["POST"]),
            *stored.routes("/v1"),
            *stored.routes("/openai"),
        ]
    )

"""A fake Anthropic Messages server that speaks the wire format exactly, for pass-through and translation tests.

`POST /v1/messages` (with or without `?beta=true`) and `POST /v1/messages/count_tokens`. As Anthropic does, it
answers 401 for a wrong key (when keys are set; in `x-api-key`, or
`Authorization: Bearer` as the newer SDKs send it), 400 without an `anthropic-version` header or without
`max_tokens` and `messages`, and gives every response a `request-id` (errors carry it as `request_id` too).

A reply streams as Anthropic streams: `message_start` (usage with the cache fields, `cache_creation` split by
TTL, `service_tier`), then per block `content_block_start`, deltas and `content_block_stop` (a `ping` after the
first start): a signed `thinking` block (`thinking_delta`s, then a `signature_delta`), `redacted_thinking`
blocks, the text, and each tool call with its input in several `input_json_delta`s; then `message_delta` (stop
reason, `stop_sequence`, output tokens) and `message_stop`. `Fault.http(529)` is an `overloaded_error` before
the stream, `Fault.error_event(...)` an `error` event inside it.

Every request is described to the script with its headers and its body's exact bytes (`FakeRequest.raw`), so
a test can check a pass-through was byte-faithful; `received`, when given, also collects the `count_tokens`
requests, which are answered with `llm.messages.estimate_input_tokens` without consulting the script.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Iterator

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llm.messages import error_body, estimate_input_tokens
from llm.schema import JSON
from llm.sse import encode_sse
from llm.testing._common import answer, new_id, status_headers, stream
from llm.testing.script import FakeRequest, Fault, Reply, Script

__all__ = ["anthropic_app"]

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ARGUMENT_PIECE = 8


def _error(status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None) -> Response:
    request_id = new_id("req_")
    body = error_body(status, message, code=code, request_id=request_id)
    return JSONResponse(body, status_code=status, headers={**(headers or {}), "request-id": request_id})


def _fault(fault: Fault) -> Response:
    return _error(fault.status, "fake failure", fault.code, status_headers(fault))


def _stop(reply: Reply) -> tuple[str, str | None]:
    if reply.stop_sequence is not None:
        return "stop_sequence", reply.stop_sequence
    return _STOP[reply.finish_reason()], None


def _usage(reply: Reply, output_tokens: int) -> JSON:
    written = reply.cache_write_tokens + reply.cache_write_1h_tokens
    return {
        "input_tokens": reply.prompt_tokens,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": reply.cache_read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": reply.cache_write_tokens,
            "ephemeral_1h_input_tokens": reply.cache_write_1h_tokens,
        },
        "output_tokens": output_tokens,
        "service_tier": reply.service_tier,
    }


def _tool_ids(reply: Reply) -> list[str]:
    return [call.id or new_id("toolu_") for call in reply.tool_calls]


def _blocks(reply: Reply, ids: list[str]) -> list[JSON]:
    blocks: list[JSON] = []
    if reply.thinking:
        blocks.append({"type": "thinking", "thinking": reply.thinking, "signature": reply.signature})
    blocks += [{"type": "redacted_thinking", "data": data} for data in reply.redacted_thinking]
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    blocks += [
        {"type": "tool_use", "id": call_id, "name": call.name, "input": call.arguments}
        for call, call_id in zip(reply.tool_calls, ids, strict=True)
    ]
    return blocks


def _message(reply: Reply, model: str) -> JSON:
    reason, sequence = _stop(reply)
    body: JSON = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _blocks(reply, _tool_ids(reply)),
        "stop_reason": reason,
        "stop_sequence": sequence,
    }
    if reply.usage:
        body["usage"] = _usage(reply, reply.output_tokens())
    return body


def _event(data: JSON) -> bytes:
    return encode_sse(orjson.dumps(data), event=data["type"])


def _block_events(reply: Reply, ids: list[str]) -> Iterator[list[JSON]]:
    """Each content block's start and deltas, without an index: the caller numbers them and closes each block."""
    if reply.thinking:
        pieces = [reply.thinking[i : i + reply.piece] for i in range(0, len(reply.thinking), reply.piece)]
        yield [
            {"type": "content_block_start", "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
            *({"type": "content_block_delta", "delta": {"type": "thinking_delta", "thinking": p}} for p in pieces),
            {"type": "content_block_delta", "delta": {"type": "signature_delta", "signature": reply.signature}},
        ]
    for data in reply.redacted_thinking:
        yield [{"type": "content_block_start", "content_block": {"type": "redacted_thinking", "data": data}}]
    if reply.text:
        yield [
            {"type": "content_block_start", "content_block": {"type": "text", "text": ""}},
            *({"type": "content_block_delta", "delta": {"type": "text_delta", "text": p}} for p in reply.pieces()),
        ]
    for call, call_id in zip(reply.tool_calls, ids, strict=True):
        args = orjson.dumps(call.arguments).decode()
        pieces = [""] + [args[i : i + _ARGUMENT_PIECE] for i in range(0, len(args), _ARGUMENT_PIECE)]
        block = {"type": "tool_use", "id": call_id, "name": call.name, "input": {}}
        yield [
            {"type": "content_block_start", "content_block": block},
            *(
                {"type": "content_block_delta", "delta": {"type": "input_json_delta", "partial_json": p}}
                for p in pieces
            ),
        ]


def _events(reply: Reply, model: str) -> Iterable[bytes]:
    start = _message(reply, model)
    start.update(content=[], stop_reason=None, stop_sequence=None)
    if reply.usage:
        start["usage"] = _usage(reply, 1)
    yield _event({"type": "message_start", "message": start})
    pinged = False
    for index, events in enumerate(_block_events(reply, _tool_ids(reply))):
        for event in events:
            yield _event({"type": event["type"], "index": index, **{k: v for k, v in event.items() if k != "type"}})
            if not pinged:
                pinged = True
                yield _event({"type": "ping"})
        yield _event({"type": "content_block_stop", "index": index})
    if not pinged:
        yield _event({"type": "ping"})
    reason, sequence = _stop(reply)
    delta: JSON = {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence}}
    if reply.usage:
        delta["usage"] = {"output_tokens": reply.output_tokens()}
    yield _event(delta)
    yield _event({"type": "message_stop"})


def _error_event(fault: Fault, model: str) -> Response:
    events = list(_events(fault.reply or Reply("This stream ends with an error event."), model))[: fault.after]
    body = error_body(fault.status, "fake failure", code=fault.code or "overloaded_error")

    async def chunks() -> AsyncIterator[bytes]:
        for item in events:
            yield item
        yield encode_sse(orjson.dumps(body), event="error")

    return StreamingResponse(chunks(), media_type="text/event-stream")


def _checked(request: Request, allowed: set[str], version: str | None) -> Response | None:
    """Anthropic's first checks: the key, then the API version."""
    bearer = request.headers.get("authorization", "")
    key = request.headers.get("x-api-key") or (bearer[7:] if bearer[:7].lower() == "bearer " else None)
    if allowed and key not in allowed:
        return _error(401, "invalid x-api-key")
    sent = request.headers.get("anthropic-version")
    if sent is None:
        return _error(400, "anthropic-version: header is required")
    if (version is not None and sent != version) or not _VERSION.match(sent):
        return _error(400, f"anthropic-version: invalid version {sent[:40]!r}")
    return None


async def _described(request: Request, operation: str) -> tuple[FakeRequest, JSON | None]:
    raw = await request.body()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    body = data if isinstance(data, dict) else {}
    headers = {k.lower(): v for k, v in request.headers.items()}
    described = FakeRequest(
        "anthropic",
        request.url.path,
        headers,
        body,
        str(body.get("model", "")),
        body.get("stream") is True,
        operation,
        raw=raw,
        query=request.url.query,
    )
    return described, data if isinstance(data, dict) else None


def anthropic_app(
    script: Script,
    *,
    keys: Iterable[str] = (),
    version: str | None = None,
    received: list[FakeRequest] | None = None,
) -> Starlette:
    """The fake. With `keys`, requests need one of them (`x-api-key` or a bearer token); with `version`, exactly that
    `anthropic-version` (else any date-shaped one); `received` collects every request that passed those checks."""
    allowed = set(keys)
    seen: list[FakeRequest] = received if received is not None else []

    async def messages(request: Request) -> Response:
        refused = _checked(request, allowed, version)
        if refused is not None:
            return refused
        described, body = await _described(request, "chat")
        seen.append(described)
        if body is None or not isinstance(body.get("max_tokens"), int) or not isinstance(body.get("messages"), list):
            return _error(400, "max_tokens: Field required; messages: Field required")
        model = described.model
        outcome = script(described)
        if isinstance(outcome, Fault) and outcome.kind == "event":
            if described.stream:
                response = _error_event(outcome, model)
            else:
                response = _error(outcome.status, "fake failure", outcome.code)
        else:

            def ok(reply: Reply, fault: Fault | None) -> Response:
                if described.stream:
                    return stream(list(_events(reply, model)), fault, "text/event-stream")
                return JSONResponse(_message(reply, model))

            response = answer(lambda _: outcome, described, error=_fault, ok=ok)
        response.headers.setdefault("request-id", new_id("req_"))
        return response

    async def count_tokens(request: Request) -> Response:
        refused = _checked(request, allowed, version)
        if refused is not None:
            return refused
        described, body = await _described(request, "count_tokens")
        seen.append(described)
        if body is None or not isinstance(body.get("messages"), list) or not isinstance(body.get("model"), str):
            return _error(400, "model: Field required; messages: Field required")
        return JSONResponse({"input_tokens": estimate_input_tokens(body)}, headers={"request-id": new_id("req_")})

    return Starlette(
        routes=[
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        ]
    )

"""A fake Anthropic Messages server (`POST /v1/messages`), streaming events included."""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llm.schema import JSON
from llm.sse import encode_sse
from llm.testing._common import answer, fake_request, json_body, new_id, status_headers, stream
from llm.testing.script import Fault, Reply, Script

__all__ = ["anthropic_app"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _error_body(status: int, code: str | None = None, message: str = "fake failure") -> JSON:
    return {"type": "error", "error": {"type": code or _ERROR_TYPES.get(status, "api_error"), "message": message}}


def _error(fault: Fault) -> Response:
    return JSONResponse(_error_body(fault.status, fault.code), status_code=fault.status, headers=status_headers(fault))


def _blocks(reply: Reply) -> list[JSON]:
    blocks: list[JSON] = [{"type": "text", "text": reply.text}] if reply.text else []
    blocks.extend(
        {"type": "tool_use", "id": call.id or new_id("toolu_"), "name": call.name, "input": call.arguments}
        for call in reply.tool_calls
    )
    return blocks


def _message(reply: Reply, model: str) -> JSON:
    body: JSON = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": _blocks(reply),
        "stop_reason": _STOP[reply.finish_reason()],
        "stop_sequence": None,
    }
    if reply.usage:
        body["usage"] = {"input_tokens": reply.prompt_tokens, "output_tokens": reply.output_tokens()}
    return body


def _events(reply: Reply, model: str) -> Iterable[bytes]:
    def event(data: JSON) -> bytes:
        return encode_sse(orjson.dumps(data), event=data["type"])

    start = _message(Reply(usage=reply.usage, prompt_tokens=reply.prompt_tokens, completion_tokens=1), model)
    start.update(content=[], stop_reason=None)
    yield event({"type": "message_start", "message": start})
    index = 0
    if reply.text:
        yield event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        yield event({"type": "ping"})
        for piece in reply.pieces():
            yield event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})
        yield event({"type": "content_block_stop", "index": 0})
        index = 1
    for call in reply.tool_calls:
        block = {"type": "tool_use", "id": call.id or new_id("toolu_"), "name": call.name, "input": {}}
        yield event({"type": "content_block_start", "index": index, "content_block": block})
        args = orjson.dumps(call.arguments).decode()
        for i in range(0, len(args), 8):
            delta = {"type": "input_json_delta", "partial_json": args[i : i + 8]}
            yield event({"type": "content_block_delta", "index": index, "delta": delta})
        yield event({"type": "content_block_stop", "index": index})
        index += 1
    delta: JSON = {
        "type": "message_delta",
        "delta": {"stop_reason": _STOP[reply.finish_reason()], "stop_sequence": None},
    }
    if reply.usage:
        delta["usage"] = {"output_tokens": reply.output_tokens()}
    yield event(delta)
    yield event({"type": "message_stop"})


def anthropic_app(script: Script, *, keys: Iterable[str] = (), version: str = "2023-06-01") -> Starlette:
    """The fake. Requests need `anthropic-version`, `max_tokens` and `messages`; with `keys`, a valid `x-api-key`."""
    allowed = set(keys)

    async def messages(request: Request) -> Response:
        if allowed and request.headers.get("x-api-key") not in allowed:
            return JSONResponse(_error_body(401, message="invalid x-api-key"), status_code=401)
        if request.headers.get("anthropic-version") != version:
            return JSONResponse(_error_body(400, message="anthropic-version header is required"), status_code=400)
        body = await json_body(request)
        if not isinstance(body.get("max_tokens"), int) or not isinstance(body.get("messages"), list):
            return JSONResponse(_error_body(400, message="max_tokens and messages are required"), status_code=400)
        model = str(body.get("model", ""))
        is_stream = bool(body.get("stream"))
        described = fake_request(request, "anthropic", body, model, is_stream, "chat")

        def ok(reply: Reply, fault: Fault | None) -> Response:
            if is_stream:
                return stream(list(_events(reply, model)), fault, "text/event-stream")
            return JSONResponse(_message(reply, model))

        return answer(script, described, error=_error, ok=ok)

    return Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])

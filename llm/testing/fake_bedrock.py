"""A fake Bedrock Runtime: `Converse` and `ConverseStream` (AWS event-stream frames), SigV4-verified.

Usage as Bedrock's `TokenUsage` reports it: `inputTokens` without the tokens read from or written to the prompt
cache (`cacheReadInputTokens`, `cacheWriteInputTokens`), the writes broken down per TTL in `cacheDetails`
(`{"ttl": "5m" | "1h", "inputTokens": n}`, the 1-hour entry first). A reply's `thinking` comes, as Claude on
Bedrock sends its extended thinking, as a `reasoningContent` block (`reasoningText` with its `signature`; streamed as
`reasoningContent` deltas of text, then of the signature), then its `redacted_thinking` as `redactedContent` blocks,
before the answer, and only when the request turned
thinking on (`additionalModelRequestFields.thinking`). Like Claude on Bedrock, it refuses (400 `ValidationException`)
a request with thinking on that continues a tool-use turn (the last message holds a `toolResult`) whose assistant
message does not start with its reasoning: Anthropic's rule for extended thinking with tool use, which Bedrock
relays ("When `thinking` is enabled, a final `assistant` message must start with a thinking block").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llm.eventstream import encode_event
from llm.schema import JSON
from llm.sigv4 import SigV4Signer
from llm.testing._common import answer, fake_request, json_body, new_id, status_headers, stream
from llm.testing.script import Fault, Reply, Script

__all__ = ["bedrock_app"]

_ERRORS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
_AUTH = re.compile(r"Credential=([^/]+)/(\d{8})/([^/]+)/bedrock/aws4_request, SignedHeaders=([^,]+), Signature=")


def _error(fault: Fault, status: int | None = None) -> Response:
    code = status or fault.status
    kind = fault.code or _ERRORS.get(code, "InternalServerException")
    headers = {
        "x-amzn-errortype": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        **status_headers(fault),
    }
    return JSONResponse({"message": "fake failure"}, status_code=code, headers=headers)


def _thinks(reply: Reply, body: JSON) -> bool:
    return bool(reply.thinking) and _thinking_on(body)


def _thinking_on(body: JSON) -> bool:
    extra = body.get("additionalModelRequestFields")
    thinking = extra.get("thinking") if isinstance(extra, dict) else None
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _unthought_tool_turn(body: JSON) -> bool:
    """Thinking is on, the last message answers tools, and the assistant message that called them does not start
    with its reasoning (see the module docstring)."""
    messages = body.get("messages")
    if not _thinking_on(body) or not isinstance(messages, list) or len(messages) < 2:
        return False
    last, called = messages[-1], messages[-2]
    answers = any(isinstance(b, dict) and "toolResult" in b for b in last.get("content") or [])
    first = (called.get("content") or [{}])[0] if called.get("role") == "assistant" else {}
    return answers and not (isinstance(first, dict) and "reasoningContent" in first)


def _content(reply: Reply, thinks: bool) -> list[JSON]:
    blocks: list[JSON] = []
    if thinks:
        blocks.append({"reasoningContent": {"reasoningText": {"text": reply.thinking, "signature": reply.signature}}})
        blocks.extend({"reasoningContent": {"redactedContent": data}} for data in reply.redacted_thinking)
    if reply.text:
        blocks.append({"text": reply.text})
    blocks.extend(
        {"toolUse": {"toolUseId": call.id or new_id("tooluse_"), "name": call.name, "input": call.arguments}}
        for call in reply.tool_calls
    )
    return blocks


def _usage(reply: Reply) -> JSON:
    out = reply.output_tokens()
    cached, written = reply.cache_read_tokens, reply.cache_write_tokens + reply.cache_write_1h_tokens
    total = reply.prompt_tokens + cached + written + out
    usage: JSON = {"inputTokens": reply.prompt_tokens, "outputTokens": out, "totalTokens": total}
    if cached:
        usage["cacheReadInputTokens"] = cached
    if written:
        usage["cacheWriteInputTokens"] = written
        # The breakdown per TTL, as Bedrock sorts it: the 1-hour writes before the 5-minute ones.
        ttls = (("1h", reply.cache_write_1h_tokens), ("5m", reply.cache_write_tokens))
        usage["cacheDetails"] = [{"ttl": ttl, "inputTokens": tokens} for ttl, tokens in ttls if tokens]
    return usage


def _converse(reply: Reply, thinks: bool) -> JSON:
    body: JSON = {
        "output": {"message": {"role": "assistant", "content": _content(reply, thinks)}},
        "stopReason": _STOP[reply.finish_reason()],
        "metrics": {"latencyMs": 42},
    }
    if reply.usage:
        body["usage"] = _usage(reply)
    return body


def _frames(reply: Reply, thinks: bool) -> Iterable[bytes]:
    def frame(event: str, payload: JSON) -> bytes:
        headers = {":event-type": event, ":content-type": "application/json", ":message-type": "event"}
        return encode_event(headers, orjson.dumps({**payload, "p": "abcdefgh"}))

    yield frame("messageStart", {"role": "assistant"})
    index = 0
    if thinks:
        for delta in ({"text": reply.thinking}, {"signature": reply.signature}):
            yield frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": delta}})
        yield frame("contentBlockStop", {"contentBlockIndex": 0})
        index = 1
        for data in reply.redacted_thinking:
            redacted = {"reasoningContent": {"redactedContent": data}}
            yield frame("contentBlockDelta", {"contentBlockIndex": index, "delta": redacted})
            yield frame("contentBlockStop", {"contentBlockIndex": index})
            index += 1
    if reply.text:
        for piece in reply.pieces():
            yield frame("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": piece}})
        yield frame("contentBlockStop", {"contentBlockIndex": index})
        index += 1
    for call in reply.tool_calls:
        start = {"toolUse": {"toolUseId": call.id or new_id("tooluse_"), "name": call.name}}
        yield frame("contentBlockStart", {"contentBlockIndex": index, "start": start})
        args = orjson.dumps(call.arguments).decode()
        for i in range(0, len(args), 8):
            yield frame(
                "contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": args[i : i + 8]}}}
            )
        yield frame("contentBlockStop", {"contentBlockIndex": index})
        index += 1
    yield frame("messageStop", {"stopReason": _STOP[reply.finish_reason()]})
    if reply.usage:
        yield frame("metadata", {"usage": _usage(reply), "metrics": {"latencyMs": 42}})


def exception_frame(kind: str) -> bytes:
    """An in-stream exception message (e.g. `throttlingException`)."""
    headers = {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}
    return encode_event(headers, orjson.dumps({"message": "fake failure"}))


def bedrock_app(
    script: Script, *, access_key_id: str, secret_access_key: str, region: str, session_token: str | None = None
) -> Starlette:
    """The fake. Every request must carry a valid SigV4 signature for these credentials and region."""
    signer = SigV4Signer(
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        region=region,
        service="bedrock",
        session_token=session_token,
    )

    def verify(request: Request, body: bytes) -> bool:
        auth = request.headers.get("authorization", "")
        match = _AUTH.match(auth.removeprefix("AWS4-HMAC-SHA256 "))
        stamp = request.headers.get("x-amz-date", "")
        if not match or match.group(1) != access_key_id or match.group(3) != region or not stamp:
            return False
        if session_token and request.headers.get("x-amz-security-token") != session_token:
            return False
        own = {"host", "x-amz-date", "x-amz-security-token"}
        headers = {n: request.headers.get(n, "") for n in match.group(4).split(";") if n not in own}
        raw_path = request.scope.get("raw_path", request.url.path.encode()).decode()
        url = f"http://{request.headers.get('host', '')}{raw_path}"
        now = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return signer.sign(request.method, url, headers, body, now=now)["authorization"] == auth

    async def converse(request: Request) -> Response:
        raw = await request.body()
        if not verify(request, raw):
            body = {"message": "The request signature we calculated does not match the signature you provided."}
            return JSONResponse(body, status_code=403, headers={"x-amzn-errortype": "InvalidSignatureException"})
        body = await json_body(request)
        if not isinstance(body.get("messages"), list):
            return _error(Fault.http(400), 400)
        if _unthought_tool_turn(body):
            return _error(Fault.http(400, code="ValidationException"), 400)
        model = request.path_params["model_id"]
        is_stream = request.url.path.endswith("/converse-stream")
        described = fake_request(request, "bedrock", body, model, is_stream, "chat")

        def ok(reply: Reply, fault: Fault | None) -> Response:
            if is_stream:
                return stream(list(_frames(reply, _thinks(reply, body))), fault, "application/vnd.amazon.eventstream")
            return JSONResponse(_converse(reply, _thinks(reply, body)))

        return answer(script, described, error=_error, ok=ok)

    return Starlette(
        routes=[
            Route("/model/{model_id}/converse", converse, methods=["POST"]),
            Route("/model/{model_id}/converse-stream", converse, methods=["POST"]),
        ]
    )

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

Prompt caching as Converse does it: `cachePoint` blocks in `toolConfig.tools`, `system` and message content are
checked like Bedrock checks them (400 `ValidationException`: a malformed point, one with nothing before it, more than
four, or a 1-hour point after a 5-minute one in the order tools, system, messages), and the fake keeps the
prefixes written to its cache (for the life of the app; entries do not expire). A request with cache points reads
the longest prefix it finds there and writes each later marked segment with its point's TTL; a block counts a token
per four bytes of its JSON, and `inputTokens` is the reply's `prompt_tokens` (the part after the last point). A reply
that scripts cache tokens itself reports those instead.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

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
_MAX_POINTS = 4
_TTLS = frozenset({"5m", "1h"})
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


CacheUse = tuple[int, int, int]
"""Tokens read from the cache, written for 5 minutes, written for an hour."""


def _lists(body: JSON) -> Iterator[tuple[str, list[Any]]]:
    """The block lists of a Converse request in the order Bedrock caches them: tools, system, each message."""
    config = body.get("toolConfig")
    tools = config.get("tools") if isinstance(config, dict) else None
    yield "tools", tools if isinstance(tools, list) else []
    system = body.get("system")
    yield "system", system if isinstance(system, list) else []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        yield (
            str(message.get("role")) if isinstance(message, dict) else "",
            content if isinstance(content, list) else [],
        )


def _cache_problem(body: JSON) -> str | None:
    """Why Bedrock would refuse the request's cache points, or None."""
    count, short = 0, False
    for section, blocks in _lists(body):
        for i, block in enumerate(blocks):
            point = block.get("cachePoint") if isinstance(block, dict) else None
            if point is None:
                continue
            ttl = point.get("ttl", "5m") if isinstance(point, dict) else None
            if not isinstance(point, dict) or point.get("type") != "default" or ttl not in _TTLS:
                return f"{section}: a cachePoint must be {{type: default}} with an optional ttl of 5m or 1h"
            if i == 0 or "cachePoint" in blocks[i - 1]:
                return f"{section}: a cachePoint must follow a content block"
            if ttl == "1h" and short:
                return "a cachePoint with a ttl of 1h may not follow one of 5m (tools, system, then messages)"
            count, short = count + 1, short or ttl == "5m"
    if count > _MAX_POINTS:
        return f"A maximum of {_MAX_POINTS} cache points may be provided. Found {count}."
    return None


def _cache_use(body: JSON, model: str, cached: set[bytes]) -> CacheUse | None:
    """Read the longest cached prefix, write the later marked segments (and remember them); None without points."""
    if not any(isinstance(b, dict) and "cachePoint" in b for _, blocks in _lists(body) for b in blocks):
        return None
    digest = hashlib.sha256(model.encode())
    tokens = 0
    points: list[tuple[bytes, int, str]] = []
    for section, blocks in _lists(body):
        for block in blocks:
            if isinstance(block, dict) and isinstance(block.get("cachePoint"), dict):
                points.append((digest.copy().digest(), tokens, str(block["cachePoint"].get("ttl", "5m"))))
                continue
            raw = orjson.dumps([section, block], option=orjson.OPT_SORT_KEYS)
            digest.update(raw)
            tokens += (len(raw) + 3) // 4
    hit = max((i for i, (key, _, _) in enumerate(points) if key in cached), default=-1)
    read = start = points[hit][1] if hit >= 0 else 0
    written = {"5m": 0, "1h": 0}
    for key, upto, ttl in points[hit + 1 :]:
        written[ttl] += upto - start
        start = upto
        cached.add(key)
    return read, written["5m"], written["1h"]


def _usage(reply: Reply, use: CacheUse | None = None) -> JSON:
    out = reply.output_tokens()
    scripted = (reply.cache_read_tokens, reply.cache_write_tokens, reply.cache_write_1h_tokens)
    cached, five, hour = use if use is not None and not any(scripted) else scripted
    written = five + hour
    total = reply.prompt_tokens + cached + written + out
    usage: JSON = {"inputTokens": reply.prompt_tokens, "outputTokens": out, "totalTokens": total}
    if cached:
        usage["cacheReadInputTokens"] = cached
    if written:
        usage["cacheWriteInputTokens"] = written
        # The breakdown per TTL, as Bedrock sorts it: the 1-hour writes before the 5-minute ones.
        ttls = (("1h", hour), ("5m", five))
        usage["cacheDetails"] = [{"ttl": ttl, "inputTokens": tokens} for ttl, tokens in ttls if tokens]
    return usage


def _converse(reply: Reply, thinks: bool, use: CacheUse | None = None) -> JSON:
    body: JSON = {
        "output": {"message": {"role": "assistant", "content": _content(reply, thinks)}},
        "stopReason": _STOP[reply.finish_reason()],
        "metrics": {"latencyMs": 42},
    }
    if reply.usage:
        body["usage"] = _usage(reply, use)
    return body


def _frames(reply: Reply, thinks: bool, use: CacheUse | None = None) -> Iterable[bytes]:
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
        yield frame("metadata", {"usage": _usage(reply, use), "metrics": {"latencyMs": 42}})


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

    cached: set[bytes] = set()

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
        problem = _cache_problem(body)
        if problem is not None:
            headers = {"x-amzn-errortype": "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"}
            return JSONResponse({"message": problem}, status_code=400, headers=headers)
        model = request.path_params["model_id"]
        is_stream = request.url.path.endswith("/converse-stream")
        described = fake_request(request, "bedrock", body, model, is_stream, "chat")

        def ok(reply: Reply, fault: Fault | None) -> Response:
            use = _cache_use(body, model, cached)
            if is_stream:
                frames = list(_frames(reply, _thinks(reply, body), use))
                return stream(frames, fault, "application/vnd.amazon.eventstream")
            return JSONResponse(_converse(reply, _thinks(reply, body), use))

        return answer(script, described, error=_error, ok=ok)

    return Starlette(
        routes=[
            Route("/model/{model_id}/converse", converse, methods=["POST"]),
            Route("/model/{model_id}/converse-stream", converse, methods=["POST"]),
        ]
    )

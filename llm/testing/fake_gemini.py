"""A fake Gemini server: the Gemini API (`x-goog-api-key`) and Vertex AI paths with an OAuth token endpoint.

Usage as Gemini's `UsageMetadata` reports it: `promptTokenCount` includes the cached content
(`cachedContentTokenCount`), `candidatesTokenCount` excludes the thoughts (`thoughtsTokenCount`). A reply's
`thinking` is sent, as Gemini sends thought summaries, in parts marked `"thought": true` before the answer, and only
when the request asked for them (`generationConfig.thinkingConfig.includeThoughts`).

Thought signatures as Gemini 3 gives them (models named `gemini-3*`): the first function-call part of a response
(of a parallel step: only the first) carries a `thoughtSignature`, and a request whose current turn (the contents
after the last user content that holds more than function responses) has a model step whose first function call
lacks the signature issued for it is refused with 400 `INVALID_ARGUMENT`, as Gemini 3 refuses it ("Function call
... is missing a `thought_signature`"). Earlier models neither sign nor check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import parse_qs

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llm.schema import JSON
from llm.sse import encode_sse
from llm.testing._common import answer, fake_request, json_body, new_id, status_headers, stream
from llm.testing.script import Fault, Reply, Script

__all__ = ["gemini_app", "thought_signature"]

_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}
_SIGNING_KEY = b"fake-gemini-thought-signatures"


def _error(fault: Fault, status: int | None = None) -> Response:
    code = status or fault.status
    body = {"error": {"code": code, "message": "fake failure", "status": fault.code or _STATUS.get(code, "INTERNAL")}}
    return JSONResponse(body, status_code=code, headers=status_headers(fault))


def _usage(reply: Reply, output: int) -> JSON:
    prompt = reply.prompt_tokens + reply.cache_read_tokens
    thoughts = min(reply.reasoning_tokens, output)
    usage: JSON = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": output - thoughts,
        "totalTokenCount": prompt + output,
    }
    if reply.cache_read_tokens:
        usage["cachedContentTokenCount"] = reply.cache_read_tokens
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _wants_thoughts(body: JSON) -> bool:
    config = body.get("generationConfig")
    thinking = config.get("thinkingConfig") if isinstance(config, dict) else None
    return isinstance(thinking, dict) and thinking.get("includeThoughts") is True


def _thoughts(reply: Reply, body: JSON) -> list[JSON]:
    return [{"text": reply.thinking, "thought": True}] if reply.thinking and _wants_thoughts(body) else []


def _response(parts: list[JSON], reply: Reply, model: str, *, final: bool, output: int) -> JSON:
    candidate: JSON = {"content": {"role": "model", "parts": parts}, "index": 0}
    if final:
        candidate["finishReason"] = _FINISH[reply.finish_reason()]
    body: JSON = {"candidates": [candidate], "modelVersion": model, "responseId": new_id("")}
    if reply.usage:
        body["usageMetadata"] = _usage(reply, output)
    return body


def thought_signature(name: str, args: JSON) -> str:
    """The signature the fake gives a Gemini 3 function call (base64, as Gemini's are: it holds `+`, `/` or `=`
    often enough). Derived from the call, so the fake checks a returned one without remembering what it issued."""
    digest = hmac.new(_SIGNING_KEY, orjson.dumps([name, args], option=orjson.OPT_SORT_KEYS), hashlib.sha256)
    return base64.b64encode(b"\xfb" + digest.digest()).decode()


def _signs(model: str) -> bool:
    """Gemini 3 models sign their function calls (and require the signatures back)."""
    return model.startswith("gemini-3")


def _calls(reply: Reply, model: str) -> list[JSON]:
    parts: list[JSON] = [{"functionCall": {"name": c.name, "args": c.arguments}} for c in reply.tool_calls]
    if parts and _signs(model):  # parallel calls: only the first part carries the step's signature
        call = reply.tool_calls[0]
        parts[0]["thoughtSignature"] = thought_signature(call.name, call.arguments)
    return parts


def _unsigned_call(body: JSON) -> str | None:
    """The error Gemini 3 answers when a function call of the current turn lacks its signature, or None.

    The current turn starts at the last user content that holds more than function responses; the first
    function-call part of every model content after it must carry the signature issued for it."""
    contents = [c for c in body.get("contents") or [] if isinstance(c, dict)]
    start = 0
    for i, content in enumerate(contents):
        parts = [p for p in content.get("parts") or [] if isinstance(p, dict)]
        if content.get("role") == "user" and any("functionResponse" not in p for p in parts):
            start = i
    for i, content in enumerate(contents[start:], start):
        calls = [p for p in content.get("parts") or [] if isinstance(p, dict) and "functionCall" in p]
        if content.get("role") != "model" or not calls:
            continue
        call = calls[0]["functionCall"]
        if calls[0].get("thoughtSignature") != thought_signature(call.get("name", ""), call.get("args") or {}):
            return f"Function call `{call.get('name')}` in the `{i}.` content block is missing a `thought_signature`."
    return None


def _events(reply: Reply, model: str, thoughts: list[JSON]) -> Iterable[bytes]:
    pieces = reply.pieces()
    if thoughts:
        yield encode_sse(orjson.dumps(_response(thoughts, reply, model, final=False, output=0)))
    for i, piece in enumerate(pieces):
        yield encode_sse(orjson.dumps(_response([{"text": piece}], reply, model, final=False, output=i + 1)))
    final = _response(_calls(reply, model), reply, model, final=True, output=reply.output_tokens())
    yield encode_sse(orjson.dumps(final))


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _token_endpoint(
    public_pem: str | None, access_token: str, issued: list[str]
) -> Callable[[Request], Awaitable[Response]]:
    public = serialization.load_pem_public_key(public_pem.encode()) if public_pem else None

    async def token(request: Request) -> Response:
        form = parse_qs((await request.body()).decode())
        assertion = (form.get("assertion") or [""])[0]
        grant = (form.get("grant_type") or [""])[0]
        if grant != "urn:ietf:params:oauth:grant-type:jwt-bearer" or assertion.count(".") != 2:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if not isinstance(public, rsa.RSAPublicKey):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        head, claims, signature = assertion.split(".")
        try:
            public.verify(_b64decode(signature), f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return JSONResponse({"error": "invalid_grant", "error_description": "bad signature"}, status_code=400)
        issued.append(orjson.loads(_b64decode(claims))["iss"])
        return JSONResponse({"access_token": access_token, "expires_in": 3599, "token_type": "Bearer"})

    return token


def gemini_app(
    script: Script,
    *,
    keys: Iterable[str] = (),
    service_account_public_key: str | None = None,
    access_token: str = "fake-access-token",  # noqa: S107 (what the fake issues)
) -> Starlette:
    """The fake. Gemini API calls need a key from `keys`; Vertex calls need the bearer token the fake issues
    at `POST /token` in exchange for a JWT signed by the service account's key (verified with its public key).
    """
    allowed = set(keys)
    tokens_issued: list[str] = []
    token = _token_endpoint(service_account_public_key, access_token, tokens_issued)

    async def generate(request: Request) -> Response:
        path = request.url.path
        vertex = "/publishers/google/models/" in path
        if vertex:
            if request.headers.get("authorization") != f"Bearer {access_token}":
                return _error(Fault.http(401), 401)
        elif allowed and request.headers.get("x-goog-api-key") not in allowed:
            return _error(Fault.http(400, code="INVALID_ARGUMENT"), 400)
        model, _, method = path.rsplit("/", 1)[1].partition(":")
        body = await json_body(request)
        if method == "batchEmbedContents":
            return _embed(request, body, model)
        is_stream = method == "streamGenerateContent"
        if is_stream and request.query_params.get("alt") != "sse":
            return _error(Fault.http(400), 400)
        if not isinstance(body.get("contents"), list):
            return _error(Fault.http(400), 400)
        unsigned = _unsigned_call(body) if _signs(model) else None
        if unsigned is not None:
            error = {"error": {"code": 400, "message": unsigned, "status": "INVALID_ARGUMENT"}}
            return JSONResponse(error, status_code=400)
        described = fake_request(request, "gemini", body, model, is_stream, "chat")

        def ok(reply: Reply, fault: Fault | None) -> Response:
            if is_stream:
                return stream(list(_events(reply, model, _thoughts(reply, body))), fault, "text/event-stream")
            text: list[JSON] = [{"text": reply.text}] if reply.text else []
            parts: list[JSON] = _thoughts(reply, body) + text + _calls(reply, model)
            return JSONResponse(_response(parts, reply, model, final=True, output=reply.output_tokens()))

        return answer(script, described, error=_error, ok=ok)

    def _embed(request: Request, body: JSON, model: str) -> Response:
        described = fake_request(request, "gemini", body, model, False, "embeddings")

        def ok(reply: Reply, fault: Fault | None) -> Response:
            values = [[float(len(r["content"]["parts"][0]["text"])), 0.25] for r in body.get("requests") or []]
            return JSONResponse({"embeddings": [{"values": v} for v in values]})

        return answer(script, described, error=_error, ok=ok)

    app = Starlette(
        routes=[
            Route("/token", token, methods=["POST"]),
            Route("/v1beta/models/{rest:path}", generate, methods=["POST"]),
            Route("/v1/projects/{rest:path}", generate, methods=["POST"]),
        ]
    )
    app.state.tokens_issued = tokens_issued
    return app

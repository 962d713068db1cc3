"""The OpenAI-compatible front door: `/v1/chat/completions`, `/v1/embeddings`, `/v1/responses`, `/v1/models`.

The door only translates: the body becomes a `Call` (`llm.chat` or `llm.embed`, target = the requested model,
payload = the body as sent, with `stream`, `api` and the token estimates in its context; the model list is an
`llm.models` call), the pipeline governs and runs it (an Agent Mode request included: its executor runs the loop),
and the `Outcome` goes back as JSON or as server-sent events. Errors use the OpenAI error envelope
with the hub's status table; after a stream has started, an error ends it with an error event
(`data: {"error": {...}}`, which the OpenAI SDKs raise as `APIError`). `EventStreamResponse` also relays the
Anthropic door's streams (`ClosingStream.messages`: bytes sent as they are, an Anthropic `error` event at the end).

Response headers: `x-agenthub-provider` / `x-agenthub-model` (the deployment that served), `x-agenthub-cost-usd`
(non-streaming), `x-agenthub-upstream-ms`, `x-agenthub-overhead-ms` (time spent in the hub, not upstream) and
the limits stage's `x-ratelimit-*` / `x-budget-remaining-usd`.
"""

from __future__ import annotations

import asyncio  # noqa: TID251 - event streams: plain futures and tasks on the asyncio loop the hub serves on (uvicorn)
import operator
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.call import Call, Malformed, Operation, Outcome
from hub.doors.host import DoorHost
from hub.doors.openai_responses import stored_response_routes
from hub.doors.web import credential, error_response, json_response, read_body as _read_body
from hub.errors import BadRequest, HubError, Internal, openai_envelope
from hub.executors.llm import output_estimate
from hub.executors.stream import ClosingStream
from llm import RawJSON
from llm.messages import error_event as messages_error_event

__all__ = [
    "chat_route",
    "embeddings_route",
    "model_route",
    "models_route",
    "openai_endpoints",
    "outcome_response",
    "openai_routes",
    "responses_route",
]

_JSON = "application/json"
_DONE = b"data: [DONE]\n\n"


def openai_routes(hub: Callable[[], DoorHost]) -> list[Route]:
    """The door's Starlette routes; `hub` returns the running hub."""

    async def chat(request: Request) -> Response:
        return await _serve(hub(), request, "llm.chat", "chat")

    async def responses(request: Request) -> Response:
        return await _serve(hub(), request, "llm.chat", "responses")

    async def embeddings(request: Request) -> Response:
        return await _serve(hub(), request, "llm.embed", "embeddings")

    async def models(request: Request) -> Response:
        return await models_route(hub(), request)

    async def model(request: Request) -> Response:
        return await model_route(hub(), request)

    return [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/models/{model:path}", model, methods=["GET"]),
        *stored_response_routes(hub),
    ]


def openai_endpoints(hub: Callable[[], DoorHost]) -> dict[str, ASGIApp]:
    """Plain ASGI apps for the door's `POST` paths, keyed by path, for a router placed in front of Starlette: the
    LLM hot path then skips route matching and the exception-handling wrappers (the handlers turn every hub
    error into a response themselves). Other methods on these paths are left to the Starlette routes."""

    def endpoint(operation: Operation, api: str) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await _serve(hub(), Request(scope, receive), operation, api)
            await response(scope, receive, send)

        return app

    return {
        "/v1/chat/completions": endpoint("llm.chat", "chat"),
        "/v1/responses": endpoint("llm.chat", "responses"),
        "/v1/embeddings": endpoint("llm.embed", "embeddings"),
    }


async def chat_route(hub: DoorHost, request: Request) -> Response:
    """`POST /v1/chat/completions`, streaming or not; every parameter is passed on as sent."""
    return await _serve(hub, request, "llm.chat", "chat")


async def responses_route(hub: DoorHost, request: Request) -> Response:
    """`POST /v1/responses` (providers that have the Responses API), streaming or not."""
    return await _serve(hub, request, "llm.chat", "responses")


async def embeddings_route(hub: DoorHost, request: Request) -> Response:
    """`POST /v1/embeddings`."""
    return await _serve(hub, request, "llm.embed", "embeddings")


async def models_route(hub: DoorHost, request: Request) -> Response:
    """`GET /v1/models`: the aliases and `provider/model` names this key may use."""
    return await _models(hub, request, "")


async def model_route(hub: DoorHost, request: Request) -> Response:
    """`GET /v1/models/{model}`: one model, or 404 when it does not exist or the key may not use it."""
    return await _models(hub, request, request.path_params["model"])


async def _models(hub: DoorHost, request: Request, name: str) -> Response:
    call = Call(door="openai", operation="llm.models", target=name, credential=credential(request.headers))
    try:
        outcome = await (hub.pipeline or _not_running)(call)
    except HubError as exc:
        return error_response(exc)
    return json_response(outcome.value)


async def _not_running(call: Call) -> Outcome:
    raise Internal("the hub is not running")


async def _serve(hub: DoorHost, request: Request, operation: Operation, api: str) -> Response:
    """One request of the door: read it (a body that cannot be read is refused by the pipeline, after the key was
    checked and the request counted), run it, and answer as JSON or as server-sent events."""
    started = time.perf_counter()
    presented = credential(request.headers)
    context: dict[str, Any] = {"api": api, "stream": False}
    payload: Any = None
    model = ""
    if presented:  # without a key there is nothing to read: the authn stage refuses the call
        try:
            raw = await _read_body(request, hub.settings.hub.max_body_bytes)
            payload = body = _parse(raw, api)
            model = body["model"]
            prompt = len(raw) // 4
            context["stream"] = body.get("stream") is True and api != "embeddings"
            context["prompt_estimate"] = prompt
            context["token_estimate"] = prompt + output_estimate(body)
        except HubError as exc:
            payload = Malformed(exc)
    call = Call(
        door="openai", operation=operation, target=model, payload=payload, credential=presented, context=context
    )
    try:
        outcome = await (hub.pipeline or _not_running)(call)
    except HubError as exc:
        return error_response(exc)
    return outcome_response(outcome, started)


def outcome_response(outcome: Outcome, started: float) -> Response:
    """The answer to an LLM call (both LLM doors): its event stream, or its JSON body (a `RawJSON` as received),
    with `x-agenthub-overhead-ms`."""
    headers = outcome.headers
    value = outcome.value
    if isinstance(value, ClosingStream):
        return EventStreamResponse(value, headers, started)
    payload = value.raw if type(value) is RawJSON else orjson.dumps(value)  # `type`: no ABC check for a dict
    headers["x-agenthub-overhead-ms"] = _overhead(started, headers)
    return _JsonResponse(payload, headers)


_LATIN_1 = operator.methodcaller("encode", "latin-1")


class _JsonResponse(Response):
    """A JSON body with the outcome's headers, its raw header list built directly (Starlette's `Response` does
    the same, plus checks the hub's own lower-case header names do not need; the server lowers every name it
    writes anyway)."""

    media_type = _JSON

    def __init__(self, body: bytes, headers: Mapping[str, str]) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        raw = list(zip(map(_LATIN_1, headers), map(_LATIN_1, headers.values()), strict=True))  # a loop in C
        raw.append((b"content-length", str(len(body)).encode()))
        raw.append((b"content-type", b"application/json"))
        self.raw_headers = raw


def _overhead(started: float, headers: Mapping[str, str]) -> str:
    upstream = float(headers.get("x-agenthub-upstream-ms", "0"))
    return f"{max(0.0, (time.perf_counter() - started) * 1000 - upstream):.3f}"


def _parse(raw: bytes, api: str) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' must be a non-empty string")
    if api == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty array")
        for message in messages:
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise BadRequest("each message must be an object with a 'role'")
    elif body.get("input") is None:
        raise BadRequest("'input' is required")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise BadRequest("'stream' must be a boolean")
    return body


class EventStreamResponse(Response):
    """Server-sent events from an `OutcomeStream`, closing it exactly once however the stream ends (last chunk,
    upstream failure, guardrail block, client disconnect)."""

    media_type = "text/event-stream"

    def __init__(self, stream: ClosingStream, headers: dict[str, str], started: float) -> None:
        self.status_code = 200
        self.background = None
        self.body = b""
        self.stream = stream
        self.started = started
        self.route_headers = headers
        self.raw_headers = list(zip(map(_LATIN_1, headers), map(_LATIN_1, headers.values()), strict=True))
        self.raw_headers += [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = self.stream
        try:
            overhead = _overhead(self.started, self.route_headers).encode()
            headers = [*self.raw_headers, (b"x-agenthub-overhead-ms", overhead)]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await _relay(stream, receive, send)
        except OSError:
            pass  # the client went away while we wrote
        finally:
            await stream.aclose()


_HIGH_WATER = 64 * 1024
"""Bytes queued for the client before the stream waits for the writer (a slow reader slows the upstream)."""


class _Writer:
    """Sends queued event bytes in as few writes as possible: every event that became ready while the writer
    was asleep or busy (all the chunks of one upstream read, typically) goes out in one body message; the last
    message also ends the response.

    Plain asyncio futures rather than anyio events: the door only runs on uvicorn's asyncio loop, and the
    writer is woken once per batch, not once per event.
    """

    def __init__(self, send: Send, on_failure: Callable[[], None]) -> None:
        self._send = send
        self._on_failure = on_failure
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []
        self._size = 0
        self._wake: asyncio.Future[None] | None = None
        """Set while the writer waits for data."""
        self._space: asyncio.Future[None] | None = None
        """Set while the producer waits for the queue to drain."""
        self._closed = False
        self.done: asyncio.Future[None] = self._loop.create_future()
        """Resolved when the writer has ended the response or given up."""
        self.failed = False

    def put(self, data: bytes) -> bool:
        """Queue `data`; True when so much is queued that the producer should `await space()`."""
        self._pending.append(data)
        self._size += len(data)
        self._wakeup()
        return self._size >= _HIGH_WATER

    async def space(self) -> None:
        """Wait until the writer has taken what is queued."""
        if self._size >= _HIGH_WATER:
            self._space = self._loop.create_future()
            await self._space

    def close(self) -> None:
        """No more data: the writer sends what is queued, ends the response and resolves `done`."""
        self._closed = True
        self._wakeup()

    def _wakeup(self) -> None:
        wake = self._wake
        if wake is not None:
            self._wake = None
            if not wake.done():
                wake.set_result(None)

    async def run(self) -> None:
        try:
            while True:
                if not self._pending:
                    if self._closed:
                        await self._send({"type": "http.response.body", "body": b"", "more_body": False})
                        return
                    self._wake = self._loop.create_future()
                    await self._wake
                    continue
                pending, self._pending, self._size = self._pending, [], 0
                space = self._space
                if space is not None:
                    self._space = None
                    if not space.done():
                        space.set_result(None)
                body = pending[0] if len(pending) == 1 else b"".join(pending)
                last = self._closed
                await self._send({"type": "http.response.body", "body": body, "more_body": not last})
                if last:
                    return
        except OSError:
            self.failed = True  # the client went away while we wrote
            self._on_failure()
        finally:
            if not self.done.done():
                self.done.set_result(None)


async def _relay(stream: ClosingStream, receive: Receive, send: Send) -> None:
    """Send every event, then end the response, unless the client disconnected first.

    Two helper tasks run beside the relay: the writer, and a watcher that stops the relay when the client
    disconnects (the writer stops it too when a write fails). Only that stop is absorbed here; any other
    cancellation of the relay propagates.
    """
    encode = _as_sent if stream.messages else _encode_event if stream.responses else _encode_chunk
    relay = asyncio.current_task()
    if relay is None:
        raise RuntimeError("the event stream must run in an asyncio task")
    stopped = False
    live = True

    def stop() -> None:
        nonlocal stopped
        if live and not stopped:
            stopped = True
            relay.cancel()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        stop()

    writer = _Writer(send, stop)
    watcher = asyncio.create_task(watch())
    writing = asyncio.create_task(writer.run())
    try:
        try:
            async for item in stream:
                if writer.put(encode(item)):
                    await writer.space()
            if not stream.responses and not stream.messages:
                writer.put(_DONE)
        except HubError as exc:
            writer.put(_messages_error(exc) if stream.messages else _error_event(exc, stream.responses))
        writer.close()
        await writer.done
    except asyncio.CancelledError:
        if not stopped or relay.uncancel() > 0:
            raise
    finally:
        live = False
        watcher.cancel()
        writing.cancel()


def _as_sent(item: dict[str, Any]) -> bytes:
    """An Anthropic Messages stream item: its bytes (the upstream's own, or the translated events)."""
    return item["raw"]


def _messages_error(error: HubError) -> bytes:
    """The `error` event that ends an Anthropic Messages stream."""
    return messages_error_event(error.wire.status, error.message, code=error.code)


def _encode_chunk(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _encode_event(event: dict[str, Any]) -> bytes:
    return b"event: " + str(event.get("type", "message")).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def _error_event(error: HubError, responses: bool) -> bytes:
    envelope = openai_envelope(error)
    if not responses:
        return b"data: " + orjson.dumps(envelope) + b"\n\n"
    body = {"type": "error", "code": error.code, "message": error.message, "param": None, **envelope}
    return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"

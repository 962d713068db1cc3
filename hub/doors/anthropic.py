"""The Anthropic Messages front door: `POST /v1/messages` (streamed or not) and `POST /v1/messages/count_tokens`.

The door only translates, like the OpenAI door: the body becomes a `Call` (`llm.messages` or `llm.count_tokens`,
target = the requested model, payload = the parsed body, with the body's bytes, `stream`, the token estimates and
the `anthropic-*` headers in its context), the pipeline governs and runs it, and the `Outcome` goes back as JSON
(an Anthropic upstream's body as received) or as server-sent events (`hub.doors.openai.EventStreamResponse`).

What a client such as Claude Code or the `anthropic` SDKs sends is accepted as is: the key in `x-api-key` or
`Authorization: Bearer`, `?beta=true`, `anthropic-version` (any date-shaped one; the provider's configured
version when absent) and `anthropic-beta`, both passed on to an Anthropic upstream. Model names resolve as on
the OpenAI door (aliases and `provider/model`, with the same grants), and a key's MCP tools in chat (`chat_tools`)
and Agent Mode (`auto_execute`) work as there, in Anthropic's format (`hub.executors.agent_messages`).

Errors use Anthropic's envelope (`{"type": "error", "error": {"type", "message"}}`, `llm.messages.error_body`) with
the hub's status table; an upstream's `overloaded_error` comes back as 529. After a stream has started, an error
ends it with Anthropic's `error` event.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.call import Call, Malformed, Operation, Outcome
from hub.doors.host import DoorHost
from hub.doors.openai import outcome_response
from hub.doors.web import WWW_AUTHENTICATE, credential, read_body
from hub.errors import BadRequest, HubError, Internal, Unauthenticated
from hub.executors.llm import output_estimate
from hub.paths import COUNT_TOKENS_PATH, MESSAGES_PATH
from llm.messages import error_body

__all__ = ["anthropic_endpoints", "anthropic_routes", "error_response"]

_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PASSED_ON = (b"anthropic-version", b"anthropic-beta")


def anthropic_routes(hub: Callable[[], DoorHost]) -> list[Route]:
    """The door's Starlette routes; `hub` returns the running hub."""
    return [Route(path, app, methods=["POST"]) for path, app in anthropic_endpoints(hub).items()]


def anthropic_endpoints(hub: Callable[[], DoorHost]) -> dict[str, ASGIApp]:
    """Plain ASGI apps for the door's `POST` paths, keyed by path (see `hub.doors.openai.openai_endpoints`)."""

    return {MESSAGES_PATH: _Endpoint(hub, "llm.messages"), COUNT_TOKENS_PATH: _Endpoint(hub, "llm.count_tokens")}


class _Endpoint:
    """One path of the door as a plain ASGI app (an object, so that a Starlette `Route` runs it as one too)."""

    def __init__(self, hub: Callable[[], DoorHost], operation: Operation) -> None:
        self._hub = hub
        self._operation: Operation = operation

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await _serve(self._hub(), Request(scope, receive), self._operation)
        await response(scope, receive, send)


def error_response(error: HubError) -> Response:
    """Anthropic's error envelope with the error's status (and `WWW-Authenticate` on 401)."""
    headers = dict(error.headers)
    if isinstance(error, Unauthenticated):
        headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    body = orjson.dumps(error_body(error.wire.status, error.message, code=error.code))
    return Response(body, status_code=error.wire.status, media_type="application/json", headers=headers)


async def _not_running(call: Call) -> Outcome:
    raise Internal("the hub is not running")


def _anthropic_headers(scope: Scope) -> dict[str, str]:
    """The `anthropic-*` headers to pass on (an `anthropic-beta` sent several times is joined, as HTTP allows).

    The scope's header names are lower case (uvicorn lowers them, as ASGI asks and Starlette's `Headers` assumes),
    so one membership test per header picks them out."""
    passed = [pair for pair in scope["headers"] if pair[0] in _PASSED_ON]
    if not passed:
        return {}
    found: dict[str, list[str]] = {}
    for name, value in passed:
        found.setdefault(name.decode(), []).append(value.decode("latin-1"))
    version = found.get("anthropic-version")
    if version is not None and (len(version) != 1 or not _VERSION.match(version[0])):
        raise BadRequest("anthropic-version: must be one date such as 2023-06-01")
    return {name: ",".join(values) for name, values in found.items()}


async def _serve(hub: DoorHost, request: Request, operation: Operation) -> Response:
    """One request of the door: read it (a body that cannot be read is refused by the pipeline, after the key was
    checked), run it, and answer as JSON or as server-sent events."""
    started = time.perf_counter()
    presented = credential(request.headers)
    api = "messages" if operation == "llm.messages" else "count_tokens"
    context: dict[str, Any] = {"api": api, "stream": False}
    payload: Any = None
    model = ""
    if presented:  # without a key there is nothing to read: the authn stage refuses the call
        try:
            context["anthropic"] = _anthropic_headers(request.scope)
            raw = await read_body(request, hub.settings.hub.max_body_bytes)
            payload = body = _parse(raw, api)
            model = body["model"]
            prompt = len(raw) // 4
            context["raw"] = (body, raw)
            context["stream"] = body.get("stream") is True and api == "messages"
            context["prompt_estimate"] = prompt
            context["token_estimate"] = prompt + (output_estimate(body) if api == "messages" else 0)
            if request.scope.get("query_string") == b"beta=true":  # the scope's bytes: building `request.url` costs
                context["query"] = "?beta=true"
        except HubError as exc:
            payload = Malformed(exc)
    call = Call(
        door="anthropic", operation=operation, target=model, payload=payload, credential=presented, context=context
    )
    try:
        outcome = await (hub.pipeline or _not_running)(call)
    except HubError as exc:
        return error_response(exc)
    return outcome_response(outcome, started)


def _parse(raw: bytes, api: str) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model: must be a non-empty string")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: must be a non-empty array")
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest("messages: each message must be an object with a 'role'")
    if api == "messages":
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise BadRequest("max_tokens: must be a positive integer")
        if "stream" in body and not isinstance(body["stream"], bool):
            raise BadRequest("stream: must be a boolean")
    return body

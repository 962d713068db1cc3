"""The JSON-RPC answer to one lean request, read out of the HTTP response that carried it.

A Streamable HTTP upstream answers a POST with a JSON body or an event stream that holds the response among other
messages (notifications, requests, priming events). Whatever the upstream sent, the caller gets the `result`
dict or an `UpstreamError`: the upstream's own JSON-RPC error when it is one, `UpstreamUnavailable` for anything
malformed (never an AttributeError or ValueError from a shape nobody expected).
"""

from __future__ import annotations

from typing import Any

import orjson

from connectors.errors import UpstreamError, UpstreamProtocolError, UpstreamUnavailable
from http1.sse import message_data

__all__ = ["find_response", "result_of", "transport_error"]


def find_response(payload: bytes, content_type: str, request_id: int) -> dict[str, Any] | None:
    """The JSON-RPC response with `request_id` in a JSON body (a message or a batch) or an SSE stream, or None."""
    if not payload:
        return None
    if content_type.startswith("text/event-stream"):
        # Read as an SSE client reads it (multi-line `data:`, CRLF, comments, other fields); only `message` events
        # count, as in the `mcp` SDK's client. The body is whole (the HTTP framing ended it), so a last event
        # without its blank line counts too.
        for data in message_data(payload):
            try:
                message = orjson.loads(data) if data else None
            except orjson.JSONDecodeError:
                continue
            if _answers(message, request_id):
                return message
        return None
    try:
        message = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if isinstance(message, list):
        return next((m for m in message if _answers(m, request_id)), None)
    return message if _answers(message, request_id) else None


def transport_error(payload: bytes) -> dict[str, Any] | None:
    """A JSON-RPC error object that answers no request in particular (`id` null or the server's own), as servers
    send with a 4xx status when they refuse a request before reading it (bad session, bad headers)."""
    try:
        message = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return message if isinstance(message, dict) and "error" in message else None


def result_of(server: str, message: dict[str, Any]) -> dict[str, Any]:
    """The `result` of a response, or the error it carries.

    Raises:
        UpstreamProtocolError: the upstream answered with a well-formed JSON-RPC error.
        UpstreamUnavailable: the error or the result is not of the shape JSON-RPC prescribes.
    """
    error = message.get("error")
    if error is not None:
        raise _error_of(server, error)
    result = message.get("result")
    if not isinstance(result, dict):
        raise UpstreamUnavailable(server, f"upstream '{server}' sent a malformed result")
    return result


def _error_of(server: str, error: object) -> UpstreamError:
    """The exception for a JSON-RPC error object: the upstream's own (an integer `code`, a string `message`, any
    `data`), or `UpstreamUnavailable` naming what is wrong with it (its content is not echoed)."""
    if not isinstance(error, dict):
        problem = f"{_kind(error)}, not an object"
    else:
        code: object = error.get("code")
        text: object = error.get("message")
        if type(code) is int and isinstance(text, str):
            return UpstreamProtocolError(server, code, text, error.get("data"))
        problem = f"its code is {_kind(code)}" if type(code) is not int else f"its message is {_kind(text)}"
    return UpstreamUnavailable(server, f"upstream '{server}' sent a malformed error ({problem})")


def _answers(message: object, request_id: int) -> bool:
    return isinstance(message, dict) and message.get("id") == request_id


_KINDS: dict[type, str] = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object"}


def _kind(value: object) -> str:
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return "a boolean"
    return _KINDS.get(type(value), type(value).__name__)

"""Errors in Anthropic's format: the error `type` for a status (and the hub's error code), the envelope, and the
`error` event a stream ends with when it fails after its first byte.

Anthropic's types by HTTP status: 400 invalid_request_error, 401 authentication_error, 402 billing_error,
403 permission_error, 404 not_found_error, 413 request_too_large, 429 rate_limit_error, 500 api_error,
504 timeout_error, 529 overloaded_error; any other 4xx is invalid_request_error and any other status
api_error. A code that already is one of Anthropic's specific types (an Anthropic upstream's `overloaded_error`
passed on with the hub's 502) wins over the status; the hub's own codes map to their nearest type.
"""

from __future__ import annotations

from typing import Any

import orjson

from llm.schema import JSON
from llm.sse import encode_sse

__all__ = ["ERROR_STATUS", "error_body", "error_event", "error_type"]

ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
"""Each Anthropic error type and the HTTP status Anthropic sends it with."""

_BY_STATUS = {status: kind for kind, status in ERROR_STATUS.items()}
_HUB_CODES = {
    "insufficient_quota": "billing_error",
    "upstream_error": "api_error",
    "internal_error": "api_error",
    "method_not_allowed": "invalid_request_error",
    "upstream_authorization_required": "permission_error",
}


def error_type(status: int, code: str | None = None) -> str:
    """Anthropic's error `type` for an HTTP `status` and, when known, the hub's or the upstream's error `code`."""
    if code in ERROR_STATUS and code != "invalid_request_error":
        return code
    if code in _HUB_CODES:
        return _HUB_CODES[code]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def error_body(status: int, message: str, *, code: str | None = None, request_id: str | None = None) -> JSON:
    """The error envelope: `{"type": "error", "error": {"type", "message"}, "request_id"}` (the id when known)."""
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type(status, code), "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def error_event(status: int, message: str, *, code: str | None = None, request_id: str | None = None) -> bytes:
    """The SSE `error` event that ends a stream which failed after its first byte (e.g. `overloaded_error`)."""
    body = error_body(status, message, code=code, request_id=request_id)
    return encode_sse(orjson.dumps(body), event="error")

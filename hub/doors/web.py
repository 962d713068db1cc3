"""Small HTTP helpers shared by the REST doors: credentials, JSON responses, the error envelope."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from hub.errors import HubError, Unauthenticated, openai_envelope
from hub.keys import bearer_token

WWW_AUTHENTICATE = 'Bearer realm="agenthub"'


def credential(headers: Any) -> str | None:
    """The virtual key from `Authorization: Bearer`, `x-api-key` or `api-key`."""
    return bearer_token(headers.get("authorization")) or headers.get("x-api-key") or headers.get("api-key")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def error_response(error: HubError) -> Response:
    """The OpenAI error envelope with the error's status (and `WWW-Authenticate` on 401)."""
    headers = dict(error.headers)
    if isinstance(error, Unauthenticated):
        headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    return json_response(openai_envelope(error), error.wire.status, headers)

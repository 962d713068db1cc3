"""Small HTTP helpers shared by the REST doors: credentials, JSON responses, the error envelope."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from hub.errors import BadRequest, HubError, PayloadTooLarge, Unauthenticated, openai_envelope
from hub.governance.keys import bearer_token

WWW_AUTHENTICATE = 'Bearer realm="agenthub"'


_KEY_HEADERS = frozenset({b"authorization", b"x-api-key", b"api-key"})


def credential(headers: Any) -> str | None:
    """The virtual key from `Authorization: Bearer`, `x-api-key` or `api-key` (in that order of preference).

    Accepts Starlette `Headers` (read in one pass over the raw list) or any mapping with lower-case names.
    """
    raw = getattr(headers, "raw", None)
    if raw is None:
        return bearer_token(headers.get("authorization")) or headers.get("x-api-key") or headers.get("api-key")
    found: dict[bytes, str] = {}
    for name, value in raw:
        lowered = name.lower()
        if lowered in _KEY_HEADERS and lowered not in found:
            found[lowered] = value.decode("latin-1")
    return bearer_token(found.get(b"authorization")) or found.get(b"x-api-key") or found.get(b"api-key")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused past `limit` bytes (by its declared length, or as it arrives)."""
    declared = None
    for name, value in request.headers.raw:  # ASGI names are lower case (Starlette's lookup relies on it too)
        if name == b"content-length":
            declared = value
            break
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise BadRequest("the client went away")
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def error_response(error: HubError) -> Response:
    """The OpenAI error envelope with the error's status (and `WWW-Authenticate` on 401)."""
    headers = dict(error.headers)
    if isinstance(error, Unauthenticated):
        headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    return json_response(openai_envelope(error), error.wire.status, headers)

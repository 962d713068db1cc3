"""Requests under `/v1` that no route serves, answered in the OpenAI error envelope like every other `/v1` error.

An unknown path is a 404 (`no route: GET /v1/x`); a known path asked with a method it does not serve is a 405
whose `Allow` header lists the methods it does. Such a request is still a request, so it is a call like any
other: an `llm.models` call (the `/v1` operation that counts nothing) whose payload the door could not read
(`Malformed`), target `METHOD /path`. The pipeline refuses a missing or bad key first (401) and a key over its rate
limit (429), records the request with its key, and the executor answers the 404 or 405.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.requests import Request
from starlette.responses import Response

from hub.call import Call, Malformed
from hub.doors.host import DoorHost
from hub.doors.web import credential, error_response
from hub.errors import HubError, Internal, MethodNotAllowed, NotFound

__all__ = ["unrouted_route"]

_SHOWN = 200
"""The most characters of a path an error message repeats."""


async def unrouted_route(hub: DoorHost, request: Request, allowed: Collection[str]) -> Response:
    """Refuse `request` through the pipeline: 405 when its path is served with the `allowed` methods, else 404."""
    method = request.method
    path = request.url.path
    shown = path[:_SHOWN]
    refusal: HubError
    if allowed:
        allow = ", ".join(sorted(allowed))
        refusal = MethodNotAllowed(f"{method} is not allowed on {shown}: use {allow}", allow)
    else:
        refusal = NotFound(f"no route: {method} {shown}")
    call = Call(
        door="openai",
        operation="llm.models",
        target=f"{method} {path}",
        payload=Malformed(refusal),
        credential=credential(request.headers),
    )
    pipeline = hub.pipeline
    try:
        if pipeline is None:
            raise Internal("the hub is not running")
        await pipeline(call)
    except HubError as exc:
        refusal = exc
    return error_response(refusal)

"""Rendering shared by the fake servers: faults, JSON bodies and event streams."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from llm.schema import JSON
from llm.testing.script import FakeRequest, Fault, Raw, Reply, Script

__all__ = ["answer", "json_body", "new_id", "stream"]


class InjectedReset(ConnectionResetError):
    """Raised inside a fake's body to drop the connection (uvicorn closes it)."""


def new_id(prefix: str) -> str:
    """A fresh wire id."""
    return f"{prefix}{uuid.uuid4().hex[:20]}"


async def json_body(request: Request) -> JSON:
    """The request's JSON object ({} when absent or invalid)."""
    raw = await request.body()
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def fake_request(request: Request, wire: str, body: JSON, model: str, stream: bool, operation: str) -> FakeRequest:
    """Describe an incoming request for the script."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    return FakeRequest(wire, request.url.path, headers, body, model, stream, operation)


def _raw(raw: Raw) -> Response:
    return Response(raw.body, status_code=raw.status, media_type=raw.content_type, headers=raw.headers)


async def _stalled(prefix: Sequence[bytes], fault: Fault) -> AsyncIterator[bytes]:
    for item in prefix[: fault.after]:
        yield item
    if fault.kind == "stall":
        await anyio.sleep_forever()
    if fault.kind == "malformed":
        yield b"data: {not json\n\n"
        return
    raise InjectedReset("fault injected")


def stream(events: Sequence[bytes], fault: Fault | None, media_type: str) -> Response:
    """Stream pre-rendered events, applying a stall/reset/malformed fault after `fault.after` events."""
    if fault is None:

        async def body() -> AsyncIterator[bytes]:
            for item in events:
                yield item

        return StreamingResponse(body(), media_type=media_type)
    return StreamingResponse(_stalled(events, fault), media_type=media_type)


def answer(
    script: Script,
    request: FakeRequest,
    *,
    error: Callable[[Fault], Response],
    ok: Callable[[Reply, Fault | None], Response],
) -> Response:
    """Ask the script; render a fault (`error` for statuses) or a reply (`ok`, with a body fault if any)."""
    outcome = script(request)
    if isinstance(outcome, Raw):
        return _raw(outcome)
    if isinstance(outcome, Reply):
        return ok(outcome, None)
    if outcome.kind == "status":
        return error(outcome)
    if outcome.kind == "huge":
        return Response(orjson.dumps({"padding": "x" * outcome.size}), media_type="application/json")
    if not request.stream:
        if outcome.kind == "malformed":
            return Response(b"{not json", media_type="application/json")
        return StreamingResponse(
            _stalled([b'{"partial": '], Fault(outcome.kind, after=1)), media_type="application/json"
        )
    return ok(outcome.reply or Reply("This stream is cut short by a fault."), outcome)


def status_headers(fault: Fault) -> dict[str, str]:
    """Retry-After when the fault has one."""
    return {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}

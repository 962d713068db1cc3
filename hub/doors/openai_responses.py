"""The OpenAI door's operations on a stored response: `GET` and `DELETE /v1/responses/{id}`,
`POST /v1/responses/{id}/cancel` and `GET /v1/responses/{id}/input_items`.

Each request is one call (`llm.response.get`, `.delete`, `.cancel`, `.items`) whose target is the response id; the
input-item list's query (`limit` 1 to 100, `order` `asc` or `desc`, `after`) is its payload. A query the door
cannot read, and a request to stream a stored response (`stream=true`, not offered), are refused by the pipeline
after the key was checked (`Malformed`). The answer is the provider's JSON (or the hub's copy, see
`hub.executors.responses`) in the OpenAI shapes; errors use the OpenAI error envelope.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.call import Call, Malformed, Operation, Outcome
from hub.doors.host import DoorHost
from hub.doors.web import credential, error_response, json_response
from hub.errors import BadRequest, HubError, Internal

__all__ = ["stored_response_routes"]

_ORDERS = frozenset({"asc", "desc"})


def stored_response_routes(hub: Callable[[], DoorHost]) -> list[Route]:
    """The routes of the operations on a stored response; `hub` returns the running hub."""

    async def one(request: Request) -> Response:
        operation: Operation = "llm.response.delete" if request.method == "DELETE" else "llm.response.get"
        return await _serve(hub(), request, operation)

    async def cancel(request: Request) -> Response:
        return await _serve(hub(), request, "llm.response.cancel")

    async def items(request: Request) -> Response:
        return await _serve(hub(), request, "llm.response.items")

    return [
        Route("/v1/responses/{response_id}", one, methods=["GET", "DELETE"]),
        Route("/v1/responses/{response_id}/cancel", cancel, methods=["POST"]),
        Route("/v1/responses/{response_id}/input_items", items, methods=["GET"]),
    ]


async def _serve(hub: DoorHost, request: Request, operation: Operation) -> Response:
    presented = credential(request.headers)
    try:
        payload: Any = _query(request, operation)
    except HubError as exc:
        payload = Malformed(exc)
    call = Call(
        door="openai",
        operation=operation,
        target=request.path_params["response_id"],
        payload=payload,
        credential=presented,
    )
    try:
        outcome = await (hub.pipeline or _not_running)(call)
    except HubError as exc:
        return error_response(exc)
    return json_response(outcome.value, headers=outcome.headers)


def _query(request: Request, operation: Operation) -> dict[str, Any] | None:
    """The operation's arguments from the query string (only the input-item list takes any)."""
    query = request.query_params
    if operation == "llm.response.get" and query.get("stream", "false").lower() == "true":
        raise BadRequest("streaming a stored response is not supported: read it without 'stream'")
    if operation != "llm.response.items":
        return None
    found: dict[str, Any] = {}
    limit = query.get("limit")
    if limit is not None:
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            raise BadRequest("'limit' must be an integer from 1 to 100")
        found["limit"] = int(limit)
    order = query.get("order")
    if order is not None:
        if order not in _ORDERS:
            raise BadRequest("'order' must be 'asc' or 'desc'")
        found["order"] = order
    after = query.get("after")
    if after is not None:
        found["after"] = after
    return found


async def _not_running(call: Call) -> Outcome:
    raise Internal("the hub is not running")

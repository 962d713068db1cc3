"""The stored-response side of the fake OpenAI server: what one deployment keeps of the responses it created.

Like the real service, a response is stored unless the request says `store: false`, and only the API key (the
project) that created it can see it: a `previous_response_id` it does not hold is refused with 400
`previous_response_not_found`, and reading, deleting, cancelling or listing the input items of a response it
does not hold answers 404. A `background` response is stored as `queued` and can be cancelled; other responses
cannot. Input items get ids as the service gives them (`msg_...`) and list newest first unless `order=asc`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llm.schema import JSON
from llm.testing._common import new_id

__all__ = ["ResponseArchive", "input_items"]


def _error(status: int, message: str, param: str | None = None, code: str | None = None) -> Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def _unavailable() -> Response:
    body = {"error": {"message": "The service is unavailable.", "type": "server_error", "param": None, "code": None}}
    return JSONResponse(body, status_code=503)


def api_key(request: Request) -> str:
    """The key a request carries (Bearer or Azure's `api-key`)."""
    auth = request.headers.get("authorization", "")
    return auth.removeprefix("Bearer ") if auth else request.headers.get("api-key", "")


def input_items(value: Any) -> list[JSON]:
    """A request's `input` as the items the service stores: a string becomes one user message, message content
    given as a string becomes an `input_text` part, and every item gets an id."""
    raw: list[Any] = [{"role": "user", "content": value}] if isinstance(value, str) else list(value or [])
    items: list[JSON] = []
    for entry in raw:
        if not isinstance(entry, dict):
            continue
        item: JSON = dict(entry)
        if item.get("type", "message") == "message" and "role" in item:
            item["type"] = "message"
            content = item.get("content")
            if isinstance(content, str):
                item["content"] = [{"type": "input_text", "text": content}]
            item.setdefault("status", "completed")
        item.setdefault("id", new_id("msg_"))
        items.append(item)
    return items


@dataclass
class _Stored:
    key: str
    response: JSON
    items: list[JSON]
    background: bool


@dataclass
class ResponseArchive:
    """The responses one fake deployment stored, and the continuations it refused (for tests to inspect)."""

    stored: dict[str, _Stored] = field(default_factory=dict[str, _Stored])
    refused: list[JSON] = field(default_factory=list[JSON])
    """Request bodies refused because their `previous_response_id` is not held here."""
    down: bool = False
    """Answer every Responses API request with 503, as a deployment that is down (its stored responses stay)."""

    def refusal(self, request: Request, body: JSON) -> Response | None:
        """The 503 while `down`, or the 400 for a `previous_response_id` this deployment does not hold for the
        caller's key; else None."""
        if self.down:
            return _unavailable()
        previous = body.get("previous_response_id")
        if previous is None:
            return None
        held = self.stored.get(str(previous))
        if held is not None and held.key == api_key(request):
            return None
        self.refused.append(body)
        message = f"Previous response with id '{previous}' not found."
        return _error(400, message, "previous_response_id", "previous_response_not_found")

    @staticmethod
    def echo(body: JSON) -> JSON:
        """The request's own fields a response object repeats."""
        return {
            "created_at": int(time.time()),
            "previous_response_id": body.get("previous_response_id"),
            "store": body.get("store") is not False,
            "background": bool(body.get("background")),
            "instructions": body.get("instructions"),
        }

    @staticmethod
    def started(body: JSON, response: JSON) -> JSON:
        """The response as first returned: a `background` one is `queued`, with no output yet."""
        if not body.get("background"):
            return response
        return {**response, "status": "queued", "output": [], "usage": None}

    def keep(self, request: Request, body: JSON, response: JSON) -> None:
        """Store a response unless the request said `store: false`."""
        if body.get("store") is False:
            return
        items = input_items(body.get("input"))
        self.stored[str(response["id"])] = _Stored(api_key(request), response, items, bool(body.get("background")))

    def routes(self, prefix: str) -> list[Route]:
        """The stored-response endpoints under `prefix` (`/v1` or Azure's `/openai`)."""
        return [
            Route(f"{prefix}/responses/{{response_id}}", self._one, methods=["GET", "DELETE"]),
            Route(f"{prefix}/responses/{{response_id}}/cancel", self._cancel, methods=["POST"]),
            Route(f"{prefix}/responses/{{response_id}}/input_items", self._items, methods=["GET"]),
        ]

    def _held(self, request: Request) -> _Stored | None:
        held = self.stored.get(request.path_params["response_id"])
        return held if held is not None and held.key == api_key(request) else None

    def _missing(self, request: Request) -> Response:
        if self.down:
            return _unavailable()
        return _error(404, f"Response with id '{request.path_params['response_id']}' not found.")

    async def _one(self, request: Request) -> Response:
        held = None if self.down else self._held(request)
        if held is None:
            return self._missing(request)
        if request.method == "DELETE":
            del self.stored[held.response["id"]]
            return JSONResponse({"id": held.response["id"], "object": "response", "deleted": True})
        return JSONResponse(held.response)

    async def _cancel(self, request: Request) -> Response:
        held = None if self.down else self._held(request)
        if held is None:
            return self._missing(request)
        if not held.background:
            return _error(400, "Only responses created with background=true can be cancelled.")
        held.response = {**held.response, "status": "cancelled"}
        return JSONResponse(held.response)

    async def _items(self, request: Request) -> Response:
        held = None if self.down else self._held(request)
        if held is None:
            return self._missing(request)
        query = request.query_params
        items = held.items if query.get("order") == "asc" else list(reversed(held.items))
        after = query.get("after")
        if after is not None:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        limit = int(query.get("limit", "20"))
        page = items[:limit]
        return JSONResponse(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(items) > limit,
            }
        )

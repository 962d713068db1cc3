"""`POST /v1/mcp/tool/execute`: run one OpenAI-format tool call through the pipeline.

Request: `{"id": "call_1", "type": "function", "function": {"name": "server__tool", "arguments": "{...}"}}`
(`arguments` is a JSON string as OpenAI sends it; an object is accepted too). Response:
`{"role": "tool", "tool_call_id": "call_1", "content": "..."}`, ready to append to a chat conversation.
Errors use the OpenAI error envelope with the hub's status table.
"""

from __future__ import annotations

from typing import Any

import anyio
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from hub.call import Call, Malformed
from hub.doors.host import DoorHost
from hub.doors.web import credential, error_response, json_response
from hub.errors import BadRequest, HubError, Internal, PayloadTooLarge, Unauthenticated
from hub.executors.mcp import tool_message_content

MAX_BATCH = 64
"""Most tool calls one batch request may carry."""


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON, refusing bodies over `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadRequest("the client went away") from None
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise BadRequest("the request body is not valid JSON") from None


def parse_tool_call(body: Any) -> tuple[str, str, dict[str, Any]]:
    """(id, name, arguments) of an OpenAI tool call object."""
    if not isinstance(body, dict):
        raise BadRequest("expected a tool call object: {id, type: 'function', function: {name, arguments}}")
    call_id = body.get("id")
    function = body.get("function")
    if body.get("type", "function") != "function":
        raise BadRequest("only tool calls of type 'function' can be executed")
    if not isinstance(call_id, str) or not call_id:
        raise BadRequest("'id' must be a non-empty string")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise BadRequest("'function.name' must be a string")
    name: str = function["name"]
    raw = function.get("arguments", "{}")
    if isinstance(raw, str):
        try:
            arguments = orjson.loads(raw or "{}")
        except orjson.JSONDecodeError:
            raise BadRequest("'function.arguments' is not valid JSON") from None
    else:
        arguments = raw
    if not isinstance(arguments, dict):
        raise BadRequest("'function.arguments' must encode a JSON object")
    return call_id, name, arguments


async def execute_tool_route(hub: DoorHost, request: Request) -> Response:
    """One tool call (`{id, type, function}`) -> one tool message; or a batch (`{"tool_calls": [...]}`) ->
    `{"messages": [...]}`, run in parallel, each failure reported as its own tool message.

    Every tool call is one `mcp.tool` call through the pipeline, so a request the door cannot read is refused
    there too (after the key was checked and the request counted), and a bad key is refused for the whole batch.
    """
    pipeline = hub.pipeline
    if pipeline is None:
        return error_response(Internal("the hub is not running"))
    presented = credential(request.headers)
    parsed: list[tuple[str, str, Any]] = [("", "", None)]
    if presented:  # without a key there is nothing to read: the authn stage refuses the call
        try:
            parsed = _tool_calls(await read_json(request, hub.settings.hub.max_body_bytes))
        except HubError as exc:
            parsed = [("", "", Malformed(exc))]

    def tool_call(name: str, arguments: Any) -> Call:
        return Call(door="rest", operation="mcp.tool", target=name, payload=arguments, credential=presented)

    if len(parsed) == 1 and not isinstance(parsed, _Batch):
        call_id, name, arguments = parsed[0]
        try:
            outcome = await pipeline(tool_call(name, arguments))
        except HubError as exc:
            return error_response(exc)
        headers = dict(outcome.headers)
        if outcome.tool_error:
            headers["x-agenthub-tool-error"] = "true"
        content = tool_message_content(outcome.value)
        return json_response({"role": "tool", "tool_call_id": call_id, "content": content}, headers=headers)
    messages: list[dict[str, Any] | None] = [None] * len(parsed)
    refused: list[Unauthenticated] = []

    async def one(index: int, call_id: str, name: str, arguments: Any) -> None:
        try:
            outcome = await pipeline(tool_call(name, arguments))
            content = tool_message_content(outcome.value)
        except Unauthenticated as exc:
            refused.append(exc)
            content = f"error: {exc.message}"
        except HubError as exc:
            content = f"error: {exc.message}"
        messages[index] = {"role": "tool", "tool_call_id": call_id, "content": content}

    async with anyio.create_task_group() as tg:
        for index, (call_id, name, arguments) in enumerate(parsed):
            tg.start_soon(one, index, call_id, name, arguments)
    if refused:
        return error_response(refused[0])
    return json_response({"messages": messages})


class _Batch(list[tuple[str, str, Any]]):
    """The tool calls of a `{"tool_calls": [...]}` request (a batch of one is still answered as a batch)."""


def _tool_calls(body: Any) -> list[tuple[str, str, Any]]:
    """`(id, name, arguments)` of each tool call in a request body.

    Raises:
        BadRequest: the body is neither a tool call nor a batch of 1 to `MAX_BATCH` of them.
    """
    if isinstance(body, dict) and "tool_calls" in body:
        calls = body["tool_calls"]
        if not isinstance(calls, list) or not calls or len(calls) > MAX_BATCH:
            raise BadRequest(f"'tool_calls' must be a list of 1 to {MAX_BATCH} tool calls")
        batch = _Batch()
        for item in calls:
            try:
                batch.append(parse_tool_call(item))
            except BadRequest as exc:
                item_id = item.get("id") if isinstance(item, dict) else None
                batch.append((item_id if isinstance(item_id, str) else "", "", Malformed(exc)))
        return batch
    return [parse_tool_call(body)]

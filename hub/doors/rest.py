"""`POST /v1/mcp/tool/execute`: run one OpenAI-format tool call through the pipeline.

Request: `{"id": "call_1", "type": "function", "function": {"name": "server__tool", "arguments": "{...}"}}`
(`arguments` is a JSON string as OpenAI sends it; an object is accepted too). Response:
`{"role": "tool", "tool_call_id": "call_1", "content": "..."}`, ready to append to a chat conversation.
Errors use the OpenAI error envelope with the hub's status table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from hub.call import Call, Principal
from hub.doors.web import credential, error_response, json_response
from hub.errors import BadRequest, HubError, PayloadTooLarge, Unauthenticated

MAX_BATCH = 64
"""Most tool calls one batch request may carry."""

if TYPE_CHECKING:
    from hub.app import Hub


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


def tool_message_content(result: dict[str, Any]) -> str:
    """The text a model should read for a tool result (its wire dict): its text blocks, or else its structured
    content as JSON, or else its content blocks as JSON."""
    content: list[Any] = result.get("content") or []
    texts = [str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"]
    if texts:
        return "\n".join(texts)
    if result.get("structuredContent") is not None:
        return orjson.dumps(result["structuredContent"]).decode()
    return orjson.dumps(content).decode()


async def execute_tool_route(hub: Hub, request: Request) -> Response:
    """One tool call (`{id, type, function}`) -> one tool message; or a batch (`{"tool_calls": [...]}`) ->
    `{"messages": [...]}`, run in parallel, each failure reported as its own tool message."""
    try:
        key = hub.keyring.verify(credential(request.headers) or "")
        if key is None:
            raise Unauthenticated("a valid virtual key is required (Authorization: Bearer ahk-...)")
        body = await read_json(request, hub.settings.hub.max_body_bytes)
        if hub.pipeline is None:
            raise HubError("the hub is not running")
        pipeline = hub.pipeline
        principal = Principal(key)
        if isinstance(body, dict) and "tool_calls" in body:
            calls = body["tool_calls"]
            if not isinstance(calls, list) or not calls or len(calls) > MAX_BATCH:
                raise BadRequest(f"'tool_calls' must be a list of 1 to {MAX_BATCH} tool calls")
            parsed = [parse_tool_call(c) for c in calls]
        else:
            parsed = [parse_tool_call(body)]
            call_id, name, arguments = parsed[0]
            outcome = await pipeline(
                Call(door="rest", operation="mcp.tool", target=name, payload=arguments, principal=principal)
            )
            result: dict[str, Any] = outcome.value
            headers = dict(outcome.headers)
            if outcome.tool_error:
                headers["x-agenthub-tool-error"] = "true"
            return json_response(
                {"role": "tool", "tool_call_id": call_id, "content": tool_message_content(result)}, headers=headers
            )
    except HubError as exc:
        return error_response(exc)
    messages: list[dict[str, Any] | None] = [None] * len(parsed)

    async def one(index: int, call_id: str, name: str, arguments: dict[str, Any]) -> None:
        try:
            outcome = await pipeline(
                Call(door="rest", operation="mcp.tool", target=name, payload=arguments, principal=principal)
            )
            content = tool_message_content(outcome.value)
        except HubError as exc:
            content = f"error: {exc.message}"
        messages[index] = {"role": "tool", "tool_call_id": call_id, "content": content}

    async with anyio.create_task_group() as tg:
        for index, (call_id, name, arguments) in enumerate(parsed):
            tg.start_soon(one, index, call_id, name, arguments)
    return json_response({"messages": messages})

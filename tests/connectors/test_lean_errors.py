"""Whatever an upstream answers a lean tool call with, the caller gets an `UpstreamError`, never a crash.

A JSON-RPC error object that follows the spec (an integer `code`, a string `message`, any `data`) is the upstream's
answer and goes back as `UpstreamProtocolError`, as on the SDK path. Anything else in its place is a broken upstream:
`UpstreamUnavailable`, counted in `health.failures` like every other upstream failure.
"""

from __future__ import annotations

from typing import Any

import pytest

from connectors.errors import UpstreamProtocolError, UpstreamUnavailable
from tests.connectors.harness import running_upstream
from tests.connectors.scripted import Request, http_response, rpc_error, serve_upstream

pytestmark = pytest.mark.anyio

MALFORMED_ERRORS: list[Any] = [
    pytest.param("boom", id="a string"),
    pytest.param(["boom", -32000], id="a list"),
    pytest.param(42, id="a number"),
    pytest.param({"code": "E42", "message": "boom"}, id="a non-numeric code"),
    pytest.param({"code": "-32000", "message": "boom"}, id="a numeric string as code"),
    pytest.param({"message": "boom"}, id="no code"),
    pytest.param({"code": None, "message": "boom"}, id="a null code"),
    pytest.param({"code": True, "message": "boom"}, id="a boolean code"),
    pytest.param({"code": 1.5, "message": "boom"}, id="a fractional code"),
    pytest.param({"code": -32000}, id="no message"),
    pytest.param({"code": -32000, "message": {"text": "boom"}}, id="a message that is an object"),
    pytest.param({"code": -32000, "message": None, "data": [1]}, id="a null message"),
]


@pytest.mark.parametrize("error", MALFORMED_ERRORS)
async def test_an_error_object_of_the_wrong_shape_is_an_upstream_failure(error: Any) -> None:
    async def answer(request: Request) -> bytes:
        return rpc_error(request, error)

    async with serve_upstream() as server, running_upstream(server.url) as upstream:
        server.on["tools/call"] = answer
        with pytest.raises(UpstreamUnavailable, match="malformed error") as caught:
            await upstream.call_tool_raw("echo", {})
        assert caught.value.server == "scripted"
        assert upstream.health.failures == 1
        assert upstream.health.calls == 1


@pytest.mark.parametrize(
    "data", [None, "text", 7, [1, "two"], {"nested": {"deep": True}}], ids=["none", "str", "int", "list", "dict"]
)
async def test_a_well_formed_error_object_is_the_upstreams_answer_with_its_code_message_and_data(data: Any) -> None:
    error: dict[str, Any] = {"code": -32042, "message": "no such ticket"}
    if data is not None:
        error["data"] = data

    async def answer(request: Request) -> bytes:
        return rpc_error(request, error)

    async with serve_upstream() as server, running_upstream(server.url) as upstream:
        server.on["tools/call"] = answer
        with pytest.raises(UpstreamProtocolError) as caught:
            await upstream.call_tool_raw("echo", {})
        assert (caught.value.code, caught.value.message, caught.value.data) == (-32042, "no such ticket", data)
        assert upstream.health.failures == 0, "an error answer is not an outage (as on the SDK path)"


MALFORMED_BODIES: list[Any] = [
    pytest.param(b"not json", "application/json", id="not JSON"),
    pytest.param(b"[1, 2]", "application/json", id="a batch without the response"),
    pytest.param(b'{"jsonrpc": "2.0", "id": 99, "result": {}}', "application/json", id="another id"),
    pytest.param(b'{"jsonrpc": "2.0", "id": 1}', "application/json", id="neither result nor error"),
    pytest.param(b'{"jsonrpc": "2.0", "id": 1, "result": [1]}', "application/json", id="a result that is a list"),
    pytest.param(b"data: {]\n\n", "text/event-stream", id="an event that is not JSON"),
    pytest.param(b": only a comment\n\n", "text/event-stream", id="an event stream without the response"),
    pytest.param(b"\xff\xfe", "application/json", id="not UTF-8"),
]


@pytest.mark.parametrize(("body", "content_type"), MALFORMED_BODIES)
async def test_a_body_without_a_readable_response_is_an_upstream_failure(body: bytes, content_type: str) -> None:
    async def answer(request: Request) -> bytes:
        own_id = request.message["id"]
        return http_response(200, body.replace(b'"id": 1', b'"id": %d' % own_id), content_type=content_type)

    async with serve_upstream() as server, running_upstream(server.url) as upstream:
        server.on["tools/call"] = answer
        with pytest.raises(UpstreamUnavailable):
            await upstream.call_tool_raw("echo", {})
        assert upstream.health.failures == 1

"""Mapping provider error responses to safe, typed errors."""

from __future__ import annotations

import email.utils
import time

import orjson
import pytest

from llm.errors import NoDeploymentAvailable, ProviderHTTPError, safe_code
from llm.providers.base import error_code, parse_retry_after
from llm.testing import FakeScript, Raw, openai_app, serve

from .conftest import chat, open_router, provider

pytestmark = pytest.mark.anyio


def test_retry_after_reads_milliseconds_seconds_and_http_dates() -> None:
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "soon", "retry-after": "2"}) == 2.0
    when = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= (parse_retry_after({"retry-after": when}) or 0) <= 61
    assert parse_retry_after({"retry-after": "not a date"}) is None
    assert parse_retry_after({}) is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            b'{"error": {"message": "x", "type": "invalid_request_error", "code": "context_length_exceeded"}}',
            "context_length_exceeded",
        ),
        (b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}', "overloaded_error"),
        (b'{"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}', "RESOURCE_EXHAUSTED"),
        (b'{"__type": "ValidationException", "message": "bad"}', "ValidationException"),
        (b'{"error": {"message": "Incorrect API key provided: sk-abc123"}}', None),
        (b"<html>502 Bad Gateway</html>", None),
        (b"[1, 2]", None),
    ],
)
def test_error_codes_are_kept_only_when_they_look_like_codes(body: bytes, code: str | None) -> None:
    assert error_code(body) == code


def test_free_text_is_never_a_safe_code() -> None:
    assert safe_code("rate_limit_exceeded") == "rate_limit_exceeded"
    assert safe_code("Incorrect API key provided: sk-1") is None
    assert safe_code(42) is None


async def test_an_error_object_inside_a_200_stream_fails_the_attempt() -> None:
    body = b"data: " + orjson.dumps({"error": {"code": 503, "type": "service_unavailable"}}) + b"\n\n"
    script = FakeScript(Raw(body, content_type="text/event-stream"))
    async with serve(openai_app(script)) as url:
        config = {
            "providers": {"p": provider("openai", f"{url}/v1", ("k", "env:T_KEY", 1))},
            "routing": {"max_retries": 0},
        }
        async with open_router(config) as router:
            with pytest.raises(NoDeploymentAvailable) as info:
                await router.stream_chat(chat("p/gpt-4o"))
    error = info.value.last_error
    assert isinstance(error, ProviderHTTPError) and error.status == 503 and error.code == "service_unavailable"

"""What every provider module implements, and the HTTP plumbing they share.

A provider speaks one wire API. It takes OpenAI Chat Completions requests (dicts) and returns OpenAI
responses and chunks (dicts). It never decides where to send a request (the router does), and it never
retries. Credentials are resolved before `open()` and looked up by key name per request (one dict lookup).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from llm.config import ProviderConfig
from llm.errors import (
    ProviderHTTPError,
    ProviderResponseError,
    UnsupportedOperation,
    UnsupportedParameter,
    safe_code,
)
from llm.rawjson import RawJSON
from llm.schema import JSON
from llm.transport import HttpStream, Transport

__all__ = ["Credential", "Provider", "StoredAction", "parse_retry_after", "refuse"]

StoredAction = Literal["get", "delete", "cancel", "items"]
"""What to do with a stored Responses API response (`Provider.stored_response`)."""

ROUTER_FIELDS = frozenset({"fallbacks"})
"""Request fields that belong to the router, never sent upstream."""


@dataclass(frozen=True, slots=True)
class Credential:
    """A resolved key. `repr` hides the secret values."""

    name: str
    secret: str = ""
    access_key_id: str = ""
    session_token: str = ""

    def __repr__(self) -> str:
        return f"Credential(name={self.name!r})"


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date); None when absent."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def error_code(body: bytes) -> str | None:
    """A safe machine code from an error body (OpenAI, Anthropic, Gemini and AWS shapes), else None."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, dict):
        for field in ("code", "type", "status"):
            code = safe_code(err.get(field))
            if code:
                return code
    for field in ("__type", "type", "code"):
        code = safe_code(data.get(field))
        if code:
            return code
    return None


def refuse(request: JSON, checks: Mapping[str, Callable[[Any], bool]], *, provider: str, model: str) -> None:
    """Raise UnsupportedParameter for the first field present whose check says it cannot be honoured."""
    for field, unsupported in checks.items():
        value = request.get(field)
        if value is not None and unsupported(value):
            raise UnsupportedParameter(field, provider=provider, model=model)


def loads(body: bytes | str) -> JSON:
    """Parse a JSON object body (bytes, or text already decoded); anything else is a ProviderResponseError."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ProviderResponseError("malformed JSON in response") from None
    if not isinstance(data, dict):
        raise ProviderResponseError("response is not a JSON object")
    return data


class Provider:
    """Base of the provider modules. Subclasses override the operations their wire API has."""

    def __init__(self, name: str, config: ProviderConfig, transport: Transport) -> None:
        self.name = name
        self.config = config
        self.transport = transport
        self.base_url = config.resolved_base_url()
        self.credentials: dict[str, Credential] = {}

    async def open(self, credentials: Mapping[str, Credential]) -> None:
        """Take the resolved credentials and open the transport; precompute per-key state in `prepare`."""
        self.credentials = dict(credentials)
        await self.transport.open()
        self.prepare()

    def prepare(self) -> None:
        """Hook: build per-key headers or signers once (called by `open`)."""

    async def aclose(self) -> None:
        """Close the transport."""
        await self.transport.aclose()

    # Operations: requests are OpenAI-shaped dicts; `model` is the provider's model id; `key` a key name.

    async def chat(self, request: JSON, model: str, key: str) -> JSON:
        """One chat completion, returned as an OpenAI `chat.completion` dict with `usage` when known."""
        raise UnsupportedOperation("chat", provider=self.name, model=model)

    def stream_chat(self, request: JSON, model: str, key: str) -> AsyncIterator[JSON]:
        """A streamed chat completion as OpenAI chunk dicts; usage arrives on a chunk's `usage` field."""
        raise UnsupportedOperation("streaming chat", provider=self.name, model=model)

    async def embeddings(self, request: JSON, model: str, key: str) -> Mapping[str, Any]:
        """OpenAI-shaped embeddings response (a dict, or the provider's bytes as a `RawJSON`)."""
        raise UnsupportedOperation("embeddings", provider=self.name, model=model)

    async def responses(self, request: JSON, model: str, key: str) -> JSON:
        """OpenAI `/v1/responses` pass-through (non-streaming)."""
        raise UnsupportedOperation("responses", provider=self.name, model=model)

    def stream_responses(self, request: JSON, model: str, key: str) -> AsyncIterator[JSON]:
        """OpenAI `/v1/responses` pass-through (streaming events as dicts with `type`)."""
        raise UnsupportedOperation("responses", provider=self.name, model=model)

    async def stored_response(
        self, action: StoredAction, response_id: str, model: str, key: str, query: Mapping[str, str] | None = None
    ) -> JSON:
        """A stored response, by id, at the provider that holds it: read it (`get`), delete it, cancel it (a
        background response), or list its input items (`items`, with `query`: `limit`, `order`, `after`)."""
        raise UnsupportedOperation("stored responses", provider=self.name, model=model)

    # Shared plumbing.

    def http_error(self, status: int, headers: Mapping[str, str], body: bytes, model: str) -> ProviderHTTPError:
        """Map an error response to a ProviderHTTPError carrying only status, safe code and Retry-After."""
        code = safe_code(headers.get("x-amzn-errortype", "").split(":")[0]) or error_code(body)
        return ProviderHTTPError(
            status, code=code, retry_after=parse_retry_after(headers), provider=self.name, model=model
        )

    async def post_json(self, url: str, headers: Mapping[str, str], payload: JSON, model: str) -> JSON:
        """POST `payload` as JSON; return the parsed JSON object or raise a mapped error."""
        resp = await self.transport.request(
            "POST", url, headers=headers, body=orjson.dumps(payload), timeout=self.config.timeout
        )
        if resp.status >= 400:
            raise self.http_error(resp.status, resp.headers, resp.body, model)
        return loads(resp.body)

    async def post_raw(self, url: str, headers: Mapping[str, str], payload: JSON, model: str, tail: str) -> RawJSON:
        """POST `payload` as JSON; the response object as received, its member `tail` read from its end (a
        response passed through unchanged, see `llm.rawjson`), or raise a mapped error."""
        resp = await self.transport.request(
            "POST", url, headers=headers, body=orjson.dumps(payload), timeout=self.config.timeout
        )
        if resp.status >= 400:
            raise self.http_error(resp.status, resp.headers, resp.body, model)
        return RawJSON.of(resp.body, tail)

    @asynccontextmanager
    async def open_stream(
        self, url: str, headers: Mapping[str, str], body: bytes, model: str
    ) -> AsyncGenerator[HttpStream]:
        """POST and yield the live response once its status is a success; errors are mapped and raised."""
        async with self.transport.stream(
            "POST", url, headers=headers, body=body, idle_timeout=self.config.stream_idle_timeout
        ) as stream:
            if stream.status >= 400:
                raise self.http_error(stream.status, stream.headers, await stream.read(), model)
            yield stream

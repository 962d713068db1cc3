"""OpenAI Chat Completions, Embeddings and Responses; also any OpenAI-compatible base URL.

The request is passed through with `model` replaced. Streams always ask for usage
(`stream_options.include_usage`) so the router can account every stream; an error object inside a 200 stream
(as some proxies and Azure send) is raised as a ProviderHTTPError.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from llm.errors import ProviderHTTPError, safe_code
from llm.providers.base import ROUTER_FIELDS, Provider, StoredAction, loads
from llm.schema import JSON
from llm.sse import SSEDecoder

__all__ = ["OpenAIProvider"]

_STORED: dict[StoredAction, tuple[str, str]] = {
    "get": ("GET", ""),
    "delete": ("DELETE", ""),
    "cancel": ("POST", "/cancel"),
    "items": ("GET", "/input_items"),
}
"""Method and path suffix of each action on a stored response."""


def _stream_error(data: JSON, provider: str, model: str) -> ProviderHTTPError:
    err = data.get("error")
    err = err if isinstance(err, dict) else {}
    code = err.get("code")
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    return ProviderHTTPError(status, code=safe_code(err.get("type")) or safe_code(code), provider=provider, model=model)


class OpenAIProvider(Provider):
    """Kinds `openai` and `openai-compatible`."""

    headers_by_key: dict[str, dict[str, str]]

    def prepare(self) -> None:
        """Build each key's request headers once."""
        self.headers_by_key = {}
        for name, cred in self.credentials.items():
            headers = {"content-type": "application/json", **self.config.headers}
            if cred.secret:
                headers.update(self.auth_header(cred.secret))
            self.headers_by_key[name] = headers
        if not self.credentials:
            self.headers_by_key["default"] = {"content-type": "application/json", **self.config.headers}

    def auth_header(self, secret: str) -> dict[str, str]:
        """The header that carries a key."""
        return {"authorization": f"Bearer {secret}"}

    def url(self, operation: str, model: str) -> str:
        """Endpoint URL for `chat/completions`, `embeddings` or `responses`."""
        return f"{self.base_url}/{operation}"

    def body(self, request: JSON, model: str) -> JSON:
        """The upstream body: the request minus router fields, with the provider's model id."""
        body = dict(request)  # copied in C; the router's few fields are taken out after
        for field in ROUTER_FIELDS:
            body.pop(field, None)
        body["model"] = model
        return body

    async def chat(self, request: JSON, model: str, key: str) -> JSON:
        """One chat completion (passed through)."""
        body = self.body(request, model)
        body.pop("stream", None)
        body.pop("stream_options", None)
        return await self.post_json(self.url("chat/completions", model), self.headers_by_key[key], body, model)

    def stream_chat(self, request: JSON, model: str, key: str) -> AsyncIterator[JSON]:
        """Chunks as the provider sends them, with usage requested."""
        body = self.body(request, model)
        body["stream"] = True
        options = body.get("stream_options")
        body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        return self._sse(self.url("chat/completions", model), key, body, model)

    async def embeddings(self, request: JSON, model: str, key: str) -> Mapping[str, Any]:
        """Embeddings, passed through as received: the vectors are never parsed, only `usage` is read."""
        return await self.post_raw(
            self.url("embeddings", model), self.headers_by_key[key], self.body(request, model), model, "usage"
        )

    async def responses(self, request: JSON, model: str, key: str) -> JSON:
        """`/v1/responses` pass-through."""
        body = self.body(request, model)
        body.pop("stream", None)
        return await self.post_json(self.url("responses", model), self.headers_by_key[key], body, model)

    async def stream_responses(self, request: JSON, model: str, key: str) -> AsyncIterator[JSON]:
        """`/v1/responses` streaming pass-through: each event's JSON (with its `type`)."""
        body = self.body(request, model)
        body["stream"] = True
        async for data in self._sse(self.url("responses", model), key, body, model):
            if data.get("type") == "error":
                raise _stream_error({"error": data}, self.name, model)
            yield data

    async def stored_response(
        self, action: StoredAction, response_id: str, model: str, key: str, query: Mapping[str, str] | None = None
    ) -> JSON:
        """`GET`/`DELETE /responses/{id}`, `POST /responses/{id}/cancel`, `GET /responses/{id}/input_items`."""
        method, suffix = _STORED[action]
        url = self.url(f"responses/{quote(response_id, safe='')}{suffix}", model)
        if query:
            url += ("&" if "?" in url else "?") + urlencode(query)
        resp = await self.transport.request(
            method, url, headers=self.headers_by_key[key], body=None, timeout=self.config.timeout
        )
        if resp.status >= 400:
            raise self.http_error(resp.status, resp.headers, resp.body, model)
        return loads(resp.body)

    async def _sse(self, url: str, key: str, body: JSON, model: str) -> AsyncIterator[JSON]:
        decoder = SSEDecoder()
        async with self.open_stream(url, self.headers_by_key[key], orjson.dumps(body), model) as stream:
            async for raw in stream.chunks():
                for event in decoder.feed(raw):
                    if event.data == "[DONE]":
                        return
                    if not event.data:
                        continue
                    data = loads(event.data)
                    if "error" in data and data.get("object") != "response":
                        raise _stream_error(data, self.name, model)
                    yield data

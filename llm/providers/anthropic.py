"""Anthropic Messages API, translated to and from OpenAI Chat Completions (streaming included).

Request: system/developer messages -> `system`; text and image parts; assistant `tool_calls` -> `tool_use`
blocks; `tool` messages -> `tool_result` blocks in a user turn; tools, tool_choice, stop, max tokens.
Refused: n>1, logprobs, seed, non-text response_format.
Stream: message_start (input usage) -> content_block_start/delta/stop -> message_delta (stop reason, output
usage) -> message_stop, translated to OpenAI chunks ending with a usage chunk; an `error` event is raised.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson

from llm.errors import ProviderHTTPError, ProviderResponseError, UnsupportedParameter, safe_code
from llm.messages.usage import MessagesUsage
from llm.providers.base import Provider, loads, refuse
from llm.providers.content import (
    arguments_of,
    data_url,
    dumps_str,
    max_tokens,
    merge_roles,
    stop_list,
    system_text,
)
from llm.rawjson import RawJSON
from llm.schema import JSON, Usage, chat_chunk, chat_response, text_of
from llm.sse import SSEDecoder
from llm.transport import HttpStream

__all__ = ["AnthropicProvider"]

DEFAULT_MAX_TOKENS = 4096
_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_REFUSED = {
    "n": lambda v: v != 1,
    "logprobs": bool,
    "top_logprobs": lambda v: True,
    "seed": lambda v: True,
    "response_format": lambda v: not (isinstance(v, dict) and v.get("type") == "text"),
    "frequency_penalty": bool,
    "presence_penalty": bool,
}
# HTTP statuses that Anthropic's in-stream error types correspond to.
_STREAM_ERROR_STATUS = {
    "overloaded_error": 529,
    "rate_limit_error": 429,
    "api_error": 500,
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
}


def _part(part: Any, provider: str, model: str) -> JSON:
    if not isinstance(part, dict):
        raise UnsupportedParameter("messages.content", provider=provider, model=model)
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": part.get("text", "")}
    if kind == "image_url":
        spec = part.get("image_url")
        url = spec.get("url", "") if isinstance(spec, dict) else str(spec or "")
        inline = data_url(url)
        if inline:
            return {"type": "image", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise UnsupportedParameter(f"content part {kind!r}", provider=provider, model=model)


def _content(content: Any, provider: str, model: str) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [_part(p, provider, model) for p in content]


def _message(message: JSON, provider: str, model: str) -> JSON:
    role = message.get("role")
    if role == "tool":
        block = {
            "type": "tool_result",
            "tool_use_id": message.get("tool_call_id", ""),
            "content": text_of(message.get("content")),
        }
        return {"role": "user", "content": [block]}
    if role == "assistant":
        blocks = _content(message.get("content"), provider, model)
        for call in message.get("tool_calls") or []:
            fn = call.get("function", {})
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.get("id", ""),
                    "name": fn.get("name", ""),
                    "input": arguments_of(fn.get("arguments")),
                }
            )
        return {"role": "assistant", "content": blocks}
    if role == "user":
        return {"role": "user", "content": _content(message.get("content"), provider, model)}
    raise UnsupportedParameter(f"message role {role!r}", provider=provider, model=model)


def _tool_choice(choice: Any, parallel: Any) -> JSON | None:
    out: JSON | None = None
    if choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, dict):
        out = {"type": "tool", "name": choice.get("function", {}).get("name", "")}
    if parallel is False:
        out = {**(out or {"type": "auto"}), "disable_parallel_tool_use": True}
    return out


def to_anthropic(request: JSON, model: str, provider: str) -> JSON:
    """Translate an OpenAI chat request into an Anthropic Messages request."""
    refuse(request, _REFUSED, provider=provider, model=model)
    system, rest = system_text(list(request.get("messages") or []))
    body: JSON = {
        "model": model,
        "max_tokens": max_tokens(request) or DEFAULT_MAX_TOKENS,
        "messages": merge_roles([_message(m, provider, model) for m in rest], "content"),
    }
    if system:
        body["system"] = system
    for src, dst in (("temperature", "temperature"), ("top_p", "top_p")):
        if request.get(src) is not None:
            body[dst] = request[src]
    stops = stop_list(request.get("stop"), provider, model)
    if stops:
        body["stop_sequences"] = stops
    tools = request.get("tools")
    if tools:
        body["tools"] = [
            {
                "name": t.get("function", {}).get("name", ""),
                "description": t.get("function", {}).get("description", ""),
                "input_schema": t.get("function", {}).get("parameters") or {"type": "object", "properties": {}},
            }
            for t in tools
        ]
    choice = _tool_choice(request.get("tool_choice"), request.get("parallel_tool_calls"))
    if choice is not None:
        body["tool_choice"] = choice
    user = request.get("user")
    if isinstance(user, str):
        body["metadata"] = {"user_id": user}
    return body


def _usage(raw: Any) -> Usage:
    """Anthropic's usage in OpenAI's terms: its `input_tokens` exclude the cache, so reads and writes are added."""
    return MessagesUsage.read(raw).to_usage()


def from_anthropic(data: JSON) -> JSON:
    """Translate an Anthropic Messages response into an OpenAI chat completion."""
    if data.get("type") != "message" or not isinstance(data.get("content"), list):
        raise ProviderResponseError("unexpected Anthropic response shape")
    texts: list[str] = []
    calls: list[JSON] = []
    for block in data["content"]:
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            calls.append(
                {
                    "id": block.get("id", ""),
                    "type": "function",
                    "function": {"name": block.get("name", ""), "arguments": dumps_str(block.get("input", {}))},
                }
            )
    message: JSON = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return chat_response(
        model=data.get("model", ""),
        message=message,
        finish_reason=_STOP_REASONS.get(data.get("stop_reason") or "end_turn", "stop"),
        usage=_usage(data.get("usage")),
        response_id=data.get("id"),
    )


class AnthropicProvider(Provider):
    """Kind `anthropic`: `POST {base}/v1/messages` with `x-api-key` and `anthropic-version`.

    Besides the Chat Completions operations, the Messages pass-through (`messages`, `open_messages_stream`,
    `count_tokens`): the request body goes as the bytes it is given, the response comes back as received. The
    caller's `anthropic-version` and `anthropic-beta` replace the configured ones (the key stays the provider's).
    """

    headers_by_key: dict[str, dict[str, str]]

    def prepare(self) -> None:
        """Build each key's headers once."""
        self.url = f"{self.base_url}/v1/messages"
        self.headers_by_key = {
            name: {
                "content-type": "application/json",
                "anthropic-version": self.config.anthropic_version,
                **self.config.headers,
                "x-api-key": cred.secret,
            }
            for name, cred in self.credentials.items()
        }

    def passthrough_headers(self, key: str, headers: Mapping[str, str]) -> Mapping[str, str]:
        """The key's headers with the caller's Anthropic headers (`anthropic-version`, `anthropic-beta`) on top."""
        base = self.headers_by_key[key]
        return {**base, **headers, "x-api-key": base["x-api-key"]} if headers else base

    async def messages(self, body: bytes, model: str, key: str, headers: Mapping[str, str], query: str = "") -> RawJSON:
        """`POST /v1/messages` with `body` as it is; the response as received (its `usage` read from its end)."""
        resp = await self.transport.request(
            "POST", self.url + query, headers=self.passthrough_headers(key, headers), body=body,
            timeout=self.config.timeout,
        )  # fmt: skip
        if resp.status >= 400:
            raise self.http_error(resp.status, resp.headers, resp.body, model)
        return RawJSON.of(resp.body, "usage")

    def open_messages_stream(
        self, body: bytes, model: str, key: str, headers: Mapping[str, str], query: str = ""
    ) -> AbstractAsyncContextManager[HttpStream]:
        """`POST /v1/messages` with a streaming `body` as it is; the live response, whose `chunks()` are the event
        stream's bytes as they arrive (the relay reads them itself: no generator of ours between)."""
        return self.open_stream(self.url + query, self.passthrough_headers(key, headers), body, model)

    async def count_tokens(self, body: bytes, model: str, key: str, headers: Mapping[str, str]) -> JSON:
        """`POST /v1/messages/count_tokens` with `body` as it is; Anthropic's answer (`input_tokens`)."""
        resp = await self.transport.request(
            "POST", self.url + "/count_tokens", headers=self.passthrough_headers(key, headers), body=body,
            timeout=self.config.timeout,
        )  # fmt: skip
        if resp.status >= 400:
            raise self.http_error(resp.status, resp.headers, resp.body, model)
        return loads(resp.body)

    async def chat(self, request: JSON, model: str, key: str) -> JSON:
        """One chat completion."""
        body = to_anthropic(request, model, self.name)
        return from_anthropic(await self.post_json(self.url, self.headers_by_key[key], body, model))

    async def stream_chat(self, request: JSON, model: str, key: str) -> AsyncIterator[JSON]:
        """Anthropic's event sequence as OpenAI chunks, ending with a usage chunk."""
        body = to_anthropic(request, model, self.name)
        body["stream"] = True
        state = _StreamState(model)
        decoder = SSEDecoder()
        async with self.open_stream(self.url, self.headers_by_key[key], orjson.dumps(body), model) as stream:
            async for raw in stream.chunks():
                for event in decoder.feed(raw):
                    if not event.data:
                        continue
                    data = loads(event.data.encode())
                    if data.get("type") == "error":
                        err = data.get("error") or {}
                        kind = err.get("type") if isinstance(err, dict) else None
                        raise ProviderHTTPError(
                            _STREAM_ERROR_STATUS.get(str(kind), 500),
                            code=safe_code(kind),
                            provider=self.name,
                            model=model,
                        )
                    for chunk in state.on_event(data):
                        yield chunk
                    if state.done:
                        return


class _StreamState:
    """Turns Anthropic stream events into OpenAI chunks."""

    def __init__(self, model: str) -> None:
        self.id = ""
        self.model = model
        self.created = int(time.time())
        self.usage = MessagesUsage()
        """The usage so far: `message_start`'s, with the fields each `message_delta` names replaced."""
        self.tool_index: dict[int, int] = {}
        self.done = False

    def chunk(self, **kwargs: Any) -> JSON:
        return chat_chunk(self.id, self.model, self.created, **kwargs)

    def on_event(self, data: JSON) -> list[JSON]:
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            self.id = message.get("id", "")
            self.model = message.get("model") or self.model
            self.usage = MessagesUsage.read(message.get("usage"))
            return [self.chunk(delta={"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = len(self.tool_index)
                self.tool_index[int(data.get("index", 0))] = index
                call = {
                    "index": index,
                    "id": block.get("id", ""),
                    "type": "function",
                    "function": {"name": block.get("name", ""), "arguments": ""},
                }
                return [self.chunk(delta={"tool_calls": [call]})]
            if block.get("type") == "text" and block.get("text"):
                return [self.chunk(delta={"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self.chunk(delta={"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                index = self.tool_index.get(int(data.get("index", 0)), 0)
                call = {"index": index, "function": {"arguments": delta.get("partial_json", "")}}
                return [self.chunk(delta={"tool_calls": [call]})]
            return []
        if kind == "message_delta":
            self.usage = self.usage.updated(data.get("usage"))
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason:
                return [self.chunk(delta={}, finish_reason=_STOP_REASONS.get(reason, "stop"))]
            return []
        if kind == "message_stop":
            self.done = True
            return [self.chunk(usage=self.usage.to_usage())]
        return []

"""The common language: OpenAI Chat Completions shapes, kept as plain JSON dicts on the hot path.

Requests come in as the body a client sent to `/v1/chat/completions` (a dict); responses go out as an
OpenAI `chat.completion` dict, streams as `chat.completion.chunk` dicts. Translating providers build them with
the helpers below. `validate_chat_request` is an optional, cheap structural check for doors.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llm.errors import LLMError

__all__ = [
    "JSON",
    "FinishReason",
    "InvalidRequest",
    "Usage",
    "chat_chunk",
    "chat_response",
    "new_id",
    "text_of",
    "validate_chat_request",
]

JSON = dict[str, Any]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


class InvalidRequest(LLMError):
    """The request body is not a valid Chat Completions request."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one result, in OpenAI's terms: the parts are included in the totals, never added to them.

    `prompt_tokens` counts every input token: uncached, read from a cache (`cached_tokens`) and written to one
    (`cache_write_5m_tokens`, `cache_write_1h_tokens`). `completion_tokens` counts every output token, reasoning
    (`reasoning_tokens`) included. Providers that report the parts outside their input or output count (Anthropic's
    `input_tokens` exclude cache reads and writes; Gemini's `candidatesTokenCount` excludes thoughts) add them in
    when they build a `Usage`, so a price applies to each token exactly once (`llm.pricing.Price.cost`).
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    """Input tokens read from a cache (part of `prompt_tokens`)."""
    cache_write_5m_tokens: int = 0
    """Input tokens written to a cache that lives 5 minutes, the default TTL (part of `prompt_tokens`)."""
    cache_write_1h_tokens: int = 0
    """Input tokens written to a cache that lives 1 hour (part of `prompt_tokens`)."""
    reasoning_tokens: int = 0
    """Output tokens spent reasoning (part of `completion_tokens`)."""

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def cache_write_tokens(self) -> int:
        """Input tokens written to a cache, both TTLs."""
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def uncached_tokens(self) -> int:
        """Input tokens neither read from a cache nor written to one."""
        return max(0, self.prompt_tokens - self.cached_tokens - self.cache_write_tokens)

    def to_openai(self) -> JSON:
        """The OpenAI `usage` object.

        Cache writes, which OpenAI's own usage has no field for, go into `prompt_tokens_details` as
        `cache_write_tokens` (both TTLs) and `cache_write_1h_tokens` (the 1-hour part), so that `from_openai` reads
        back exactly this usage."""
        out: JSON = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        written = self.cache_write_tokens
        if self.cached_tokens or written:
            details: JSON = {"cached_tokens": self.cached_tokens}
            if written:
                details["cache_write_tokens"] = written
            if self.cache_write_1h_tokens:
                details["cache_write_1h_tokens"] = self.cache_write_1h_tokens
            out["prompt_tokens_details"] = details
        if self.reasoning_tokens:
            out["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return out

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        """Read an OpenAI-style usage object (chat or Responses naming); None when absent or malformed.

        Chat: `prompt_tokens_details.cached_tokens`, `completion_tokens_details.reasoning_tokens`; Responses:
        `input_tokens_details`, `output_tokens_details`. Cache writes: `prompt_tokens_details.cache_write_tokens`
        (or `cache_creation_tokens`, as some OpenAI-compatible servers name it), of which `cache_write_1h_tokens`
        lived 1 hour and the rest 5 minutes. Parts larger than their total are cut to it."""
        if not isinstance(usage, dict):
            return None
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
        if type(prompt) is not int or type(completion) is not int or prompt < 0 or completion < 0:  # bools too
            return None
        cached = written = one_hour = reasoning = 0
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
        if isinstance(details, dict):
            cached = _count(details.get("cached_tokens"))
            written = _count(details.get("cache_write_tokens") or details.get("cache_creation_tokens"))
            if cached or written:
                cached = min(cached, prompt)
                written = min(written, prompt - cached)
                one_hour = min(_count(details.get("cache_write_1h_tokens")), written)
        output = usage.get("completion_tokens_details") or usage.get("output_tokens_details")
        if isinstance(output, dict):
            reasoning = min(_count(output.get("reasoning_tokens")), completion)
        if cached or written or reasoning:
            return cls(prompt, completion, cached, written - one_hour, one_hour, reasoning)
        return cls(prompt, completion)


def _count(value: Any) -> int:
    """A token count from the wire; 0 for anything that is not a non-negative integer (a bool included)."""
    return value if type(value) is int and value > 0 else 0


def new_id(prefix: str = "chatcmpl") -> str:
    """A fresh OpenAI-style object id."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def chat_response(
    *,
    model: str,
    message: JSON,
    finish_reason: str | None,
    usage: Usage | None,
    response_id: str | None = None,
    choices: list[JSON] | None = None,
) -> JSON:
    """Build an OpenAI `chat.completion` object (one choice unless `choices` is given)."""
    out: JSON = {
        "id": response_id or new_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices
        if choices is not None
        else [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
    }
    if usage is not None:
        out["usage"] = usage.to_openai()
    return out


def chat_chunk(
    response_id: str,
    model: str,
    created: int,
    *,
    delta: JSON | None = None,
    finish_reason: str | None = None,
    usage: Usage | None = None,
    index: int = 0,
) -> JSON:
    """Build an OpenAI `chat.completion.chunk`; with `delta=None` and usage set, the usage-only final chunk."""
    choices: list[JSON] = []
    if delta is not None or finish_reason is not None:
        choices.append({"index": index, "delta": delta or {}, "finish_reason": finish_reason, "logprobs": None})
    out: JSON = {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        out["usage"] = usage.to_openai()
    return out


def text_of(content: Any) -> str:
    """The text of an OpenAI message `content` (a string, or a list of parts whose text parts are joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]


class _ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[_Message] = Field(min_length=1)
    stream: bool = False
    n: int = Field(default=1, ge=1, le=128)


def validate_chat_request(body: Any) -> JSON:
    """Check the structure of a Chat Completions request and return it unchanged.

    Raises:
        InvalidRequest: a field is missing or has the wrong type (message names the field, not its value).
    """
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    try:
        _ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"invalid request: {where}: {first['msg']}") from None
    return body

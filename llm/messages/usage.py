"""Anthropic's token usage, read from a response body or from the usage objects of a stream's events.

Anthropic's `input_tokens` exclude the cache: the prompt is `input_tokens + cache_read_input_tokens +
cache_creation_input_tokens`, and each part has its own price (a read about a tenth of the input price, a write
1.25 times it for the 5-minute cache and twice for the 1-hour one). The write is split by TTL in
`cache_creation` (`ephemeral_5m_input_tokens`, `ephemeral_1h_input_tokens`); a response without the split
wrote to the default 5-minute cache.

In a stream, `message_start` carries the usage so far and `message_delta` the cumulative totals of the fields
it names (at least `output_tokens`): a later value replaces an earlier one, it is never added.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llm.schema import Usage

__all__ = ["MessagesUsage", "read_usage"]


def _count(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None  # `type`: JSON gives ints and bools, no subclass


@dataclass(frozen=True, slots=True)
class MessagesUsage:
    """The usage of one Messages response, in Anthropic's terms."""

    input_tokens: int = 0
    """Uncached input tokens."""
    output_tokens: int = 0
    """Output tokens, thinking included."""
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    """Cache writes of both TTLs."""
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0
    thinking_tokens: int = 0
    """The part of `output_tokens` spent thinking, when the response says (`output_tokens_details`)."""
    web_search_requests: int = 0
    """Server-side web searches (billed per search)."""

    @property
    def prompt_tokens(self) -> int:
        """Every input token: uncached, read from the cache and written to it."""
        return self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens

    def to_usage(self) -> Usage:
        """The OpenAI-shaped `Usage` the router and pricing speak: prompt tokens include the cache reads and writes
        (split by TTL), completion tokens the thinking."""
        written = self.cache_creation_input_tokens
        one_hour = min(self.ephemeral_1h_input_tokens, written)
        return Usage(
            self.prompt_tokens,
            self.output_tokens,
            self.cache_read_input_tokens,
            written - one_hour,
            one_hour,
            min(self.thinking_tokens, self.output_tokens),
        )

    def updated(self, usage: Any) -> MessagesUsage:
        """This usage with the fields that `usage` (a wire `usage` object) names replaced by its values.

        Runs for a stream's `message_start` and `message_delta`: each field is read inline (no intermediate
        mapping), the same reading as `_count`."""
        if not isinstance(usage, Mapping):
            return self
        get = usage.get
        value = get("input_tokens")
        uncached = value if type(value) is int and value >= 0 else self.input_tokens
        value = get("output_tokens")
        output = value if type(value) is int and value >= 0 else self.output_tokens
        value = get("cache_read_input_tokens")
        read = value if type(value) is int and value >= 0 else self.cache_read_input_tokens
        value = get("cache_creation_input_tokens")
        written = value if type(value) is int and value >= 0 else self.cache_creation_input_tokens
        split = get("cache_creation")
        if isinstance(split, Mapping):
            one_hour = _count(split.get("ephemeral_1h_input_tokens")) or 0
            five = _count(split.get("ephemeral_5m_input_tokens")) or 0
        else:
            one_hour = min(self.ephemeral_1h_input_tokens, written)
            five = written - one_hour
        thinking = self.thinking_tokens
        details = get("output_tokens_details")
        if isinstance(details, Mapping):
            value = _count(details.get("thinking_tokens"))
            thinking = thinking if value is None else value
        searches = self.web_search_requests
        server = get("server_tool_use")
        if isinstance(server, Mapping):
            value = _count(server.get("web_search_requests"))
            searches = searches if value is None else value
        return MessagesUsage(uncached, output, read, written, five, one_hour, thinking, searches)

    @classmethod
    def read(cls, usage: Any) -> MessagesUsage:
        """A wire `usage` object (zeros for what it lacks)."""
        return cls().updated(usage)


def read_usage(usage: Any) -> Usage:
    """A response body's wire `usage` object as the router's `Usage`: `MessagesUsage.read(usage).to_usage()` in one
    step, for the pass-through's hot path (no intermediate objects)."""
    if not isinstance(usage, Mapping):
        return Usage()
    get = usage.get  # each count read inline, as `_count` reads it
    value = get("input_tokens")
    uncached = value if type(value) is int and value >= 0 else 0
    value = get("output_tokens")
    output = value if type(value) is int and value >= 0 else 0
    value = get("cache_read_input_tokens")
    read = value if type(value) is int and value >= 0 else 0
    value = get("cache_creation_input_tokens")
    written = value if type(value) is int and value >= 0 else 0
    split = get("cache_creation")
    one_hour = min(_count(split.get("ephemeral_1h_input_tokens")) or 0, written) if isinstance(split, Mapping) else 0
    details = get("output_tokens_details")
    thinking = (_count(details.get("thinking_tokens")) or 0) if isinstance(details, Mapping) else 0
    return Usage(uncached + read + written, output, read, written - one_hour, one_hour, min(thinking, output))

"""A stream's usage updated by a `message_start` or `message_delta` usage object: every field the object names
with a count replaces the earlier one, every other field keeps it, field by field (a reference reading written
out one field at a time against `MessagesUsage.updated`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from hypothesis import given, strategies as st

from llm.messages.usage import MessagesUsage
from tests.llm.messages.test_usage import _USAGE

_PREVIOUS = st.builds(MessagesUsage, *[st.integers(min_value=0, max_value=900)] * 8)


def _counted(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _reference(previous: MessagesUsage, usage: Any) -> MessagesUsage:
    if not isinstance(usage, Mapping):
        return previous
    usage = cast("Mapping[str, Any]", usage)

    def field(name: str) -> int:
        value = _counted(usage.get(name))
        return getattr(previous, name) if value is None else value

    written = field("cache_creation_input_tokens")
    split: Any = usage.get("cache_creation")
    if isinstance(split, Mapping):
        split = cast("Mapping[str, Any]", split)
        one_hour = _counted(split.get("ephemeral_1h_input_tokens")) or 0
        five = _counted(split.get("ephemeral_5m_input_tokens")) or 0
    else:
        one_hour = min(previous.ephemeral_1h_input_tokens, written)
        five = written - one_hour
    details: Any = usage.get("output_tokens_details")
    thinking = (
        _counted(cast("Mapping[str, Any]", details).get("thinking_tokens")) if isinstance(details, Mapping) else None
    )
    server: Any = usage.get("server_tool_use")
    searches = (
        _counted(cast("Mapping[str, Any]", server).get("web_search_requests")) if isinstance(server, Mapping) else None
    )
    return MessagesUsage(
        input_tokens=field("input_tokens"),
        output_tokens=field("output_tokens"),
        cache_read_input_tokens=field("cache_read_input_tokens"),
        cache_creation_input_tokens=written,
        ephemeral_5m_input_tokens=five,
        ephemeral_1h_input_tokens=one_hour,
        thinking_tokens=previous.thinking_tokens if thinking is None else thinking,
        web_search_requests=previous.web_search_requests if searches is None else searches,
    )


@given(_PREVIOUS, st.one_of(_USAGE, st.none(), st.integers(), st.lists(st.integers(), max_size=2)))
def test_an_update_replaces_exactly_the_fields_it_names(previous: MessagesUsage, usage: Any) -> None:
    assert previous.updated(usage) == _reference(previous, usage)


def test_a_delta_naming_only_the_output_keeps_the_rest() -> None:
    start = MessagesUsage().updated(
        {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 4}
    )
    assert start.updated({"output_tokens": 25}) == MessagesUsage(12, 25, 30, 4, 4, 0)

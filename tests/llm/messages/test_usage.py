"""Reading a Messages response's usage in one step gives exactly what the two-step reading gives."""

from __future__ import annotations

from typing import Any

from hypothesis import given, strategies as st

from llm.messages.usage import MessagesUsage, read_usage
from llm.schema import Usage

_COUNT = st.one_of(st.none(), st.integers(min_value=-3, max_value=5000), st.booleans(), st.text(max_size=2))
_SPLIT = st.fixed_dictionaries({}, optional={"ephemeral_5m_input_tokens": _COUNT, "ephemeral_1h_input_tokens": _COUNT})
_USAGE = st.fixed_dictionaries(
    {},
    optional={
        "input_tokens": _COUNT,
        "output_tokens": _COUNT,
        "cache_read_input_tokens": _COUNT,
        "cache_creation_input_tokens": _COUNT,
        "cache_creation": st.one_of(_SPLIT, st.none(), st.integers()),
        "output_tokens_details": st.one_of(st.fixed_dictionaries({}, optional={"thinking_tokens": _COUNT}), st.none()),
        "server_tool_use": st.fixed_dictionaries({}, optional={"web_search_requests": _COUNT}),
    },
)


@given(st.one_of(_USAGE, st.none(), st.integers(), st.lists(st.integers(), max_size=2)))
def test_the_one_step_reading_equals_the_two_step_one(usage: Any) -> None:
    assert read_usage(usage) == MessagesUsage.read(usage).to_usage()


def test_a_1h_cache_write_is_priced_apart() -> None:
    usage = {
        "input_tokens": 10,
        "output_tokens": 6,
        "cache_read_input_tokens": 40,
        "cache_creation_input_tokens": 8,
        "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 5},
        "output_tokens_details": {"thinking_tokens": 2},
    }
    assert read_usage(usage) == Usage(58, 6, 40, 3, 5, 2)

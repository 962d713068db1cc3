"""Exposed names: `server__tool`, at most 64 characters of [A-Za-z0-9_-], stable and collision-free."""

from __future__ import annotations

import re

from hypothesis import given, strategies as st

from connectors.naming import MAX_NAME, exposed_name

VALID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def test_short_names_are_prefixed_unchanged() -> None:
    assert exposed_name("time", "get_current_time") == "time__get_current_time"
    assert exposed_name("everything", "get-sum") == "everything__get-sum"


def test_long_names_are_shortened_with_a_stable_hash_suffix() -> None:
    long = "a" * 80
    name = exposed_name("server", long)
    assert len(name) == MAX_NAME and VALID.match(name)
    assert name == exposed_name("server", long)
    assert name != exposed_name("server", "a" * 81)


def test_characters_outside_the_alphabet_are_replaced_and_disambiguated() -> None:
    dotted = exposed_name("s", "files.read")
    underscored = exposed_name("s", "files_read")
    assert VALID.match(dotted) and dotted != underscored


@given(st.text(min_size=1, max_size=200))
def test_every_exposed_name_is_valid_and_distinct_inputs_stay_distinct(tool: str) -> None:
    name = exposed_name("srv", tool)
    assert VALID.match(name)
    if tool != "x":
        assert name != exposed_name("srv", "x")

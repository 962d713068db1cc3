"""The strings a guardrail reads in a JSON payload: every string, by JSON pointer, whatever numbers surround it,
and a value that is not JSON refused wherever it hides (a list of numbers is skipped in one pass)."""

from __future__ import annotations

import pytest

from hub.guardrails.payload import UnreadablePayload, iter_strings


def test_a_vector_of_numbers_has_no_strings() -> None:
    embedding = {"object": "embedding", "index": 0, "embedding": [0.5, -1, 3, True, None] * 300}
    assert dict(iter_strings(embedding)) == {"/object": "embedding"}


def test_strings_among_numbers_are_found_at_their_positions() -> None:
    payload = {"input": [1.0, "one", 2, ["two", 3.5], {"a/b": "three"}]}
    assert dict(iter_strings(payload)) == {"/input/1": "one", "/input/3/0": "two", "/input/4/a~1b": "three"}


@pytest.mark.parametrize("stray", [object(), b"bytes", {1.0, 2.0}])
def test_a_value_that_is_not_json_among_numbers_is_refused(stray: object) -> None:
    with pytest.raises(UnreadablePayload, match="/input/2"):
        dict(iter_strings({"input": [0.5, 1.5, stray, 2.5]}))

"""`RawJSON`: a response object kept as bytes reads exactly as the parsed object would, member by member, whatever
the bytes hold; only the member at its end is read without parsing the rest."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from llm import ProviderResponseError, RawJSON

TRICKY = [
    "usage",
    '"usage"',
    '"usage": {"prompt_tokens": 99}',
    ', "usage": 1}',
    '{"usage": 2}',
    "\\",
    '\\"usage\\"',
    "}",
    "{",
]
"""Strings that spell the member or its punctuation: inside a string they are text, never a member."""

keys = st.sampled_from(["usage", "data", "model", "object", "x"])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(TRICKY)
    | st.text()
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=12
)


def printed(obj: dict[str, Any], style: int) -> bytes:
    """`obj` as JSON in one of a few ways providers print it."""
    if style == 0:
        return orjson.dumps(obj)
    if style == 1:
        return json.dumps(obj, indent=2).encode() + b"\n"
    return b"  " + json.dumps(obj, separators=(" , ", " : ")).encode() + b" \r\n"


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=5), st.integers(0, 2))
def test_every_member_reads_as_in_the_parsed_object(obj: dict[str, Any], style: int) -> None:
    raw = printed(obj, style)
    body = RawJSON.of(raw, "usage")
    assert body.raw is raw
    assert body.get("usage") == obj.get("usage")
    assert ("usage" in body) == ("usage" in obj)
    assert dict(body) == obj
    assert body == obj


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(keys, values, max_size=4), values)
def test_a_duplicate_member_reads_as_the_parser_reads_it(obj: dict[str, Any], last: Any) -> None:
    raw = orjson.dumps(obj)[:-1] + (b',"usage":' if obj else b'"usage":') + orjson.dumps(last) + b"}"
    assert RawJSON.of(raw, "usage").get("usage") == orjson.loads(raw).get("usage")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"data": [1, 2, not json], "usage": {"prompt_tokens": 3}}',
        b'{"data": [1, 2, "usage": {"prompt_tokens": 3}}',  # an array left open before the member
    ],
)
def test_the_last_member_is_read_without_parsing_the_rest_which_fails_only_when_read(raw: bytes) -> None:
    body = RawJSON.of(raw, "usage")
    assert body["usage"] == {"prompt_tokens": 3} and body.raw is raw
    with pytest.raises(ProviderResponseError, match="malformed JSON"):
        body.get("data")


@pytest.mark.parametrize(
    "raw",
    [
        b'{"data": [1, 2], "usage": {"prompt_tokens": 3}',  # the object is not closed
        b'{"data": [1, 2], "usage": {"prompt_tokens": 3}}}',  # one brace too many
        b'{"usage": {"prompt_tokens": 3}, "data": [}',  # the member is not last and the rest is broken
        b"",
    ],
)
def test_a_body_that_cannot_be_shown_to_hold_its_last_member_is_parsed_whole_and_refused_if_malformed(
    raw: bytes,
) -> None:
    with pytest.raises(ProviderResponseError, match="malformed JSON"):
        RawJSON.of(raw, "usage")


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"usage"', b"3"])
def test_a_body_that_is_not_an_object_is_refused(raw: bytes) -> None:
    with pytest.raises(ProviderResponseError, match="not a JSON object"):
        RawJSON.of(raw, "usage")


def test_a_missing_member_reads_as_missing() -> None:
    body = RawJSON.of(b'{"object": "list", "data": []}', "usage")
    assert body.get("usage") is None and "usage" not in body and len(body) == 2
    with pytest.raises(KeyError):
        body["usage"]

"""A JSON object response kept as the bytes the provider sent: passed on as they are, parsed only when read whole.

An embeddings response is mostly numbers: 1,536 floats per input for OpenAI's small model, about 30 KB of JSON
each. Parsing them into Python floats and printing them again for the client cost more CPU than everything else
the hub does for the request, and nothing in between needs them: the router reads `usage`, the door writes the
body. `RawJSON.of(body, "usage")` finds that member at the end of the top-level object (where OpenAI-compatible
servers put it) and parses only its value; the door then writes `raw`, the provider's bytes. A reader that asks
for anything else (an output guardrail walking every string, a test) gets the whole object, parsed once.

What is proven before the tail is trusted: the body is an object (`{` first, `}` last), and the `"usage"` found
is a key of that object, not text inside a string or a key of a nested object: it follows `{` or `,`, its value
is one JSON value that the final `}` closes. A body where that cannot be shown (another shape, the member missing
or not last, a duplicate inside its value) is parsed whole at once, so a malformed one fails in the router as it
always did. Like any pass-through proxy, the hub does not re-validate the numbers it does not read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from llm.errors import ProviderResponseError

__all__ = ["RawJSON"]

_SPACE = b" \t\r\n"
_MISSING = object()


class RawJSON(Mapping[str, Any]):
    """A JSON object as received (`raw`), read as a mapping: the members found at its end without parsing the
    rest, everything else from the whole object, parsed on first use.

    Immutable, like the bytes it stands for: a changed copy (a guardrail's redaction) is a plain dict.
    """

    __slots__ = ("_known", "_whole", "raw")

    def __init__(self, raw: bytes, known: Mapping[str, Any] | None = None, whole: dict[str, Any] | None = None) -> None:
        self.raw = raw
        """The provider's bytes, sent to the client as they are."""
        self._known: Mapping[str, Any] = known if known is not None else (whole or {})
        self._whole = whole

    @classmethod
    def of(cls, raw: bytes, tail: str) -> RawJSON:
        """`raw` with its top-level member `tail` read from the end of the object, or parsed whole when that
        member cannot be shown to be the object's last.

        Raises:
            ProviderResponseError: `raw` is not a JSON object (checked only when it is parsed whole).
        """
        value = _last_member(raw, tail)
        if value is _MISSING:
            return cls(raw, whole=_parse(raw))
        return cls(raw, known={tail: value})

    def whole(self) -> dict[str, Any]:
        """The whole object, parsed once.

        Raises:
            ProviderResponseError: the bytes are not a JSON object.
        """
        whole = self._whole
        if whole is None:
            whole = self._whole = _parse(self.raw)
        return whole

    def __getitem__(self, key: str) -> Any:
        known = self._known
        if key in known:
            return known[key]
        return self.whole()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._known or key in self.whole()

    def __iter__(self) -> Iterator[str]:
        return iter(self.whole())

    def __len__(self) -> int:
        return len(self.whole())

    def __repr__(self) -> str:
        return f"RawJSON({len(self.raw)} bytes)"


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProviderResponseError("malformed JSON in response") from None
    if not isinstance(data, dict):
        raise ProviderResponseError("response is not a JSON object")
    return data


def _last_member(raw: bytes, key: str) -> Any:
    """The value of `key` when it is the last member of the top-level object `raw`, else `_MISSING`.

    In a valid JSON text a `"` that follows `{` or `,` (spaces aside) opens a string in key position: inside a
    string a quote is escaped, and after a closing quote only `:`, `,`, `}` or `]` may come. So the last
    `"key"` found that way is a key of some object; if its value and nothing else lies between the colon and
    the text's final `}`, that `}` closes the object holding the key, and being the text's last byte, it closes
    the top-level object.
    """
    end = len(raw)
    while end and raw[end - 1] in _SPACE:
        end -= 1
    start = 0
    while start < end and raw[start] in _SPACE:
        start += 1
    if end - start < 2 or raw[start] != 0x7B or raw[end - 1] != 0x7D:  # `{` ... `}`
        return _MISSING
    token = b'"' + key.encode() + b'"'
    at = raw.rfind(token, start, end)
    if at <= start:
        return _MISSING
    before = at - 1
    while raw[before] in _SPACE:
        before -= 1
    if raw[before] not in b"{,":
        return _MISSING
    colon = at + len(token)
    while colon < end and raw[colon] in _SPACE:
        colon += 1
    if colon >= end or raw[colon] != 0x3A:  # `:`
        return _MISSING
    try:
        return orjson.loads(raw[colon + 1 : end - 1])
    except orjson.JSONDecodeError:
        return _MISSING

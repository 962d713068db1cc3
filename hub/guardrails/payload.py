"""The strings of a JSON payload, addressed by JSON pointer, and a copy with some replaced."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["UnreadablePayload", "iter_strings", "replace_strings"]

_SCALARS = (bool, int, float, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)


class UnreadablePayload(TypeError):
    """A payload holds a value that is not JSON (an object the guardrails cannot read): checks fail closed."""


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def iter_strings(payload: Any, pointer: str = "") -> Iterator[tuple[str, str]]:
    """Yield ``(json_pointer, text)`` for every string value (object keys are not values).

    Raises:
        UnreadablePayload: a value is neither a string, a number, a boolean, null, a mapping nor a sequence.
    """
    if isinstance(payload, str):
        yield pointer, payload
    elif isinstance(payload, Mapping):
        for key, value in payload.items():
            yield from iter_strings(value, f"{pointer}/{_escape(str(key))}")
    elif isinstance(payload, list | tuple):
        if _SCALAR_TYPES.issuperset(map(type, payload)):  # numbers only (an embedding): one pass in C, no strings
            return
        for index, value in enumerate(payload):
            yield from iter_strings(value, f"{pointer}/{index}")
    elif not isinstance(payload, _SCALARS):
        raise UnreadablePayload(f"a {type(payload).__name__} at '{pointer or '/'}' is not JSON")


def replace_strings(payload: Any, replacements: Mapping[str, str], pointer: str = "") -> Any:
    """A copy of ``payload`` with the strings at the given pointers replaced (others shared)."""
    if not replacements:
        return payload
    if isinstance(payload, str):
        return replacements.get(pointer, payload)
    if isinstance(payload, Mapping):
        return {
            key: replace_strings(value, replacements, f"{pointer}/{_escape(str(key))}")
            for key, value in payload.items()
        }
    if isinstance(payload, list | tuple):
        return [replace_strings(v, replacements, f"{pointer}/{i}") for i, v in enumerate(payload)]
    return payload

"""The features a translation leaves out, collected once each so the door can name them in a response header."""

from __future__ import annotations

from llm.errors import safe_code

__all__ = ["Drops"]


class Drops:
    """An ordered set of feature names. A name that is not a short machine code (a client's odd top-level key) is
    kept as `unknown_field`, so a header built from it never carries the client's free text."""

    __slots__ = ("_names",)

    def __init__(self) -> None:
        self._names: dict[str, None] = {}

    def add(self, name: str) -> None:
        """Record `name` (once)."""
        self._names[safe_code(name) or "unknown_field"] = None

    def names(self) -> tuple[str, ...]:
        """The names in the order they were first recorded."""
        return tuple(self._names)

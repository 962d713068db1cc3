"""Precompiled glob sets for authorization filters (tool names, model names).

Globs use shell syntax (`*`, `?`, `[seq]`, `[!seq]`) and match case-sensitively over the whole name.
A `GlobSet` is compiled once: literal names go into a frozenset, the rest into one alternation regex, and
compiled sets are cached by their patterns, so building the same filter for many keys costs one compile.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from functools import lru_cache

__all__ = ["GlobSet", "glob_specificity", "is_glob"]

_WILDCARDS = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    """Whether `pattern` has a wildcard (`*`, `?` or `[`); otherwise it names exactly one thing."""
    return not _WILDCARDS.isdisjoint(pattern)


def glob_specificity(pattern: str) -> tuple[int, int, int]:
    """A sort key: higher means more specific.

    An exact name beats every glob; among globs, the one with more literal characters wins, then the one
    with fewer `*`. (`tickets__create` > `tickets__cr*` > `tickets__*` > `*`.)
    """
    if not is_glob(pattern):
        return (1, len(pattern), 0)
    literal = len(re.sub(r"\[[^\]]*\]|[*?]", "", pattern))
    return (0, literal, -pattern.count("*"))


@lru_cache(maxsize=4096)
def _compile(patterns: tuple[str, ...]) -> tuple[frozenset[str], re.Pattern[str] | None, bool]:
    exact = frozenset(p for p in patterns if not is_glob(p))
    globs = [p for p in patterns if is_glob(p)]
    match_all = "*" in globs
    regex = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)) if globs else None
    return exact, regex, match_all


class GlobSet:
    """A set of shell-style globs compiled once; `matches(name)` is the hot-path check.

    An empty set matches nothing (deny by default).
    """

    __slots__ = ("_exact", "_match_all", "_regex", "patterns")

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns: tuple[str, ...] = tuple(sorted({p for p in patterns if p}))
        self._exact, self._regex, self._match_all = _compile(self.patterns)

    def matches(self, name: str) -> bool:
        """Whether any pattern matches the whole of `name`."""
        if self._match_all or name in self._exact:
            return True
        regex = self._regex
        return regex is not None and regex.match(name) is not None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.matches(name)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GlobSet) and other.patterns == self.patterns

    def __hash__(self) -> int:
        return hash(self.patterns)

    def __repr__(self) -> str:
        return f"GlobSet({list(self.patterns)!r})"

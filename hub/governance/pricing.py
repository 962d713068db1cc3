"""Prices of MCP tool calls: a glob table from `server__tool` names to US dollars per call.

The most specific matching pattern wins (see `glob_specificity`): an exact name beats any glob; among globs
the one with the most literal characters wins, then the one with fewer `*`; a remaining tie goes to the
pattern that sorts first. So with `{"*": 0.01, "tickets__*": 0.001, "tickets__create": 0.005}`,
`tickets__create` costs 0.005, `tickets__list` 0.001 and `wiki__search` 0.01. Unmatched tools cost 0.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping

from hub.governance.filters import glob_specificity, is_glob

__all__ = ["ToolPricing"]


class ToolPricing:
    """Looks up the price of one tool call; results are memoised per name."""

    __slots__ = ("_cache", "_exact", "_globs")

    def __init__(self, table: Mapping[str, float] | None = None) -> None:
        table = dict(table or {})
        for pattern, price in table.items():
            if price < 0:
                raise ValueError(f"price of {pattern!r} is negative")
        self._exact = {p: v for p, v in table.items() if not is_glob(p)}
        ordered = sorted((p for p in table if is_glob(p)), key=lambda p: (_neg(glob_specificity(p)), p))
        self._globs = [(re.compile(fnmatch.translate(p)), table[p]) for p in ordered]
        self._cache: dict[str, float] = {}

    def cost(self, tool: str) -> float:
        """The price in US dollars of one call to `tool` (`server__tool`); 0.0 when no pattern matches."""
        cached = self._cache.get(tool)
        if cached is not None:
            return cached
        price = self._exact.get(tool)
        if price is None:
            price = next((value for regex, value in self._globs if regex.match(tool)), 0.0)
        if len(self._cache) < 65536:
            self._cache[tool] = price
        return price


def _neg(key: tuple[int, int, int]) -> tuple[int, int, int]:
    return (-key[0], -key[1], -key[2])

"""Properties of the list cursors (`hub.executors.list_pages`): walking the pages gives every entry once, in
order, for any page size; and when entries come and go between two pages, the walk still repeats nothing and skips
nothing that was there throughout."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, strategies as st

from hub.errors import BadRequest
from hub.executors.list_pages import Built, page_of

names = st.lists(st.text("abcdefgh_", min_size=1, max_size=6), unique=True, max_size=40)


def _built(entries: list[str], meta: int = 0) -> Built:
    ordered = sorted(entries)
    built = Built("tools", [{"name": n} for n in ordered], [(1, n) for n in ordered])
    return built.after_meta([{"name": f"meta{i}"} for i in range(meta)]) if meta else built


def _walk(pages: list[Built], size: int) -> list[str]:
    """Names given by walking the pages; the catalog is `pages[i]` when page `i` is asked for (the last one after)."""
    seen: list[str] = []
    cursor: Any = None
    turn = 0
    while True:
        built = pages[min(turn, len(pages) - 1)]
        page = page_of("tools", "tools", built, cursor, size)
        seen += [entry["name"] for entry in page["tools"]]
        cursor = page.get("nextCursor")
        turn += 1
        if cursor is None:
            return seen
        assert turn < 1000


@given(names, st.integers(1, 50), st.integers(0, 4))
def test_the_pages_give_every_entry_once_in_order(entries: list[str], size: int, meta: int) -> None:
    built = _built(entries, meta)
    walked = _walk([built], size)
    assert walked == [entry["name"] for entry in built.items]


@given(names, names, st.integers(1, 10))
def test_a_change_between_pages_repeats_nothing_and_skips_nothing_that_stayed(
    before: list[str], after: list[str], size: int
) -> None:
    walked = _walk([_built(before), _built(after)], size)
    assert len(walked) == len(set(walked))
    assert set(before) & set(after) <= set(walked)
    assert set(walked) <= set(before) | set(after)


@pytest.mark.parametrize("cursor", ["", "%%%", "bm90IGpzb24", "WzEsInByb21wdHMiLDEsImEiXQ", "e30", 7, None])
def test_a_foreign_or_malformed_cursor_is_refused(cursor: Any) -> None:
    built = _built(["a", "b", "c"])
    if cursor is None:  # no cursor is the first page
        assert page_of("tools", "tools", built, cursor, 1)["tools"] == [{"name": "a"}]
        return
    with pytest.raises(BadRequest, match="invalid cursor"):
        page_of("tools", "tools", built, cursor, 1)

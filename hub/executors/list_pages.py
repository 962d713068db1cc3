"""Cursor pagination of MCP lists.

A built list keeps, beside its wire entries, one sort key per entry in the order served: `(0, position)` for Code
Mode's meta-tools (always first, in their own order), `(1, exposed name)` for everything else. A cursor is that key
of the last entry a page gave, with the list's kind, encoded opaquely: the next page starts after it by binary search,
so a cursor stays valid when entries are added or removed meanwhile (nothing is repeated, nothing still present is
skipped), which an offset would not. A cursor that does not decode, or was made for another list, is refused with
the spec's invalid-params error (`BadRequest`, -32602).
"""

from __future__ import annotations

import base64
import binascii
import bisect
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson

from hub.errors import BadRequest

DEFAULT_PAGE_SIZE = 500
"""Entries per page unless `[hub] list_page_size` says otherwise."""

SortKey = tuple[int, str]
CURSOR_VERSION = 1


@dataclass(frozen=True)
class Built:
    """One whole list as built for a caller: the wire result and each entry's sort key (same order, ascending)."""

    field: str
    items: list[dict[str, Any]]
    keys: list[SortKey]

    @cached_property
    def result(self) -> dict[str, Any]:
        """The whole list as one result: one object for as long as this list is cached (list-change tracking tells
        an unchanged list by that)."""
        return {self.field: self.items}

    def after_meta(self, meta: list[dict[str, Any]]) -> Built:
        """This list with Code Mode's meta-tools in front."""
        keys = [(0, f"{i:04d}") for i in range(len(meta))]
        return Built(self.field, meta + self.items, keys + self.keys)


def page_of(kind: str, field: str, built: Built, cursor: Any, size: int) -> dict[str, Any]:
    """The page of `built` that `cursor` asks for (the first page without one), with `nextCursor` unless last.

    Raises:
        BadRequest: the cursor is malformed or belongs to another list.
    """
    start = 0
    if cursor is not None:
        start = bisect.bisect_right(built.keys, _decode(kind, cursor))
    elif len(built.items) <= size:
        return built.result  # the common case: one page, the shared cached result as is
    end = start + size
    page: dict[str, Any] = {field: built.items[start:end]}
    if end < len(built.items):
        page["nextCursor"] = _encode(kind, built.keys[end - 1])
    return page


def _encode(kind: str, key: SortKey) -> str:
    raw = orjson.dumps([CURSOR_VERSION, kind, key[0], key[1]])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(kind: str, cursor: Any) -> SortKey:
    if not isinstance(cursor, str) or not cursor or len(cursor) > 4096:
        raise BadRequest("invalid cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError):
        raise BadRequest("invalid cursor") from None
    match value:
        case [int(version), str(made_for), int(group), str(name)] if version == CURSOR_VERSION and made_for == kind:
            return (group, name)
        case _:
            raise BadRequest("invalid cursor")

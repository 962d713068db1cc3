"""Anthropic's prompt-cache markers (`cache_control`) on their way through a translation.

A target that places cache points itself (Claude and Nova on Bedrock, as Converse `cachePoint` blocks) gets each
marker carried on the Chat Completions part it marks, in the shape Anthropic-style gateways accept there:
`cache_control` on a content part, on a `tool` message's text part, on a tool call, on a function tool
(`llm.providers.bedrock` reads them). Any other target caches prompts by itself: the markers are dropped and named.

Carried markers are checked as Anthropic checks them, so the request is refused (400) before anything is sent
rather than by the target: the object (`{"type": "ephemeral"}`, with an optional `ttl` of `5m` or `1h`); at most
four marked blocks (Anthropic's message for more, "A maximum of 4 blocks with cache_control may be provided. Found
5."); and, in the order the prompt is cached (tools, then system, then messages), no 1-hour marker after a
5-minute one. A top-level `cache_control` (Anthropic's automatic caching) marks the last block of the
conversation and counts as one of the four, unless that block is marked already.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm.messages._drops import Drops
from llm.schema import JSON, InvalidRequest

__all__ = ["MAX_CACHE_MARKS", "CacheMarks", "mark_last"]

MAX_CACHE_MARKS = 4
"""Anthropic's limit on blocks with `cache_control` in one request (Bedrock's on cache points, too)."""

_TTLS = frozenset({"5m", "1h"})
_SECTIONS = ("tools", "system")


class CacheMarks:
    """The markers of one request: carried and checked, or dropped (named in `drops`) when `carried` is False."""

    __slots__ = ("_drops", "_ttls", "carried")

    def __init__(self, drops: Drops, *, carried: bool) -> None:
        self.carried = carried
        """Whether the target places cache points (the markers go on); otherwise they are dropped."""
        self._drops = drops
        self._ttls: list[tuple[int, str]] = []

    def mark(self, block: Mapping[str, Any], where: str) -> JSON | None:
        """The marker to carry on the part made of `block` (at `where`, e.g. `messages[2].content[0]`), or None:
        the block is unmarked, or the target places no cache points (then `cache_control` is named dropped).

        Raises:
            InvalidRequest: the marker is not a valid `cache_control` object (the message names where).
        """
        marker = block.get("cache_control")
        if marker is None:
            return None
        if not self.carried:
            self._drops.add("cache_control")
            return None
        return self.check(marker, f"{where}.cache_control")

    def check(self, marker: Any, where: str, *, counted: bool = True) -> JSON:
        """Check one carried marker and (unless not `counted`) count it; returns it in its plain form (`type`, and
        `ttl` when given).

        Raises:
            InvalidRequest: the marker is not a valid `cache_control` object (the message names where).
        """
        if not isinstance(marker, dict) or marker.get("type") != "ephemeral":
            raise InvalidRequest(f"invalid request: {where}: must be an object with type 'ephemeral'")
        ttl = marker.get("ttl")
        if ttl is not None and ttl not in _TTLS:
            raise InvalidRequest(f"invalid request: {where}.ttl: must be '5m' or '1h'")
        plain: JSON = {"type": "ephemeral", "ttl": ttl} if ttl else {"type": "ephemeral"}
        if counted:
            self.count(plain, where)
        return plain

    def count(self, marker: JSON, where: str) -> None:
        """Count a checked marker placed at `where` (its section decides where its TTL stands in the order)."""
        section = next((i for i, name in enumerate(_SECTIONS) if where.startswith(name)), len(_SECTIONS))
        self._ttls.append((section, str(marker.get("ttl") or "5m")))

    def finish(self) -> None:
        """Check the request's markers as a whole (their number, the order of their TTLs).

        Raises:
            InvalidRequest: more than four markers, or a 1-hour marker after a 5-minute one.
        """
        if len(self._ttls) > MAX_CACHE_MARKS:
            raise InvalidRequest(
                f"A maximum of {MAX_CACHE_MARKS} blocks with cache_control may be provided. Found {len(self._ttls)}."
            )
        short = False
        for _, ttl in sorted(self._ttls, key=lambda t: t[0]):  # stable: the order within a section is kept
            if ttl == "1h" and short:
                raise InvalidRequest(
                    "invalid request: cache_control: a ttl of '1h' may not come after one of '5m' "
                    "(the prompt is cached in the order tools, system, messages; longer TTLs first)"
                )
            short = short or ttl == "5m"


def _marked(value: Any) -> bool:
    return isinstance(value, dict) and "cache_control" in value


def mark_last(message: JSON, marker: JSON) -> bool:
    """Put `marker` on the last part of a Chat Completions message (its last tool call, else its last content part,
    a string content becoming one text part). Returns False when that part is marked already (or there is none)."""
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        last = calls[-1]
        if _marked(last):
            return False
        calls[-1] = {**last, "cache_control": marker}
        return True
    content = message.get("content")
    if isinstance(content, str):
        message["content"] = [{"type": "text", "text": content, "cache_control": marker}]
        return True
    if not isinstance(content, list) or not content or _marked(content[-1]):
        return False
    content[-1] = {**content[-1], "cache_control": marker}
    return True

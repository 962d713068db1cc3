"""The live access tokens, in memory: what a token check on the hot path reads.

A presented token is hashed once and looked up in one dictionary, the same work as a virtual key's check. The
entry carries the person's compiled key (shared by all of that person's tokens, so the authn stage's identity
check holds across calls) and the token's audience and expiry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from hub.governance.keys import VirtualKey
from hub.signin.store import token_hash

ACCESS_PREFIX = "aht-"
REFRESH_PREFIX = "ahr-"


@dataclass(frozen=True, slots=True)
class LiveToken:
    key: VirtualKey
    resource: str
    expires_at: float
    family: str


class TokenIndex:
    """Access token hash -> `LiveToken`, and person id -> key while that person holds a live token."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tokens: dict[str, LiveToken] = {}
        self._people: dict[str, VirtualKey] = {}
        self._held: dict[str, set[str]] = {}

    def add(self, hashed: str, live: LiveToken) -> VirtualKey:
        """Index a token; the person's key already indexed is kept when it is equal (one object per person)."""
        key = live.key
        current = self._people.get(key.id)
        if current is not None and current == key:
            live = LiveToken(current, live.resource, live.expires_at, live.family)
        self._people[key.id] = live.key
        self._tokens[hashed] = live
        self._held.setdefault(key.id, set()).add(hashed)
        return live.key

    def holds(self, hashed: str) -> bool:
        return hashed in self._tokens

    def remove(self, hashed: str) -> None:
        live = self._tokens.pop(hashed, None)
        if live is None:
            return
        held = self._held.get(live.key.id)
        if held is not None:
            held.discard(hashed)
            if not held:
                del self._held[live.key.id]
                self._people.pop(live.key.id, None)

    def check(self, presented: str, resource: str) -> VirtualKey | None:
        """The person behind a presented access token good for `resource`, or None."""
        if not presented.startswith(ACCESS_PREFIX):
            return None
        hashed = token_hash(presented)
        live = self._tokens.get(hashed)
        if live is None:
            return None
        if live.expires_at <= self._clock():
            self.remove(hashed)
            return None
        if not audience_allows(live.resource, resource):
            return None
        return live.key

    def person(self, person_id: str) -> VirtualKey | None:
        """The person's key while they hold a live token (the authn stage re-checks an open session's caller)."""
        return self._people.get(person_id)

    def people(self) -> list[VirtualKey]:
        return list(self._people.values())


def audience_allows(audience: str, resource: str) -> bool:
    """Whether a token for `audience` is good at `resource`: the same endpoint, or a server endpoint under the
    aggregated one (`.../mcp` covers `.../mcp/github`)."""
    return resource == audience or resource.startswith(audience.rstrip("/") + "/")

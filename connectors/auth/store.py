"""Where upstream tokens, pending authorizations and registered clients live: the `TokenStore` protocol.

The hub implements it on its SQL database (encrypted, shared by every replica); `MemoryTokenStore` is the
single-process implementation for tests and embedded use.

Concurrency contract: every token row carries a `version`. `save(..., expected_version=v)` and `lease(...)`
succeed only while the row is still at `v` and bump it, so two replicas refreshing one token cannot both win:
the loser re-reads the row and uses the winner's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

import anyio

from connectors.auth.oauth import ClientIdentity, TokenSet


@dataclass(frozen=True)
class TokenRecord:
    """Tokens as stored, with their row version and refresh lease."""

    tokens: TokenSet
    version: int
    lease_until: float = 0.0
    """While in the future, some process is refreshing these tokens; others wait for the new version."""


@dataclass(frozen=True)
class PendingAuthorization:
    """An authorization started for a subject, waiting for its callback (single use, short-lived)."""

    state: str = field(repr=False)
    server: str
    subject: str
    code_verifier: str = field(repr=False)
    redirect_uri: str
    issuer: str
    resource: str
    expires_at: float
    binding: str = field(default="", repr=False)
    """A digest of what the authorization was bound to when it started (the browser it runs in), compared with
    what the callback presents; empty when unbound. Opaque to this library."""


class TokenStore(Protocol):
    """Persistence for upstream authentication; all methods are safe to call concurrently."""

    async def load(self, server: str, subject: str) -> TokenRecord | None:
        """The stored tokens for (server, subject), or None."""
        ...

    async def save(
        self, server: str, subject: str, tokens: TokenSet, *, expected_version: int | None
    ) -> TokenRecord | None:
        """Store tokens and clear any lease. With `expected_version`, only if the row is still at that version
        (None when it moved on); without it, unconditionally (a fresh authorization)."""
        ...

    async def lease(self, server: str, subject: str, *, expected_version: int, until: float) -> TokenRecord | None:
        """Claim the right to refresh until `until` if the row is still at `expected_version` (None otherwise)."""
        ...

    async def delete(self, server: str, subject: str, *, expected_version: int | None = None) -> None:
        """Forget the tokens (only at `expected_version` when given)."""
        ...

    async def put_pending(self, pending: PendingAuthorization) -> None:
        """Remember an authorization in progress under its `state`."""
        ...

    async def take_pending(self, state: str, *, now: float) -> PendingAuthorization | None:
        """Remove and return the pending authorization for `state` if it exists and has not expired."""
        ...

    async def load_client(self, server: str, issuer: str) -> ClientIdentity | None:
        """A client registered (dynamically) for this upstream at this issuer."""
        ...

    async def save_client(self, server: str, issuer: str, client: ClientIdentity) -> None:
        """Remember a dynamically registered client, keyed by issuer."""
        ...


class MemoryTokenStore:
    """A `TokenStore` in process memory (tests, single-process development)."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str], TokenRecord] = {}
        self._pending: dict[str, PendingAuthorization] = {}
        self._clients: dict[tuple[str, str], ClientIdentity] = {}
        self._lock = anyio.Lock()

    async def load(self, server: str, subject: str) -> TokenRecord | None:
        return self._tokens.get((server, subject))

    async def save(
        self, server: str, subject: str, tokens: TokenSet, *, expected_version: int | None
    ) -> TokenRecord | None:
        async with self._lock:
            current = self._tokens.get((server, subject))
            if expected_version is not None and (current is None or current.version != expected_version):
                return None
            record = TokenRecord(tokens, (current.version if current else 0) + 1)
            self._tokens[(server, subject)] = record
            return record

    async def lease(self, server: str, subject: str, *, expected_version: int, until: float) -> TokenRecord | None:
        async with self._lock:
            current = self._tokens.get((server, subject))
            if current is None or current.version != expected_version:
                return None
            record = replace(current, version=current.version + 1, lease_until=until)
            self._tokens[(server, subject)] = record
            return record

    async def delete(self, server: str, subject: str, *, expected_version: int | None = None) -> None:
        async with self._lock:
            current = self._tokens.get((server, subject))
            if current is not None and (expected_version is None or current.version == expected_version):
                del self._tokens[(server, subject)]

    async def put_pending(self, pending: PendingAuthorization) -> None:
        self._pending[pending.state] = pending

    async def take_pending(self, state: str, *, now: float) -> PendingAuthorization | None:
        pending = self._pending.pop(state, None)
        if pending is None or pending.expires_at <= now:
            return None
        return pending

    async def load_client(self, server: str, issuer: str) -> ClientIdentity | None:
        return self._clients.get((server, issuer))

    async def save_client(self, server: str, issuer: str, client: ClientIdentity) -> None:
        self._clients[(server, issuer)] = client

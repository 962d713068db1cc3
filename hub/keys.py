"""Virtual keys: secrets shown once, stored as hashes, looked up in memory on every call.

A key secret is `ahk-` plus 43 URL-safe characters (256 bits), so a plain SHA-256 is a safe verifier: there
is nothing to brute-force. The `KeyRing` maps hashes to compiled keys; it is replaced whole when keys change,
so a lookup is one dictionary access and a revocation takes effect on the next call.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

KEY_PREFIX = "ahk-"


def new_secret() -> str:
    """A fresh virtual-key secret."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The stored verifier of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def compile_globs(globs: Iterable[str]) -> re.Pattern[str] | None:
    """One regex for a list of shell-style globs (`*`, `?`, `[...]`); None matches nothing."""
    parts = [fnmatch.translate(g) for g in globs if g]
    return re.compile("|".join(f"(?:{p})" for p in parts)) if parts else None


@dataclass(frozen=True)
class VirtualKey:
    """A key as the hot path sees it: identity plus compiled filters."""

    id: str
    name: str
    tools: tuple[str, ...] = ()
    team: str | None = None
    customer: str | None = None
    expires_at: datetime | None = None
    _tools_re: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tools_re", compile_globs(self.tools))

    def allows_tool(self, name: str) -> bool:
        """Whether the key's tool globs allow an exposed name (tools, prompts, `server__uri` resources)."""
        pattern = self._tools_re
        return pattern is not None and pattern.match(name) is not None

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and (now or datetime.now(UTC)) >= self.expires_at


class KeyRing:
    """Active keys by secret hash; immutable once built."""

    def __init__(self, keys: Iterable[tuple[str, VirtualKey]] = ()) -> None:
        self._by_hash: dict[str, VirtualKey] = dict(keys)
        self._by_id = {k.id: k for k in self._by_hash.values()}

    def verify(self, secret: str) -> VirtualKey | None:
        """The active key for a presented secret, or None."""
        if not secret.startswith(KEY_PREFIX):
            return None
        key = self._by_hash.get(hash_secret(secret))
        if key is None or key.expired():
            return None
        return key

    def get(self, key_id: str) -> VirtualKey | None:
        """The active key with this id, or None once it is revoked or expired."""
        key = self._by_id.get(key_id)
        return None if key is None or key.expired() else key

    def __len__(self) -> int:
        return len(self._by_hash)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` header value."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())

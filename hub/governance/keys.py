"""Virtual keys: secrets shown once, stored as hashes, looked up in memory on every call.

A key secret is `ahk-` plus 43 URL-safe characters (256 bits), so a plain SHA-256 is a safe verifier: there
is nothing to brute-force. The `KeyRing` maps hashes to compiled keys; it is replaced whole when keys change,
so a lookup is one dictionary access and a revocation takes effect on the next call.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hub.governance.config import BudgetConfig, RateLimitConfig
from hub.governance.filters import GlobSet
from hub.governance.grants import Grant

KEY_PREFIX = "ahk-"


def new_secret() -> str:
    """A fresh virtual-key secret."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The stored verifier of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


POLICY_FIELDS = (
    "tools",
    "team",
    "customer",
    "budget",
    "rate_limit",
    "models",
    "providers",
    "provider_keys",
    "code_mode",
    "tool_search",
    "chat_tools",
    "auto_execute",
    "max_agent_depth",
    "code_limits",
)
"""What a key carries besides its identity, stored as one JSON document per key."""


@dataclass(frozen=True)
class VirtualKey:
    """A key as the hot path sees it: identity, grouping, limits and compiled filters."""

    id: str
    name: str
    tools: tuple[str, ...] = ()
    team: str | None = None
    customer: str | None = None
    budget: BudgetConfig | None = None
    rate_limit: RateLimitConfig | None = None
    models: tuple[str, ...] = ()
    providers: tuple[str, ...] = ("*",)
    provider_keys: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    code_mode: bool = False
    tool_search: bool = False
    """`search_tools` and `call_tool` instead of the tool list (`hub.executors.tool_search`)."""
    chat_tools: tuple[str, ...] = ()
    auto_execute: tuple[str, ...] = ()
    max_agent_depth: int = 10
    code_limits: tuple[tuple[str, float], ...] = ()
    """Code Mode sandbox limits for this key (`SandboxLimits` field names); empty means the defaults."""
    grant: Grant = field(init=False, repr=False, compare=False)
    """The key's reach (tools, prompts, resources, models, routing hops), compiled once."""

    def __post_init__(self) -> None:
        provider_keys = GlobSet(self.provider_keys) if self.provider_keys is not None else None
        grant = Grant(GlobSet(self.tools), GlobSet(self.models), GlobSet(self.providers), provider_keys)
        object.__setattr__(self, "grant", grant)

    @classmethod
    def from_policy(
        cls, key_id: str, name: str, policy: Mapping[str, Any], expires_at: datetime | None = None
    ) -> VirtualKey:
        """Build from a stored policy document (unknown fields are ignored)."""
        budget = policy.get("budget")
        rate = policy.get("rate_limit")
        provider_keys = policy.get("provider_keys")
        return cls(
            id=key_id,
            name=name,
            tools=tuple(policy.get("tools") or ()),
            team=policy.get("team"),
            customer=policy.get("customer"),
            budget=BudgetConfig.model_validate(budget) if budget else None,
            rate_limit=RateLimitConfig.model_validate(rate) if rate else None,
            models=tuple(policy.get("models") or ()),
            providers=tuple(policy.get("providers") or ("*",)),
            provider_keys=tuple(provider_keys) if provider_keys is not None else None,
            expires_at=expires_at,
            code_mode=bool(policy.get("code_mode", False)),
            tool_search=bool(policy.get("tool_search", False)),
            chat_tools=tuple(policy.get("chat_tools") or ()),
            auto_execute=tuple(policy.get("auto_execute") or ()),
            max_agent_depth=int(policy.get("max_agent_depth", 10)),
            code_limits=tuple(sorted((policy.get("code_limits") or {}).items())),
        )

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

    def keys(self) -> list[VirtualKey]:
        return list(self._by_id.values())


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

"""`[sign_in]`: who may sign in, through which identity provider, and what each person gets.

Off unless the section is present. The hub is an OIDC client of `idp` (it only ever asks the provider who the
person is) and the authorization server its MCP clients talk to; `[[sign_in.grants]]` turn the person's groups
(or any claim) into reach, team and a per-person budget.
"""

from __future__ import annotations

import fnmatch
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.governance.config import BudgetConfig, RateLimitConfig
from hub.governance.periods import parse_retention


class IdpConfig(BaseModel):
    """The organisation's OpenID provider, with this hub registered there as a confidential client."""

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(pattern=r"^https?://[^?#]+$")
    client_id: str = Field(min_length=1)
    client_secret: str | None = None
    """`env:NAME` or `file:PATH`; omit for a public client (PKCE only)."""
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    groups_claim: str = "groups"
    """The claim that lists the person's groups."""


class SignInGrant(BaseModel):
    """`[[sign_in.grants]]`: what people of one group (or with one claim value) get."""

    model_config = ConfigDict(extra="forbid")

    group: str | None = None
    """A group of the IdP's groups claim."""
    claim: str | None = None
    """Any other claim of the ID token (with `value`): `claim = "email_verified"`, `value = "true"`."""
    value: str | None = None
    tools: list[str] = Field(default_factory=list[str])
    models: list[str] = Field(default_factory=list[str])
    team: str | None = None
    budget: BudgetConfig | None = None
    """Per person: each person this grant applies to has a budget of their own."""
    rate_limit: RateLimitConfig | None = None

    @model_validator(mode="after")
    def _one_selector(self) -> SignInGrant:
        if (self.group is None) == (self.claim is None):
            raise ValueError("a grant names either a group or a claim (with value)")
        if self.claim is not None and self.value is None:
            raise ValueError(f"the grant on claim '{self.claim}' needs a value")
        return self


class SignInSection(BaseModel):
    """`[sign_in]`: the hub as the authorization server of its MCP endpoint."""

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(pattern=r"^https?://[^/?#]+/?$")
    """The hub's public origin as MCP clients reach it (`https://hub.example.com`, no path); also the issuer of
    its tokens."""
    idp: IdpConfig
    allowed_redirects: list[str] = Field(min_length=1)
    """Redirect URIs any client may use, as globs (`http://127.0.0.1/*` also matches any port of that host);
    a client's own registered redirect URIs must match one of them."""
    token_ttl: str = "1h"  # noqa: S105 - a duration
    refresh_ttl: str = "30d"
    grants: list[SignInGrant] = Field(default_factory=list[SignInGrant])
    max_clients: int = Field(default=1000, ge=1)
    """Registered clients at most (dynamic registration is refused beyond)."""
    registrations_per_source: int = Field(default=10, ge=1)
    """Dynamic registrations one source address may make per hour."""
    client_ttl: str = "30d"
    """A registered client that obtains no token for this long is forgotten."""
    client_metadata_max_bytes: int = Field(default=5 * 1024, ge=512, le=256 * 1024)
    """Largest client ID metadata document fetched."""
    client_metadata_cache_s: float = Field(default=300, ge=0)

    @field_validator("issuer")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("token_ttl", "refresh_ttl", "client_ttl")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_retention(value) is None:
            raise ValueError(f"{value!r} must be a positive duration such as '1h' or '30d'")
        return value

    @field_validator("allowed_redirects")
    @classmethod
    def _redirect_patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            scheme, sep, _rest = pattern.partition("://")
            if not sep or not scheme or "#" in pattern:
                raise ValueError(f"allowed redirect {pattern!r} must be an absolute URI pattern without fragment")
        return patterns

    def ttl(self, name: str) -> timedelta:
        """`token_ttl`, `refresh_ttl` or `client_ttl` as a duration."""
        value = parse_retention(getattr(self, name))
        assert value is not None  # checked at load
        return value

    def redirect_allowed(self, uri: str) -> bool:
        """Whether the operator allows `uri` as a redirect target (a loopback pattern matches any port)."""
        for pattern in self.allowed_redirects:
            if fnmatch.fnmatchcase(uri, pattern) or fnmatch.fnmatchcase(_without_loopback_port(uri), pattern):
                return True
        return False


def _without_loopback_port(uri: str) -> str:
    """`http://127.0.0.1:53682/cb` as `http://127.0.0.1/cb` (native apps pick a free port, RFC 8252 7.3)."""
    for host in ("127.0.0.1", "localhost", "[::1]"):
        prefix = f"http://{host}:"
        if uri.startswith(prefix):
            rest = uri[len(prefix) :]
            port, slash, path = rest.partition("/")
            if port.isdigit():
                return f"http://{host}{slash}{path}"
    return uri

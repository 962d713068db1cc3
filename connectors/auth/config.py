"""Per-upstream auth configuration: `none`, static `headers`, or `oauth2`, as one tagged union on `type`.

```toml
[servers.tickets]
transport = "http"
url = "https://tickets.example.com/mcp"
auth = { type = "oauth2", grant = "client_credentials", client_id = "hub",
         client_secret = "env:TICKETS_SECRET", scopes = ["tickets.read"] }
```

Secret values may be references (`env:NAME`, `file:PATH`); `resolve_auth_secrets` turns them into values once,
at configuration load.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.auth.errors import AuthConfigError

SHARED_SUBJECT = "-"
"""The subject under which a shared (hub-wide) identity's tokens are kept."""


class _AuthBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoAuth(_AuthBase):
    """No credentials are sent."""

    type: Literal["none"] = "none"


class HeadersAuth(_AuthBase):
    """Static headers on every request, such as an API key (`"X-Api-Key" = "env:TICKETS_KEY"`)."""

    type: Literal["headers"]
    headers: dict[str, str] = Field(min_length=1)


class OAuth2Auth(_AuthBase):
    """OAuth 2.0 towards the upstream, with discovery (RFC 9728, RFC 8414) for whatever is not configured."""

    type: Literal["oauth2"]
    grant: Literal["client_credentials", "authorization_code"]
    per_user: bool = False
    """`authorization_code` only: every subject (virtual key or admin user) authorizes separately and its calls
    carry its own token. False: one shared identity for the whole hub."""
    client_id: str | None = None
    """A pre-registered client id. Omitted: a client ID metadata document (`client_metadata_url`) or dynamic
    registration (RFC 7591), whichever the authorization server offers."""
    client_secret: str | None = None
    """The pre-registered client's secret (`env:NAME` or `file:PATH`)."""
    client_metadata_url: str | None = Field(default=None, pattern=r"^https://")
    """Where the hub serves its client ID metadata document (CIMD); used as the client id when the
    authorization server advertises `client_id_metadata_document_supported`."""
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post", "none"] | None = None
    """How the client authenticates at the token endpoint; by default basic when a secret is known, else none."""
    scopes: list[str] = Field(default_factory=list[str])
    token_url: str | None = Field(default=None, pattern=r"^https?://")
    """Skips discovery for `client_credentials` when set."""
    authorization_url: str | None = Field(default=None, pattern=r"^https?://")
    issuer: str | None = Field(default=None, pattern=r"^https?://")
    """Pins the authorization server: discovery must lead to exactly this issuer."""
    resource: str | None = Field(default=None, pattern=r"^https?://")
    """The RFC 8707 resource indicator; defaults to the upstream's URL."""
    refresh_ahead_s: float = Field(default=60.0, gt=0, le=3600)
    """Refresh this long before expiry (capped at half the token's lifetime)."""
    client_name: str = "AgentHub"

    @model_validator(mode="after")
    def _check(self) -> OAuth2Auth:
        if self.per_user and self.grant != "authorization_code":
            raise ValueError("per_user needs grant = 'authorization_code' (client credentials act for the hub)")
        if self.grant == "client_credentials" and not self.client_id:
            raise ValueError("grant = 'client_credentials' needs a client_id and client_secret")
        if self.client_secret is not None and not self.client_id:
            raise ValueError("client_secret is set but client_id is not")
        return self


AuthConfig = Annotated[NoAuth | HeadersAuth | OAuth2Auth, Field(discriminator="type")]
"""Any upstream's auth configuration, discriminated on `type`."""


def resolve_reference(value: str, base_dir: Path, where: str) -> str:
    """Resolve an `env:NAME` / `file:PATH` reference; any other string is taken literally.

    Raises:
        AuthConfigError: the variable is not set or the file cannot be read.
    """
    if value.startswith("env:"):
        name = value[4:]
        found = os.environ.get(name)
        if found is None:
            raise AuthConfigError(f"{where}: environment variable {name} is not set")
        return found
    if value.startswith("file:"):
        path = Path(value[5:])
        path = path if path.is_absolute() else base_dir / path
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AuthConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
    return value


def resolve_auth_secrets(
    auth: NoAuth | HeadersAuth | OAuth2Auth, base_dir: Path, where: str
) -> NoAuth | HeadersAuth | OAuth2Auth:
    """A copy of `auth` with its secret references (header values, client secret) resolved.

    Raises:
        AuthConfigError: a reference cannot be resolved.
    """
    if isinstance(auth, HeadersAuth):
        headers = {k: resolve_reference(v, base_dir, f"{where}.headers.{k}") for k, v in auth.headers.items()}
        return auth.model_copy(update={"headers": headers})
    if isinstance(auth, OAuth2Auth) and auth.client_secret is not None:
        secret = resolve_reference(auth.client_secret, base_dir, f"{where}.client_secret")
        return auth.model_copy(update={"client_secret": secret})
    return auth

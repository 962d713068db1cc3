"""Tables of the upstream token store (`hub.upstream_auth.store`): tokens, authorizations in progress, the links
offered to keys' users, registered clients and the master key's check value. Secrets in them are sealed or hashed;
only metadata is plaintext."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class UpstreamTokenRow(SQLModel, table=True):
    """Tokens for one (upstream, subject); `sealed` is the encrypted token set."""

    __tablename__ = "upstream_tokens"  # pyright: ignore[reportAssignmentType]

    server: str = Field(primary_key=True)
    subject: str = Field(primary_key=True)
    sealed: str
    expires_at: float | None = None
    version: int = 1
    lease_until: float = 0.0
    updated_at: datetime


class UpstreamAuthStateRow(SQLModel, table=True):
    """An authorization in progress, by SHA-256 of its `state`; `sealed` holds the PKCE verifier and context."""

    __tablename__ = "upstream_auth_states"  # pyright: ignore[reportAssignmentType]

    state_hash: str = Field(primary_key=True)
    server: str
    subject: str
    sealed: str
    expires_at: float = Field(index=True)


class UpstreamAuthFlowRow(SQLModel, table=True):
    """A per-user authorization link offered to a key's user, by SHA-256 of its one-time id; `claim` is the SHA-256
    of the cookie of the browser that opened it first (empty until then)."""

    __tablename__ = "upstream_auth_flows"  # pyright: ignore[reportAssignmentType]

    flow_hash: str = Field(primary_key=True)
    server: str
    subject: str
    claim: str = ""
    expires_at: float = Field(index=True)


class UpstreamClientRow(SQLModel, table=True):
    """A dynamically registered OAuth client, keyed by upstream and issuer; `sealed` holds id and secret."""

    __tablename__ = "upstream_clients"  # pyright: ignore[reportAssignmentType]

    server: str = Field(primary_key=True)
    issuer: str = Field(primary_key=True)
    sealed: str


class UpstreamKeyCheckRow(SQLModel, table=True):
    """The key check value of the master key the rows above were sealed with."""

    __tablename__ = "upstream_key_check"  # pyright: ignore[reportAssignmentType]

    id: str = Field(primary_key=True)
    value: str

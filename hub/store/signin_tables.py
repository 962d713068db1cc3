"""The tables of sign-in (`hub.signin.store`): registered clients, registration attempts, logins in flight,
authorization codes and tokens. Codes, tokens and client secrets are stored only as SHA-256 hashes (they are
256-bit random strings: nothing to brute-force), so a copy of the database gives no usable credential."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class SignInClientRow(SQLModel, table=True):
    """A client registered dynamically (RFC 7591)."""

    __tablename__ = "signin_clients"  # pyright: ignore[reportAssignmentType]

    client_id: str = Field(primary_key=True)
    document: str
    """The registration as the client sees it (`OAuthClientInformationFull`, JSON), its `client_secret` hashed
    (`hub.signin.client_auth.hashed_secret`)."""
    source: str = Field(index=True)
    """The address that registered it."""
    created_at: datetime = Field(index=True)
    last_used_at: datetime = Field(index=True)
    """The last time it obtained a token: unused registrations expire."""


class SignInPendingRow(SQLModel, table=True):
    """An authorization request waiting for the person to come back from the identity provider."""

    __tablename__ = "signin_pending"  # pyright: ignore[reportAssignmentType]

    id: str = Field(primary_key=True)
    request: str
    """The client's authorization request (client, redirect URI, PKCE challenge, resource, state), JSON."""
    expires_at: datetime = Field(index=True)


class SignInCodeRow(SQLModel, table=True):
    """An authorization code, redeemable once."""

    __tablename__ = "signin_codes"  # pyright: ignore[reportAssignmentType]

    code_hash: str = Field(primary_key=True)
    client_id: str
    request: str
    """The authorization request it answers, JSON."""
    person: str
    """Who signed in (subject, email, groups, claims the grants read), JSON."""
    family: str
    """The token family its exchange starts: a replayed code revokes it."""
    expires_at: datetime = Field(index=True)
    used: bool = False


class SignInTokenRow(SQLModel, table=True):
    """An access or refresh token. Refresh tokens of one login form a family: a reused one revokes it."""

    __tablename__ = "signin_tokens"  # pyright: ignore[reportAssignmentType]

    token_hash: str = Field(primary_key=True)
    kind: str
    """`access` or `refresh`."""
    family: str = Field(index=True)
    client_id: str
    person_id: str = Field(index=True)
    person: str
    """Who the token is for, JSON (as `SignInCodeRow.person`)."""
    resource: str
    """The audience (RFC 8707): the MCP endpoint the token is good for."""
    scopes: str = ""
    expires_at: datetime = Field(index=True)
    used: bool = False
    """A refresh token that was exchanged already (rotated)."""
    revoked: bool = False


class SignInPersonRow(SQLModel, table=True):
    """A person who signed in at least once: what the admin API lists (`GET /api/v1/users`)."""

    __tablename__ = "signin_people"  # pyright: ignore[reportAssignmentType]

    id: str = Field(primary_key=True)
    """`user_` and a hash of the IdP's issuer and subject (`hub.signin.people.Person.id`)."""
    name: str
    person: str
    """Who they are as of their last sign-in (subject, email, groups, claims the grants read), JSON."""
    first_seen_at: datetime
    last_seen_at: datetime = Field(index=True)


class SignInConsentRow(SQLModel, table=True):
    """A person's consent to one client reaching what their grants give: remembered until the grants change."""

    __tablename__ = "signin_consents"  # pyright: ignore[reportAssignmentType]

    person_id: str = Field(primary_key=True)
    client_id: str = Field(primary_key=True)
    grants: str
    """A fingerprint of the reach the person approved (`hub.signin.consent.fingerprint`)."""
    granted_at: datetime


class SignInRegistrationRow(SQLModel, table=True):
    """One dynamic registration attempt, kept for the rate-limit window: every replica of one database counts the
    same attempts, so a flood spread over replicas gets the per-source allowance once."""

    __tablename__ = "signin_registrations"  # pyright: ignore[reportAssignmentType]

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(index=True)
    """The address the attempt came from."""
    at: datetime = Field(index=True)

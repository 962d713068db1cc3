"""OAuth 2.0 client messages: PKCE, the authorization URL, token requests, dynamic registration, CIMD.

Pure protocol, no storage and no policy: `UpstreamAuth` decides when to call these.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx2
import orjson

from connectors.auth.egress import EgressClient
from connectors.auth.errors import RegistrationError, TokenRequestFailed


@dataclass(frozen=True)
class ClientIdentity:
    """How the hub identifies itself to one authorization server."""

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    auth_method: str = "none"
    """`client_secret_basic`, `client_secret_post` or `none`."""

    def to_json(self) -> bytes:
        """Serialise (the secret included: callers encrypt it)."""
        return orjson.dumps(
            {"client_id": self.client_id, "client_secret": self.client_secret, "auth_method": self.auth_method}
        )

    @classmethod
    def from_json(cls, raw: bytes) -> ClientIdentity:
        """The inverse of `to_json`."""
        doc = orjson.loads(raw)
        return cls(doc["client_id"], doc.get("client_secret"), doc.get("auth_method", "none"))


@dataclass(frozen=True)
class TokenSet:
    """Tokens for one (upstream, subject). The `repr` never shows a token."""

    access_token: str = field(repr=False)
    obtained_at: float
    expires_at: float | None = None
    refresh_token: str | None = field(default=None, repr=False)
    scope: str | None = None
    issuer: str = ""

    def valid_for(self, now: float) -> float:
        """Seconds of validity left (infinite when the server gave no lifetime)."""
        return float("inf") if self.expires_at is None else self.expires_at - now

    @property
    def lifetime(self) -> float:
        """The lifetime granted at issue (infinite when unknown)."""
        return float("inf") if self.expires_at is None else self.expires_at - self.obtained_at

    def to_json(self) -> bytes:
        """Serialise (tokens included: callers encrypt it)."""
        return orjson.dumps(
            {
                "access_token": self.access_token,
                "obtained_at": self.obtained_at,
                "expires_at": self.expires_at,
                "refresh_token": self.refresh_token,
                "scope": self.scope,
                "issuer": self.issuer,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> TokenSet:
        """The inverse of `to_json`."""
        doc = orjson.loads(raw)
        return cls(
            access_token=doc["access_token"],
            obtained_at=doc["obtained_at"],
            expires_at=doc.get("expires_at"),
            refresh_token=doc.get("refresh_token"),
            scope=doc.get("scope"),
            issuer=doc.get("issuer", ""),
        )


def new_pkce() -> tuple[str, str]:
    """A PKCE `(code_verifier, code_challenge)` pair for the S256 method (RFC 7636)."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def authorization_request_url(
    endpoint: str,
    *,
    client_id: str,
    redirect_uri: str,
    state: str,
    code_challenge: str,
    scopes: tuple[str, ...] | list[str],
    resource: str,
) -> str:
    """The URL a user opens to authorize: `response_type=code`, PKCE S256 and the RFC 8707 `resource`."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
        "resource": resource,
    }
    if scopes:
        params["scope"] = " ".join(scopes)
    parts = urlsplit(endpoint)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


async def request_token(
    http: EgressClient,
    token_endpoint: str,
    client: ClientIdentity,
    form: Mapping[str, str],
    *,
    issuer: str,
    now: float | None = None,
) -> TokenSet:
    """POST one token request (any grant) and parse the answer.

    Raises:
        TokenRequestFailed: the endpoint answered with an error (its `error` code is kept) or garbage.
        UnsafeURL: the endpoint is refused by the egress policy.
    """
    body = {**form, "client_id": client.client_id}
    headers: dict[str, str] = {}
    if client.auth_method == "client_secret_basic" and client.client_secret is not None:
        pair = f"{quote(client.client_id, safe='')}:{quote(client.client_secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    elif client.auth_method == "client_secret_post" and client.client_secret is not None:
        body["client_secret"] = client.client_secret
    started = time.time() if now is None else now
    try:
        resp = await http.post(token_endpoint, data=body, headers=headers)
    except (httpx2.HTTPError, TimeoutError) as exc:
        raise TokenRequestFailed(
            f"token endpoint {token_endpoint} unreachable: {type(exc).__name__}", error="unreachable", status=0
        ) from None
    doc = resp.json_object() or {}
    if resp.status != 200:
        error = str(doc.get("error") or f"http_{resp.status}")
        description = str(doc.get("error_description") or "")[:200]
        raise TokenRequestFailed(
            f"token endpoint refused ({error}){': ' + description if description else ''}",
            error=error,
            status=resp.status,
        )
    access = doc.get("access_token")
    token_type = str(doc.get("token_type", "")).lower()
    if not isinstance(access, str) or not access or token_type != "bearer":  # noqa: S105 - a token type name, not a secret
        raise TokenRequestFailed(
            "token endpoint answered without a bearer access_token", error="bad_response", status=200
        )
    expires_in = doc.get("expires_in")
    expires_at = started + float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else None
    refresh = doc.get("refresh_token")
    scope = doc.get("scope")
    return TokenSet(
        access_token=access,
        obtained_at=started,
        expires_at=expires_at,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        scope=scope if isinstance(scope, str) else None,
        issuer=issuer,
    )


def keep_refresh_token(old: TokenSet, new: TokenSet) -> TokenSet:
    """After a refresh: a server that does not rotate returns no refresh token, so the old one stays valid."""
    if new.refresh_token is None and old.refresh_token is not None:
        return replace(new, refresh_token=old.refresh_token)
    return new


async def register_client(
    http: EgressClient,
    registration_endpoint: str,
    *,
    redirect_uri: str,
    client_name: str,
    scopes: tuple[str, ...] | list[str],
    auth_methods_supported: tuple[str, ...] | None,
) -> ClientIdentity:
    """Dynamic client registration (RFC 7591) as a confidential web client.

    Raises:
        RegistrationError: the endpoint refused or answered without a `client_id`.
        UnsafeURL: the endpoint is refused by the egress policy.
    """
    method = "client_secret_basic"
    if auth_methods_supported is not None and method not in auth_methods_supported:
        method = "client_secret_post" if "client_secret_post" in auth_methods_supported else "none"
    request: dict[str, Any] = {
        "redirect_uris": [redirect_uri],
        "client_name": client_name,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": method,
        "application_type": "web",
    }
    if scopes:
        request["scope"] = " ".join(scopes)
    try:
        resp = await http.post(registration_endpoint, json=request)
    except (httpx2.HTTPError, TimeoutError) as exc:
        raise RegistrationError(f"registration endpoint unreachable: {type(exc).__name__}") from None
    doc = resp.json_object() or {}
    client_id = doc.get("client_id")
    if resp.status not in (200, 201) or not isinstance(client_id, str) or not client_id:
        raise RegistrationError(f"client registration refused (status {resp.status}, {doc.get('error', 'no error')})")
    secret = doc.get("client_secret")
    granted = doc.get("token_endpoint_auth_method")
    secret = secret if isinstance(secret, str) and secret else None
    auth_method = granted if isinstance(granted, str) else method
    if secret is None:
        auth_method = "none"
    return ClientIdentity(client_id, secret, auth_method)


def client_metadata_document(client_id_url: str, *, redirect_uri: str, client_name: str) -> dict[str, Any]:
    """The client ID metadata document (CIMD) the hub serves at `client_id_url` (its client id)."""
    return {
        "client_id": client_id_url,
        "client_name": client_name,
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "web",
    }

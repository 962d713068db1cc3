"""Admin login with OpenID Connect: authorization code flow with PKCE (S256) against any OIDC provider.

`GET /api/v1/auth/login` redirects to the provider with a fresh `state`, `nonce` and PKCE verifier, which
travel in a short-lived HMAC-signed cookie (so any replica can finish the login). The callback checks the
state (and `iss` when the provider sends it, RFC 9207), redeems the code with the verifier, verifies the ID
token's signature against the provider's JWKS and its claims (issuer, audience, expiry, nonce, `azp`,
`at_hash`) with authlib, reads the groups claim (from the ID token, else from userinfo) and maps groups to
roles and teams through the `[admin.oidc]` tables. authlib and joserfc load with the first login, so a hub
without OIDC does not carry them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
from pydantic import BaseModel, ConfigDict, Field

STATE_COOKIE = "agenthub_oidc"
SESSION_COOKIE = "agenthub_admin"
_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]


class OidcSection(BaseModel):
    """`[admin.oidc]`: single sign-on for the admin API."""

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(pattern=r"^https?://")
    """The provider's issuer URL; its `/.well-known/openid-configuration` is read at the first login."""
    client_id: str = Field(min_length=1)
    client_secret: str | None = None
    """`env:NAME` or `file:PATH`; omit for a public client (PKCE only)."""
    redirect_uri: str = Field(pattern=r"^https?://")
    """This hub's `/api/v1/auth/callback` URL as registered at the provider."""
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    groups_claim: str = "groups"
    """The claim that lists the user's groups."""
    roles: dict[str, list[str]] = Field(default_factory=dict[str, list[str]])
    """Group -> role names (built-in `admin`, `developer`, `viewer`, or custom roles)."""
    teams: dict[str, list[str]] = Field(default_factory=dict[str, list[str]])
    """Group -> teams the user belongs to (for `:own` permissions such as a developer's keys)."""
    default_roles: list[str] = Field(default_factory=list[str])
    """Roles for every user who logs in (none by default: an unmapped user is refused)."""


class AdminSection(BaseModel):
    """`[admin]`: the admin API."""

    model_config = ConfigDict(extra="forbid")

    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    """Largest request body the admin API accepts."""
    session_hours: float = Field(default=8, gt=0)
    """How long an OIDC login session lasts."""
    allowed_secret_refs: list[str] = Field(default_factory=list[str])
    """Secret references that changes made through the admin API may use (guardrail credentials, run-time
    servers' `env`, `headers` and `auth` secrets), as globs: `"env:GUARDRAIL_*"`, `"file:/run/secrets/*"`. Empty:
    none. The hub's own variables (`env:AGENTHUB_*`) are refused even when listed. Values in this file are not
    affected."""
    allowed_endpoints: list[str] = Field(default_factory=list[str])
    """Origins (`scheme://host:port` globs such as `"http://127.0.0.1:*"` or `"https://*.corp.example"`) that
    endpoints given through the admin API may use although they are plain http or resolve to loopback or private
    addresses. Any other endpoint must be https on public addresses (`[hub] insecure_loopback` still allows
    plain http to loopback). Values in this file are not affected."""
    oidc: OidcSection | None = None


class OidcError(Exception):
    """The login failed; the message says why (shown to the user, never containing secrets)."""


@dataclass(frozen=True)
class OidcIdentity:
    """Who logged in."""

    subject: str
    email: str | None
    groups: tuple[str, ...]
    claims: Mapping[str, Any] = field(default_factory=dict[str, Any])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class OidcLogin:
    """The relying party: builds the authorization request and finishes the login.

    Args:
        section: provider and mapping settings (client secret already resolved).
        signing_key: signs the login-state cookie (at least 32 bytes).
        http: an HTTP client for discovery, token, JWKS and userinfo requests.
        clock: Unix seconds.
    """

    def __init__(
        self, section: OidcSection, signing_key: bytes, http: httpx2.AsyncClient, *, clock: Any = time.time
    ) -> None:
        self.section = section
        self._key = signing_key
        self._http = http
        self._clock = clock
        self._metadata: dict[str, Any] | None = None

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (fetched once; its `issuer` must equal the configured one)."""
        if self._metadata is None:
            url = self.section.issuer.rstrip("/") + "/.well-known/openid-configuration"
            data = await self._get_json(url)
            if data.get("issuer") != self.section.issuer:
                raise OidcError(f"the provider's issuer is {data.get('issuer')!r}, not {self.section.issuer!r}")
            self._metadata = data
        return self._metadata

    async def start(self) -> tuple[str, str]:
        """The authorization URL to redirect to, and the signed state cookie to set."""
        from authlib.common.security import generate_token
        from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
        from authlib.oauth2.rfc7636 import create_s256_code_challenge

        meta = await self.metadata()
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        url = prepare_grant_uri(
            meta["authorization_endpoint"], self.section.client_id, "code",
            redirect_uri=self.section.redirect_uri, scope=" ".join(self.section.scopes), state=state,
            nonce=nonce, code_challenge=create_s256_code_challenge(verifier), code_challenge_method="S256",
        )  # fmt: skip
        payload = {"s": state, "n": nonce, "v": verifier, "e": int(self._clock()) + 600}
        return url, self._sign(payload)

    async def finish(self, params: Mapping[str, str], cookie: str | None) -> OidcIdentity:
        """Check the callback, redeem the code, verify the ID token and read the groups.

        Raises:
            OidcError: anything that makes the login untrustworthy.
        """
        if "error" in params:
            raise OidcError(f"the provider refused the login: {params.get('error')}")
        pending = self._unsign(cookie)
        state = params.get("state", "")
        if not hmac.compare_digest(state.encode(), str(pending["s"]).encode()):
            raise OidcError("the login state does not match (start the login again)")
        meta = await self.metadata()
        if "iss" in params and params["iss"] != self.section.issuer:
            raise OidcError("the authorization response comes from another issuer")
        code = params.get("code")
        if not code:
            raise OidcError("the callback carries no authorization code")
        tokens = await self._redeem(meta["token_endpoint"], code, str(pending["v"]))
        claims = await self._id_token_claims(meta, tokens, str(pending["n"]))
        if self.section.groups_claim not in claims and meta.get("userinfo_endpoint"):
            info = await self._get_json(
                meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"}
            )
            if info.get("sub") != claims["sub"]:
                raise OidcError("userinfo is about another subject")
            claims = {**info, **claims}
        groups = claims.get(self.section.groups_claim) or []
        if isinstance(groups, str):
            groups = [groups]
        email = claims.get("email")
        return OidcIdentity(
            subject=str(claims["sub"]),
            email=email if isinstance(email, str) else None,
            groups=tuple(str(g) for g in groups),
            claims=claims,
        )

    async def _redeem(self, endpoint: str, code: str, verifier: str) -> dict[str, Any]:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.section.redirect_uri,
            "code_verifier": verifier,
        }
        headers = {"Accept": "application/json"}
        if self.section.client_secret:
            pair = f"{self.section.client_id}:{self.section.client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            form["client_id"] = self.section.client_id
        try:
            response = await self._http.post(endpoint, data=form, headers=headers)
        except httpx2.HTTPError as exc:
            raise OidcError(f"the token endpoint is unreachable: {type(exc).__name__}") from None
        body = _json_object(response)
        if response.status_code != 200 or "id_token" not in body or "access_token" not in body:
            raise OidcError(f"the token endpoint refused the code: {body.get('error', response.status_code)}")
        return body

    async def _id_token_claims(self, meta: Mapping[str, Any], tokens: Mapping[str, Any], nonce: str) -> dict[str, Any]:
        from authlib.oidc.core import CodeIDToken
        from joserfc import jwt
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        keys = KeySet.import_key_set(await self._get_json(meta["jwks_uri"]))  # pyright: ignore[reportArgumentType]
        try:
            token = jwt.decode(str(tokens["id_token"]), keys, algorithms=_ALGORITHMS)
        except (JoseError, ValueError) as exc:
            raise OidcError(f"the ID token's signature does not verify: {exc}") from None
        claims = CodeIDToken(
            token.claims,
            token.header,
            options={"iss": {"essential": True, "value": self.section.issuer},
                     "aud": {"essential": True, "value": self.section.client_id}},
            params={"nonce": nonce, "client_id": self.section.client_id, "access_token": tokens["access_token"]},
        )  # fmt: skip
        try:
            claims.validate(now=int(self._clock()), leeway=60)
        except JoseError as exc:
            raise OidcError(f"the ID token is not valid here: {exc}") from None
        return dict(claims)

    async def _get_json(self, url: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        try:
            response = await self._http.get(url, headers=dict(headers or {}))
        except httpx2.HTTPError as exc:
            raise OidcError(f"{url} is unreachable: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise OidcError(f"{url} answered {response.status_code}")
        return _json_object(response)

    def _sign(self, payload: Mapping[str, Any]) -> str:
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return f"{body}.{_b64(mac)}"

    def _unsign(self, cookie: str | None) -> dict[str, Any]:
        body, _, mac = (cookie or "").partition(".")
        expected = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        if not body or not hmac.compare_digest(mac.encode(), expected.encode()):
            raise OidcError("the login state cookie is missing or was altered (start the login again)")
        payload: dict[str, Any] = json.loads(_unb64(body))
        if int(payload.get("e", 0)) < self._clock():
            raise OidcError("the login took too long (start the login again)")
        return payload


def _json_object(response: httpx2.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}

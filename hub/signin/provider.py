"""The authorization server proper: the `mcp` SDK's OAuth handlers (`/authorize`, `/token`, `/register`,
`/revoke`: request parsing, PKCE S256 verification, client authentication, RFC error bodies) call this provider,
which holds the hub's policy: exact redirect URIs the operator allows, tokens bound to one MCP endpoint (RFC 8707),
codes redeemable once (a replay revokes what the first redemption issued), refresh tokens rotated on every use
(a reused one revokes its whole family), everything stored hashed.
"""

from __future__ import annotations

import contextvars
import json
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import anyio
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    RefreshToken,
    RegistrationError,
    TokenError,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from hub.governance.keys import VirtualKey
from hub.signin.clients import ClientDirectory
from hub.signin.config import SignInSection
from hub.signin.people import Person, person_key
from hub.signin.store import SignInStore, aware, token_hash
from hub.signin.tokens import ACCESS_PREFIX, REFRESH_PREFIX, LiveToken, TokenIndex
from hub.store.signin_tables import SignInCodeRow, SignInPendingRow, SignInTokenRow

LOGIN_PATH = "/signin/login"
PENDING_TTL_S = 600
CODE_TTL_S = 60

registration_source: contextvars.ContextVar[str] = contextvars.ContextVar("registration_source", default="unknown")
"""The address a registration request came from (set by the route in front of the SDK's handler)."""


class HubCode(AuthorizationCode):
    person: dict[str, Any]
    family: str


class HubRefresh(RefreshToken):
    person: dict[str, Any]
    family: str


class HubAccess(AccessToken):
    family: str


class AuthorizationServer:
    """`OAuthAuthorizationServerProvider` for the hub's own `/mcp`.

    Args:
        section: `[sign_in]`.
        store: the sign-in tables.
        clients: registered and metadata-document clients.
        index: the live access tokens in memory.
        on_person: called with a person's key before their first token is usable (registers their limits).
        clock: Unix seconds.
    """

    def __init__(
        self,
        section: SignInSection,
        store: SignInStore,
        clients: ClientDirectory,
        index: TokenIndex,
        on_person: Callable[[VirtualKey], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.section = section
        self._store = store
        self._clients = clients
        self._index = index
        self._on_person = on_person
        self._clock = clock

    # -- clients ---------------------------------------------------------------------------------------------------

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        return await self._clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        if client_info.token_endpoint_auth_method not in ("none", "client_secret_post", "client_secret_basic"):
            raise RegistrationError("invalid_client_metadata", "unsupported token_endpoint_auth_method")
        await self._clients.register(client_info, registration_source.get())

    # -- authorization ---------------------------------------------------------------------------------------------

    def endpoint(self) -> str:
        """The aggregated MCP endpoint, the default audience."""
        return self.section.issuer + "/mcp"

    def audience_known(self, resource: str) -> bool:
        mcp = self.endpoint()
        rest = resource[len(mcp) + 1 :] if resource.startswith(mcp + "/") else None
        return resource == mcp or (rest is not None and rest != "" and "/" not in rest)

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        redirect = str(params.redirect_uri)
        if not self.section.redirect_allowed(redirect):
            raise AuthorizeError("invalid_request", f"redirect URI {redirect} is not allowed on this hub")
        resource = params.resource or self.endpoint()
        if not self.audience_known(resource):
            raise AuthorizeError("invalid_target", f"this hub issues tokens for {self.endpoint()} only")
        request = {
            "client_id": client.client_id,
            "client_name": client.client_name,
            "redirect_uri": redirect,
            "explicit": params.redirect_uri_provided_explicitly,
            "code_challenge": params.code_challenge,
            "resource": resource,
            "state": params.state,
            "scopes": params.scopes or [],
        }
        pending_id = secrets.token_urlsafe(32)
        row = SignInPendingRow(id=pending_id, request=json.dumps(request), expires_at=self._at(PENDING_TTL_S))
        await anyio.to_thread.run_sync(self._store.add_pending, row, self._at(0))
        return f"{self.section.issuer}{LOGIN_PATH}?{urlencode({'request': pending_id})}"

    async def issue_code(self, request: dict[str, Any], person: Person) -> str:
        """A fresh authorization code for a person who signed in for `request`."""
        code = secrets.token_urlsafe(32)
        row = SignInCodeRow(
            code_hash=token_hash(code),
            client_id=str(request["client_id"]),
            request=json.dumps(request),
            person=json.dumps(person.to_json()),
            family=secrets.token_hex(16),
            expires_at=self._at(CODE_TTL_S),
        )
        await anyio.to_thread.run_sync(self._store.add_code, row)
        return code

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> HubCode | None:
        row, first = await anyio.to_thread.run_sync(self._store.redeem_code, token_hash(authorization_code))
        if row is None or row.client_id != client.client_id:
            return None
        if not first:  # a replay: what the first redemption issued is revoked too (RFC 6749 4.1.2)
            await self._revoke_family(row.family)
            return None
        request = json.loads(row.request)
        return HubCode(
            code=authorization_code,
            scopes=list(request["scopes"]),
            expires_at=aware(row.expires_at).timestamp(),
            client_id=row.client_id,
            code_challenge=str(request["code_challenge"]),
            redirect_uri=request["redirect_uri"],
            redirect_uri_provided_explicitly=bool(request["explicit"]),
            resource=str(request["resource"]),
            person=json.loads(row.person),
            family=row.family,
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: HubCode
    ) -> OAuthToken:
        assert authorization_code.resource is not None
        return await self._issue(
            client,
            Person.from_json(authorization_code.person),
            authorization_code.resource,
            authorization_code.scopes,
            authorization_code.family,
        )

    # -- refresh ---------------------------------------------------------------------------------------------------

    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> HubRefresh | None:
        if not refresh_token.startswith(REFRESH_PREFIX):
            return None
        row = await anyio.to_thread.run_sync(self._store.token, token_hash(refresh_token))
        if row is None or row.kind != "refresh" or row.client_id != client.client_id or row.revoked:
            return None
        if row.used:  # presented again after rotation: whoever holds the family may be an attacker
            await self._revoke_family(row.family)
            return None
        return HubRefresh(
            token=refresh_token,
            client_id=row.client_id,
            scopes=row.scopes.split(),
            expires_at=int(aware(row.expires_at).timestamp()),
            resource=row.resource,
            person=json.loads(row.person),
            family=row.family,
        )

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: HubRefresh, scopes: list[str]
    ) -> OAuthToken:
        if not await anyio.to_thread.run_sync(self._store.rotate, token_hash(refresh_token.token)):
            await self._revoke_family(refresh_token.family)
            raise TokenError("invalid_grant", "the refresh token was used already")
        assert refresh_token.resource is not None
        person = Person.from_json(refresh_token.person)
        return await self._issue(client, person, refresh_token.resource, scopes, refresh_token.family)

    # -- access tokens and revocation ------------------------------------------------------------------------------

    async def load_access_token(self, token: str) -> HubAccess | None:
        if not token.startswith(ACCESS_PREFIX):
            return None
        row = await anyio.to_thread.run_sync(self._store.token, token_hash(token))
        if row is None or row.kind != "access" or row.revoked:
            return None
        return HubAccess(
            token=token,
            client_id=row.client_id,
            scopes=row.scopes.split(),
            expires_at=int(aware(row.expires_at).timestamp()),
            resource=row.resource,
            subject=row.person_id,
            family=row.family,
        )

    async def revoke_token(self, token: HubAccess | HubRefresh) -> None:
        """An access token goes alone; a refresh token takes its family (and the access tokens it issued)."""
        if isinstance(token, HubRefresh):
            await self._revoke_family(token.family)
            return
        hashed = token_hash(token.token)
        await anyio.to_thread.run_sync(lambda: self._store.revoke(token=hashed))
        self._index.remove(hashed)

    async def _revoke_family(self, family: str) -> None:
        for hashed in await anyio.to_thread.run_sync(lambda: self._store.revoke(family=family)):
            self._index.remove(hashed)

    async def _issue(
        self, client: OAuthClientInformationFull, person: Person, resource: str, scopes: list[str], family: str
    ) -> OAuthToken:
        key = person_key(self.section, person)
        if key is None:
            raise TokenError("invalid_grant", f"no sign-in grant applies to {person.name} any more")
        access, refresh = ACCESS_PREFIX + secrets.token_urlsafe(32), REFRESH_PREFIX + secrets.token_urlsafe(32)
        access_ttl = int(self.section.ttl("token_ttl").total_seconds())
        refresh_ttl = int(self.section.ttl("refresh_ttl").total_seconds())
        common: dict[str, Any] = {
            "family": family,
            "client_id": client.client_id or "",
            "person_id": key.id,
            "person": json.dumps(person.to_json()),
            "resource": resource,
            "scopes": " ".join(scopes),
        }
        rows = [
            SignInTokenRow(token_hash=token_hash(access), kind="access", expires_at=self._at(access_ttl), **common),
            SignInTokenRow(token_hash=token_hash(refresh), kind="refresh", expires_at=self._at(refresh_ttl), **common),
        ]
        await anyio.to_thread.run_sync(self._store.add_tokens, rows, self._at(0))
        self._on_person(key)
        self._index.add(rows[0].token_hash, LiveToken(key, resource, self._clock() + access_ttl, family))
        await self._clients.used(client.client_id or "")
        return OAuthToken(
            access_token=access,
            token_type="Bearer",  # noqa: S106 - the token type's name
            expires_in=access_ttl,
            refresh_token=refresh,
            scope=" ".join(scopes) or None,
        )

    def _at(self, seconds: float) -> datetime:
        return datetime.fromtimestamp(self._clock() + seconds, UTC)

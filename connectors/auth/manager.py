"""`UpstreamAuth`: OAuth 2.0 for one upstream, shared identity or per subject.

It discovers the authorization server, registers the hub as a client, obtains tokens (client credentials or the
authorization code flow with PKCE), keeps them in a `TokenStore`, and refreshes them: ahead of expiry (in
`run()`, a background loop, or on the call path when a token is due) and after an upstream 401.

Refreshes of one token collapse into one: an anyio lock per subject in the process, and across replicas a lease
taken by compare-and-swap on the row's version. A refresh token the server refuses (`invalid_grant`) deletes the
stored tokens and raises `AuthorizationRequired` with a fresh authorization URL, so callers never loop.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import replace

import anyio
import httpx2

from connectors.auth.config import SHARED_SUBJECT, OAuth2Auth
from connectors.auth.discovery import AuthServerMetadata, Discovery, discover, parse_bearer_challenge
from connectors.auth.egress import EgressClient, EgressPolicy, check_url, origin_of
from connectors.auth.errors import (
    AuthConfigError,
    AuthError,
    AuthorizationRequired,
    DiscoveryError,
    IssuerMismatch,
    TokenRequestFailed,
    UnsafeURL,
)
from connectors.auth.oauth import (
    ClientIdentity,
    TokenSet,
    authorization_request_url,
    keep_refresh_token,
    new_pkce,
    register_client,
    request_token,
)
from connectors.auth.store import PendingAuthorization, TokenRecord, TokenStore

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
STATE_TTL_S = 600.0
LEASE_S = 30.0
_LEASE_POLL_S = 0.1


class UpstreamAuth:
    """OAuth 2.0 client state and token lifecycle for one upstream server."""

    def __init__(
        self,
        server: str,
        server_url: str,
        config: OAuth2Auth,
        *,
        store: TokenStore,
        redirect_uri: str | None = None,
        insecure_loopback: bool = False,
        http: EgressClient | None = None,
        clock: Clock = time.time,
    ) -> None:
        """Set up (no I/O happens until the first token is needed).

        Args:
            server: the upstream's name (the `[servers.NAME]` key); tokens are stored under it.
            server_url: the upstream's MCP endpoint, the protected resource.
            config: the `oauth2` auth table.
            store: where tokens, pending authorizations and registered clients are kept.
            redirect_uri: the hub's OAuth callback URL (needed for `authorization_code`).
            insecure_loopback: allow plain http to loopback (development and tests).
            http: a guarded client to use instead of one built from the policy (closed by `aclose` only if ours).
            clock: wall-clock seconds (tests may inject one).

        Raises:
            AuthConfigError: the upstream URL may not carry tokens (plain http off loopback).
        """
        self.server = server
        self.server_url = server_url
        self.config = config
        self.redirect_uri = redirect_uri
        self._store = store
        self._clock = clock
        trusted = {origin_of(server_url)} | {origin_of(u) for u in _configured_urls(config)}
        policy = EgressPolicy(insecure_loopback=insecure_loopback, trusted_origins=frozenset(trusted))
        try:
            check_url(server_url, policy)
        except UnsafeURL as exc:
            raise AuthConfigError(f"upstream '{server}': tokens may not be sent to {server_url}: {exc}") from None
        self._own_http = http is None
        self._http = http or EgressClient(policy)
        self._discovery: Discovery | None = None
        self._client: ClientIdentity | None = None
        self._setup_lock = anyio.Lock()
        self._locks: dict[str, anyio.Lock] = {}
        self._cache: dict[str, TokenRecord] = {}
        self._active: set[str] = set()
        self._retry_at: dict[str, float] = {}
        self._errors: dict[str, AuthError] = {}
        self._wake = anyio.Event()
        self.token_requests = 0
        """Token endpoint calls made by this process (for health pages and tests)."""

    # -- subjects ----------------------------------------------------------------------------------------------

    def subject_key(self, subject: str | None) -> str:
        """The key tokens are stored under: the subject when per user, else the shared identity.

        Raises:
            AuthConfigError: a per-user upstream was called without a subject.
        """
        if not self.config.per_user:
            return SHARED_SUBJECT
        if not subject:
            raise AuthConfigError(f"upstream '{self.server}' authorizes per user: a subject is required")
        return subject

    def last_error(self, subject: str | None) -> AuthError | None:
        """The error that last kept a request for this subject from carrying a token (None after success)."""
        return self._errors.get(self.subject_key(subject))

    # -- tokens ------------------------------------------------------------------------------------------------

    async def access_token(self, subject: str | None) -> str:
        """A valid access token for the subject, obtaining or refreshing one if needed.

        Raises:
            AuthorizationRequired: the subject must authorize (first time, or its refresh token was refused).
            TokenRequestFailed: the token endpoint refused the client's credentials.
            DiscoveryError: the upstream's authorization server could not be found or validated.
            UnsafeURL: discovery pointed somewhere the egress policy refuses.
        """
        key = self.subject_key(subject)
        self._active.add(key)
        record = self._cache.get(key) or await self._store.load(self.server, key)
        if record is not None and not self._due(record.tokens):
            self._cache[key] = record
            return record.tokens.access_token
        tokens = await self._renew(key, stale=record.tokens.access_token if record else None, challenge=None)
        return tokens.access_token

    async def ensure_authorized(self, subject: str | None) -> None:
        """Raise `AuthorizationRequired` (with its URL) if the subject cannot call the upstream yet."""
        await self.access_token(subject)

    async def token_for_request(self, subject: str | None) -> tuple[str | None, bool]:
        """For the HTTP auth flow: `(token or None, whether a 401 may still lead to a token)`. Never raises."""
        key = self.subject_key(subject)
        if self._discovery is None and self._needs_discovery():
            # Nothing discovered yet: without stored tokens, the upstream's 401 challenge leads to discovery. With
            # tokens another process stored (it did the discovery), they are used, and renewed after a 401.
            record = self._cache.get(key) or await self._store.load(self.server, key)
            if record is None:
                return None, True
        try:
            token = await self.access_token(subject)
        except AuthError as exc:
            self._record(key, exc)
            return None, False
        self._errors.pop(key, None)
        return token, True

    async def token_after_401(
        self, subject: str | None, failed: str | None, www_authenticate: str | None
    ) -> str | None:
        """For the HTTP auth flow: a new token after the upstream refused `failed`, or None. Never raises."""
        key = self.subject_key(subject)
        challenge = parse_bearer_challenge(www_authenticate)
        if challenge.get("error") == "insufficient_scope":
            return None
        try:
            tokens = await self._renew(key, stale=failed, challenge=challenge, force=True)
        except AuthError as exc:
            self._record(key, exc)
            return None
        self._errors.pop(key, None)
        return tokens.access_token

    async def forget(self, subject: str | None) -> None:
        """Delete the subject's stored tokens (sign out of the upstream)."""
        key = self.subject_key(subject)
        self._cache.pop(key, None)
        self._active.discard(key)
        await self._store.delete(self.server, key)

    def drop_cached(self) -> None:
        """Forget the tokens held in memory: another process replaced or deleted stored ones, and the next use
        reads the store."""
        self._cache.clear()

    def _record(self, key: str, exc: AuthError) -> None:
        self._errors[key] = exc
        reason = exc.reason if isinstance(exc, AuthorizationRequired) else exc.message
        logger.warning("upstream %s: no token for %s: %s", self.server, key, reason)

    def _early(self, tokens: TokenSet) -> float:
        return min(self.config.refresh_ahead_s, tokens.lifetime / 2)

    def _due(self, tokens: TokenSet) -> bool:
        return tokens.valid_for(self._clock()) <= self._early(tokens)

    def _lock(self, key: str) -> anyio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = anyio.Lock()
        return lock

    async def _renew(
        self, key: str, *, stale: str | None, challenge: dict[str, str] | None, force: bool = False
    ) -> TokenSet:
        async with self._lock(key):
            record = await self._store.load(self.server, key)
            if record is not None and record.tokens.access_token != stale and not self._due(record.tokens):
                self._cache[key] = record
                return record.tokens
            await self._ready(challenge)
            if record is None:
                if self.config.grant == "client_credentials":
                    return await self._store_new(key, await self._client_credentials(), None)
                raise await self._authorization_required(key, "authorization required")
            if record.tokens.refresh_token is None and self.config.grant == "authorization_code":
                if not force and record.tokens.valid_for(self._clock()) > 0:
                    return record.tokens
                await self._store.delete(self.server, key, expected_version=record.version)
                self._cache.pop(key, None)
                raise await self._authorization_required(key, "the access token expired and there is no refresh token")
            return await self._refresh_leased(key, record)

    async def _refresh_leased(self, key: str, record: TokenRecord) -> TokenSet:
        won, record = await self._lease(key, record)
        if not won:
            self._cache[key] = record
            return record.tokens
        old = record.tokens
        try:
            if self.config.grant == "client_credentials":
                new = await self._client_credentials()
            else:
                assert old.refresh_token is not None
                new = keep_refresh_token(
                    old,
                    await self._token(
                        {
                            "grant_type": "refresh_token",
                            "refresh_token": old.refresh_token,
                            "resource": self._resource(),
                        }
                    ),
                )
        except TokenRequestFailed as exc:
            if exc.error == "invalid_grant" and self.config.grant == "authorization_code":
                await self._store.delete(self.server, key, expected_version=record.version)
                self._cache.pop(key, None)
                raise await self._authorization_required(key, "the upstream refused the refresh token") from None
            await self._store.save(self.server, key, old, expected_version=record.version)
            raise
        return await self._store_new(key, new, record.version)

    async def _lease(self, key: str, record: TokenRecord) -> tuple[bool, TokenRecord]:
        """Take the refresh lease, or wait for the replica holding it and return its result."""
        with anyio.fail_after(LEASE_S * 2):
            while True:
                now = self._clock()
                if record.lease_until <= now:
                    leased = await self._store.lease(
                        self.server, key, expected_version=record.version, until=now + LEASE_S
                    )
                    if leased is not None:
                        return True, leased
                else:
                    await anyio.sleep(_LEASE_POLL_S)
                current = await self._store.load(self.server, key)
                if current is None:
                    raise await self._authorization_required(key, "the stored tokens were removed")
                if current.version != record.version and current.lease_until <= self._clock():
                    return False, current
                record = current

    async def _store_new(self, key: str, tokens: TokenSet, expected_version: int | None) -> TokenSet:
        saved = await self._store.save(self.server, key, tokens, expected_version=expected_version)
        if saved is None:
            saved = await self._store.load(self.server, key)
            if saved is None:
                raise await self._authorization_required(key, "the stored tokens were removed")
        self._cache[key] = saved
        self._active.add(key)
        self._retry_at.pop(key, None)
        self._wake.set()
        return saved.tokens

    async def _client_credentials(self) -> TokenSet:
        form = {"grant_type": "client_credentials", "resource": self._resource()}
        if self._scopes():
            form["scope"] = " ".join(self._scopes())
        return await self._token(form)

    async def _token(self, form: dict[str, str]) -> TokenSet:
        discovery, client = await self._ready(None)
        self.token_requests += 1
        return await request_token(
            self._http,
            discovery.metadata.token_endpoint,
            client,
            form,
            issuer=discovery.metadata.issuer,
            now=self._clock(),
        )

    # -- authorization code flow -------------------------------------------------------------------------------

    async def start_authorization(self, subject: str | None, *, binding: str = "") -> str:
        """Begin the authorization code flow for a subject and return the URL to open.

        The `state` is random, bound to the subject, single use and valid for 10 minutes; the PKCE verifier stays
        in the store. `binding` (see `PendingAuthorization.binding`) is kept with it for the callback to match.

        Raises:
            AuthConfigError: the grant is not `authorization_code`, or no redirect URI is configured.
            DiscoveryError: the authorization server has no authorization endpoint or lacks PKCE S256.
        """
        return await self._start(self.subject_key(subject), binding)

    async def _start(self, key: str, binding: str = "") -> str:
        if self.config.grant != "authorization_code":
            raise AuthConfigError(f"upstream '{self.server}' uses client credentials: nothing to authorize")
        if not self.redirect_uri:
            raise AuthConfigError("no OAuth redirect URI: set the hub's public URL")
        discovery, client = await self._ready(None)
        metadata = discovery.metadata
        assert metadata.authorization_endpoint is not None
        verifier, challenge = new_pkce()
        state = secrets.token_urlsafe(32)
        await self._store.put_pending(
            PendingAuthorization(
                state=state,
                server=self.server,
                subject=key,
                code_verifier=verifier,
                redirect_uri=self.redirect_uri,
                issuer=metadata.issuer,
                resource=self._resource(),
                expires_at=self._clock() + STATE_TTL_S,
                binding=binding,
            )
        )
        return authorization_request_url(
            metadata.authorization_endpoint,
            client_id=client.client_id,
            redirect_uri=self.redirect_uri,
            state=state,
            code_challenge=challenge,
            scopes=self._scopes(),
            resource=self._resource(),
        )

    async def finish_authorization(self, pending: PendingAuthorization, code: str, iss: str | None) -> TokenSet:
        """Redeem the code of a pending authorization (taken from the store by `UpstreamAuths`).

        Raises:
            IssuerMismatch: `iss` is not the issuer the authorization was started with (RFC 9207), or missing
                where the server promised it.
            TokenRequestFailed: the token endpoint refused the code.
        """
        discovery, _client = await self._ready(None)
        if iss is not None and iss != pending.issuer:
            raise IssuerMismatch(f"authorization response from issuer {iss!r}, expected {pending.issuer}")
        if iss is None and discovery.metadata.authorization_response_iss_parameter_supported:
            raise IssuerMismatch("the authorization response lacks the `iss` its server promised")
        if discovery.metadata.issuer != pending.issuer:
            raise IssuerMismatch("the upstream's authorization server changed during the authorization")
        tokens = await self._token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": pending.redirect_uri,
                "code_verifier": pending.code_verifier,
                "resource": pending.resource,
            }
        )
        async with self._lock(pending.subject):
            await self._store_new(pending.subject, tokens, None)
        self._errors.pop(pending.subject, None)
        return tokens

    async def _authorization_required(self, key: str, reason: str) -> AuthorizationRequired:
        url = await self._start(key)
        return AuthorizationRequired(url, server=self.server, subject=key, reason=reason)

    # -- discovery and registration ----------------------------------------------------------------------------

    def _needs_discovery(self) -> bool:
        cfg = self.config
        return not (cfg.token_url and (cfg.grant == "client_credentials" or cfg.authorization_url))

    def _resource(self) -> str:
        return self.config.resource or self.server_url

    def _scopes(self) -> tuple[str, ...]:
        if self.config.scopes:
            return tuple(self.config.scopes)
        return self._discovery.scopes if self._discovery else ()

    async def _ready(self, challenge: dict[str, str] | None) -> tuple[Discovery, ClientIdentity]:
        async with self._setup_lock:
            if self._discovery is None:
                self._discovery = await self._discover(challenge)
            if self._client is None:
                self._client = await self._client_identity(self._discovery.metadata)
            return self._discovery, self._client

    async def _discover(self, challenge: dict[str, str] | None) -> Discovery:
        cfg = self.config
        if not self._needs_discovery():
            assert cfg.token_url is not None
            metadata = AuthServerMetadata(
                issuer=cfg.issuer or "",
                token_endpoint=cfg.token_url,
                authorization_endpoint=cfg.authorization_url,
                code_challenge_methods_supported=("S256",),
            )
            return Discovery(resource=self._resource(), metadata=metadata)
        try:
            if challenge is None:
                challenge = await self._probe()
            found = await discover(self._http, self.server_url, challenge=challenge, issuer=cfg.issuer)
        except (httpx2.HTTPError, TimeoutError) as exc:
            raise DiscoveryError(f"upstream '{self.server}': discovery failed: {type(exc).__name__}") from None
        metadata = found.metadata
        if cfg.token_url or cfg.authorization_url:
            metadata = replace(
                metadata,
                token_endpoint=cfg.token_url or metadata.token_endpoint,
                authorization_endpoint=cfg.authorization_url or metadata.authorization_endpoint,
            )
        if cfg.grant == "authorization_code":
            if metadata.authorization_endpoint is None:
                raise DiscoveryError(f"{metadata.issuer} has no authorization endpoint")
            if "S256" not in metadata.code_challenge_methods_supported:
                raise DiscoveryError(f"{metadata.issuer} does not support PKCE with S256")
        logger.info("upstream %s: authorization server %s", self.server, metadata.issuer)
        return replace(found, metadata=metadata)

    async def _probe(self) -> dict[str, str]:
        """Ask the upstream without a token, for its `WWW-Authenticate` challenge."""
        resp = await self._http.get(self.server_url, headers={"Accept": "application/json, text/event-stream"})
        return parse_bearer_challenge(resp.headers.get("www-authenticate")) if resp.status == 401 else {}

    async def _client_identity(self, metadata: AuthServerMetadata) -> ClientIdentity:
        cfg = self.config
        if cfg.client_id:
            method = cfg.token_endpoint_auth_method or ("client_secret_basic" if cfg.client_secret else "none")
            supported = metadata.token_endpoint_auth_methods_supported
            if cfg.token_endpoint_auth_method is None and supported and method not in supported:
                method = "client_secret_post" if "client_secret_post" in supported else method
            return ClientIdentity(cfg.client_id, cfg.client_secret, method)
        if cfg.client_metadata_url and metadata.client_id_metadata_document_supported:
            return ClientIdentity(cfg.client_metadata_url, None, "none")
        stored = await self._store.load_client(self.server, metadata.issuer)
        if stored is not None:
            return stored
        if metadata.registration_endpoint and self.redirect_uri:
            client = await register_client(
                self._http,
                metadata.registration_endpoint,
                redirect_uri=self.redirect_uri,
                client_name=cfg.client_name,
                scopes=self._scopes(),
                auth_methods_supported=metadata.token_endpoint_auth_methods_supported,
            )
            await self._store.save_client(self.server, metadata.issuer, client)
            logger.info("upstream %s: registered client at %s", self.server, metadata.issuer)
            return client
        raise AuthConfigError(
            f"upstream '{self.server}': {metadata.issuer} offers neither client ID metadata documents nor dynamic "
            "registration: configure a client_id"
        )

    # -- background refresh -----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Refresh tokens in use before they expire; runs until cancelled (start it in the owner's task group)."""
        while True:
            self._wake = anyio.Event()
            now = self._clock()
            next_at = now + 300.0
            for key in list(self._active):
                record = self._cache.get(key)
                if record is None or record.tokens.expires_at is None:
                    continue
                at = max(record.tokens.expires_at - self._early(record.tokens), self._retry_at.get(key, 0.0))
                if at > now:
                    next_at = min(next_at, at)
                    continue
                try:
                    await self._renew(key, stale=record.tokens.access_token, challenge=None)
                except AuthError as exc:
                    self._record(key, exc)
                    if isinstance(exc, AuthorizationRequired):
                        self._active.discard(key)
                    else:
                        self._retry_at[key] = self._clock() + min(30.0, max(1.0, self._early(record.tokens) / 2))
                        next_at = min(next_at, self._retry_at[key])
            with anyio.move_on_after(max(0.01, next_at - self._clock())):
                await self._wake.wait()

    async def aclose(self) -> None:
        """Close the HTTP client (if this object created it)."""
        if self._own_http:
            await self._http.aclose()


def _configured_urls(config: OAuth2Auth) -> list[str]:
    return [u for u in (config.token_url, config.authorization_url, config.issuer) if u]

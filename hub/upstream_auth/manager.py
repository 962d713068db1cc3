"""Upstream authentication in the running hub: credentials on every upstream session, per-user OAuth sessions,
and the start and finish of authorizations.

- **Shared identities** (static headers, client credentials, or an authorization code grant an admin authorized
  once) are set on the registry's one session per upstream, through the registry's `auth_for` hook, so servers
  added at run time (admin API) get the same setup as those in the config file.
- **Per-user upstreams** (`grant = "authorization_code", per_user = true`): each virtual key authorizes separately
  (the subject is the key's id) and its calls run on an upstream session of its own that carries its own token:
  one session per (server, key), closed after `IDLE_S` without calls. The registry's session of such a server
  (the catalog: tools/list, prompts, resources and completions) runs as the hub identity (`HUB_SUBJECT`), which
  an admin authorizes once with `agenthub auth login SERVER`.
- A call that needs an authorization its caller has not given fails with `AuthorizationNeeded`, which carries
  a link to the hub's own confirmation page (`hub.upstream_auth.flows`), bound to the browser that opens it
  first; the upstream's authorization URL is only given to that browser, after it confirmed. A shared
  identity's URL is never handed to callers (whoever opened it would bind the hub's identity to their own
  account): those calls fail with `UpstreamFailed`, naming the admin command.

Tokens reach only their issuer and their upstream (`connectors.auth`); nothing here logs them.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

import anyio
import anyio.abc
import httpx2
from sqlalchemy.engine import Engine

from connectors.auth import (
    MASTER_KEY_ENV,
    SHARED_SUBJECT,
    AuthConfigError,
    AuthError,
    AuthorizationRequired,
    HeadersAuth,
    MasterKeyError,
    MemoryTokenStore,
    NoAuth,
    OAuth2Auth,
    OAuth2HttpAuth,
    TokenStore,
    UpstreamAuth,
    UpstreamAuths,
    callback_params,
    resolve_auth_secrets,
)
from connectors.config import HttpConfig, SseConfig, StdioConfig
from connectors.registry import Registry, RegistryView
from connectors.upstream import Upstream
from hub.call import Call
from hub.errors import AuthorizationNeeded, BadRequest, Unauthenticated, UpstreamFailed
from hub.executors.mcp import UpstreamFor
from hub.paths import OAUTH_CALLBACK_PATH, OAUTH_START_PATH
from hub.settings import ConfigError, Settings
from hub.upstream_auth.flows import AuthFlow, AuthLinks, MemoryFlowStore, check_callback, digest
from hub.upstream_auth.store import SqlTokenStore

logger = logging.getLogger(__name__)

HUB_SUBJECT = SHARED_SUBJECT
"""The subject of the hub's own identity at a per-user upstream (its catalog session)."""
IDLE_S = 900.0
"""A per-user upstream session unused this long is closed (the next call opens a new one)."""

ServerConfig = StdioConfig | SseConfig | HttpConfig
AuthTable = NoAuth | HeadersAuth | OAuth2Auth


def open_token_store(settings: Settings, engine: Engine, environ: Mapping[str, str] | None = None) -> TokenStore:
    """The token store: encrypted in the database when `AGENTHUB_MASTER_KEY` is set (required when a configured
    server uses OAuth 2.0), else in memory (OAuth upstreams cannot be added at run time then).

    Raises:
        ConfigError: a server uses OAuth 2.0 and the master key is missing, too short or wrong.
    """
    env = os.environ if environ is None else environ
    oauth = sorted(n for n, s in settings.servers.items() if isinstance(getattr(s, "auth", None), OAuth2Auth))
    if not env.get(MASTER_KEY_ENV) and not oauth:
        return MemoryTokenStore()
    try:
        return SqlTokenStore.from_env(engine, env)
    except MasterKeyError as exc:
        needed = f" (servers {', '.join(oauth)} use OAuth 2.0)" if oauth else ""
        raise ConfigError(f"{exc.message}{needed}") from None


@dataclass
class _Session:
    upstream: Upstream
    last_used: float


class HubAuth:
    """Credentials for the hub's upstream sessions, and the per-user sessions of per-user OAuth upstreams."""

    def __init__(self, settings: Settings, store: TokenStore, registry: Registry) -> None:
        self.settings = settings
        self.auths = UpstreamAuths(store)
        self.redirect_uri = settings.oauth_redirect_uri()
        self.public_url = self.redirect_uri.removesuffix(OAUTH_CALLBACK_PATH)
        """The hub's address as browsers reach it."""
        flows = store if isinstance(store, SqlTokenStore) else MemoryFlowStore()
        self.links = AuthLinks(flows, self.public_url + OAUTH_START_PATH)
        self._registry = registry
        self._setup: dict[str, tuple[str, AuthTable]] = {}
        self._refreshers: dict[str, anyio.CancelScope] = {}
        self._sessions: dict[tuple[str, str], _Session] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        registry.auth_for = self.auth_for
        registry.add_listener(self._registry_changed)

    # -- lifetime ---------------------------------------------------------------------------------------------

    def check(self, servers: Mapping[str, ServerConfig]) -> None:
        """Set up the config file's servers before they start, so a configuration that cannot work stops the hub.

        Raises:
            ConfigError: a server's auth configuration cannot work.
        """
        for name, config in servers.items():
            try:
                self.auth_for(config)
            except AuthConfigError as exc:
                raise ConfigError(f"servers.{name}.auth: {exc.message}") from None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Refresh tokens ahead of expiry and close idle per-user sessions until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for name in list(self._setup):
                self._start_refresher(name)
            task_status.started()
            try:
                while True:
                    await anyio.sleep(min(60.0, IDLE_S / 4))
                    self._close_idle()
            finally:
                self._tg = None

    async def follow(self, _versions: Mapping[str, str]) -> None:
        """Another process stored or deleted upstream tokens (an authorization, a refresh, a logout): drop the tokens
        held in memory, so the next call reads the stored ones instead of using a replaced or deleted token."""
        for oauth in self.auths:
            oauth.drop_cached()

    async def aclose(self) -> None:
        """Stop every per-user session and close the OAuth clients."""
        for session in self._sessions.values():
            session.upstream.stop()
        self._sessions.clear()
        await self.auths.aclose()

    # -- the registry's hook ----------------------------------------------------------------------------------

    def auth_for(self, config: ServerConfig) -> httpx2.Auth | None:
        """The `httpx2.Auth` for an upstream's shared session; (re)configures the upstream's auth when it changed.

        Raises:
            AuthConfigError: a secret reference cannot be resolved, an OAuth upstream cannot be added without the
                encrypted store, or the configuration cannot work for the URL.
        """
        name = config.name
        if isinstance(config, StdioConfig):
            self._forget(name)
            return None
        table = config.auth
        if self.settings.servers.get(name) is not config:
            table = resolve_auth_secrets(table, self.settings.base_dir, f"servers.{name}.auth")
        if self._setup.get(name) != (config.url, table):
            if isinstance(table, OAuth2Auth) and isinstance(self.auths.store, MemoryTokenStore):
                if name not in self.settings.servers:
                    raise AuthConfigError(f"set {MASTER_KEY_ENV} to add OAuth 2.0 upstreams at run time")
            self._forget(name)
            self.auths.add(
                name,
                config.url,
                table,
                redirect_uri=self.redirect_uri,
                insecure_loopback=self.settings.hub.insecure_loopback,
            )
            self._setup[name] = (config.url, table)
            self._start_refresher(name)
        oauth = self.auths.get(name)
        if oauth is not None and oauth.config.per_user:
            return OAuth2HttpAuth(oauth, HUB_SUBJECT)
        return self.auths.http_auth(name)

    def _forget(self, name: str) -> None:
        self._setup.pop(name, None)
        scope = self._refreshers.pop(name, None)
        if scope is not None:
            scope.cancel()
        for key in [k for k in self._sessions if k[0] == name]:
            self._sessions.pop(key).upstream.stop()
        old = self.auths.remove(name)
        if old is not None and self._tg is not None:
            self._tg.start_soon(old.aclose)

    def _start_refresher(self, name: str) -> None:
        oauth = self.auths.get(name)
        if oauth is None or self._tg is None or name in self._refreshers:
            return
        scope = anyio.CancelScope()
        self._refreshers[name] = scope

        async def refresh() -> None:
            with scope:
                await oauth.run()

        self._tg.start_soon(refresh, name=f"oauth-refresh:{name}")

    async def _registry_changed(self, view: RegistryView) -> None:
        """Drop the auth state of removed servers and the per-user sessions of replaced ones."""
        upstreams = self._registry.upstreams
        for name in [n for n in self._setup if n not in upstreams]:
            self._forget(name)
        for key, session in list(self._sessions.items()):
            current = upstreams.get(key[0])
            if current is None or current.config is not session.upstream.config:
                self._sessions.pop(key).upstream.stop()

    # -- calls ------------------------------------------------------------------------------------------------

    def upstream_for(self, inner: UpstreamFor) -> UpstreamFor:
        """The executor's session picker: the caller's own session on per-user upstreams, else `inner`'s.

        A call to an OAuth upstream whose shared session is down checks the authorization first, so it fails with
        the reason (not authorized, token endpoint refused) rather than "not connected".
        """

        async def pick(call: Call, server: str) -> Upstream:
            shared = self._registry.upstreams.get(server)
            if shared is not None and self.per_user(server):
                if shared.config.session == "per_client" and call.context.get("downstream") is not None:
                    await self.ensure_authorized(call, server)
                    return await inner(call, server)
                return await self.session_for(call, server, shared)
            if shared is not None and not shared.ready and self.auths.get(server) is not None:
                await self.ensure_authorized(call, server)
            return await inner(call, server)

        return pick

    def per_user(self, server: str) -> bool:
        """Whether calls to `server` carry each caller's own token."""
        return self.auths.per_user(server)

    def http_auth_for(self, call: Call, server: str) -> httpx2.Auth | None:
        """The credentials for a session opened for this call (per-client sessions): the caller's own token on a
        per-user upstream, else the shared identity's."""
        oauth = self.auths.get(server)
        if oauth is not None and oauth.config.per_user:
            return OAuth2HttpAuth(oauth, subject_of(call))
        return self.auths.http_auth(server)

    async def ensure_authorized(self, call: Call, server: str) -> None:
        """Make sure the caller (per-user upstream) or the hub (shared identity) holds a usable token.

        Raises:
            AuthorizationNeeded: the caller must authorize at the link it carries (a new one each time).
            UpstreamFailed: the hub's identity is not authorized, or the authorization server failed.
        """
        oauth = self.auths.get(server)
        if oauth is None:
            return
        subject = subject_of(call) if oauth.config.per_user else None
        try:
            await oauth.ensure_authorized(subject)
        except AuthorizationRequired:
            if subject is None:
                raise UpstreamFailed(
                    f"upstream '{server}' is not authorized yet: an administrator must run "
                    f"`agenthub auth login {server}`"
                ) from None
            self._drop_session(server, subject)
            link = await self.links.offer(server, subject)
            raise AuthorizationNeeded(server, link, secrets.token_urlsafe(12)) from None
        except AuthError as exc:
            raise UpstreamFailed(f"upstream '{server}': authorization failed: {exc.message}") from None

    async def session_for(self, call: Call, server: str, shared: Upstream) -> Upstream:
        """The caller's own session to a per-user upstream (opened on first use, shared by the caller's calls).

        Raises:
            AuthorizationNeeded: the caller has not authorized (or its authorization was revoked).
            UpstreamFailed: the session could not be opened.
        """
        await self.ensure_authorized(call, server)
        subject = subject_of(call)
        key = (server, subject)
        found = self._sessions.get(key)
        if found is None or found.upstream.config is not shared.config:
            if found is not None:
                found.upstream.stop()
            oauth = self.auths.get(server)
            assert oauth is not None
            upstream = Upstream(shared.config, http_auth=OAuth2HttpAuth(oauth, subject))
            found = self._sessions[key] = _Session(upstream, time.monotonic())
            if self._tg is None:
                raise UpstreamFailed("the hub is not running")
            self._tg.start_soon(upstream.run, name=f"upstream:{server}:user")
        found.last_used = time.monotonic()
        if not await found.upstream.wait_ready(shared.config.connect_timeout_s):
            await self.ensure_authorized(call, server)
            raise UpstreamFailed(f"upstream '{server}' is not available: {found.upstream.health.error or 'connecting'}")
        return found.upstream

    def _drop_session(self, server: str, subject: str) -> None:
        found = self._sessions.pop((server, subject), None)
        if found is not None:
            found.upstream.stop()

    def _close_idle(self) -> None:
        now = time.monotonic()
        for key, session in list(self._sessions.items()):
            if now - session.last_used > IDLE_S:
                self._sessions.pop(key).upstream.stop()

    # -- authorizations ---------------------------------------------------------------------------------------

    def _oauth(self, server: str) -> UpstreamAuth:
        oauth = self.auths.get(server)
        if oauth is None:
            raise BadRequest(f"server '{server}' does not use OAuth 2.0")
        return oauth

    async def login_url(self, server: str, subject: str | None) -> str:
        """Start an authorization: for a subject (a key id) on a per-user upstream, a link to the hub's
        confirmation page (bound to the browser that opens it first); for the hub's own identity, the upstream's
        authorization URL (the administrator who asks is the one who completes it).

        Raises:
            BadRequest: the server does not use the authorization code grant, or a subject does not fit it.
            UpstreamFailed: the authorization server could not be reached or validated.
        """
        oauth = self._oauth(server)
        if subject is None:
            return await self._start(oauth, HUB_SUBJECT, binding="")
        if not oauth.config.per_user:
            raise BadRequest(f"server '{server}' uses one shared identity: authorize it without a subject")
        return await self.links.offer(server, subject)

    async def follow_link(self, flow: AuthFlow, browser: str) -> str:
        """The upstream's authorization URL for a link this browser has used up (`AuthLinks.take`); the
        authorization is bound to the browser, so only its callback completes it.

        Raises:
            BadRequest: the server no longer authorizes per user.
            UpstreamFailed: the authorization server could not be reached or validated.
        """
        oauth = self._oauth(flow.server)
        if not oauth.config.per_user:
            raise BadRequest(f"server '{flow.server}' no longer authorizes per user")
        return await self._start(oauth, flow.subject, binding=digest(browser))

    async def _start(self, oauth: UpstreamAuth, subject: str, *, binding: str) -> str:
        try:
            return await oauth.start_authorization(subject, binding=binding)
        except AuthConfigError as exc:
            raise BadRequest(exc.message) from None
        except AuthError as exc:
            raise UpstreamFailed(f"upstream '{oauth.server}': {exc.message}") from None

    async def logout(self, server: str, subject: str | None) -> None:
        """Delete a subject's tokens (or the hub identity's) and close its session."""
        key = subject or HUB_SUBJECT
        await self._oauth(server).forget(key)
        self._drop_session(server, key)

    async def complete(self, query: Mapping[str, str], browser: str | None = None) -> tuple[str, str]:
        """Finish an authorization from the callback's query and the browser's link cookie; returns
        `(server, subject)`.

        The state is used up before any check, so a refused callback cannot be replayed, and nothing is stored.
        A newly authorized shared identity reconnects its upstream session at once.

        Raises:
            Forbidden: a key's authorization arrived in another browser than the one bound to it, or was not
                started from a link (`check_callback`).
            BadRequest: the callback is invalid (unknown or used state, wrong issuer, refused code).
        """
        try:
            state, code, iss = callback_params(query)
            pending = await self.auths.take_authorization(state)
        except AuthError as exc:
            raise BadRequest(exc.message) from None
        check_callback(pending, browser)
        try:
            await self._oauth(pending.server).finish_authorization(pending, code, iss)
        except AuthError as exc:
            raise BadRequest(exc.message) from None
        server, subject = pending.server, pending.subject
        shared = self._registry.upstreams.get(server)
        if subject == HUB_SUBJECT and shared is not None and not shared.ready:
            self._registry.add(shared.config)
        logger.info("upstream %s: authorized for %s", server, subject)
        return server, subject


def subject_of(call: Call) -> str:
    """The subject of a call's per-user tokens: its virtual key's id."""
    if call.principal is None:
        raise Unauthenticated("a virtual key is required to call a per-user upstream")
    return call.principal.key.id

"""`UpstreamAuths`: the auth state of every upstream, and the one entry point for the OAuth callback."""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator, Mapping

import anyio
import httpx2

from connectors.auth.config import HeadersAuth, NoAuth, OAuth2Auth
from connectors.auth.errors import AuthConfigError, InvalidAuthorizationState
from connectors.auth.httpauth import HeadersHttpAuth, OAuth2HttpAuth
from connectors.auth.manager import Clock, UpstreamAuth
from connectors.auth.oauth import TokenSet
from connectors.auth.store import PendingAuthorization, TokenStore


class UpstreamAuths:
    """One `UpstreamAuth` per OAuth upstream, over one token store."""

    def __init__(self, store: TokenStore, *, clock: Clock = time.time) -> None:
        self.store = store
        self._clock = clock
        self._oauth: dict[str, UpstreamAuth] = {}
        self._headers: dict[str, HeadersAuth] = {}

    def add(
        self,
        server: str,
        url: str,
        config: NoAuth | HeadersAuth | OAuth2Auth,
        *,
        redirect_uri: str | None = None,
        insecure_loopback: bool = False,
    ) -> None:
        """Register an upstream's auth configuration (no I/O).

        Replaces the upstream's previous configuration; an `UpstreamAuth` it replaces is not closed here (see
        `remove`).

        Raises:
            AuthConfigError: the configuration cannot work for this URL.
        """
        if isinstance(config, OAuth2Auth):
            auth = UpstreamAuth(
                server,
                url,
                config,
                store=self.store,
                redirect_uri=redirect_uri,
                insecure_loopback=insecure_loopback,
                clock=self._clock,
            )
            self.remove(server)
            self._oauth[server] = auth
        else:
            self.remove(server)
            if isinstance(config, HeadersAuth):
                self._headers[server] = config

    def remove(self, server: str) -> UpstreamAuth | None:
        """Forget an upstream's configuration; returns its `UpstreamAuth` (for the caller to close), if any."""
        self._headers.pop(server, None)
        return self._oauth.pop(server, None)

    def __iter__(self) -> Iterator[UpstreamAuth]:
        return iter(self._oauth.values())

    def get(self, server: str) -> UpstreamAuth | None:
        """The OAuth state of an upstream, or None when it does not use OAuth."""
        return self._oauth.get(server)

    def per_user(self, server: str) -> bool:
        """Whether calls to this upstream carry each subject's own token (one session per subject)."""
        auth = self._oauth.get(server)
        return auth is not None and auth.config.per_user

    def http_auth(self, server: str, subject: str | None = None) -> httpx2.Auth | None:
        """The httpx2 `Auth` for an upstream's HTTP client (None when it needs none)."""
        oauth = self._oauth.get(server)
        if oauth is not None:
            return OAuth2HttpAuth(oauth, subject)
        headers = self._headers.get(server)
        return HeadersHttpAuth(headers.headers) if headers is not None else None

    async def start_authorization(self, server: str, subject: str | None, *, binding: str = "") -> str:
        """The URL at which `subject` authorizes the hub for `server` (see `UpstreamAuth.start_authorization`).

        Raises:
            AuthConfigError: the upstream does not use the authorization code grant.
        """
        return await self._require(server).start_authorization(subject, binding=binding)

    async def take_authorization(self, state: str) -> PendingAuthorization:
        """Remove the pending authorization a callback's `state` names, for a caller that checks it before
        `UpstreamAuth.finish_authorization` (a used state cannot be replayed, whatever the check decides).

        Raises:
            InvalidAuthorizationState: the state is unknown, used or expired.
        """
        pending = await self.store.take_pending(state, now=self._clock())
        if pending is None:
            raise InvalidAuthorizationState("unknown, used or expired authorization state")
        return pending

    async def complete_authorization(
        self, state: str, code: str, iss: str | None, *, binding: str = ""
    ) -> tuple[str, str, TokenSet]:
        """Finish an authorization from the callback's `state`, `code` and `iss` parameters.

        Args:
            state: the callback's `state`.
            code: the callback's `code`.
            iss: the callback's `iss`, if any.
            binding: what the callback presents; an authorization started with a binding completes only with
                the same one.

        Returns:
            `(server, subject, tokens)`; the tokens are stored already.

        Raises:
            InvalidAuthorizationState: the state is unknown, used or expired, or bound to something else.
            IssuerMismatch: `iss` does not match.
            TokenRequestFailed: the code was refused.
        """
        pending = await self.take_authorization(state)
        if pending.binding and not hmac.compare_digest(pending.binding, binding):
            raise InvalidAuthorizationState("the authorization was started elsewhere (its binding differs)")
        auth = self._require(pending.server)
        tokens = await auth.finish_authorization(pending, code, iss)
        return pending.server, pending.subject, tokens

    async def run(self) -> None:
        """Run every upstream's background refresher until cancelled."""
        async with anyio.create_task_group() as tg:
            for auth in self._oauth.values():
                tg.start_soon(auth.run)

    async def aclose(self) -> None:
        """Close every upstream's HTTP client."""
        for auth in self._oauth.values():
            await auth.aclose()

    def _require(self, server: str) -> UpstreamAuth:
        auth = self._oauth.get(server)
        if auth is None:
            raise AuthConfigError(f"upstream '{server}' does not use OAuth")
        return auth


def callback_params(query: Mapping[str, str]) -> tuple[str, str, str | None]:
    """`(state, code, iss)` from the callback's query string.

    Raises:
        InvalidAuthorizationState: the callback carries an OAuth error or lacks state or code.
    """
    error = query.get("error")
    if error:
        raise InvalidAuthorizationState(f"the authorization server answered {error}")
    state, code = query.get("state"), query.get("code")
    if not state or not code:
        raise InvalidAuthorizationState("the callback lacks state or code")
    return state, code, query.get("iss")

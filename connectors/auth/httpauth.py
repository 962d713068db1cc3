"""httpx2 `Auth` plug-ins for upstream MCP clients: static headers, and OAuth 2.0 bearer tokens.

`OAuth2HttpAuth` sets the subject's token on every request (replacing whatever `Authorization` the request
carried, so a downstream client's own token is never forwarded), and on a 401 gets a new token once and retries
the request once. It never raises into the transport: when no token can be had, the request goes out without
one and the 401 comes back; `UpstreamAuth.last_error(subject)` / `ensure_authorized(subject)` tell why.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Mapping

import httpx2

from connectors.auth.manager import UpstreamAuth


def _set_bearer(request: httpx2.Request, token: str | None) -> None:
    if token is None:
        request.headers.pop("Authorization", None)
    else:
        request.headers["Authorization"] = f"Bearer {token}"


class OAuth2HttpAuth(httpx2.Auth):
    """Bearer tokens for one (upstream, subject), refreshed ahead of expiry and on a 401 (one retry)."""

    requires_request_body = True

    def __init__(self, auth: UpstreamAuth, subject: str | None = None) -> None:
        self.auth = auth
        self.subject = subject
        auth.subject_key(subject)

    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        raise RuntimeError("OAuth2HttpAuth works with httpx2.AsyncClient only")

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        if self.requires_request_body:
            await request.aread()
        token, may_retry = await self.auth.token_for_request(self.subject)
        _set_bearer(request, token)
        response = yield request
        if response.status_code != 401 or not may_retry:
            return
        fresh = await self.auth.token_after_401(self.subject, token, response.headers.get("www-authenticate"))
        if fresh is None or fresh == token:
            return
        _set_bearer(request, fresh)
        yield request


class HeadersHttpAuth(httpx2.Auth):
    """Static headers (an API key) set on every request, replacing any the request carried."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = dict(headers)

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        request.headers.pop("Authorization", None)
        request.headers.update(self._headers)
        yield request

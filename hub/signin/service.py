"""`SignIn`: the parts of sign-in one hub process owns (the authorization server, the identity provider's
client, the live tokens), and the two browser steps around the identity provider.

`GET /signin/login` (where `/authorize` sends the browser) starts the OIDC login at the provider, with the
state, nonce and PKCE verifier in a signed cookie (`hub.identity.oidc.OidcLogin`, the admin login's relying
party); `GET /signin/callback` finishes it, maps the person to their grants and sends the browser back to the
MCP client with a code, its `state` and the hub's `iss` (RFC 9207).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from hub.doors.web import json_response
from hub.governance.keys import VirtualKey
from hub.identity.oidc import OidcError, OidcLogin, OidcSection
from hub.signin.clients import ClientDirectory
from hub.signin.config import SignInSection
from hub.signin.people import Person, claims_read, person_key
from hub.signin.provider import LOGIN_PATH, AuthorizationServer
from hub.signin.store import VERSION, SignInStore, aware, state_key
from hub.signin.tokens import LiveToken, TokenIndex
from hub.store.signin_tables import SignInTokenRow

logger = logging.getLogger(__name__)

CALLBACK_PATH = "/signin/callback"
STATE_COOKIE = "agenthub_signin"
REQUEST_COOKIE = "agenthub_signin_request"


class SignIn:
    """Sign-in for one running hub."""

    def __init__(
        self,
        section: SignInSection,
        store: SignInStore,
        signing_key: bytes,
        on_person: Callable[[VirtualKey], None],
        *,
        insecure_loopback: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.section = section
        self.index = TokenIndex(clock)
        self.clients = ClientDirectory(section, store, insecure_loopback=insecure_loopback, clock=clock)
        self.server = AuthorizationServer(section, store, self.clients, self.index, on_person, clock=clock)
        self._store = store
        self._on_person = on_person
        self._clock = clock
        self._http = httpx2.AsyncClient(timeout=10)
        self._version = ""
        idp = section.idp
        oidc = OidcSection(
            issuer=idp.issuer,
            client_id=idp.client_id,
            client_secret=idp.client_secret,
            redirect_uri=section.issuer + CALLBACK_PATH,
            scopes=idp.scopes,
            groups_claim=idp.groups_claim,
        )
        self.login = OidcLogin(oidc, signing_key, self._http, clock=clock)

    @classmethod
    async def open(
        cls, section: SignInSection, engine: Any, on_person: Callable[[VirtualKey], None], **kwargs: Any
    ) -> SignIn:
        """Create the tables if missing and load the live access tokens."""
        store = await anyio.to_thread.run_sync(SignInStore, engine)
        key = await anyio.to_thread.run_sync(state_key, engine)
        signin = cls(section, store, key, on_person, **kwargs)
        await signin.follow({}, first=True)
        return signin

    async def follow(self, versions: Mapping[str, str], *, first: bool = False) -> None:
        """Pick up access tokens other replicas issued or revoked (the meta value `signin_version` moved), or all
        of them at start. A token issued here while the read ran is kept: only revoked ones are dropped."""
        version = versions.get(VERSION, "")
        if not first and version == self._version:
            return
        now = datetime.fromtimestamp(self._clock(), UTC)
        try:
            live, revoked = await anyio.to_thread.run_sync(self._store.access_tokens, now)
        except Exception:
            if first:
                raise
            logger.exception("reading the sign-in tokens failed")  # tried again at the next poll
            return
        self._version = version
        for row in live:
            if not self.index.holds(row.token_hash):
                self._load(row)
        for hashed in revoked:
            self.index.remove(hashed)

    def _load(self, row: SignInTokenRow) -> None:
        person = person_key(self.section, Person.from_json(json.loads(row.person)))
        if person is None:  # the grants no longer cover this person
            return
        self._on_person(person)
        expires = aware(row.expires_at).timestamp()
        self.index.add(row.token_hash, LiveToken(person, row.resource, expires, row.family))

    async def aclose(self) -> None:
        await self._http.aclose()

    def resource_of(self, server: str | None) -> str:
        """The MCP endpoint a request reached, as a token audience."""
        base = self.server.endpoint()
        return base if server is None else f"{base}/{server}"

    def check(self, presented: str, server: str | None) -> VirtualKey | None:
        """The person behind an access token presented at `/mcp` or `/mcp/{server}` (hot path: in memory)."""
        return self.index.check(presented, self.resource_of(server))

    def challenge(self, server: str | None) -> str:
        """`WWW-Authenticate` for a refused MCP request: where the protected resource metadata is (RFC 9728)."""
        suffix = "/mcp" if server is None else f"/mcp/{server}"
        url = f"{self.section.issuer}/.well-known/oauth-protected-resource{suffix}"
        return f'Bearer realm="agenthub", resource_metadata="{url}"'

    # -- the browser steps -------------------------------------------------------------------------------------------

    async def start(self, request: Request) -> Response:
        """`GET /signin/login?request=...`: on to the identity provider."""
        pending = request.query_params.get("request", "")
        if not pending:
            return _page_error("the sign-in request is missing (start again from your MCP client)")
        try:
            url, cookie = await self.login.start()
        except OidcError as exc:
            return _page_error(f"sign-in is unavailable: {exc}", 502)
        response = RedirectResponse(url, status_code=302)
        secure = self.section.issuer.startswith("https://")
        for name, value in ((STATE_COOKIE, cookie), (REQUEST_COOKIE, pending)):
            response.set_cookie(name, value, max_age=600, httponly=True, samesite="lax", path="/signin", secure=secure)
        return response

    async def finish(self, request: Request) -> Response:
        """`GET /signin/callback`: who signed in, their grants, and a code back to the MCP client."""
        try:
            identity = await self.login.finish(dict(request.query_params), request.cookies.get(STATE_COOKIE))
        except OidcError as exc:
            return _page_error(f"sign-in failed: {exc}")
        now = datetime.fromtimestamp(self._clock(), UTC)
        raw = await anyio.to_thread.run_sync(self._store.take_pending, request.cookies.get(REQUEST_COOKIE, ""), now)
        if raw is None:
            return _page_error("the sign-in request expired or was completed already (start again)")
        pending: dict[str, Any] = json.loads(raw)
        person = Person(
            issuer=self.section.idp.issuer,
            subject=identity.subject,
            email=identity.email,
            groups=identity.groups,
            claims=claims_read(self.section, identity.claims),
        )
        if person_key(self.section, person) is None:
            denied = {"error": "access_denied", "error_description": f"no sign-in grant applies to {person.name}"}
            return self._back(pending, denied)
        code = await self.server.issue_code(pending, person)
        return self._back(pending, {"code": code})

    def _back(self, pending: dict[str, Any], params: dict[str, str]) -> Response:
        values = {**params, **({"state": pending["state"]} if pending.get("state") is not None else {})}
        values["iss"] = self.section.issuer
        redirect = str(pending["redirect_uri"])
        separator = "&" if "?" in redirect else "?"
        response = RedirectResponse(f"{redirect}{separator}{urlencode(values)}", status_code=302)
        response.delete_cookie(STATE_COOKIE, path="/signin")
        response.delete_cookie(REQUEST_COOKIE, path="/signin")
        return response


def _page_error(message: str, status: int = 400) -> Response:
    return json_response({"error": {"message": message, "type": "sign_in_error"}}, status)


__all__ = ["CALLBACK_PATH", "LOGIN_PATH", "SignIn"]

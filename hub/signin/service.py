"""`SignIn`: the parts of sign-in one hub process owns (the authorization server, the identity provider's
client, the live tokens), and the two browser steps around the identity provider.

`GET /signin/login` (where `/authorize` sends the browser) starts the OIDC login at the provider, with the
state, nonce and PKCE verifier in a signed cookie (`hub.identity.oidc.OidcLogin`, the admin login's relying
party); `GET /signin/callback` finishes it and maps the person to their grants; unless the person approved this
client for the same reach before, the consent page (`hub.signin.consent`) asks them, and `POST /signin/consent`
takes the answer; then the browser goes back to the MCP client with a code (or `access_denied`), its `state` and
the hub's `iss` (RFC 9207). Each completed or refused sign-in is an entry of the audit chain, written in the same
transaction as the person's row.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import anyio
import httpx2
from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from hub.audit.chain import AuditEvent
from hub.doors.web import json_response
from hub.governance.keys import VirtualKey
from hub.identity.oidc import OidcError, OidcLogin, OidcSection
from hub.signin.clients import ClientDirectory
from hub.signin.config import SignInSection
from hub.signin.consent import CONSENT_COOKIE, CONSENT_PATH, consent_page, csrf_token, csrf_valid, fingerprint
from hub.signin.people import Person, claims_read, person_key
from hub.signin.provider import LOGIN_PATH, PENDING_TTL_S, AuthorizationServer
from hub.signin.store import VERSION, SignInStore, aware, state_key
from hub.signin.tokens import LiveToken, TokenIndex
from hub.store.signin_tables import SignInConsentRow, SignInPendingRow, SignInTokenRow

if TYPE_CHECKING:
    from hub.audit.adminlog import AuditLog

logger = logging.getLogger(__name__)

CALLBACK_PATH = "/signin/callback"
STATE_COOKIE = "agenthub_signin"
REQUEST_COOKIE = "agenthub_signin_request"
Reach = Callable[[VirtualKey, str | None], list[str]]
"""The tools a key reaches on the aggregated endpoint (None) or one server's, over the live registry."""


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
        reach: Reach | None = None,
        audit: AuditLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.section = section
        self._signing_key = signing_key
        self._reach = reach
        self._audit = audit
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
        """`GET /signin/callback`: who signed in and their grants; then the consent page, or (consent remembered
        for this client and reach) straight back to the MCP client with a code."""
        try:
            identity = await self.login.finish(dict(request.query_params), request.cookies.get(STATE_COOKIE))
        except OidcError as exc:
            return _page_error(f"sign-in failed: {exc}")
        now = datetime.fromtimestamp(self._clock(), UTC)
        raw = await anyio.to_thread.run_sync(self._store.take_pending, request.cookies.get(REQUEST_COOKIE, ""), now)
        pending: dict[str, Any] | None = json.loads(raw) if raw is not None else None
        if pending is None or "consent" in pending:
            return _page_error("the sign-in request expired or was completed already (start again)")
        person = Person(
            issuer=self.section.idp.issuer,
            subject=identity.subject,
            email=identity.email,
            groups=identity.groups,
            claims=claims_read(self.section, identity.claims),
        )
        key = person_key(self.section, person)
        if key is None:
            await self._audited(request, person, pending, "denied", "no sign-in grant applies")
            denied = {"error": "access_denied", "error_description": f"no sign-in grant applies to {person.name}"}
            return self._back(pending, denied)
        client_id = str(pending["client_id"])
        remembered = await anyio.to_thread.run_sync(self._store.consent, key.id, client_id)
        if remembered == fingerprint(key):
            return await self._complete(request, pending, person, key, consent="remembered")
        consent_id = secrets.token_urlsafe(32)
        row = SignInPendingRow(
            id=consent_id,
            request=json.dumps({"consent": pending, "person": person.to_json()}),
            expires_at=datetime.fromtimestamp(self._clock() + PENDING_TTL_S, UTC),
        )
        await anyio.to_thread.run_sync(self._store.add_pending, row, now)
        page = consent_page(
            client_id=client_id,
            client_name=pending.get("client_name"),
            redirect_uri=str(pending["redirect_uri"]),
            person=person.email or person.subject,
            tools=self._tools(key, str(pending["resource"])),
            csrf=csrf_token(self._signing_key, consent_id),
        )
        page.set_cookie(
            CONSENT_COOKIE, consent_id, max_age=PENDING_TTL_S, httponly=True, samesite="strict", path="/signin",
            secure=self.section.issuer.startswith("https://"),
        )  # fmt: skip
        page.delete_cookie(STATE_COOKIE, path="/signin")
        page.delete_cookie(REQUEST_COOKIE, path="/signin")
        return page

    async def decide(self, request: Request) -> Response:
        """`POST /signin/consent`: the person's answer on the consent page, from the browser that was shown it."""
        consent_id = request.cookies.get(CONSENT_COOKIE, "")
        form = await request.form()
        csrf, decision = form.get("csrf"), form.get("decision")
        if not isinstance(csrf, str) or not csrf_valid(self._signing_key, consent_id, csrf):
            return _page_error("this consent form does not belong to your sign-in (start again)", 403)
        if decision not in ("approve", "deny"):
            return _page_error("the decision must be approve or deny")
        now = datetime.fromtimestamp(self._clock(), UTC)
        raw = await anyio.to_thread.run_sync(self._store.take_pending, consent_id, now)
        held: dict[str, Any] | None = json.loads(raw) if raw is not None else None
        if held is None or "consent" not in held:
            return _page_error("the sign-in request expired or was completed already (start again)")
        pending: dict[str, Any] = held["consent"]
        person = Person.from_json(held["person"])
        if decision == "deny":
            await self._audited(request, person, pending, "denied", "the person denied the client")
            return self._back(pending, {"error": "access_denied", "error_description": "the person denied access"})
        key = person_key(self.section, person)
        if key is None:  # the grants changed while the page was open
            await self._audited(request, person, pending, "denied", "no sign-in grant applies")
            return self._back(pending, {"error": "access_denied", "error_description": "no sign-in grant applies"})
        consent = SignInConsentRow(person_id=key.id, client_id=str(pending["client_id"]), grants=fingerprint(key),
                                   granted_at=now)  # fmt: skip
        await anyio.to_thread.run_sync(self._store.remember_consent, consent)
        return await self._complete(request, pending, person, key, consent="approved")

    async def _complete(
        self, request: Request, pending: dict[str, Any], person: Person, key: VirtualKey, *, consent: str
    ) -> Response:
        """The person's row and the sign-in's audit entry (one transaction), then a code back to the client."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        name, data = person.name, json.dumps(person.to_json())

        def write(s: Session) -> bool:
            return self._store.seen(s, key.id, name, data, now)

        await self._audited(request, person, pending, "success", consent, write)
        code = await self.server.issue_code(pending, person)
        return self._back(pending, {"code": code})

    async def _audited(
        self,
        request: Request,
        person: Person,
        pending: dict[str, Any],
        outcome: str,
        detail: str,
        write: Callable[[Session], bool] | None = None,
    ) -> None:
        """`signin.login` in the audit chain (with `write` in the same transaction); without an audit log (a
        hub without the admin tables), `write` alone."""
        after: dict[str, Any] = {
            "client_id": str(pending["client_id"]),
            "redirect_uri": str(pending["redirect_uri"]),
            "groups": list(person.groups),
            "detail": detail,
        }
        agent = request.headers.get("user-agent")
        source = request.client.host if request.client is not None else None
        event = AuditEvent(person.name, "signin.login", "user", person.id, None, after, source, agent, outcome)
        change = write or _nothing
        if self._audit is not None:
            await self._audit.transact(change, lambda _new: event)
            return

        def alone() -> None:
            with Session(self._store.engine) as s:
                change(s)
                s.commit()

        await anyio.to_thread.run_sync(alone)

    def _tools(self, key: VirtualKey, resource: str) -> list[str]:
        """The tools the consent page lists: the person's grants over the live registry, on the token's audience
        (the aggregated endpoint or one server's); the grant's patterns when the hub gave no registry."""
        if self._reach is None:
            return list(key.tools)
        base = self.server.endpoint()
        server = resource[len(base) + 1 :] if resource.startswith(base + "/") else None
        return self._reach(key, server)

    # -- people ----------------------------------------------------------------------------------------------------

    @property
    def store(self) -> SignInStore:
        return self._store

    def drop(self, hashes: list[str]) -> None:
        """Access tokens revoked in the database by this process (`SignInStore.revoke_person`) leave memory at
        once; the other replicas drop them at their next change poll."""
        for hashed in hashes:
            self.index.remove(hashed)

    def _back(self, pending: dict[str, Any], params: dict[str, str]) -> Response:
        values = {**params, **({"state": pending["state"]} if pending.get("state") is not None else {})}
        values["iss"] = self.section.issuer
        redirect = str(pending["redirect_uri"])
        separator = "&" if "?" in redirect else "?"
        response = RedirectResponse(f"{redirect}{separator}{urlencode(values)}", status_code=302)
        response.delete_cookie(STATE_COOKIE, path="/signin")
        response.delete_cookie(REQUEST_COOKIE, path="/signin")
        response.delete_cookie(CONSENT_COOKIE, path="/signin")
        return response


def _nothing(_s: Session) -> bool:
    return False


def _page_error(message: str, status: int = 400) -> Response:
    return json_response({"error": {"message": message, "type": "sign_in_error"}}, status)


__all__ = ["CALLBACK_PATH", "CONSENT_PATH", "LOGIN_PATH", "SignIn"]

"""Per-user authorization links: the hub's own step between a key's MCP client and an upstream's consent page.

Whoever completes an authorization decides whose upstream account a key acts as. So a key that must authorize
gets a link to the hub (`/oauth/start?flow=ID`), never the upstream's authorization URL, and the link is bound to
the person who opens it:

1. **Offer.** `AuthLinks.offer` stores a flow (server, key id, expiry) under the SHA-256 of a random one-time id.
2. **Claim.** The first browser to open the link claims it: the SHA-256 of a random value that browser keeps in a
   cookie is stored with the flow. The same browser may open the link again; any other browser is refused. The
   page names the key, its team, the upstream and the hub, so nobody authorizes blindly.
3. **Continue.** The confirmation form (a POST with a token derived from the cookie) uses the flow up and starts
   the upstream authorization with the cookie's digest as its binding (`PendingAuthorization.binding`).
4. **Callback.** `check_callback`: a key's authorization completes only in the browser it is bound to.
   Authorizations of the hub's own identity, which an administrator starts and finishes, are unbound, and a
   bound one never authorizes the hub's identity.

Flows live in the shared store, like pending authorizations, so any replica serves any step. They expire with the
authorization state (`STATE_TTL_S`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from connectors.auth import SHARED_SUBJECT, STATE_TTL_S, PendingAuthorization
from hub.errors import BadRequest, Forbidden

FLOW_TTL_S = STATE_TTL_S
"""A link is valid this long after it is offered; the cookie that claims it lives as long."""


def digest(value: str) -> str:
    """The SHA-256 (hex) under which flow ids and browser values are stored and compared."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuthFlow:
    """A per-user authorization offered to a key's user."""

    server: str
    subject: str
    """The key's id."""
    expires_at: float
    claim: str = ""
    """The digest of the browser that opened the link first; empty until then."""


class FlowStore(Protocol):
    """Where links live (the hub's shared database, or memory); all methods are safe to call concurrently."""

    async def put_flow(self, flow_id: str, flow: AuthFlow) -> None:
        """Remember a new flow under its one-time id."""
        ...

    async def claim_flow(self, flow_id: str, claim: str, *, now: float) -> AuthFlow | None:
        """Bind an unclaimed, unexpired flow to `claim`; return the flow as stored (its `claim` names whoever holds
        it), or None when it is unknown, used or expired."""
        ...

    async def take_flow(self, flow_id: str, claim: str, *, now: float) -> AuthFlow | None:
        """Remove and return the flow if it is bound to `claim` and unexpired (None otherwise)."""
        ...


class MemoryFlowStore:
    """A `FlowStore` in process memory (a hub without the encrypted database)."""

    def __init__(self) -> None:
        self._flows: dict[str, AuthFlow] = {}

    async def put_flow(self, flow_id: str, flow: AuthFlow) -> None:
        self._flows = {k: f for k, f in self._flows.items() if f.expires_at > flow.expires_at - FLOW_TTL_S}
        self._flows[digest(flow_id)] = flow

    async def claim_flow(self, flow_id: str, claim: str, *, now: float) -> AuthFlow | None:
        key = digest(flow_id)
        flow = self._flows.get(key)
        if flow is None or flow.expires_at <= now:
            return None
        if not flow.claim:
            flow = self._flows[key] = replace(flow, claim=claim)
        return flow

    async def take_flow(self, flow_id: str, claim: str, *, now: float) -> AuthFlow | None:
        key = digest(flow_id)
        flow = self._flows.get(key)
        if flow is None or flow.expires_at <= now or not flow.claim or flow.claim != claim:
            return None
        del self._flows[key]
        return flow


class AuthLinks:
    """Offer, claim and use per-user authorization links."""

    def __init__(self, store: FlowStore, start_url: str, *, clock: Callable[[], float] = time.time) -> None:
        """Set up (no I/O).

        Args:
            store: where flows live.
            start_url: the hub's `/oauth/start` as browsers reach it.
            clock: wall-clock seconds.
        """
        self.store = store
        self.start_url = start_url
        self._clock = clock

    async def offer(self, server: str, subject: str) -> str:
        """A new link at which the user of key `subject` authorizes the hub at `server`."""
        flow_id = secrets.token_urlsafe(32)
        await self.store.put_flow(flow_id, AuthFlow(server, subject, self._clock() + FLOW_TTL_S))
        return f"{self.start_url}?flow={flow_id}"

    async def claim(self, flow_id: str, browser: str) -> AuthFlow:
        """The flow a link names, claimed by this browser (or already claimed by it).

        Raises:
            BadRequest: the link is unknown, used or expired.
            Forbidden: another browser opened the link first.
        """
        flow = await self.store.claim_flow(flow_id, digest(browser), now=self._clock())
        if flow is None:
            raise BadRequest("this authorization link is unknown, used or expired: ask your MCP client for a new one")
        if not hmac.compare_digest(flow.claim, digest(browser)):
            raise Forbidden(
                "this authorization link was already opened in another browser; only that browser may use it"
            )
        return flow

    async def take(self, flow_id: str, browser: str) -> AuthFlow:
        """Use a link up: the flow, if this browser claimed it.

        Raises:
            Forbidden: the link is unknown, used or expired, or another browser claimed it.
        """
        flow = await self.store.take_flow(flow_id, digest(browser), now=self._clock())
        if flow is None:
            raise Forbidden("this authorization link is used, expired or was opened in another browser")
        return flow


def check_callback(pending: PendingAuthorization, browser: str | None) -> None:
    """Refuse a callback that may not complete this authorization: a key's must arrive in the browser that claimed
    its link, and an authorization bound to a browser never authorizes the hub's own identity.

    Raises:
        Forbidden: the callback may not complete it.
    """
    if pending.subject == SHARED_SUBJECT:
        if pending.binding:
            raise Forbidden("an authorization link for a key cannot authorize the hub's own identity")
        return
    if not pending.binding:
        raise Forbidden("this authorization was not started from an AgentHub authorization link")
    if browser is None or not hmac.compare_digest(pending.binding, digest(browser)):
        raise Forbidden(
            "this authorization was started in another browser: finish it in the browser that opened the "
            "AgentHub link, or ask your MCP client for a new link"
        )

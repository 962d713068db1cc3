"""authn: who is calling. A presented secret becomes a `Principal`; an existing principal is re-checked so a
revoked or expired key stops working on its very next call, even inside an open MCP session.

The MCP transport needs the caller's identity before the SDK opens a session for it: it asks `authenticate`, the
same verification this stage runs, and hands a refused request to the pipeline anyway, so the refusal is this
stage's (one error, one request-log row).
"""

from __future__ import annotations

from collections.abc import Callable

from hub.call import Call, Outcome, Principal
from hub.errors import Unauthenticated
from hub.governance.keys import KeyRing, VirtualKey
from hub.pipeline import Handler

NO_KEY = "a valid virtual key is required (Authorization: Bearer ahk-...)"


class AuthnStage:
    """`people`: the key of a signed-in person by id while they hold a live token (consulted only when the key
    ring does not know the principal, so a virtual key's call never reaches it)."""

    def __init__(
        self, keyring: Callable[[], KeyRing], people: Callable[[str], VirtualKey | None] | None = None
    ) -> None:
        self._keyring = keyring
        self._people = people

    async def __call__(self, call: Call, call_next: Handler) -> Outcome:
        ring = self._keyring()
        principal = call.principal
        if principal is not None:
            key = ring.get(principal.key.id)
            if key is None:
                key = self._people(principal.key.id) if self._people is not None else None
                if key is None:
                    raise Unauthenticated("the virtual key was revoked or has expired")
            if key is not principal.key:
                call = call.authenticated(principal.with_key(key))
            return await call_next(call)
        credential = call.credential
        key = ring.verify(credential) if credential else None
        if key is None:
            raise Unauthenticated(NO_KEY)
        found = Principal(key)
        outcome = await call_next(call.authenticated(found))
        outcome.principal = found  # the audit stage records who made the call
        return outcome

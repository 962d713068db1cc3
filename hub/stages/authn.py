"""authn: who is calling. A presented secret becomes a `Principal`; an existing principal is re-checked so a
revoked or expired key stops working on its very next call, even inside an open MCP session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from hub.call import Call, Outcome, Principal
from hub.errors import Unauthenticated
from hub.governance.keys import KeyRing
from hub.pipeline import Handler


class AuthnStage:
    def __init__(self, keyring: Callable[[], KeyRing]) -> None:
        self._keyring = keyring

    async def __call__(self, call: Call, call_next: Handler) -> Outcome:
        ring = self._keyring()
        if call.principal is not None:
            key = ring.get(call.principal.key.id)
            if key is None:
                raise Unauthenticated("the virtual key was revoked or has expired")
            if key is not call.principal.key:
                call = replace(call, principal=Principal(key))
            return await call_next(call)
        key = ring.verify(call.credential) if call.credential else None
        if key is None:
            raise Unauthenticated("a valid virtual key is required (Authorization: Bearer ahk-...)")
        return await call_next(replace(call, principal=Principal(key), credential=None))

"""The terminal step for `mcp.session` calls (`initialize`, `ping`, `server/discover`, `logging/setLevel`, ...),
and the cap on how many handshake-era MCP sessions one key may hold open.

A session costs the hub memory for as long as it lives (30 minutes idle by default), so a key gets at most
`limit` of them: opening one more is refused with 429 until one of them ends (the client's `DELETE`, or the idle
timeout). The transport tells the cap which session an `initialize` opened (`SessionTicket.opened`) and how to see
that it is still alive; a ticket that opened nothing is released.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from hub.call import Call, Outcome
from hub.errors import RateLimited

Alive = Callable[[], bool]
"""Whether a session is still open."""


class SessionTicket:
    """One `initialize` admitted under a key's cap: call `opened` with the session it created, or `release`."""

    def __init__(self, cap: SessionCap, key_id: str) -> None:
        self._cap = cap
        self._key_id = key_id
        self._done = False

    def opened(self, session_id: str, alive: Alive) -> None:
        """The session this `initialize` created, and how to tell it is still open."""
        if not self._done:
            self._done = True
            self._cap._opened(self._key_id, session_id, alive)

    def release(self) -> None:
        """No session was created (idempotent; a no-op after `opened`)."""
        if not self._done:
            self._done = True
            self._cap._released(self._key_id)


class SessionCap:
    """Open sessions per key, and admission under `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, dict[str, Alive]] = {}
        self._pending: dict[str, int] = {}

    def count(self, key_id: str) -> int:
        """Sessions of a key still open, and those being opened."""
        sessions = self._open.get(key_id)
        if sessions:
            for session_id in [s for s, alive in sessions.items() if not alive()]:
                del sessions[session_id]
            if not sessions:
                del self._open[key_id]
        return len(self._open.get(key_id, ())) + self._pending.get(key_id, 0)

    def admit(self, key_id: str, key_name: str) -> SessionTicket:
        """Admit one more session for a key.

        Raises:
            RateLimited: the key holds `limit` sessions already.
        """
        if self.count(key_id) >= self.limit:
            raise RateLimited(
                f"key '{key_name}' has {self.limit} open MCP sessions, the most it may hold: end one "
                "(DELETE /mcp with its Mcp-Session-Id) or reuse it",
                headers={"retry-after": "60"},
            )
        self._pending[key_id] = self._pending.get(key_id, 0) + 1
        return SessionTicket(self, key_id)

    def _opened(self, key_id: str, session_id: str, alive: Alive) -> None:
        self._released(key_id)
        self._open.setdefault(key_id, {})[session_id] = alive

    def _released(self, key_id: str) -> None:
        left = self._pending.get(key_id, 0) - 1
        if left > 0:
            self._pending[key_id] = left
        else:
            self._pending.pop(key_id, None)


class SessionExecutor:
    """Runs `mcp.session` calls: admits a new session under the cap (`context["opens"]`), or runs what the
    transport handed over (`context["run"]`: the SDK's own handling of `ping`, `server/discover`, ...)."""

    def __init__(self, cap: SessionCap) -> None:
        self.cap = cap

    async def __call__(self, call: Call) -> Outcome:
        principal = call.principal
        assert principal is not None
        if call.context.get("opens"):
            return Outcome(self.cap.admit(principal.key.id, principal.key.name))
        run: Callable[[], Awaitable[Any]] | None = call.context.get("run")
        return Outcome(await run() if run is not None else None)

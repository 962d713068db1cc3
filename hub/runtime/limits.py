"""Serving limits: how long a client may take to send a request, and how many connections may be open at once.

`ServingLimits` holds the `[hub]` values; `ConnectionTable` keeps one server's open connections and, at the cap,
picks the connection to close for a new one (or refuses the new one); `fit_descriptors` makes the cap fit the
process's file-descriptor limit at start-up. The HTTP protocol in `hub.runtime.protocol` applies all three.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

__all__ = ["ConnectionTable", "Evictable", "ServingLimits", "fit_descriptors", "plan_descriptors"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServingLimits:
    """Per-connection deadlines and the connection cap (see `[hub]` in the settings for each one's meaning)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_timeout_s: float = 5.0
    max_connections: int = 1000


class Evictable(Protocol):
    """A connection the table can close to make room."""

    waiting_since: int | None
    """When the connection began waiting for a request (a `TICKS` value), or None while a request is in flight."""

    def evict(self) -> None:
        """Close the connection now (the table has already let it go)."""
        ...


C = TypeVar("C", bound=Evictable)

TICKS = itertools.count()
"""Stamps in the order connections begin waiting: the smallest has waited longest."""

_REFUSAL_WARNING_EVERY_S = 60.0


class ConnectionTable(Generic[C]):
    """One server's open connections, each stamped with when it began waiting for a request (its headers still
    coming, or idle between requests), or not while it has a request in flight.

    `admit` a new connection: below the cap it joins, waiting; at the cap the connection that has waited longest is
    evicted to make room (found by a scan, only then), and when none waits (every connection is busy with a request)
    the new one is refused. A connection moves with `busy` and `waiting`: setting its stamp, which the HTTP protocol
    does itself on its hot path; it leaves with `leave`.
    """

    __slots__ = ("_clock", "_members", "_warned_at", "cap", "evicted", "refused")

    def __init__(self, cap: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if cap < 1:
            raise ValueError(f"the connection cap must be at least 1, not {cap}")
        self.cap = cap
        self._members: set[C] = set()
        self._clock = clock
        self._warned_at: float | None = None
        self.evicted = 0
        """Connections closed to make room so far."""
        self.refused = 0
        """New connections refused so far (the cap reached, every connection busy)."""

    def __len__(self) -> int:
        return len(self._members)

    def admit(self, connection: C) -> bool:
        """Take a new connection, waiting for its first request; False when it must be refused."""
        if len(self._members) >= self.cap:
            waiting = [c for c in self._members if c.waiting_since is not None]
            if not waiting:
                self.refused += 1
                self._warn_refused()
                return False
            oldest = min(waiting, key=_since)
            self.leave(oldest)
            self.evicted += 1
            oldest.evict()
        self._members.add(connection)
        connection.waiting_since = next(TICKS)
        return True

    @staticmethod
    def busy(connection: C) -> None:
        """The connection has a request in flight: it is not closed to make room."""
        connection.waiting_since = None

    def waiting(self, connection: C) -> None:
        """The connection has no request in flight any more; it waits from now on (the newest waiter)."""
        if connection in self._members:
            connection.waiting_since = next(TICKS)

    def leave(self, connection: C) -> None:
        """The connection is closed or closing (a no-op for one that already left, or was refused)."""
        self._members.discard(connection)
        connection.waiting_since = None

    def _warn_refused(self) -> None:
        now = self._clock()
        if self._warned_at is None or now - self._warned_at >= _REFUSAL_WARNING_EVERY_S:
            self._warned_at = now
            logger.warning(
                "refusing new connections: all %d connections are busy with requests (max_connections); "
                "%d refused so far",
                self.cap,
                self.refused,
            )


def _since(connection: Evictable) -> int:
    stamp = connection.waiting_since
    return stamp if stamp is not None else -1


def plan_descriptors(cap: int, reserve: int, soft: int, hard: int, unlimited: int = -1) -> tuple[int, int]:
    """The file-descriptor soft limit to set and the connection cap to serve with, for a wanted `cap` plus
    `reserve` descriptors kept for everything else, under the limits `soft` and `hard` (`unlimited` is the value
    meaning no limit, `resource.RLIM_INFINITY`).

    A soft limit below `cap + reserve` is raised to that sum, or as far as the hard limit allows; when even the hard
    limit is too low the cap is lowered to what is left after the reserve (the reserve taking at most half the
    limit, the cap at least 1).
    """
    wanted = cap + reserve
    if soft == unlimited or soft >= wanted:
        return soft, cap
    raised = wanted if hard == unlimited else min(hard, wanted)
    if raised == wanted:
        return raised, cap
    return raised, max(1, raised - min(reserve, raised // 2))


def fit_descriptors(cap: int, reserve: int) -> int:
    """Make room for `cap` connections and `reserve` other descriptors (database, upstreams, log files) under this
    process's file-descriptor limit (RLIMIT_NOFILE); returns the cap to serve with.

    The soft limit is raised towards the hard limit when needed (`plan_descriptors`); when the cap still does not
    fit it is lowered, with a warning. On a system without resource limits (Windows) `cap` comes back unchanged.
    """
    try:
        import resource
    except ImportError:  # pragma: lax no cover - not a POSIX system
        return cap
    unlimited = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target, fitted = plan_descriptors(cap, reserve, soft, hard, unlimited)
    if target != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            logger.warning("could not raise the file-descriptor limit from %d to %d: %s", soft, target, exc)
            target, fitted = plan_descriptors(cap, reserve, soft, soft, unlimited)
    if fitted < cap:
        logger.warning(
            "max_connections lowered from %d to %d: the file-descriptor limit is %d, of which %d are kept for the "
            "database, upstreams and logs; raise the limit (ulimit -n, LimitNOFILE=) to serve more connections",
            cap,
            fitted,
            target,
            target - fitted,
        )
    return fitted

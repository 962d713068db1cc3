"""Counters: the narrow store behind rate limits and budgets, and its in-memory implementation.

A counter ("slot") is one entity's metric in one window, named by an opaque key. It holds two integers:
`used` (settled usage) and `held` (reservations of calls still in flight). Each reservation is a *lease*
named by a hold id: settling or refunding it releases exactly the amount it held, and a lease that is never
settled (a crashed replica) expires at its deadline, so no phantom spend stays behind.

Admission rule for one slot: `used + held < limit` and `used + held + amount <= limit`. A reservation over
several slots is all or nothing: if any slot refuses, none is changed.

`hub.store.counters.InMemoryCounters` serves one process (the embedded default);
`hub.store.redis_counters.RedisCounters` shares counters between replicas with the same semantics, each operation
one Lua script.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, NamedTuple, Protocol

__all__ = ["Counters", "ReserveResult", "Slot", "SlotValue"]


class Slot(NamedTuple):
    """One counter in one operation."""

    key: str
    """Opaque name of the entity's metric in one window."""
    limit: int
    """The most `used + held` may reach."""
    amount: int
    """What to reserve (on reserve) or what was actually used (on settle)."""
    ttl: float
    """Seconds from now the counter must be kept at least (window end minus now, plus a grace)."""


class SlotValue(NamedTuple):
    """A counter's state."""

    used: int = 0
    held: int = 0

    @property
    def total(self) -> int:
        """Settled plus in-flight usage."""
        return self.used + self.held


class ReserveResult(NamedTuple):
    """The outcome of a reservation over several slots."""

    refused: int
    """Index of the first slot that refused, or -1 when every slot granted."""
    values: tuple[SlotValue, ...]
    """Each slot's state: after the reservation when granted, unchanged when refused."""

    @property
    def granted(self) -> bool:
        """Whether every slot granted."""
        return self.refused < 0


class Counters(Protocol):
    """Atomic multi-slot counters with leased reservations."""

    awaits_io: ClassVar[bool]
    """Whether operations wait on I/O; if so the limiter shields settles and refunds from cancellation."""

    async def reserve(self, slots: Sequence[Slot], *, hold_id: str, now: float, lease: float) -> ReserveResult:
        """Check every slot and, only if all admit, hold `slot.amount` on each under `hold_id` for `lease` s."""
        ...

    async def settle(self, slots: Sequence[Slot], *, hold_id: str, now: float) -> None:
        """Release the lease `hold_id` on each slot and add `slot.amount` (the actual usage) to `used`.

        Refunding is settling with zero amounts. Settling a lease that already expired still records usage.
        """
        ...

    async def read(self, keys: Sequence[str], *, now: float) -> list[SlotValue]:
        """The current state of each slot (expired leases released first)."""
        ...

    async def reset(self, keys: Sequence[str], *, now: float) -> None:
        """Set `used` back to zero on each slot; leases in flight stay held."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
